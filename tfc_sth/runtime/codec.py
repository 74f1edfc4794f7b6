"""Compressing images to .tsth bytes and back with an exported model.

`Codec` wraps a loaded SavedModel; it uses only the model's signatures, so
any model exported by `export.py` works, whatever its architecture, and so do
single-rate models exported before quality levels existed. Its transforms
run in bfloat16 where the model has them and the CPU has bfloat16 dot
products, else in float32 (`precision`).
"""

import contextlib
import itertools
import os

import numpy as np
import tensorflow as tf

from tfc_sth.runtime import bitstream
from tfc_sth.runtime import image_io
from tfc_sth.runtime import pretrained
from tfc_sth.runtime import refinement


# Decoding refuses larger declared sizes unless asked (`max_pixels`): a file
# of a few bytes may declare any size, and memory grows with it.
DEFAULT_MAX_PIXELS = 1 << 25

# Images are transformed in tiles of TILE x TILE latents (1024 x 1024 pixels
# for the 16x analysis), each with the model's halo of context around it, so
# memory is bounded by the tile, not the image. The tiling depends only on
# the image size, so every machine computes the same pieces.
TILE = 64
MIN_TILE = 16  # What decoding accepts.
# The transforms' tiles: as large as the coding tiles, since a smaller one
# splits each coding tile unevenly and computes more halo (48 took g_a 1.7x
# longer on a 24-megapixel photo).
TRANSFORM_TILE = TILE


# Precisions of the transforms (the entropy model is float32 and exact).
FLOAT32, BFLOAT16 = "float32", "bfloat16"
PRECISIONS = ("auto", FLOAT32, BFLOAT16)
# What models exported before bfloat16 transforms lack.
BFLOAT16_SIGNATURES = ("analyze_bfloat16", "synthesize_bfloat16")
# oneDNN ISAs (ONEDNN_MAX_CPU_ISA) with bfloat16 dot products.
_BFLOAT16_ISAS = ("ALL", "DEFAULT", "AVX512_CORE_BF16", "AVX512_CORE_FP16",
                  "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16", "AVX10_1_512",
                  "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16")


class QualityError(ValueError):
  """A quality level the model does not have."""


class RateError(ValueError):
  """No quality level of the model fits the rate asked for."""


class PrecisionError(ValueError):
  """bfloat16 asked of a model exported without bfloat16 transforms."""


class RefinementError(ValueError):
  """Latent refinement asked of a model that cannot refine, or too long."""


# Refinement steps an encoder accepts: each costs about three syntheses of
# the image, so this bounds an encode to minutes per megapixel.
MAX_REFINE_STEPS = 1000


def bfloat16_is_fast():
  """Whether this CPU has bfloat16 dot products that oneDNN may use (Linux's
  CPU flags; elsewhere, no). Without them bfloat16 transforms are slower
  than float32, or fail under older ISAs."""
  isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").upper()
  if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0" or (
      isa not in _BFLOAT16_ISAS):
    return False
  try:
    with open("/proc/cpuinfo") as f:
      flags = next((line.split(":", 1)[1].split() for line in f
                    if line.startswith("flags")), [])
  except OSError:
    return False
  return "avx512_bf16" in flags or "amx_bf16" in flags


