"""`tfc-sth train` end to end: TFDS by name, export, progress, bad flags."""

import json
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tfc_sth import cli
from tfc_sth.runtime import pretrained

TINY = ["--num_filters=8", "--latent_channels=12", "--batch_size=2",
        "--patch_size=64", "--valid_crop=64", "--steps_per_epoch=2"]


def _as_dataset(self, split, *args, **kwargs):
  """Mock TFDS examples: random photos large enough for 64x64 patches."""
  del self, split, args, kwargs
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (4, 80, 96, 3), dtype=np.uint8)
  return tf.data.Dataset.from_tensor_slices({"image": images})


def test_train_from_tfds_dataset_exports_a_usable_model(tmp_path, capsys):
  train_dir, export_dir = tmp_path / "run", tmp_path / "models" / "tiny"
  with tfds.testing.mock_data(as_dataset_fn=_as_dataset):
    code = cli.main(["tfc-sth", "train", "--dataset=clic",
                     "--delta_mode=channel", "--soft_steps=2",
                     "--hard_steps=2", *TINY, f"--train_dir={train_dir}",
                     f"--export_dir={export_dir}"])
  assert code == 0
  out = capsys.readouterr().out
  assert "bpp" in out and "psnr" in out and "val_psnr" in out
  assert pretrained.is_model_dir(str(export_dir))
  with open(train_dir / "config.json") as f:
    assert json.load(f)["dataset"] == "clic"
  assert os.path.exists(train_dir / "checkpoints" / "phase_0_end.index")
  assert sorted(os.listdir(train_dir / "samples"))


def test_train_without_data_source_is_a_usage_error(tmp_path, capsys):
  code = cli.main(["tfc-sth", "train", f"--train_dir={tmp_path}"])
  assert code == cli.EXIT_USAGE
  assert "--train_glob or --dataset" in capsys.readouterr().err


def test_train_with_unknown_strategy_is_a_usage_error(tmp_path, capsys):
  code = cli.main(["tfc-sth", "train", f"--train_dir={tmp_path}",
                   "--train_glob=x", "--strategy=round"])
  assert code == cli.EXIT_USAGE
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1 and "strategy" in err


def test_patch_size_must_fit_the_downsampling(tmp_path, capsys):
  code = cli.main(["tfc-sth", "train", f"--train_dir={tmp_path / 'run'}",
                   "--train_glob=x", *TINY, "--patch_size=48"])
  assert code == cli.EXIT_ERROR
  assert "patch_size=48 is not a multiple" in capsys.readouterr().err
  assert not (tmp_path / "run").exists()  # Nothing half-written.


def test_train_with_glob_matching_nothing_is_an_error(tmp_path, capsys):
  code = cli.main(["tfc-sth", "train", f"--train_dir={tmp_path / 'run'}",
                   f"--train_glob={tmp_path / 'none' / '*.png'}", *TINY])
  assert code == cli.EXIT_ERROR
  assert "No files match" in capsys.readouterr().err
