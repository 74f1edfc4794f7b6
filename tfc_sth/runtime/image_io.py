"""Reading and writing PNG files, with clear errors for what cannot be coded.

Grayscale images are coded as RGB and decoded back to grayscale; palette
images are expanded to RGB; 16-bit images are reduced to 8 bits (the models
are trained on 8-bit images); an alpha channel is accepted only when it is
fully opaque. Files are written atomically: a temporary file in the target
folder is renamed into place, so a failure never leaves a partial output.
"""

import os
import struct
import tempfile
import zlib

import numpy as np
import tensorflow as tf

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageError(ValueError):
  """The input is not an image tfc-sth can code."""


def decode_png(data):
  """PNG bytes -> (uint8 [H, W, 3] array, channels of the source: 1 or 3)."""
  if not data:
    raise ImageError("empty file")
  if not data.startswith(PNG_SIGNATURE):
    raise ImageError("not a PNG file")
  # IHDR, the first chunk, holds the bit depth at byte 24; 8-bit images are
  # decoded as they are, without 16-bit temporaries (memory of big images).
  sixteen_bits = len(data) > 24 and data[24] == 16
  try:
    image = tf.io.decode_png(
        data, channels=0, dtype=tf.uint16 if sixteen_bits else tf.uint8
    ).numpy()
  except tf.errors.OpError:
    raise ImageError("corrupted or truncated PNG file") from None
  if sixteen_bits:
    image = _to_8_bits(image)
  channels = image.shape[-1]
  if channels in (2, 4):
    if (image[..., -1] != 255).any():
      raise ImageError("image has transparency (alpha channel); only opaque "
                       "images can be coded")
    image = image[..., :-1]
    channels -= 1
  if channels == 1:
    image = np.repeat(image, 3, axis=-1)
  return image, channels


def _to_8_bits(image, rows=256):
  """uint16 -> nearest uint8, round(x * 255 / 65535), a band of rows at a
  time so the 32-bit temporaries stay small."""
  result = np.empty(image.shape, np.uint8)
  for start in range(0, image.shape[0], rows):
    band = image[start:start + rows].astype(np.uint32)
    result[start:start + rows] = (band * 255 + 32767) // 65535
  return result


def read_png(path):
  with open(path, "rb") as f:
    return decode_png(f.read())


def encode_png(image, channels=3):
  """uint8 [H, W, 3] -> PNG bytes, grayscale when `channels` is 1."""
  image = np.asarray(image, np.uint8)
  return b"".join(png_chunks([image], *image.shape[:2], channels))


def png_chunks(bands, height, width, channels=3, rows=256):
  """The bytes of a PNG file, in pieces, of an image given as uint8
  [rows, width, 3] bands from top to bottom (grayscale when `channels` is
  1): `rows` rows are filtered and compressed at a time, so writing needs
  little more memory than a band, however large the image."""
  yield PNG_SIGNATURE
  yield _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8,
                                        0 if channels == 1 else 2, 0, 0, 0))
  deflate = zlib.compressobj(6)
  previous = np.zeros((1, width * channels), np.uint8)
  for band in bands:
    for start in range(0, len(band), rows):
      lines = np.asarray(band[start:start + rows, :, :channels], np.uint8)
      lines = lines.reshape(len(lines), width * channels)
      # Filter "Up" (2): each row minus the one above, modulo 256.
      up = np.diff(lines, axis=0, prepend=previous)
      previous = lines[-1:]
      data = deflate.compress(np.concatenate(
          [np.full((len(lines), 1), 2, np.uint8), up], 1).tobytes())
      if data:
        yield _png_chunk(b"IDAT", data)
  yield _png_chunk(b"IDAT", deflate.flush())
  yield _png_chunk(b"IEND", b"")


def _png_chunk(kind, data):
  return b"".join([struct.pack(">I", len(data)), kind, data,
                   struct.pack(">I", zlib.crc32(kind + data))])


def _umask():
  mask = os.umask(0)
  os.umask(mask)
  return mask


def write_atomically(path, data, force=False):
  """Writes `data` (bytes, or an iterable of bytes) to `path` via a
  temporary file; refuses to overwrite."""
  if os.path.exists(path) and not force:
    raise FileExistsError(f"{path} exists (use --force to overwrite)")
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tfc-sth-")
  try:
    with os.fdopen(fd, "wb") as f:
      for piece in [data] if isinstance(data, bytes) else data:
        f.write(piece)
    os.chmod(tmp, 0o666 & ~_umask())
    if force:
      os.replace(tmp, path)
    else:
      # A hard link fails if `path` appeared meanwhile: no race to overwrite.
      os.link(tmp, path)
  except FileExistsError:
    raise FileExistsError(f"{path} exists (use --force to overwrite)") from None
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)
