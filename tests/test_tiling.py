"""Coding in tiles: the transforms on tiles with their halo compute what they
compute on the whole image; each coding tile decodes on its own, checked by
its own symbol checksum; memory does not grow with the image (measured by
`tfc-sth bench`, not here)."""

import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_compression as tfc

from tfc_sth.model import architectures
from tfc_sth.runtime import bitstream
from tfc_sth.runtime import codec
from tfc_sth import export

# 300 x 400 pixels: 20 x 28 latents, so 2 x 2 coding tiles of 16 latents and
# 3 x 4 transform tiles of 8.
SHAPE = (300, 400)


@pytest.fixture(scope="module", params=sorted(architectures.ARCHITECTURES))
def random_codec(request, tmp_path_factory):
  model = architectures.CompressionModel(
      request.param, num_filters=8, latent_channels=12,
      lmbdas=[0.001, 0.01], delta_mode="channel")
  model.create_variables()
  directory = str(tmp_path_factory.mktemp(request.param))
  export.export(model, directory)
  return codec.Codec(directory, codec.FLOAT32)  # As `analyze`.


@pytest.fixture
def small_tiles(monkeypatch):
  monkeypatch.setattr(codec, "TILE", 16)
  monkeypatch.setattr(codec, "TRANSFORM_TILE", 8)


def _whole_analysis(loaded, image):
  factor = loaded.downsampling
  padded = [(0, -n % factor) for n in image.shape[:2]] + [(0, 0)]
  return loaded.module.signatures["analyze"](
      tile=tf.constant(np.pad(image, padded, mode="edge")))["latents"].numpy()


def test_transforms_on_tiles_match_the_whole_image(random_codec, smooth_image,
                                                   small_tiles, monkeypatch):
  image = smooth_image(*SHAPE, seed=3)
  whole = _whole_analysis(random_codec, image)
  size = random_codec._latent_size(*SHAPE)
  region = (slice(0, size[0]), slice(0, size[1]))
  tiled = random_codec._analyze(image, region).numpy()
  np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)
  # The halo is what makes them match: without it the tiles' edges differ.
  monkeypatch.setattr(random_codec, "halo", 0)
  assert np.abs(random_codec._analyze(image, region).numpy() - whole).max() > 1e-3


def test_synthesis_does_not_depend_on_the_transform_tiles(
    random_codec, smooth_image, small_tiles, monkeypatch):
  data = random_codec.compress(smooth_image(*SHAPE, seed=4), quality=2)
  small, _ = random_codec.decompress(data)
  monkeypatch.setattr(codec, "TRANSFORM_TILE", 64)  # One tile per band.
  large, _ = random_codec.decompress(data)
  assert small.shape == SHAPE + (3,)
  difference = np.abs(small.astype(int) - large)
  assert difference.max() <= 1 and (difference > 0).mean() < 1e-4


def test_a_tiled_file(tiny_codec, smooth_image, small_tiles):
  image = smooth_image(*SHAPE, seed=5)
  data = tiny_codec.compress(image)
  header, payload = bitstream.read_header(data)
  assert header.tile == 16
  strings, checksums = bitstream.unpack_strings(
      payload, tiny_codec.string_names, tiles=4)
  assert all(s.shape == [4] for s in strings.values()) and len(checksums) == 4
  decoded, _ = tiny_codec.decompress(data)
  assert decoded.shape == image.shape
  # Close to the image: each tile decodes its own latents, in place.
  error = np.mean((decoded.astype(float) - image) ** 2)
  whole, _ = tiny_codec.reconstruct(image)
  assert error < 2 * np.mean((whole.astype(float) - image) ** 2)


def test_decode_yields_a_band_per_tile_row(tiny_codec, smooth_image,
                                          small_tiles):
  # 20 latent rows in coding tiles of 16: bands of 256 and 44 pixel rows,
  # so a writer never holds more than a tile row of pixels.
  image = smooth_image(*SHAPE, seed=5)
  data = tiny_codec.compress(image)
  header, bands = tiny_codec.decode(data)
  bands = list(bands)
  assert [b.shape for b in bands] == [(256, 400, 3), (44, 400, 3)]
  np.testing.assert_array_equal(np.concatenate(bands),
                                tiny_codec.decompress(data)[0])
  assert (header.height, header.width) == SHAPE


