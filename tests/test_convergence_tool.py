"""tools/plot_convergence.py: its table ranks runs at equal time and by the
BD-rate of their last validation against the first run's."""

import csv

import pytest

FIELDS = ("step", "seconds", "quality", "lmbda", "loss", "bpp", "mse", "psnr")


def _run(directory, epochs):
  """A run directory whose validation.csv holds `epochs`: (seconds, loss,
  [(bpp, psnr) per level])."""
  directory.mkdir()
  with open(directory / "validation.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(FIELDS)
    for step, (seconds, loss, curve) in enumerate(epochs, 1):
      for level, (bpp, psnr) in enumerate(curve, 1):
        writer.writerow((100 * step, seconds, level, 0.01, loss, bpp, 0, psnr))
  return str(directory)


def _table(capsys, tool, tmp_path, runs):
  assert tool("plot_convergence").main(
      [*runs, "-o", str(tmp_path / "curves.png"), "--levels", "1"]) == 0
  assert (tmp_path / "curves.png").stat().st_size > 0
  lines = capsys.readouterr().out.splitlines()
  return {line.split()[0]: line.split() for line in lines[1:]}


CURVE = [(0.1, 25.), (0.3, 28.), (1.0, 32.)]


def test_bd_rate_against_the_first_run(tmp_path, capsys, tool):
  # 10% fewer bits at every PSNR is a BD-rate of -10% by definition; the
  # loss says the opposite, as a run that only moved its levels could.
  base = _run(tmp_path / "base", [(10, 2.0, CURVE)])
  better = _run(tmp_path / "better",
                [(10, 2.1, [(0.9 * b, p) for b, p in CURVE])])
  table = _table(capsys, tool, tmp_path, [base, better])
  assert table["base"][5] == "+0.00%"
  assert table["better"][5] == "-10.00%"


def test_loss_at_equal_time(tmp_path, capsys, tool):
  fast = _run(tmp_path / "fast", [(10, 3.0, CURVE), (20, 2.0, CURVE)])
  slow = _run(tmp_path / "slow", [(10, 2.5, CURVE), (30, 1.5, CURVE),
                                  (40, 1.0, CURVE)])
  table = _table(capsys, tool, tmp_path, [fast, slow])
  # At 20 s, the shortest run's end: 2.0, and 2.5 + (1.5 - 2.5) / 2.
  assert float(table["fast"][4]) == pytest.approx(2.0)
  assert float(table["slow"][4]) == pytest.approx(2.0)
  assert float(table["slow"][3]) == pytest.approx(1.0)


def test_a_single_level_has_no_bd_rate(tmp_path, capsys, tool):
  run = _run(tmp_path / "single", [(10, 2.0, CURVE[:1])])
  assert _table(capsys, tool, tmp_path, [run])["single"][5] == "-"
