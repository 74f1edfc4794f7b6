"""PNG decoding of every PNG kind tfc-sth accepts, and atomic writes."""

import io
import os
import stat

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from tfc_sth.runtime import image_io

COLOR_TYPE_OFFSET = 25  # In the IHDR chunk, right after the bit depth.


def _random(shape, seed=0, dtype=np.uint8):
  rng = np.random.default_rng(seed)
  return rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True,
                      dtype=dtype)


def _pillow_png(image, **save_args):
  buffer = io.BytesIO()
  image.save(buffer, format="PNG", **save_args)
  return buffer.getvalue()


# decode_png: accepted kinds.

def test_rgb8_exact(png_bytes):
  image = _random((37, 53, 3))
  data = png_bytes(image)
  assert data[COLOR_TYPE_OFFSET - 1:COLOR_TYPE_OFFSET + 1] == b"\x08\x02"
  decoded, channels = image_io.decode_png(data)
  assert channels == 3
  assert decoded.dtype == np.uint8
  np.testing.assert_array_equal(decoded, image)


def test_rgb8_written_by_pillow_exact():
  image = _random((9, 11, 3), seed=1)
  decoded, channels = image_io.decode_png(
      _pillow_png(Image.fromarray(image, mode="RGB")))
  assert channels == 3
  np.testing.assert_array_equal(decoded, image)


def test_grayscale_replicated(png_bytes):
  gray = _random((21, 13, 1), seed=2)
  data = png_bytes(gray)
  assert data[COLOR_TYPE_OFFSET] == 0
  decoded, channels = image_io.decode_png(data)
  assert channels == 1
  assert decoded.shape == (21, 13, 3) and decoded.dtype == np.uint8
  for c in range(3):
    np.testing.assert_array_equal(decoded[..., c], gray[..., 0])


