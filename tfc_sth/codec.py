"""Compressing images to .tsth bytes and back with an exported model.

`Codec` wraps a loaded SavedModel; it uses only the model's signatures, so
any model exported by `export.py` works, whatever its architecture, and so do
single-rate models exported before quality levels existed.
"""

import numpy as np
import tensorflow as tf

from tfc_sth import bitstream
from tfc_sth import image_io
from tfc_sth import pretrained


# Decoding refuses larger declared sizes unless asked (`max_pixels`): a file
# of a few bytes may declare any size, and memory grows with it.
DEFAULT_MAX_PIXELS = 1 << 25


class QualityError(ValueError):
  """A quality level the model does not have."""


class Codec:
  """An exported model, loaded once, coding uint8 RGB arrays to bytes."""

  def __init__(self, path):
    self.path = path
    self.module = tf.saved_model.load(path)
    self._compress = self.module.signatures["compress"]
    self._decompress = self.module.signatures["decompress"]
    info = self.module.signatures["model_info"]()
    self.model_id = info["model_id"].numpy().decode("ascii")
    self.qualities = int(info.get("qualities", 1))
    self.default_quality = float(info.get("default_quality", 1))
    _, inputs = self._decompress.structured_input_signature
    self._takes_quality = "quality" in inputs
    self._takes_checksum = "checksum" in inputs
    self.string_names = sorted(
        n for n in inputs if n not in ("image_shape", "quality", "checksum"))

  @classmethod
  def load(cls, name_or_path=None):
    return cls(pretrained.resolve(name_or_path))

  def check_quality(self, quality=None):
    """The quality level to code at (default: the model's default), in the
    0.01 steps a file records; QualityError if the model lacks it."""
    if quality is None:
      return self.default_quality
    coded = bitstream.quantize_quality(quality)
    if not 1 <= coded <= self.qualities:
      raise QualityError(
          f"quality {quality:g} out of range: this model has levels 1 to "
          f"{self.qualities}" + (" (fractional levels between them too)"
                                 if self.qualities > 1 else ""))
    return coded

  def _quality_input(self, quality):
    if not self._takes_quality:
      return {}
    return {"quality": tf.constant(quality, tf.float32)}

  def compress(self, image, channels=3, quality=None):
    """uint8 [H, W, 3] -> .tsth bytes; `channels` is what decoding returns,
    `quality` the level (see `check_quality`)."""
    quality = self.check_quality(quality)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
      raise image_io.ImageError(f"expected a uint8 HxWx3 image, got "
                                f"{image.dtype} {image.shape}")
    try:  # Refuse sizes the format cannot hold before coding.
      bitstream.Header(self.model_id, image.shape[0], image.shape[1],
                       channels, quality)
    except ValueError as e:
      raise image_io.ImageError(str(e)) from None
    outputs = self._compress(image=tf.constant(image),
                             **self._quality_input(quality))
    checksum = (outputs["checksum"].numpy().tobytes()
                if self._takes_checksum else bytes(bitstream.CHECKSUM_SIZE))
    header = bitstream.Header(self.model_id, image.shape[0], image.shape[1],
                              channels, quality, checksum)
    return bitstream.pack(
        header, {n: outputs[n] for n in self.string_names})

  def reconstruct(self, image, quality=None):
    """The model's own reconstruction of uint8 [H, W, 3] and its estimated
    bits, without range coding: what a round trip must give."""
    outputs = self.module.signatures["reconstruct"](
        image=tf.constant(image),
        **self._quality_input(self.check_quality(quality)))
    return outputs["image"].numpy(), float(outputs["bits"])

  def decompress(self, data, max_pixels=DEFAULT_MAX_PIXELS):
    """.tsth bytes -> (uint8 [H, W, 3] image, channels to write).

    Refuses files declaring more than `max_pixels` pixels. Any bytes decode
    in time proportional to the declared size, to the image the encoder
    coded or to a BitstreamError (see entropy_models.py and export.py).
    """
    header, payload = bitstream.read_header(data)
    if header.height * header.width > max_pixels:
      raise bitstream.BitstreamError(
          f"declared size {header.width}x{header.height} is over the "
          f"decoding limit of {max_pixels} pixels (see --max_pixels)")
    if header.model_id != self.model_id:
      raise bitstream.BitstreamError(
          f"file was written by model {header.model_id!r}, not by "
          f"{self.model_id!r}")
    if not 1 <= header.quality <= self.qualities:
      raise bitstream.BitstreamError(
          f"corrupted header (quality {header.quality:g} of a model with "
          f"{self.qualities})")
    strings = bitstream.unpack_strings(payload, self.string_names)
    if self._takes_checksum:
      strings["checksum"] = tf.constant(
          np.frombuffer(header.checksum, np.uint8))
    try:
      image = self._decompress(
          image_shape=tf.constant([header.height, header.width], tf.int32),
          **self._quality_input(header.quality), **strings)["image"]
    except tf.errors.OpError as e:
      reason = ("symbol checksum mismatch" if "symbol checksum" in e.message
                else "decoding failed")
      raise bitstream.BitstreamError(
          f"corrupted payload ({reason})") from None
    return image.numpy(), header.channels