def test_one_tile_is_the_whole_image(tiny_codec, smooth_image):
  image = smooth_image(120, 200, seed=6)
  header, _ = bitstream.read_header(data := tiny_codec.compress(image))
  assert header.tile == codec.TILE
  decoded, _ = tiny_codec.decompress(data)
  np.testing.assert_array_equal(decoded, tiny_codec.reconstruct(image)[0])


def _repacked(data, names, change):
  header, payload = bitstream.read_header(data)
  strings, checksums = bitstream.unpack_strings(payload, names, tiles=4)
  header, strings, checksums = change(header, strings, checksums)
  return bitstream.pack(header, strings, checksums)


def _drop_last_tile(header, strings, checksums):
  return header, {n: s[:3] for n, s in strings.items()}, checksums[:3]


def _swap_tiles(header, strings, checksums):
  order = [1, 0, 2, 3]
  return (header, {n: tf.gather(s, order) for n, s in strings.items()},
          [checksums[i] for i in order])


def _forge_one_tile(header, strings, checksums):
  # A tile's strings from another tile: its decoder or its own checksum
  # refuses them.
  strings = {n: tf.gather(s, [0, 0, 2, 3]) for n, s in strings.items()}
  return header, strings, checksums


def _small_tiles_header(header, strings, checksums):
  return (bitstream.Header(header.model_id, header.height, header.width, 3,
                           header.quality, header.checksum, tile=4),
          strings, checksums)


@pytest.mark.parametrize("change, message", [
    (_swap_tiles, "symbol checksum mismatch"),
    (_forge_one_tile, "corrupted payload"),
    (_small_tiles_header, "tiles of 4 latents"),
    (_drop_last_tile, "strings missing"),
])
def test_bad_tiles_are_refused(tiny_codec, smooth_image, small_tiles, change,
                               message):
  data = tiny_codec.compress(smooth_image(*SHAPE, seed=7))
  bad = _repacked(data, tiny_codec.string_names, change)
  with pytest.raises(bitstream.BitstreamError, match=message):
    tiny_codec.decompress(bad)


def test_a_version_3_file_still_decodes(tiny_codec, smooth_image, small_tiles):
  """Files written before format 4: the same strings in a PackedTensors."""
  data = tiny_codec.compress(smooth_image(*SHAPE, seed=9))
  header, payload = bitstream.read_header(data)
  strings, checksums = bitstream.unpack_strings(
      payload, tiny_codec.string_names, tiles=4)
  packed = tfc.PackedTensors()
  packed.pack([strings[n] for n in sorted(strings)] + [tf.constant(checksums)])
  head = bytearray(data[:len(data) - len(payload) - 4])
  head[4] = 3
  old = bytes(head) + struct.pack(
      ">I", zlib.crc32(bytes(head) + packed.string)) + packed.string
  assert len(old) >= len(data) + 40  # What format 4 saves.
  np.testing.assert_array_equal(tiny_codec.decompress(old)[0],
                                tiny_codec.decompress(data)[0])


def test_runtime_picks_bfloat16_only_where_it_is_fast(tiny_model_dir,
                                                      monkeypatch):
  for fast, expected in ((True, codec.BFLOAT16), (False, codec.FLOAT32)):
    monkeypatch.setattr(codec, "bfloat16_is_fast", lambda fast=fast: fast)
    assert codec.Codec(str(tiny_model_dir)).precision == expected
  # Asked for, it runs whatever the CPU.
  assert codec.Codec(str(tiny_model_dir), codec.BFLOAT16).precision == (
      codec.BFLOAT16)
  with pytest.raises(ValueError, match="precision"):
    codec.Codec(str(tiny_model_dir), "float16")


@pytest.mark.parametrize("environment", [{"ONEDNN_MAX_CPU_ISA": "AVX2"},
                                         {"TF_ENABLE_ONEDNN_OPTS": "0"}])
def test_bfloat16_is_not_fast_where_onednn_cannot_use_it(monkeypatch,
                                                         environment):
  for name, value in environment.items():
    monkeypatch.setenv(name, value)
  assert not codec.bfloat16_is_fast()


def test_bfloat16_transforms_compute_in_bfloat16(random_codec, smooth_image):
  image = tf.constant(smooth_image(64, 64, seed=5))
  signatures = random_codec.module.signatures
  exact = signatures["analyze"](tile=image)["latents"].numpy()
  fast = signatures["analyze_bfloat16"](tile=image)["latents"].numpy()
  assert fast.dtype == np.float32
  # bfloat16 keeps 8 significant bits: close, and not the float32 result.
  scale = np.abs(exact).max()
  assert 0 < np.abs(fast - exact).max() < 0.05 * scale