def _expected_8bit(values16):
  """Nearest 8-bit value of 16-bit values: round(v * 255 / 65535) (no ties)."""
  return ((2 * values16.astype(np.int64) + 257) // 514).astype(np.uint8)


def test_rgb16_rounds_to_nearest(png_bytes):
  # Every 16-bit value in each channel of a 256x256 RGB image.
  values = np.arange(65536, dtype=np.uint16)
  image = np.stack([values, values[::-1], np.roll(values, 12345)], -1)
  image = image.reshape(256, 256, 3)
  data = png_bytes(image)
  assert data[COLOR_TYPE_OFFSET - 1:COLOR_TYPE_OFFSET + 1] == b"\x10\x02"
  decoded, channels = image_io.decode_png(data)
  assert channels == 3 and decoded.dtype == np.uint8
  np.testing.assert_array_equal(decoded, _expected_8bit(image))


@pytest.mark.parametrize("value16,value8", [
    (0, 0), (128, 0), (129, 1), (257, 1), (257 * 100, 100),
    (257 * 100 + 128, 100), (257 * 100 + 129, 101), (65534, 255),
    (65535, 255),
])
def test_rgb16_examples(png_bytes, value16, value8):
  image = np.full((2, 3, 3), value16, np.uint16)
  decoded, channels = image_io.decode_png(png_bytes(image))
  assert channels == 3
  assert (decoded == value8).all(), (value16, decoded[0, 0])


def test_rgb16_multiples_of_257_are_exact(png_bytes):
  v = np.arange(256, dtype=np.uint16)
  image = np.stack([v * 257] * 3, -1).reshape(16, 16, 3)
  decoded, _ = image_io.decode_png(png_bytes(image))
  np.testing.assert_array_equal(decoded, np.stack([v] * 3, -1).reshape(
      16, 16, 3))


def test_gray16(png_bytes):
  gray = _random((5, 6, 1), seed=3, dtype=np.uint16)
  decoded, channels = image_io.decode_png(png_bytes(gray))
  assert channels == 1
  np.testing.assert_array_equal(decoded,
                                np.repeat(_expected_8bit(gray), 3, -1))


def test_palette_expanded_exactly():
  rng = np.random.default_rng(4)
  indices = rng.integers(0, 200, (19, 23)).astype(np.uint8)
  palette = rng.integers(0, 256, (200, 3)).astype(np.uint8)
  image = Image.fromarray(indices, mode="P")
  image.putpalette(palette.flatten().tolist())
  data = _pillow_png(image)
  assert data[COLOR_TYPE_OFFSET] == 3  # Really a palette PNG.
  decoded, channels = image_io.decode_png(data)
  assert channels == 3
  np.testing.assert_array_equal(decoded, palette[indices])


def test_palette_with_transparent_entry_used():
  rng = np.random.default_rng(5)
  indices = rng.integers(0, 16, (8, 8)).astype(np.uint8)
  image = Image.fromarray(indices, mode="P")
  image.putpalette(rng.integers(0, 256, 48).tolist())
  data = _pillow_png(image, transparency=int(indices[3, 4]))
  assert b"tRNS" in data
  with pytest.raises(image_io.ImageError, match="transparency"):
    image_io.decode_png(data)


def test_rgba_opaque_accepted(png_bytes):
  rgb = _random((7, 9, 3), seed=6)
  rgba = np.concatenate([rgb, np.full((7, 9, 1), 255, np.uint8)], -1)
  data = png_bytes(rgba)
  assert data[COLOR_TYPE_OFFSET] == 6
  decoded, channels = image_io.decode_png(data)
  assert channels == 3 and decoded.shape == (7, 9, 3)
  np.testing.assert_array_equal(decoded, rgb)


@pytest.mark.parametrize("alpha", [0, 128, 254])
def test_rgba_transparent_rejected(png_bytes, alpha):
  rgba = np.full((7, 9, 4), 255, np.uint8)
  rgba[6, 8, 3] = alpha  # One pixel is enough.
  with pytest.raises(image_io.ImageError, match="transparency"):
    image_io.decode_png(png_bytes(rgba))


def test_gray_alpha_opaque_accepted(png_bytes):
  gray = _random((4, 5, 1), seed=7)
  data = png_bytes(np.concatenate([gray, np.full_like(gray, 255)], -1))
  assert data[COLOR_TYPE_OFFSET] == 4
  decoded, channels = image_io.decode_png(data)
  assert channels == 1 and decoded.shape == (4, 5, 3)
  np.testing.assert_array_equal(decoded, np.repeat(gray, 3, -1))


def test_gray_alpha_transparent_rejected(png_bytes):
  gray_alpha = np.full((4, 5, 2), 255, np.uint8)
  gray_alpha[0, 0, 1] = 0
  with pytest.raises(image_io.ImageError, match="transparency"):
    image_io.decode_png(png_bytes(gray_alpha))


def test_rgba16_opaque_accepted(png_bytes):
  rgba = np.full((3, 3, 4), 65535, np.uint16)
  rgba[..., :3] = 257 * 7
  decoded, channels = image_io.decode_png(png_bytes(rgba))
  assert channels == 3 and (decoded == 7).all()


# decode_png: errors.

def test_empty_bytes():
  with pytest.raises(image_io.ImageError, match="empty"):
    image_io.decode_png(b"")


@pytest.mark.parametrize("data", [
    b"hello world", b"GIF89a" + b"\x00" * 20, b"\x89PNG\r\n", b"\x00",
])
def test_not_png(data):
  with pytest.raises(image_io.ImageError, match="not a PNG"):
    image_io.decode_png(data)


def test_jpeg_is_not_png():
  data = io.BytesIO()
  Image.fromarray(_random((8, 8, 3))).save(data, format="JPEG")
  with pytest.raises(image_io.ImageError, match="not a PNG"):
    image_io.decode_png(data.getvalue())


def test_truncated_png(png_bytes):
  data = png_bytes(_random((30, 40, 3), seed=8))
  # From just the signature to just before the end (IEND included).
  for length in list(range(8, 60)) + list(range(60, len(data), 97)) + [
      len(data) - 12, len(data) - 1]:
    with pytest.raises(image_io.ImageError, match="corrupted or truncated"):
      image_io.decode_png(data[:length])
      pytest.fail(f"PNG truncated to {length} of {len(data)} bytes accepted")


def test_corrupted_png_data(png_bytes):
  data = bytearray(png_bytes(_random((30, 40, 3), seed=9)))
  data[len(data) // 2] ^= 0x40  # In the IDAT chunk: its CRC fails.
  with pytest.raises(image_io.ImageError):
    image_io.decode_png(bytes(data))


def test_read_png(tmp_path, png_bytes):
  image = _random((3, 4, 3), seed=10)
  path = tmp_path / "x.png"
  path.write_bytes(png_bytes(image))
  decoded, channels = image_io.read_png(str(path))
  assert channels == 3
  np.testing.assert_array_equal(decoded, image)


def test_read_png_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError):
    image_io.read_png(str(tmp_path / "missing.png"))


# encode_png.

@pytest.mark.parametrize("channels", [1, 3])
def test_encode_decode_round_trip(channels):
  image = _random((6, 5, 3), seed=11)
  if channels == 1:
    image[..., 1] = image[..., 2] = image[..., 0]
  data = image_io.encode_png(image, channels)
  assert data[COLOR_TYPE_OFFSET] == (0 if channels == 1 else 2)
  decoded, decoded_channels = image_io.decode_png(data)
  assert decoded_channels == channels
  np.testing.assert_array_equal(decoded, image)


@pytest.mark.parametrize("channels", [1, 3])
def test_png_in_bands_decodes_with_libpng(channels):
  # Bands of 5, 1 and 5 rows, written 4 rows at a time: the filter must carry
  # the row above across both. libpng (through TensorFlow) is the reference
  # reader.
  image = _random((11, 9, 3), seed=5)
  bands = [image[:5], image[5:6], image[6:]]
  data = b"".join(image_io.png_chunks(bands, 11, 9, channels, rows=4))
  decoded = tf.io.decode_png(data, channels=3).numpy()
  expected = np.repeat(image[..., :1], 3, -1) if channels == 1 else image
  np.testing.assert_array_equal(decoded, expected)


def test_write_atomically_takes_pieces(tmp_path):
  path = tmp_path / "out.png"
  image = _random((7, 3, 3), seed=2)
  image_io.write_atomically(str(path),
                            image_io.png_chunks([image], 7, 3, rows=2))
  np.testing.assert_array_equal(image_io.read_png(str(path))[0], image)


def test_write_atomically_failing_pieces_leave_nothing(tmp_path):
  # A decoder failing after some bands were written (a corrupted tile).
  def bands():
    yield _random((4, 3, 3), seed=3)
    raise ValueError("corrupted payload")

  with pytest.raises(ValueError, match="corrupted"):
    image_io.write_atomically(str(tmp_path / "out.png"),
                              image_io.png_chunks(bands(), 8, 3))
  assert os.listdir(tmp_path) == []


# write_atomically.

def _names(directory):
  return sorted(os.listdir(directory))


def test_write_new_file(tmp_path):
  path = tmp_path / "out.bin"
  image_io.write_atomically(str(path), b"payload")
  assert path.read_bytes() == b"payload"
  assert _names(tmp_path) == ["out.bin"]


def test_refuses_to_overwrite(tmp_path):
  path = tmp_path / "out.bin"
  path.write_bytes(b"old")
  with pytest.raises(FileExistsError, match="--force"):
    image_io.write_atomically(str(path), b"new")
  assert path.read_bytes() == b"old"
  assert _names(tmp_path) == ["out.bin"]


def test_overwrites_with_force(tmp_path):
  path = tmp_path / "out.bin"
  path.write_bytes(b"old contents, longer")
  image_io.write_atomically(str(path), b"new", force=True)
  assert path.read_bytes() == b"new"
  assert _names(tmp_path) == ["out.bin"]


def test_relative_path(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  image_io.write_atomically("rel.bin", b"x")
  assert (tmp_path / "rel.bin").read_bytes() == b"x"
  assert _names(tmp_path) == ["rel.bin"]


class _Unwritable:
  """Data that makes `f.write` raise."""


@pytest.mark.parametrize("force", [False, True])
def test_failed_write_leaves_nothing(tmp_path, force):
  path = tmp_path / "out.bin"
  if force:
    path.write_bytes(b"old")
  with pytest.raises(TypeError):
    image_io.write_atomically(str(path), _Unwritable(), force=force)
  if force:
    assert path.read_bytes() == b"old"
    assert _names(tmp_path) == ["out.bin"]
  else:
    assert _names(tmp_path) == []


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"),
                                   KeyboardInterrupt()])
