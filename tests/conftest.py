"""Shared pytest fixtures.

Fixtures are grouped by the tests that introduced them; add new groups below.
"""

import glob
import importlib.util
import os

import numpy as np
import pytest

# Keep TensorFlow's C++ start-up chatter out of test output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def tool():
  """Loads a script of tools/ (not a package) as a module, by name."""
  def load(name):
    path = os.path.join(ROOT, "tools", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
  return load


# ---------------------------------------------------------------------------
# Images and a tiny exported model (test_bitstream, test_image_io, test_cli).
# ---------------------------------------------------------------------------

def _smooth_image(height, width, seed=0, channels=3):
  """A random-ish smooth uint8 [H, W, channels] image (sums of sinusoids)."""
  rng = np.random.default_rng(seed)
  rows = np.arange(height)[:, None, None]
  cols = np.arange(width)[None, :, None]
  image = np.zeros((height, width, channels))
  for _ in range(4):
    fy, fx = rng.uniform(0.01, 0.12, 2)
    phase = rng.uniform(0, 2 * np.pi, (1, 1, channels))
    image += np.sin(fy * rows + fx * cols + phase)
  image = 127.5 + 110 * image / 4 + rng.normal(0, 3, image.shape)
  return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _png_bytes(image):
  """uint8 [H, W, C] (C in 1..4) or uint16 array -> PNG bytes."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.encode_png(np.asarray(image)).numpy()


def _read_png_array(path):
  """PNG file -> its array with the file's own channel count (no expansion)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with open(path, "rb") as f:
    return tf.io.decode_png(f.read(), channels=0).numpy()


@pytest.fixture(scope="session")
def smooth_image():
  """`smooth_image(height, width, seed=0, channels=3)` -> uint8 array."""
  return _smooth_image


@pytest.fixture(scope="session")
def png_bytes():
  """`png_bytes(array)` -> PNG bytes (uint8 or uint16, 1 to 4 channels)."""
  return _png_bytes


@pytest.fixture(scope="session")
def read_png_array():
  """`read_png_array(path)` -> the PNG's array with its own channel count."""
  return _read_png_array


@pytest.fixture(scope="session")
def train_glob(tmp_path_factory):
  """A glob of three small training PNGs."""
  images = tmp_path_factory.mktemp("train_images")
  for i, (h, w) in enumerate([(64, 64), (80, 96), (96, 72)]):
    (images / f"train_{i}.png").write_bytes(
        _png_bytes(_smooth_image(h, w, seed=100 + i)))
  assert len(glob.glob(str(images / "*.png"))) == 3
  return str(images / "*.png")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, train_glob):
  """The export directory of a tiny model trained for a few steps.

  It lives in a folder of its own, `tiny_model_dir.parent`, which is what
  TFC_STH_MODELS should name for decompression to find it by its id.
  """
  from tfc_sth.training import trainer  # pylint: disable=g-import-not-at-top
  config = trainer.TrainConfig(
      num_filters=8, latent_channels=12, delta_mode="hyper", soft_steps=4,
      hard_steps=2, steps_per_epoch=2, batch_size=2, patch_size=64,
      train_glob=train_glob)
  models = tmp_path_factory.mktemp("models")
  export_dir = models / "tiny"
  trainer.train(config, str(tmp_path_factory.mktemp("train_dir")),
                 export_dir=str(export_dir), verbose=0)
  assert (export_dir / "saved_model.pb").is_file()
  return export_dir


# Loading a SavedModel takes seconds; the loaded object is read-only, so tests
# that load the same directory many times (through the CLI) can share it.
_SAVED_MODELS = {}


def _patch_saved_model_load(monkeypatch):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  real_load = tf.saved_model.load

  def load(export_dir, *args, **kwargs):
    key = (os.path.realpath(export_dir), args, tuple(sorted(kwargs.items())))
    if key not in _SAVED_MODELS:
      _SAVED_MODELS[key] = real_load(export_dir, *args, **kwargs)
    return _SAVED_MODELS[key]

  monkeypatch.setattr(tf.saved_model, "load", load)


@pytest.fixture
def reuse_saved_models(monkeypatch):
  """During the test, `tf.saved_model.load` loads each directory only once."""
  _patch_saved_model_load(monkeypatch)


@pytest.fixture(scope="session")
def tiny_codec(tiny_model_dir):
  """A `codec.Codec` of the tiny model (its SavedModel shared, see above),
  with float32 transforms: what `reconstruct` computes."""
  from tfc_sth.runtime import codec  # pylint: disable=g-import-not-at-top
  with pytest.MonkeyPatch.context() as monkeypatch:
    _patch_saved_model_load(monkeypatch)
    return codec.Codec(str(tiny_model_dir), codec.FLOAT32)


@pytest.fixture
def models_env(tiny_model_dir, monkeypatch):
  """TFC_STH_MODELS names the tiny model's folder; returns the model dir."""
  monkeypatch.setenv("TFC_STH_MODELS", str(tiny_model_dir.parent))
  return tiny_model_dir


# ---------------------------------------------------------------------------
# A tiny quality ladder (test_ladder).
# ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_ladder_dir(tmp_path_factory, train_glob):
  """The export directory of a tiny 3-level ladder trained a few steps, with
  a bfloat16 soft phase; in a folder of its own, like `tiny_model_dir`."""
  from tfc_sth.training import trainer  # pylint: disable=g-import-not-at-top
  config = trainer.TrainConfig(
      num_filters=8, latent_channels=12, delta_mode="channel", qualities=3,
      lmbda_min=0.002, lmbda=0.05, mixed_precision=True, soft_steps=4,
      hard_steps=2, steps_per_epoch=2, batch_size=2, patch_size=64,
      train_glob=train_glob)
  export_dir = tmp_path_factory.mktemp("ladder_models") / "ladder"
  trainer.train(config, str(tmp_path_factory.mktemp("ladder_train_dir")),
                 export_dir=str(export_dir), verbose=0)
  return export_dir