class Codec:
  """An exported model, loaded once, coding uint8 RGB arrays to bytes."""

  def __init__(self, path, precision="auto"):
    """`precision` of the transforms: float32, bfloat16 (the model must have
    it), or auto: bfloat16 where the model has it and `bfloat16_is_fast`."""
    if precision not in PRECISIONS:
      raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    self.path = path
    self.module = tf.saved_model.load(path)
    self._compress = self.module.signatures["compress"]
    self._decompress = self.module.signatures["decompress"]
    info = self.module.signatures["model_info"]()
    self.model_id = info["model_id"].numpy().decode("ascii")
    self.qualities = int(info.get("qualities", 1))
    self.default_quality = float(info.get("default_quality", 1))
    # Exports older than tiling code whole images.
    self._tiled = "analyze" in self.module.signatures
    if self._tiled:
      self.factor = int(info["analysis_downsampling"])
      self.downsampling = int(info["downsampling"])
      self.halo = int(info["tile_halo"])
    has_bfloat16 = all(n in self.module.signatures
                       for n in BFLOAT16_SIGNATURES)
    if precision == BFLOAT16 and not has_bfloat16:
      raise PrecisionError(f"model {self.model_id} has no bfloat16 "
                           "transforms (exported before they existed); use "
                           "--precision=float32 or auto")
    self.precision = (BFLOAT16 if precision == BFLOAT16 or (
        precision == "auto" and has_bfloat16 and bfloat16_is_fast())
                      else FLOAT32)
    suffix = "_bfloat16" if self.precision == BFLOAT16 else ""
    if self._tiled:
      self._analyze_tile = self.module.signatures["analyze" + suffix]
      self._synthesize_tile = self.module.signatures["synthesize" + suffix]
    # Exports older than refinement, and serial context models, lack it.
    loss = self.module.signatures.get("refinement_loss" + suffix)
    self._refine_tile = None if loss is None else refinement.refiner(loss)
    _, inputs = self._decompress.structured_input_signature
    self._takes_quality = "quality" in inputs
    self._takes_checksum = "checksum" in inputs
    self.string_names = sorted(
        n for n in inputs if n not in ("image_shape", "quality", "checksum"))

  @classmethod
  def load(cls, name_or_path=None, precision="auto"):
    return cls(pretrained.resolve(name_or_path), precision)

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

  @property
  def can_refine(self):
    """Whether `refine_steps` may be asked of this model."""
    return self._refine_tile is not None

  def check_refine_steps(self, steps):
    if not 0 <= steps <= MAX_REFINE_STEPS:
      raise RefinementError(f"refine steps {steps} out of range: 0 to "
                            f"{MAX_REFINE_STEPS}")
    if steps and not self.can_refine:
      raise RefinementError(
          f"model {self.model_id} cannot refine its latents (exported "
          "before refinement existed, or its context model decodes "
          "serially); use 0 refine steps")
    return steps

  def compress(self, image, channels=3, quality=None, refine_steps=0):
    """uint8 [H, W, 3] -> .tsth bytes; `channels` is what decoding returns,
    `quality` the level (see `check_quality`). With `refine_steps`, the
    latents of each coding tile are optimised for this image first
    (`refinement.py`): smaller files at the same quality for
    about three syntheses of the image per step."""
    quality = self.check_quality(quality)
    refine_steps = self.check_refine_steps(refine_steps)
    image = self._checked(image, channels)
    # One coding tile's latents at a time: memory bounded by the tile.
    return self._encode(image, channels, quality,
                        self._tile_latents(image, refine_steps), refine_steps)

  def compress_to_rate(self, image, max_bpp, channels=3, refine_steps=0):
    """(the file of the highest quality whose size is at most `max_bpp`
    bits per pixel, that quality), the quality in the 0.01 steps a file
    records; RateError if even level 1 is larger.

    Bisects on the quality, as files grow with it (each level's Δ is finer
    than the one below), analysing the image once: about 10 codings of the
    latents, which are held whole (as many bytes as the image for M = 192),
    each refined for its quality with `refine_steps`.
    """
    refine_steps = self.check_refine_steps(refine_steps)
    image = self._checked(image, channels)
    tiles = list(self._tile_latents(image, refine_steps))
    pixels = image.shape[0] * image.shape[1]

    def encode(hundredths):
      quality = self.check_quality(hundredths / bitstream.QUALITY_SCALE)
      return self._encode(image, channels, quality, tiles,
                          refine_steps), quality

    # `low` fits in the budget, `beyond` does not (one step over the top
    # level stands for "nothing above fits").
    scale = bitstream.QUALITY_SCALE
    low, beyond = scale, self.qualities * scale + 1
    best = encode(low)
    if 8 * len(best[0]) > max_bpp * pixels:
      raise RateError(f"even quality 1 takes {8 * len(best[0]) / pixels:.4f} "
                      f"bpp, over the {max_bpp:g} asked")
    while beyond - low > 1:
      middle = (low + beyond) // 2
      coded = encode(middle)
      if 8 * len(coded[0]) <= max_bpp * pixels:
        low, best = middle, coded
      else:
        beyond = middle
    return best

  def _checked(self, image, channels):
    """`image` as an array, if it is one this model's files can hold."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
      raise image_io.ImageError(f"expected a uint8 HxWx3 image, got "
                                f"{image.dtype} {image.shape}")
    try:  # Refuse sizes the format cannot hold before coding.
      bitstream.Header(self.model_id, image.shape[0], image.shape[1],
                       channels, self.default_quality)
    except ValueError as e:
      raise image_io.ImageError(str(e)) from None
    return image

  def _encode(self, image, channels, quality, tiles, refine_steps=0):
    """The file of `image` at `quality`; `tiles`: `_tile_latents(image,
    refine_steps)`, which exports older than tiling do not use."""
    if self._tiled:
      if refine_steps:
        tiles = ((region, self._refine(image, region, context, latents,
                                       quality, refine_steps))
                 for region, context, latents in tiles)
      strings, checksums = self._compress_tiles(tiles, quality)
      header = bitstream.Header(self.model_id, image.shape[0], image.shape[1],
                                channels, quality,
                                _combined(checksums, *image.shape[:2]), TILE)
      return bitstream.pack(header, strings, checksums)
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
    bits, without range coding: what a round trip with float32 transforms
    must give."""
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
    header, bands = self.decode(data, max_pixels)
    image = np.empty((header.height, header.width, 3), np.uint8)
    start = 0
    for band in bands:
      image[start:start + len(band)] = band
      start += len(band)
    return image, header.channels

  def decode(self, data, max_pixels=DEFAULT_MAX_PIXELS):
    """.tsth bytes -> (its header, the image as uint8 [rows, W, 3] bands from
    top to bottom): the pixels of a band are needed only until the next, so
    writing them as they come keeps memory bounded for any size.

    The header is checked at once; the payload as the bands are decoded, so
    a BitstreamError may come from the iterator (see `decompress`).
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
    if header.tile:
      return header, self._decompress_tiles(header, payload)
    strings = bitstream.unpack_strings(payload, self.string_names,
                                       version=header.version)
    if self._takes_checksum:
      strings["checksum"] = tf.constant(
          np.frombuffer(header.checksum, np.uint8))
    with _refusing_corrupted():
      image = self._decompress(
          image_shape=tf.constant([header.height, header.width], tf.int32),
          **self._quality_input(header.quality), **strings)["image"]
    return header, iter([image.numpy()])

  # Tiles. The latent codec codes each coding tile (TILE x TILE latents) on
  # its own; the transforms run on smaller tiles (TRANSFORM_TILE) with a halo
  # of context around each, so the pixels are those of transforming the
  # image whole, and memory is bounded by the tiles, not the image.

  def _latent_size(self, height, width):
    padded = -(-np.array([height, width]) // self.downsampling)
    return padded * self.downsampling // self.factor

  def _spans(self, span, size):
    """(transform tile, tile with its halo) slices covering `span` (a slice
    of an axis of `size` latents), the halo clipped to the axis."""
    tile = TRANSFORM_TILE
    return [(slice(start, min(start + tile, span.stop)),
             slice(max(start - self.halo, 0),
                   min(start + tile + self.halo, size)))
            for start in range(span.start, span.stop, tile)]

  def _analyze(self, image, region):
    """g_a of the latents in `region` (row and column slices) of the image,
    edge-padded like `compress` pads it: float32 [1, h, w, M]."""
    size = self._latent_size(*image.shape[:2])
    rows = []
    for core_rows, context_rows in self._spans(region[0], size[0]):
      tiles = []
      for core_cols, context_cols in self._spans(region[1], size[1]):
        # Pixels of the tile and its context; beyond the image, its edge.
        pixels = image[np.ix_(
            _pixels(context_rows, self.factor, image.shape[0]),
            _pixels(context_cols, self.factor, image.shape[1]))]
        latents = self._analyze_tile(tile=tf.constant(pixels))
        tiles.append(latents["latents"][:, _within(core_rows, context_rows),
                                        _within(core_cols, context_cols)])
      rows.append(tf.concat(tiles, 2))
    return tf.concat(rows, 1)

  def _synthesize(self, band, band_rows, core_rows, height, width):
    """The pixels (uint8 [rows, width, 3]) of latent rows `core_rows` of an
    image of `height` x `width`, by g_s of `band`, the latents of rows
    `band_rows` (which hold the halo)."""
    top = core_rows.start * self.factor
    pixels = np.empty((min(core_rows.stop * self.factor, height) - top,
                       width, 3), np.uint8)
    for rows, context_rows in self._spans(core_rows, band_rows.stop):
      context_rows = slice(max(context_rows.start, band_rows.start),
                           context_rows.stop)
      for cols, context_cols in self._spans(slice(0, band.shape[2]),
                                            band.shape[2]):
        latents = band[:, _within(context_rows, band_rows), context_cols]
        tile = self._synthesize_tile(latents=latents)["image"].numpy()
        inside = [slice(s.start * self.factor, min(s.stop * self.factor, n))
                  for s, n in zip((rows, cols), (height, width))]
        if inside[0].start < height and inside[1].start < width:
          pixels[inside[0].start - top:inside[0].stop - top,
                 inside[1]] = tile[
                     _within(inside[0], context_rows, self.factor),
                     _within(inside[1], context_cols, self.factor)]
    return pixels

  def _coding_tiles(self, height, width, tile):
    rows, cols = self._latent_size(height, width)
    return ([slice(r, min(r + tile, rows)) for r in range(0, rows, tile)],
            [slice(c, min(c + tile, cols)) for c in range(0, cols, tile)])

  def _tile_latents(self, image, refine_steps=0):
    """((rows, cols) of a coding tile, g_a's latents of it) for each coding
    tile of `image` in coding order, as they are needed. To refine, instead
    (region, a context region around it, g_a's latents of the context), so
    that g_a runs once per tile however many codings follow: the context's
    halo is rounded up to whole hyper-latents, which the latent codec needs
    to quantize it as it will code it."""
    if not self._tiled:
      return
    tile_rows, tile_cols = self._coding_tiles(*image.shape[:2], TILE)
    size = self._latent_size(*image.shape[:2])
    unit = self.downsampling // self.factor
    halo = -(-self.halo // unit) * unit
    for region in itertools.product(tile_rows, tile_cols):
      if not refine_steps:
        yield region, self._analyze(image, region)
        continue
      context = tuple(slice(max(s.start - halo, 0), min(s.stop + halo, n))
                      for s, n in zip(region, size))
      yield region, context, self._analyze(image, context)

  def _refine(self, image, region, context, latents, quality, steps):
    """The latents of coding tile `region`, refined for `image` from
    `latents`, g_a's of the tile and its `context` (a region around it). The
    synthesis of the tile's pixels reads the context, which stays g_a's."""
    pixels = tuple(slice(s.start * self.factor, min(s.stop * self.factor, n))
                   for s, n in zip(region, image.shape[:2]))
    return self._refine_tile(
        latents=latents[:, _within(region[0], context[0]),
                        _within(region[1], context[1])],
        context=latents,
        offset=tf.constant([s.start - c.start
                            for s, c in zip(region, context)], tf.int32),
        tile=tf.constant(image[pixels]),
        quality=tf.constant(quality, tf.float32),
        steps=tf.constant(steps, tf.int32))

  def _compress_tiles(self, tiles, quality):
    strings = {n: [] for n in self.string_names}
    checksums = []
    for (rows, cols), latents in tiles:
      outputs = self.module.signatures["compress_latents"](
          latents=latents, image_shape=_tile_shape(rows, cols, self.factor),
          quality=tf.constant(quality, tf.float32))
      for name in self.string_names:
        strings[name].append(outputs[name].numpy()[0])
      checksums.append(outputs["checksum"].numpy().tobytes())
    return strings, checksums

  def _decompress_tiles(self, header, payload):
    """Checks the tiles' checksums, then yields the pixels of each tile row,
    decoding a row of latents ahead of synthesis, which needs its halo."""
    # Smaller tiles would cost a call per few latents.
    if not self._tiled or header.tile < max(self.halo, MIN_TILE):
      raise bitstream.BitstreamError(
          f"corrupted header (tiles of {header.tile} latents)")
    tile_rows, tile_cols = self._coding_tiles(header.height, header.width,
                                              header.tile)
    strings, checksums = bitstream.unpack_strings(
        payload, self.string_names, len(tile_rows) * len(tile_cols),
        header.version)
    if _combined(checksums, header.height, header.width) != header.checksum:
      raise bitstream.BitstreamError(
          "corrupted payload (symbol checksum mismatch)")

    # Latents as numpy arrays: slicing them is free, where each TensorFlow
    # slice or concat is an op dispatched eagerly (about 1 ms a decode).
    def decode_row(i):
      tiles = []
      for j, cols in enumerate(tile_cols):
        k = i * len(tile_cols) + j
        with _refusing_corrupted():
          tiles.append(self.module.signatures["decompress_latents"](
              image_shape=_tile_shape(tile_rows[i], cols, self.factor),
              quality=tf.constant(header.quality, tf.float32),
              checksum=tf.constant(np.frombuffer(checksums[k], np.uint8)),
              **{n: strings[n][k:k + 1] for n in self.string_names}
          )["latents"].numpy())
      return np.concatenate(tiles, 2)

    return self._synthesize_rows(header, tile_rows, decode_row)

  def _synthesize_rows(self, header, tile_rows, decode_row):
    """The pixels of each tile row, `decode_row(i)` giving its latents."""
    above, current = None, decode_row(0)
    for i, rows in enumerate(tile_rows):
      below = decode_row(i + 1) if i + 1 < len(tile_rows) else None
      # This row's latents with up to a halo of rows above and below.
      parts = [current]
      if above is not None:
        parts.insert(0, above[:, -self.halo:])
      if below is not None:
        parts.append(below[:, :self.halo])
      start = rows.start - (self.halo if above is not None else 0)
      yield self._synthesize(
          np.concatenate(parts, 1),
          slice(start, start + sum(p.shape[1] for p in parts)), rows,
          header.height, header.width)
      above, current = current, below


def _pixels(span, factor, size):
  """Indices of the pixels of a span of latents; beyond the image, its edge."""
  return np.minimum(np.arange(span.start * factor, span.stop * factor),
                    size - 1)


def _combined(checksums, height, width):
  """The header's checksum of a tiled file: a fingerprint of the tiles' and
  of the image size (which a tile's checksum knows only up to padding)."""
  joined = np.frombuffer(b"".join(checksums) + np.array(
      [height, width], "<i4").tobytes(), np.uint8)
  return tf.fingerprint(tf.constant(joined)[None])[0].numpy().tobytes()


def _tile_shape(rows, cols, factor):
  """The padded pixel size of a coding tile, as its decoder expects it."""
  return tf.constant([(rows.stop - rows.start) * factor,
                      (cols.stop - cols.start) * factor], tf.int32)


def _within(part, whole, factor=1):
  """`part` (a slice) relative to the start of `whole` scaled by `factor`."""
  start = whole.start * factor
  return slice(part.start - start, part.stop - start)


@contextlib.contextmanager
def _refusing_corrupted():
  """Turns a failure of the model's decoder into a one-line BitstreamError."""
  try:
    yield
  except tf.errors.OpError as e:
    reason = ("symbol checksum mismatch" if "symbol checksum" in e.message
              else "decoding failed")
    raise bitstream.BitstreamError(f"corrupted payload ({reason})") from None
