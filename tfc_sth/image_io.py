"""Reading and writing PNG files, with clear errors for what cannot be coded.

Grayscale images are coded as RGB and decoded back to grayscale; palette
images are expanded to RGB; 16-bit images are reduced to 8 bits (the models
are trained on 8-bit images); an alpha channel is accepted only when it is
fully opaque. Files are written atomically: a temporary file in the target
folder is renamed into place, so a failure never leaves a partial output.
"""

import os
import tempfile

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
  try:
    image = tf.io.decode_png(data, channels=0, dtype=tf.uint16).numpy()
  except tf.errors.OpError:
    raise ImageError("corrupted or truncated PNG file") from None
  # decode_png scales 8-bit data to 16 bits exactly (x * 257). Nearest 8-bit
  # value, round(x * 255 / 65535); x / 257 is never exactly halfway.
  image = ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
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


def read_png(path):
  with open(path, "rb") as f:
    return decode_png(f.read())


def encode_png(image, channels=3):
  """uint8 [H, W, 3] -> PNG bytes, grayscale when `channels` is 1."""
  image = np.asarray(image, np.uint8)
  if channels == 1:
    image = image[..., :1]
  return tf.io.encode_png(image).numpy()


def _umask():
  mask = os.umask(0)
  os.umask(mask)
  return mask


def write_atomically(path, data, force=False):
  """Writes `data` to `path` via a temporary file; refuses to overwrite."""
  if os.path.exists(path) and not force:
    raise FileExistsError(f"{path} exists (use --force to overwrite)")
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tfc-sth-")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
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
