"""The shipped default model: exact round trips and rates as estimated at
every quality, installed."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tfc_sth.runtime import bitstream
from tfc_sth.runtime import codec
from tfc_sth.runtime import image_io
from tfc_sth.runtime import pretrained

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VALID_PHOTO = os.path.join(REPO, "..", "shared", "data", "photos", "valid",
                           "photo005.png")
SAMPLE = os.path.join(REPO, "samples", "avenches.png")


@pytest.fixture(scope="module")
def default_codec():
  return codec.Codec.load(precision=codec.FLOAT32)  # As `reconstruct`.


@pytest.fixture(autouse=True)
def one_tile(monkeypatch):
  # Each photo in one coding tile and one transform tile, so that a round
  # trip must give the model's own reconstruction of the whole image (tiles
  # match it up to float rounding: test_tiling.py).
  monkeypatch.setattr(codec, "TILE", 128)
  monkeypatch.setattr(codec, "TRANSFORM_TILE", 128)


@pytest.fixture(scope="module", params=["validation photo", "sample"])
def photo(request):
  if request.param == "sample":
    return image_io.read_png(SAMPLE)[0]
  if not os.path.exists(VALID_PHOTO):
    pytest.skip("../shared/data/photos is absent (the sample crop is tested)")
  return image_io.read_png(VALID_PHOTO)[0]


def test_default_model_is_shipped():
  path = pretrained.resolve()
  assert os.path.basename(path) == pretrained.DEFAULT_MODEL
  info = pretrained.read_info(path)
  assert info["config"]["architecture"] == "mean_scale_hyperprior"


def test_every_quality_round_trips_and_costs_its_estimated_rate(
    default_codec, photo):
  sizes = []
  for quality in range(1, default_codec.qualities + 1):
    data = default_codec.compress(photo, quality=quality)
    decoded, channels = default_codec.decompress(data)
    reference, estimated_bits = default_codec.reconstruct(photo, quality)
    assert channels == 3
    np.testing.assert_array_equal(decoded, reference,
                                  err_msg=f"quality {quality}")
    _, payload = bitstream.read_header(data)
    assert len(data) - len(payload) < 80  # The header.
    strings, _ = bitstream.unpack_strings(
        payload, default_codec.string_names, tiles=1)
    coded = sum(len(s.numpy()[0]) for s in strings.values())
    # The payload's framing is the tile's checksum (8 bytes) and the two
    # strings' lengths (1 to 3 bytes each, below 2 MB).
    assert len(payload) - coded <= 14
    estimated_bytes = estimated_bits / 8
    assert abs(coded - estimated_bytes) <= 0.02 * estimated_bytes, (
        quality, coded, estimated_bytes)
    sizes.append(len(data))
  assert sizes == sorted(sizes)


@pytest.mark.parametrize("budget", [0.1, 0.5, 1.2])
def test_max_bpp_codes_the_highest_quality_within_the_budget(
    default_codec, photo, budget):
  data, quality = default_codec.compress_to_rate(photo, budget)
  pixels = photo.shape[0] * photo.shape[1]
  assert 8 * len(data) / pixels <= budget
  assert 1 < quality < default_codec.qualities
  above = default_codec.compress(photo, quality=quality + 0.01)
  assert 8 * len(above) / pixels > budget
  np.testing.assert_array_equal(default_codec.decompress(data)[0],
                                default_codec.reconstruct(photo, quality)[0])


def test_every_quality_round_trips_in_bfloat16(default_codec, photo):
  """Coded and decoded with the bfloat16 transforms (emulated where the CPU
  lacks bfloat16 dot products): the symbol checksum passes, so the decoder
  has the encoder's latents, and the float32 decoder gets them too."""
  fast = codec.Codec.load(precision=codec.BFLOAT16)
  for quality in (1, default_codec.qualities // 2, default_codec.qualities):
    data = fast.compress(photo, quality=quality)
    decoded, _ = fast.decompress(data)
    reference, _ = default_codec.decompress(data)
    difference = np.abs(decoded.astype(int) - reference)
    # Measured on the sample: 52.6 dB between the two, at most 2 apart.
    assert difference.max() <= 4, quality
    assert np.mean(difference ** 2) < 255 ** 2 / 10 ** 4.8, quality


def test_training_starts_from_the_shipped_model(default_codec, photo):
  """--init_from of the shipped export."""
  from tfc_sth import export  # pylint: disable=g-import-not-at-top
  from tfc_sth.model import architectures  # pylint: disable=g-import-not-at-top
  from tfc_sth.training import trainer  # pylint: disable=g-import-not-at-top
  path = pretrained.resolve()
  shipped = pretrained.read_info(path)["config"]
  lmbdas = shipped["lmbdas"]
  config = trainer.TrainConfig(
      num_filters=shipped["num_filters"],
      latent_channels=shipped["latent_channels"],
      delta_mode="channel", qualities=len(lmbdas), lmbda_min=lmbdas[0],
      lmbda=lmbdas[-1], decoder_gain=shipped.get("decoder_gain", False),
      architecture_options={k: shipped[k] for k in architectures.OPTIONS
                            if k in shipped},
      init_from=path)
  assert config.init_from_export()
  model, _ = trainer.build(config)
  export.import_weights(model, path)
  image = photo[:64, :64]
  quality = default_codec.qualities
  x_hat, _ = model(image[None] / 255., level=quality - 1)
  expected, _ = default_codec.reconstruct(image, quality)
  # RDFT coefficients computed back from plain kernels round differently,
  # and the export's h_s is exact, so latents on a rounding boundary may
  # flip and move the pixels around them by a level or two (on the
  # validation photo's crop at level 10: 11% of them by 1, 0.5% by 2). A
  # wrong import moves every pixel, by far more.
  difference = np.abs(np.round(np.clip(x_hat[0], 0, 1) * 255) - expected)
  assert np.mean(difference > 1) < 0.01 and difference.max() <= 8
  assert np.mean(difference) < 0.25


def test_installed_package_finds_default_model_outside_source_tree(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  probe = subprocess.run(
      [sys.executable, "-c", "import tfc_sth.shipped_models"], cwd=str(tmp_path),
      env=env, capture_output=True, timeout=120)
  if probe.returncode:
    pytest.skip("tfc_sth is not installed in this Python (source checkout)")
  found = subprocess.run(
      [sys.executable, "-c",
       "from tfc_sth.runtime import pretrained; print(pretrained.resolve())"],
      cwd=str(tmp_path), env=env, check=True, capture_output=True, text=True,
      timeout=120).stdout.strip()
  assert os.path.isfile(os.path.join(found, "saved_model.pb"))
  assert os.path.realpath(os.path.dirname(found)) != os.path.realpath(
      os.path.join(REPO, "models"))
  assert "site-packages" in found
