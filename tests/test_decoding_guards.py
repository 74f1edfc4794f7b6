"""Decoding never hangs and never returns silent garbage: tables without
escapes, a checksum of the symbols, a limit on declared sizes, fuzzing."""

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfc_sth.runtime import bitstream
from tfc_sth.runtime import codec
from tfc_sth.model import entropy_models
from tfc_sth.tools import fuzz

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def coded(tiny_codec, smooth_image):
  """(the tiny model's file of a 64x96 image, one tile: its header, its
  strings, its tile's symbol checksum)."""
  data = tiny_codec.compress(smooth_image(64, 96, seed=11))
  header, payload = bitstream.read_header(data)
  return (data, header, *bitstream.unpack_strings(
      payload, tiny_codec.string_names, tiles=1))


def _with_y_string(coded, y_string):
  _, header, strings, checksums = coded
  return bitstream.pack(
      header, dict(strings, y_string=tf.constant([y_string])), checksums)


# The file that hung tfc's escape decoding: a real z_string, y = ff f0 00 00.
CRAFTED = [b"\xff\xf0\x00\x00", b"\x00", b"\xff", b"\x7f", b"\x00" * 4,
           b"\xff" * 4096]

_DECOMPRESS = """
import sys
from tfc_sth import cli
sys.exit(cli.main(["tfc-sth", "decompress", sys.argv[1], "--model",
                   sys.argv[2], "-o", sys.argv[3]]))
"""


def test_crafted_payloads_fail_fast_in_a_fresh_process(
    coded, tiny_model_dir, tmp_path):
  # A process of its own, so that a hang is a timeout, not a stuck suite.
  for i, y_string in enumerate(CRAFTED):
    path = tmp_path / f"crafted{i}.tsth"
    path.write_bytes(_with_y_string(coded, y_string))
    result = subprocess.run(
        [sys.executable, "-c", _DECOMPRESS, str(path), str(tiny_model_dir),
         str(tmp_path / f"out{i}.png")], capture_output=True, text=True,
        timeout=120, cwd=REPO)
    assert result.returncode == 1, (y_string, result.stderr)
    error = result.stderr.strip()
    assert len(error.splitlines()) == 1 and "corrupted payload" in error
    assert not (tmp_path / f"out{i}.png").exists()


@pytest.mark.parametrize("y_string", CRAFTED)
def test_crafted_payloads_are_refused(coded, tiny_codec, y_string):
  with pytest.raises(bitstream.BitstreamError, match="corrupted payload"):
    tiny_codec.decompress(_with_y_string(coded, y_string))


def test_a_changed_symbol_checksum_is_refused(coded, tiny_codec):
  data, header, strings, checksums = coded
  tiny_codec.decompress(data)  # The original decodes.
  for byte in range(8):
    checksum = bytearray(checksums[0])
    checksum[byte] ^= 0x40
    for forged in [
        # The tile's checksum, and the header's to match it: the model's
        # decoder refuses; the header's alone: the fingerprint differs.
        bitstream.pack(dataclasses.replace(
            header, checksum=codec._combined([bytes(checksum)], header.height, header.width)),
            strings, [bytes(checksum)]),
        bitstream.pack(dataclasses.replace(header, checksum=bytes(checksum)),
                       strings, checksums)]:
      with pytest.raises(bitstream.BitstreamError,
                         match="symbol checksum mismatch"):
        tiny_codec.decompress(forged)


def test_declared_sizes_over_the_limit_are_refused(coded, tiny_codec):
  _, header, strings, checksums = coded
  huge = bitstream.pack(
      dataclasses.replace(header, height=16000, width=16000), strings,
      checksums)
  with pytest.raises(bitstream.BitstreamError, match="over the decoding limit"):
    tiny_codec.decompress(huge)
  with pytest.raises(bitstream.BitstreamError, match="over the decoding limit"):
    tiny_codec.decompress(coded[0], max_pixels=64 * 96 - 1)
  tiny_codec.decompress(coded[0], max_pixels=64 * 96)


def test_values_beyond_the_tables_are_clipped_alike_in_coding_and_model():
  conditional = entropy_models.GaussianConditional()
  conditional.build_tables()
  y = tf.constant([[[[0.3, -2.6, 1e4, -1e4]]]])
  loc = tf.zeros_like(y)
  log_scale = tf.math.log(tf.constant([[[[0.5, 0.5, 3., 100.]]]]))
  strings, symbols = conditional.compress(y, loc, log_scale)
  decoded, decoded_symbols = conditional.decompress(strings, loc, log_scale)
  expected, _ = conditional(y, loc, log_scale, training=False)
  np.testing.assert_array_equal(decoded, expected)
  np.testing.assert_array_equal(decoded_symbols, symbols)
  values = decoded.numpy().ravel()
  assert values[0] == 0 and values[1] == -3
  # Far outliers land on the ends of their tables: one beyond the range of
  # tfc's table at that scale (its escape slot), and its lowest value.
  model = conditional.tables
  rows = conditional.indexes(log_scale, None).numpy().ravel().astype(int)
  assert values[2] == model.offset[rows[2]] + model.max_symbol[rows[2]]
  assert values[3] == model.offset[rows[3]]
  assert 3 * 5 < values[2] < 1e4 and -1e4 < values[3] < -100 * 4


def test_fuzzed_files_decode_to_their_image_or_fail_cleanly(
    tiny_model_dir, tiny_codec, smooth_image, tmp_path):
  image = smooth_image(48, 64, seed=12)
  data = tiny_codec.compress(image)
  decoded, _ = tiny_codec.decompress(data)
  seeds = [(str(tiny_model_dir), data, decoded, 0.2)]
  results, peak_mb = fuzz.run(seeds, 150, str(tmp_path), seed=1,
                              timeout_slack=30.)
  table = fuzz.summary(results)["tiny"]
  assert table["garbage"] == table["crash"] == table["hang"] == 0, [
      c for c in results if c.outcome not in ("refused", "same")]
  assert table["refused"] > 100
  assert {c.mutation for c in results} == set(fuzz.MUTATIONS)
  assert 0 < peak_mb < 4000
