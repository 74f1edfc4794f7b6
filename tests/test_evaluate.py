"""Evaluation through the real bitstream, curves, BD-rates, and the CLI."""

import csv
import json
import math

import pytest

from tfc_sth.tools import anchors
from tfc_sth import cli
from tfc_sth.tools import evaluate
from tfc_sth.runtime import image_io
from tfc_sth.tools import metrics


@pytest.fixture
def photo_dir(tmp_path, smooth_image, png_bytes):
  """Two PNGs big enough for MS-SSIM (161 pixels a side)."""
  directory = tmp_path / "photos"
  directory.mkdir()
  for i, (h, w) in enumerate([(176, 192), (168, 200)]):
    (directory / f"photo{i}.png").write_bytes(
        png_bytes(smooth_image(h, w, seed=20 + i)))
  return directory


def test_measure_model_reports_the_files_figures(tiny_codec, photo_dir):
  path = str(photo_dir / "photo0.png")
  image, channels = image_io.read_png(path)
  m = evaluate.measure_model(tiny_codec, "tiny", path, image, channels)
  data = tiny_codec.compress(image, channels)
  decoded, _ = tiny_codec.decompress(data)
  assert (m.codec, m.setting, m.width, m.height) == (
      "tiny", tiny_codec.model_id, 192, 176)
  assert m.num_bytes == len(data)
  assert m.bpp == pytest.approx(8 * len(data) / (176 * 192))
  assert m.psnr == pytest.approx(metrics.psnr(image, decoded))
  assert m.ms_ssim == pytest.approx(metrics.ms_ssim(image, decoded))
  assert m.ms_ssim_db == pytest.approx(metrics.ms_ssim_db(m.ms_ssim))
  assert m.estimated_bpp <= m.bpp
  assert m.encode_seconds > 0 and m.decode_seconds > 0


def test_measure_model_records_refinement(tiny_codec, photo_dir):
  path = str(photo_dir / "photo0.png")
  image, channels = image_io.read_png(path)
  m = evaluate.measure_model(tiny_codec, "tiny", path, image, channels,
                             refine_steps=2)
  assert m.setting == tiny_codec.model_id + " refine 2"
  assert math.isnan(m.estimated_bpp)  # The model's is of g_a's latents.


def test_measure_anchor_measures_its_file(photo_dir):
  path = str(photo_dir / "photo1.png")
  image, _ = image_io.read_png(path)
  m = evaluate.measure_anchor(anchors.ANCHORS["jpeg"], 50, path, image)
  coded = anchors.ANCHORS["jpeg"].code(image, 50)
  assert (m.codec, m.setting) == ("jpeg", "quality=50")
  assert m.num_bytes == len(coded.data)
  assert m.psnr == pytest.approx(metrics.psnr(image, coded.decoded))
  assert math.isnan(m.estimated_bpp)


def _m(codec, setting, image, bpp, psnr):
  return evaluate.Measurement(
      codec=codec, setting=setting, image=image, width=10, height=10,
      num_bytes=int(bpp * 100 / 8), bpp=bpp, psnr=psnr, ms_ssim=.9,
      ms_ssim_db=psnr / 2, encode_seconds=1., decode_seconds=2.)


def test_curves_average_over_images_and_sort_by_rate():
  measurements = [_m("a", "hi", "x", 2., 30.), _m("a", "hi", "y", 4., 34.),
                  _m("a", "lo", "x", 1., 26.), _m("a", "lo", "y", 1., 28.)]
  curve = evaluate.curves(measurements)["a"]
  assert [p["setting"] for p in curve] == ["lo", "hi"]
  assert curve[1]["bpp"] == 3. and curve[1]["psnr"] == 32.
  assert curve[0]["images"] == 2


def test_bd_rates_and_gains_at_rate():
  measurements = []
  for image in ("x", "y"):
    for q, (bpp, psnr) in enumerate([(.5, 28.), (1., 31.), (2., 34.)]):
      measurements.append(_m("ref", f"q={q}", image, bpp, psnr))
      measurements.append(_m("half", f"q={q}", image, bpp / 2, psnr))
  measurements.append(_m("model", "id", "x", .75, 31.))  # ref: 29.5 dB.
  measurements.append(_m("model", "id", "y", 5., 40.))  # Outside: left out.
  rates = evaluate.bd_rates(evaluate.curves(measurements), "ref")
  assert rates["half"]["psnr"] == pytest.approx(-50.)
  assert math.isnan(rates["model"]["psnr"])  # A single point: no curve.
  gains = evaluate.gains_at_rate(measurements, "model", "ref")
  assert gains == {"id": pytest.approx(1.5)}


def test_evaluate_command(tiny_model_dir, photo_dir, tmp_path, capsys,
                          reuse_saved_models):
  out, plot = tmp_path / "results.json", tmp_path / "rd.png"
  args = ["tfc-sth", "evaluate", "--model", f"tiny={tiny_model_dir}",
          "--anchors=jpeg,webp", "-o", str(out), "--plot", str(plot),
          str(photo_dir)]
  assert cli.main(args) == 0
  report = json.loads(out.read_text())
  assert len(report["images"]) == 2
  assert report["models"] == {"tiny": tiny_codec_id(tiny_model_dir)}
  assert set(report["curves"]) >= {"tiny", "jpeg"}
  jpeg = report["curves"]["jpeg"]
  assert len(jpeg) == len(anchors.ANCHORS["jpeg"].settings)
  assert [p["bpp"] for p in jpeg] == sorted(p["bpp"] for p in jpeg)
  assert report["bd_rate"]["reference"] == "jpeg"
  if "webp" in report["anchors"]:
    assert math.isfinite(report["bd_rate"]["webp"]["psnr"])
  else:
    assert "webp" in capsys.readouterr().err  # The note that it is skipped.
  assert plot.read_bytes().startswith(b"\x89PNG")
  printed = capsys.readouterr().out
  assert "tiny" in printed and "BD-rate against jpeg" in printed
  # Existing outputs are not overwritten without --force.
  assert cli.main(args) == cli.EXIT_ERROR


def tiny_codec_id(model_dir):
  return json.loads((model_dir / "model.json").read_text())["model_id"]


def test_evaluate_command_writes_csv(tiny_model_dir, photo_dir, tmp_path,
                                     reuse_saved_models):
  out = tmp_path / "results.csv"
  assert cli.main(["tfc-sth", "evaluate", "--model", str(tiny_model_dir),
                   "--anchors=jpeg", "-o", str(out),
                   str(photo_dir / "*.png")]) == 0
  rows = list(csv.DictReader(out.read_text().splitlines()))
  assert len(rows) == 2 * (1 + len(anchors.ANCHORS["jpeg"].settings))
  model_rows = [r for r in rows if r["codec"] == "tiny"]
  assert len(model_rows) == 2 and float(model_rows[0]["bpp"]) > 0


@pytest.mark.parametrize("flags,message", [
    (["--anchors=jpeg,gif"], "unknown anchors"),
    (["-o", "results.txt"], ".json or .csv"),
])
def test_evaluate_command_usage_errors(flags, message, photo_dir, capsys):
  assert cli.main(["tfc-sth", "evaluate", *flags, str(photo_dir)]) == (
      cli.EXIT_USAGE)
  assert message in capsys.readouterr().err


def test_evaluate_command_needs_images(tmp_path, capsys):
  assert cli.main(["tfc-sth", "evaluate", str(tmp_path / "*.png")]) == (
      cli.EXIT_USAGE)
  assert "no PNG images" in capsys.readouterr().err
