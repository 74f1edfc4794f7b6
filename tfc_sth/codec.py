"""Compressing images to .tsth bytes and back with an exported model.

`Codec` wraps a loaded SavedModel; it uses only the model's signatures, so
any model exported by `export.py` works, whatever its architecture.
"""

import numpy as np
import tensorflow as tf

from tfc_sth import bitstream
from tfc_sth import image_io
from tfc_sth import pretrained


class Codec:
  """An exported model, loaded once, coding uint8 RGB arrays to bytes."""

  def __init__(self, path):
    self.path = path
    self.module = tf.saved_model.load(path)
    self._compress = self.module.signatures["compress"]
    self._decompress = self.module.signatures["decompress"]
    info = self.module.signatures["model_info"]()
    self.model_id = info["model_id"].numpy().decode("ascii")
    _, inputs = self._decompress.structured_input_signature
    self.string_names = sorted(n for n in inputs if n != "image_shape")

  @classmethod
  def load(cls, name_or_path=None):
    return cls(pretrained.resolve(name_or_path))

  def compress(self, image, channels=3):
    """uint8 [H, W, 3] -> .tsth bytes; `channels` is what decoding returns."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
      raise image_io.ImageError(f"expected a uint8 HxWx3 image, got "
                                f"{image.dtype} {image.shape}")
    try:
      header = bitstream.Header(self.model_id, image.shape[0],
                                image.shape[1], channels)
    except ValueError as e:
      raise image_io.ImageError(str(e)) from None
    outputs = self._compress(image=tf.constant(image))
    return bitstream.pack(
        header, {n: outputs[n] for n in self.string_names})

  def decompress(self, data):
    """.tsth bytes -> (uint8 [H, W, 3] image, channels to write)."""
    header, payload = bitstream.read_header(data)
    if header.model_id != self.model_id:
      raise bitstream.BitstreamError(
          f"file was written by model {header.model_id!r}, not by "
          f"{self.model_id!r}")
    strings = bitstream.unpack_strings(payload, self.string_names)
    try:
      image = self._decompress(
          image_shape=tf.constant([header.height, header.width], tf.int32),
          **strings)["image"]
    except tf.errors.OpError:
      raise bitstream.BitstreamError("corrupted payload (decoding failed)") from None
    return image.numpy(), header.channels