def test_failed_rename_leaves_nothing(tmp_path, monkeypatch, error):
  path = tmp_path / "out.bin"
  path.write_bytes(b"old")
  calls = []

  def replace(src, dst):
    calls.append((src, dst))
    assert os.path.exists(src)  # The temporary file was written.
    raise error

  monkeypatch.setattr(os, "replace", replace)
  with pytest.raises(type(error)):
    image_io.write_atomically(str(path), b"new", force=True)
  assert len(calls) == 1
  assert os.path.dirname(calls[0][0]) == str(tmp_path)  # Same filesystem.
  assert path.read_bytes() == b"old"
  assert _names(tmp_path) == ["out.bin"]


def test_missing_directory(tmp_path):
  with pytest.raises(FileNotFoundError):
    image_io.write_atomically(str(tmp_path / "no" / "out.bin"), b"x")
  assert _names(tmp_path) == []


@pytest.fixture
def umask():
  """Sets the process umask for one test and restores it."""
  old = os.umask(0o022)
  os.umask(old)
  def set_umask(mask):
    os.umask(mask)
  yield set_umask
  os.umask(old)


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o002, 0o664),
                                       (0o077, 0o600)])
def test_permissions_follow_umask(tmp_path, umask, mask, mode):
  umask(mask)
  path = tmp_path / "out.bin"
  image_io.write_atomically(str(path), b"x")
  assert stat.S_IMODE(os.stat(path).st_mode) == mode
  # Same for an overwrite.
  image_io.write_atomically(str(path), b"y", force=True)
  assert stat.S_IMODE(os.stat(path).st_mode) == mode
  assert os.umask(mask) == mask  # write_atomically left the umask alone.
