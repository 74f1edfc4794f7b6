"""The shipped default model: exact round trip, rate as estimated, installed."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tfc_sth import bitstream
from tfc_sth import codec
from tfc_sth import image_io
from tfc_sth import pretrained

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VALID_PHOTO = os.path.join(REPO, "..", "shared", "data", "photos", "valid",
                           "photo005.png")
SAMPLE = os.path.join(REPO, "samples", "avenches.png")


@pytest.fixture(scope="module")
def default_codec():
  return codec.Codec.load()


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


def test_round_trip_is_the_models_reconstruction(default_codec, photo):
  data = default_codec.compress(photo)
  decoded, channels = default_codec.decompress(data)
  reference = default_codec.module.signatures["reconstruct"](image=photo)
  assert channels == 3
  np.testing.assert_array_equal(decoded, reference["image"])


def test_file_size_is_within_two_percent_of_estimated_rate(default_codec,
                                                           photo):
  data = default_codec.compress(photo)
  _, payload = bitstream.read_header(data)
  header_bytes = len(data) - len(payload)
  estimated_bytes = float(default_codec.module.signatures["reconstruct"](
      image=photo)["bits"]) / 8
  assert header_bytes < 64
  assert abs(len(payload) - estimated_bytes) <= 0.02 * estimated_bytes, (
      len(payload), estimated_bytes)


def test_installed_package_finds_default_model_outside_source_tree(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  probe = subprocess.run(
      [sys.executable, "-c", "import tfc_sth.models"], cwd=str(tmp_path),
      env=env, capture_output=True, timeout=120)
  if probe.returncode:
    pytest.skip("tfc_sth is not installed in this Python (source checkout)")
  found = subprocess.run(
      [sys.executable, "-c",
       "from tfc_sth import pretrained; print(pretrained.resolve())"],
      cwd=str(tmp_path), env=env, check=True, capture_output=True, text=True,
      timeout=120).stdout.strip()
  assert os.path.isfile(os.path.join(found, "saved_model.pb"))
  assert os.path.realpath(os.path.dirname(found)) != os.path.realpath(
      os.path.join(REPO, "models"))
  assert "site-packages" in found
