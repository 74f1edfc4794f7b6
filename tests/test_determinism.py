"""Decoding gives the encoder's latents on any thread count and x86 ISA.

Full-width models (N=128, M=192) of every architecture, and the shipped
ladder, code a full-size photo in a process with one intra-op thread; the
file is decoded again with one thread, with two, and with two on oneDNN's
AVX2 kernels (an older CPU's). A decode that succeeds has passed the symbol
checksum: its latents are the encoder's, bit for bit. Each process also
records a float32 product that differs between these settings, so the test
proves that they do sum in different orders (else it skips, with the
reason): it cannot pass by comparing a setup with itself.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfc_sth.model import architectures
from tfc_sth import export
from tfc_sth.runtime import pretrained

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(TESTS)
SAMPLE = os.path.join(REPO_ROOT, "samples", "avenches.png")
SETTINGS = {  # tag: environment
    "encoder": dict(TF_NUM_INTRAOP_THREADS="1"),
    "one_thread": dict(TF_NUM_INTRAOP_THREADS="1"),
    "two_threads": dict(TF_NUM_INTRAOP_THREADS="2"),
    "avx2": dict(TF_NUM_INTRAOP_THREADS="2", ONEDNN_MAX_CPU_ISA="AVX2"),
}


def _cores():
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def _run(stage, tag, out_dir, models):
  env = dict(os.environ, **SETTINGS[tag], WORKER_TAG=tag,
             PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3")
  subprocess.run(
      [sys.executable, os.path.join(TESTS, "determinism_worker.py"), stage,
       str(out_dir), SAMPLE, *models],
      env=env, check=True, timeout=1200, capture_output=True)
  with open(out_dir / f"{tag}.json") as f:
    return json.load(f)


@pytest.fixture(scope="module")
def decodes(tmp_path_factory):
  if _cores() < 2:
    pytest.skip("needs 2 usable cores to decode with one and two threads")
  root = tmp_path_factory.mktemp("determinism")
  names, models = [], []
  for name in sorted(architectures.ARCHITECTURES):
    tf.keras.utils.set_random_seed(3)
    model = architectures.CompressionModel(
        architecture=name, num_filters=128, latent_channels=192,
        delta_mode="channel")
    model(tf.zeros((1, 64, 64, 3)))
    export.export(model, str(root / name))
    names.append(name)
    models.append(str(root / name))
  names.append("shipped ladder")
  models.append(pretrained.resolve())
  float_rows = {tag: _run("encode" if tag == "encoder" else "decode", tag,
                          root, models)["float_rows"] for tag in SETTINGS}
  pixels = {tag: {name: np.load(root / f"{i}.{tag}.npy")
                  for i, name in enumerate(names)} for tag in SETTINGS}
  return float_rows, pixels, names


@pytest.mark.parametrize("tag", ["one_thread", "two_threads", "avx2"])
def test_decoding_gives_the_encoders_latents(decodes, tag):
  float_rows, pixels, names = decodes
  if tag != "one_thread" and float_rows[tag] == float_rows["encoder"]:
    pytest.skip(f"{tag}: float32 sums come out as on one thread here, so "
                "this setting cannot show a difference")
  for name in names:
    decoded = pixels[tag][name]
    # A string is the decoder's error: the checksum caught a divergence.
    assert decoded.dtype == np.uint8, f"{name}: {decoded}"
    assert decoded.shape == (512, 768, 3), name


def test_pixels_are_identical_for_any_thread_count(decodes):
  _, pixels, names = decodes
  for name in names:
    for tag in ("one_thread", "two_threads"):
      np.testing.assert_array_equal(pixels[tag][name],
                                    pixels["encoder"][name], err_msg=name)


def test_pixels_move_by_at_most_one_on_another_isa(decodes):
  """The synthesis stays in float: another ISA may round a few pixels the
  other way, never more."""
  float_rows, pixels, names = decodes
  if float_rows["avx2"] == float_rows["encoder"]:
    pytest.skip("oneDNN's AVX2 kernels sum as the default ones here")
  for name in names:
    assert pixels["avx2"][name].dtype == np.uint8, name
    difference = np.abs(pixels["avx2"][name].astype(int)
                        - pixels["encoder"][name])
    assert difference.max() <= 1, name
    assert np.mean(difference > 0) < 1e-3, name
