#!/usr/bin/env python3
"""Plots and tabulates training runs' validation against wall-clock time.

    tools/plot_convergence.py RUN_DIR... -o curves.png [--levels 1,4,8]

Reads each run's `validation.csv` (written by `tfc-sth train` after every
epoch: one row per quality level with the training seconds so far) and draws
the mean validation loss over levels, PSNR and bpp at the chosen levels and,
for ladders, the BD-rate in PSNR of every validation against the first run's
last, against seconds. Prints each run's last row, its loss at the time the
shortest run reached (recipes compared at equal wall time) and its last
BD-rate. The mean loss is mostly the top levels' λ·MSE, so a run can lower it
by moving its levels to more bits, which the BD-rate does not reward.
"""

import argparse
import csv
import os
import sys

import numpy as np

from tfc_sth.tools import metrics


def read(run_dir):
  """{quality: {field: array over epochs}} and the seconds of each epoch."""
  with open(os.path.join(run_dir, "validation.csv")) as f:
    rows = list(csv.DictReader(f))
  if not rows:
    raise ValueError(f"{run_dir}: no validation rows yet")
  levels = {}
  for row in rows:
    level = levels.setdefault(int(row["quality"]), {})
    for key, value in row.items():
      level.setdefault(key, []).append(float(value))
  return {q: {k: np.array(v) for k, v in fields.items()}
          for q, fields in levels.items()}


def mean_loss(levels):
  return np.mean([fields["loss"] for fields in levels.values()], axis=0)


def curve(levels, epoch=-1):
  """(bpp, PSNR) of every level at one validation (default: the last)."""
  return [(f["bpp"][epoch], f["psnr"][epoch])
          for _, f in sorted(levels.items())]


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("runs", nargs="+")
  parser.add_argument("-o", "--output", required=True, help="PNG to write")
  parser.add_argument("--levels", default="1,4,8",
                      help="quality levels to draw PSNR and bpp for")
  args = parser.parse_args(argv)
  runs = {os.path.basename(os.path.normpath(r)): read(r) for r in args.runs}
  shown = [int(q) for q in args.levels.split(",")]
  horizon = min(next(iter(r.values()))["seconds"][-1] for r in runs.values())
  reference_name, reference = next(iter(runs.items()))
  reference = curve(reference)
  ladder = len(reference) > 1
  print(f"{'run':24s} {'steps':>6s} {'seconds':>8s} {'loss':>8s} "
        f"{'loss@' + format(horizon, '.0f') + 's':>10s} {'BD-rate':>8s}" +
        "".join(f" {'bpp q' + str(q):>8s} {'PSNR q' + str(q):>8s}"
                for q in shown))
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top
  panels = 4 if ladder else 3
  figure, axes = pyplot.subplots(1, panels, figsize=(5.3 * panels, 4.5),
                                 dpi=110)
  for name, levels in runs.items():
    first = next(iter(levels.values()))
    seconds, loss = first["seconds"], mean_loss(levels)
    at_horizon = np.interp(horizon, seconds, loss)
    bds = [metrics.bd_rate(reference, curve(levels, e))
           for e in range(len(seconds))]
    bd = "-" if np.isnan(bds[-1]) else f"{bds[-1]:+.2f}%"  # NaN: one level.
    print(f"{name:24s} {first['step'][-1]:6.0f} {seconds[-1]:8.0f} "
          f"{loss[-1]:8.4f} {at_horizon:10.4f} {bd:>8s}" + "".join(
              f" {levels[q]['bpp'][-1]:8.4f} {levels[q]['psnr'][-1]:8.2f}"
              for q in shown if q in levels))
    line, = axes[0].plot(seconds, loss, label=name)
    for q in shown:
      if q in levels:
        style = dict(color=line.get_color(), alpha=.4 + .6 * q / max(shown))
        axes[1].plot(seconds, levels[q]["psnr"], **style)
        axes[2].plot(seconds, levels[q]["bpp"], **style)
    if ladder:
      axes[3].plot(seconds, bds, color=line.get_color())
  titles = ("validation loss, mean over levels",
            f"PSNR (dB), levels {args.levels}", f"bpp, levels {args.levels}",
            f"BD-rate in PSNR (%) against {reference_name}'s end")
  for axis, label in zip(axes, titles):
    axis.set_xlabel("training seconds")
    axis.set_title(label, fontsize=10)
    axis.grid(alpha=.3)
  axes[0].legend(fontsize=8)
  figure.tight_layout()
  figure.savefig(args.output)
  return 0


if __name__ == "__main__":
  sys.exit(main())
