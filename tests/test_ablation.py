"""`tfc-sth ablate`: variants from one seed, AUN branching from STH's soft phase."""

import json
import os

import tensorflow as tf

from tfc_sth.training import ablation
from tfc_sth import cli


def _step(checkpoint_dir):
  # Checkpoints are numbered by the optimizer's step.
  return int(tf.train.latest_checkpoint(checkpoint_dir).rsplit("-", 1)[1])


def test_ablate_command(tmp_path, smooth_image, png_bytes, capsys):
  images = tmp_path / "images"
  images.mkdir()
  for i, (h, w) in enumerate([(64, 64), (176, 176)]):
    (images / f"image_{i}.png").write_bytes(
        png_bytes(smooth_image(h, w, seed=40 + i)))
  out = tmp_path / "ablation"
  args = ["tfc-sth", "ablate", f"--out_dir={out}", "--lmbdas=0.01",
          "--variants=sth,aun", "--num_filters=8", "--latent_channels=12",
          "--soft_steps=4", "--hard_steps=2", "--steps_per_epoch=2",
          "--batch_size=1", "--patch_size=64", "--valid_crop=64",
          f"--train_glob={images}/*.png", f"--valid_glob={images}/*.png"]
  assert cli.main(args) == 0
  sth, aun = (ablation.run_dir(str(out), .01, v) for v in ("sth", "aun"))
  with open(os.path.join(aun, "config.json")) as f:
    config = json.load(f)
  assert config["strategy"] == "noise"
  assert config["init_from"] == os.path.join(sth, "checkpoints",
                                             "phase_0_end")
  # Equal total steps: AUN continued from step 4 to the same end as STH.
  assert _step(os.path.join(sth, "checkpoints")) == 6
  assert _step(os.path.join(aun, "checkpoints")) == 6
  report = json.loads((out / "results.json").read_text())
  assert set(report["curves"]) == {"sth", "aun", "jpeg"}
  assert report["bd_rate"]["reference"] == "aun"
  assert set(report["train_seconds"]) == {"sth", "aun"}
  assert (out / "rd.png").read_bytes().startswith(b"\x89PNG")
  assert "BD-rate against aun" in capsys.readouterr().out
  # A rerun trains nothing: the recorded training times stay, and a run
  # whose record is lost (stopped after its export) reports no time.
  os.remove(os.path.join(aun, "timing.json"))
  assert cli.main(args) == 0
  again = json.loads((out / "results.json").read_text())
  assert again["train_seconds"]["sth"] == report["train_seconds"]["sth"]
  assert again["train_seconds"]["aun"] == {"0.01": None}


def test_ablate_refuses_a_branch_without_its_source(tmp_path, capsys):
  assert cli.main(["tfc-sth", "ablate", f"--out_dir={tmp_path}",
                   "--variants=aun", "--train_glob=x", "--valid_glob=x"]) == (
                       cli.EXIT_USAGE)
  assert "branches from sth" in capsys.readouterr().err
