"""SavedModel export: `compress` and `decompress` signatures on uint8 images.

The exported module needs only tensorflow and tensorflow_compression to load
(tfc registers the range coding ops). Its signatures:

- `compress(image: uint8[H, W, 3], quality: float32[])` -> {"image_shape":
  int32[2], "quality": float32[], "checksum": uint8[8], <string name>:
  string[1] for each of the latent codec's strings};
- `decompress(**outputs of compress)` -> {"image": uint8[H, W, 3]}, or an
  InvalidArgumentError "symbol checksum mismatch" when the symbols decoded
  are not those encoded;
- `reconstruct(image, quality)` -> {"image", "bits"}: the model's own
  inference-mode reconstruction and estimated rate, without range coding
  (what `decompress(compress(image))` must equal, and what the file size
  should be close to);
- `model_info()` -> {"model_id", "architecture", "config"} (strings) and
  {"qualities", "default_quality", ...} (int32);
- `analyze`, `compress_latents`, `decompress_latents`, `synthesize`: the
  same coding in pieces, for tiles (`codec.py`); `decompress_latents` hands
  `synthesize` ŷ times the level's decoder gain where the model has one
  (otherwise ŷ); `analyze_bfloat16`,
  `synthesize_bfloat16`: the transforms computing in bfloat16;
- `refinement_loss`, `refinement_loss_bfloat16` (models whose latent codec
  is `refinable`): the loss of coding a tile's pixels with its latents moved
  by `shift` (`model/refinement.py`), which an encoder that spends time for
  smaller files descends (`runtime/refinement.py`).

`checksum` is a fingerprint (FarmHash64) of every integer symbol coded, the
image shape and the quality. A range decoder fed bytes it did not write, or
whose entropy parameters differ from the encoder's, decodes other symbols;
comparing the checksums turns that into an error instead of a silently wrong
image.

`quality` is a level of the model's ladder, from 1 to `qualities`; between
two levels it interpolates their steps Δ. A single-rate model has one level
and ignores it. Quality is an input rather than a signature per level so
that any level, fractional ones too, is one graph, and a client codes every
model the same way. The inputs of `decompress` are named like the outputs of
`compress`, so a client can pass one to the other unchanged. Range coding tables are built
once, here, and saved as variables, so every process codes with the same
integers.

Images are padded at the bottom and right by repeating the edge pixels to a
multiple of the model's total downsampling, and the padding is cropped after
synthesis.
"""

import hashlib
import json
import os
import tempfile

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

from tfc_sth.model import architectures
from tfc_sth.model import exact
from tfc_sth.model import layers
from tfc_sth.model import refinement
from tfc_sth.runtime import pretrained
from tfc_sth.model import saun


def default_quality(qualities):
  """The level `compress` uses when none is asked for: the middle one."""
  return (qualities + 1) // 2


def symbol_checksum(symbols, image_shape, quality):
  """uint8[8]: a fingerprint of the integer symbol tensors, in order, and of
  the other inputs of decoding (so a changed size or level is caught too)."""
  flat = tf.concat([tf.reshape(s, [-1]) for s in symbols] + [
      image_shape, tf.bitcast(quality, tf.int32)[None]], 0)
  return tf.fingerprint(flat[None])[0]


def pad_to_multiple(image, factor):
  """uint8 [H, W, 3] -> float [1, H', W', 3] in [0, 1], edge-padded."""
  shape = tf.shape(image)[:2]
  padded = (shape + factor - 1) // factor * factor
  rows = tf.minimum(tf.range(padded[0]), shape[0] - 1)
  cols = tf.minimum(tf.range(padded[1]), shape[1] - 1)
  image = tf.gather(tf.gather(image, rows, axis=0), cols, axis=1)
  return tf.cast(image, tf.float32)[None] / 255.


def to_uint8(x_hat, image_shape):
  """float [1, H', W', 3] -> uint8 [H, W, 3], cropped, clipped and rounded."""
  x_hat = x_hat[0, :image_shape[0], :image_shape[1], :]
  return tf.cast(tf.round(tf.clip_by_value(x_hat, 0., 1.) * 255.), tf.uint8)


def inference_copy(model):
  """A copy of `model` for export: plain kernels, no optimizer state, and
  entropy parameters computed exactly (`exact.py`).

  The training parameterisation of the kernels (RDFT) would be re-computed
  at every call, and a compiled model carries its optimizer, whose slots
  would triple the SavedModel. The copy holds each kernel as computed once.
  """
  config = dict(model.get_config(), kernel_parameter="variable")
  copy = architectures.CompressionModel.from_config(config)
  copy.create_variables()
  _copy_variables(model, copy)
  for source, target in zip(_convs(model), _convs(copy), strict=True):
    # Computed in float32 even if the model runs in bfloat16 (`noise` to
    # the end under --mixed_precision has no float32 phase).
    parameter = source.kernel_parameter
    target.kernel_parameter.assign(
        parameter() if callable(parameter) else parameter)
  for network in copy.latent_codec.entropy_parameter_networks:
    exact.make_exact(network)
  return copy


def is_export(path):
  return all(os.path.isfile(os.path.join(path, name))
             for name in ("saved_model.pb", pretrained.INFO_FILE))


def _copy_variables(source, target):
  """Every variable the two models share, matched by its path in the object
  graph (which does not depend on which layers are frozen); kernels of
  another parameterisation are left to the caller."""
  with tempfile.TemporaryDirectory() as directory:
    path = tf.train.Checkpoint(model=source).write(
        os.path.join(directory, "weights"))
    tf.train.Checkpoint(model=target).read(path).expect_partial()


def _convs(model):
  return [l for l in model.submodules if isinstance(l, tfc.SignalConv2D)]


def exported_model(directory):
  """The model an export was made from, with plain kernels (as in
  `inference_copy`) and the export's weights."""
  config = dict(pretrained.read_info(directory)["config"],
                kernel_parameter="variable")
  model = architectures.CompressionModel.from_config(config)
  model.create_variables()
  tf.train.Checkpoint(model=model).read(
      os.path.join(directory, "variables", "variables")
  ).assert_existing_objects_matched().expect_partial()
  return model


def _shape_options(model):
  """What fixes a model's variables, besides its levels and Δ."""
  config = model.get_config()
  options = dict(architectures.options(model.architecture), **config)
  names = ("num_filters", "latent_channels", *architectures.OPTIONS)
  return dict(model=model.architecture,
              **{k: options[k] for k in names if k in options})


def import_weights(model, directory):
  """Sets the weights of `model` (built) from an exported SavedModel.

  The inverse of `inference_copy`: plain kernels go back into the model's
  kernel parameterisation. The architecture must match; the λs need not:
  a per-channel log Δ (and a decoder gain) is carried to the model's λs by
  `saun.resample_levels`, so a single-rate export seeds a ladder and a
  ladder seeds a wider or finer one. A model with a decoder gain may start
  from an export without one: its gain starts at 1.
  """
  source = exported_model(directory)
  theirs, ours = _shape_options(source), _shape_options(model)
  if theirs != ours:
    raise ValueError(f"{directory} is not this architecture: " + ", ".join(
        f"--{k}={theirs[k]} there, {ours[k]} here" for k in theirs
        if theirs[k] != ours[k]))
  if source.decoder_gain and not model.decoder_gain:
    raise ValueError(f"{directory} has a decoder gain per level, which "
                     "this model lacks (--decoder_gain)")
  codec = source.latent_codec
  if source.lmbdas != model.lmbdas and hasattr(codec, "log_delta"):
    table = saun.resample_levels(
        codec.log_delta.numpy(), source.lmbdas, model.lmbdas)
    # Tracked under the same name, so it is what the copy below reads.
    codec.log_delta = tf.Variable(
        table if model.qualities > 1 else table[0])
  if source.lmbdas != model.lmbdas and source.decoder_gain:
    source.decoder_gain_weight = tf.Variable(saun.resample_levels(
        source.decoder_gain_weight.numpy(), source.lmbdas, model.lmbdas,
        high_rate_law=False))
  _copy_variables(source, model)
  for plain, target in zip(_convs(source), _convs(model), strict=True):
    parameter = target.kernel_parameter
    if isinstance(parameter, tfc.RDFTParameter):
      rdft = type(parameter)(plain.kernel)
      parameter.real.assign(rdft.real)
      parameter.imag.assign(rdft.imag)
    else:
      parameter.assign(plain.kernel)


def tile_halo(model, size=32):
  """Latents of context around a tile for g_a and g_s on the tile to match
  them on the whole image up to float rounding: their reach, measured by
  changing one latent's worth of input, plus one."""
  factor = model.analysis_downsampling
  rng = np.random.default_rng(0)
  x = rng.uniform(size=(1, size * factor, size * factor, 3))
  centre = size // 2
  changed = x.copy()
  changed[:, centre * factor:(centre + 1) * factor,
          centre * factor:(centre + 1) * factor] += .5
  y = model.analysis(tf.constant(x, tf.float32))
  reach_a = _changed(y, model.analysis(tf.constant(changed, tf.float32)))
  bump = np.zeros(y.shape, np.float32)
  bump[:, centre, centre] = 1.
  reach_s = _changed(model.synthesis(y), model.synthesis(y + bump), factor)
  reach = np.abs(np.concatenate(reach_a + reach_s) - centre).max()
  if reach >= centre - 1:
    raise ValueError(f"transforms reach {reach} latents or more: measure "
                     f"with size > {2 * reach + 2}")
  return int(reach) + 1


def _changed(before, after, factor=1):
  """Indices [rows, cols] of the positions (in blocks of factor x factor)
  where `after` differs from `before` beyond float rounding."""
  difference = tf.reduce_max(tf.abs(tf.cast(after - before, tf.float32)), -1)
  difference = tf.nn.max_pool2d(difference[..., None], factor, factor,
                                "VALID")[0, ..., 0].numpy()
  return list(np.nonzero(difference > 1e-4 * difference.max()))


def model_id(model):
  """An identifier of what decodes a file: architecture plus a hash of the
  weights and of the range coding tables, once built."""
  digest = hashlib.sha256()
  tables = [layer.tables for layer in model.latent_codec.entropy_layers
            if layer.tables is not None]
  for variable in [*model.weights, *(v for t in tables for v in t.variables)]:
    digest.update(variable.numpy().tobytes())
  return f"{model.architecture}-{digest.hexdigest()[:12]}"


class ExportedCodec(tf.Module):
  """A trained `CompressionModel` with its range coding tables, as a tf.Module."""

  def __init__(self, model):
    super().__init__()
    self.model = model = inference_copy(model)
    model.latent_codec.build_tables()
    self.model_id = model_id(model)
    self._info = {
        "model_id": self.model_id,
        "architecture": model.architecture,
        "config": json.dumps(model.get_config(), sort_keys=True),
        "qualities": model.qualities,
        "default_quality": default_quality(model.qualities),
        "downsampling": model.downsampling,
        "analysis_downsampling": model.analysis_downsampling,
        "tile_halo": tile_halo(model),
    }

  def _latent_shape(self, image_shape):
    factor = self.model.downsampling
    return ((image_shape + factor - 1) // factor * factor
            // self.model.analysis_downsampling)

  def _level(self, quality):
    return None if self.model.qualities == 1 else quality - 1.

  def _code_latents(self, y, image_shape, quality):
    strings, symbols = self.model.latent_codec.compress(
        y, self._level(quality))
    return dict(strings, image_shape=image_shape, quality=quality,
                checksum=symbol_checksum(symbols, image_shape, quality))

  def _decode_latents(self, image_shape, quality, checksum, strings):
    """The input of g_s, once the symbols' checksum matched."""
    level = self._level(quality)
    y_hat, symbols = self.model.latent_codec.decompress(
        strings, self._latent_shape(image_shape), level)
    with tf.control_dependencies([tf.debugging.assert_equal(
        symbol_checksum(symbols, image_shape, quality), checksum,
        message="symbol checksum mismatch")]):
      return self.model.synthesis_input(tf.identity(y_hat), level)

  @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8),
                                tf.TensorSpec([], tf.float32)])
  def compress(self, image, quality):
    y = self.model.analysis(pad_to_multiple(image, self.model.downsampling))
    return self._code_latents(tf.cast(y, tf.float32), tf.shape(image)[:2],
                              quality)

  @tf.function
  def decompress(self, image_shape, quality, checksum, **strings):
    y_hat = self._decode_latents(image_shape, quality, checksum, strings)
    return {"image": to_uint8(self.model.synthesis(y_hat), image_shape)}

  # The same coding in pieces, for images coded in tiles (`codec.py`).

  def _analyze(self, tile):
    x = tf.cast(tile, tf.float32)[None] / 255.
    return {"latents": tf.cast(self.model.analysis(x), tf.float32)}

  def _synthesize(self, latents):
    x_hat = self.model.synthesis(latents)
    return {"image": to_uint8(x_hat, tf.shape(x_hat)[1:3])}

  @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
  def analyze(self, tile):
    """g_a of a tile whose sides are multiples of 16, unpadded."""
    return self._analyze(tile)

  @tf.function
  def synthesize(self, latents):
    """g_s of latents [1, h, w, M], to uint8 pixels [16h, 16w, 3]."""
    return self._synthesize(latents)

  # The same transforms computing in bfloat16, about twice as fast on CPUs
  # with bfloat16 dot products (AVX512-BF16, AMX), where the runtime picks
  # them; elsewhere oneDNN emulates them slowly or not at all. They change
  # the latents g_a hands to the encoder and the pixels, not what a file
  # decodes to: its latents are the same either way.

  @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
  def analyze_bfloat16(self, tile):
    with layers.precision(self.model.analysis, layers.MIXED_BFLOAT16):
      return self._analyze(tile)

  @tf.function
  def synthesize_bfloat16(self, latents):
    with layers.precision(self.model.synthesis, layers.MIXED_BFLOAT16):
      return self._synthesize(latents)

  def _refinement_loss(self, latents, context, offset, tile, quality,
                       shift):
    loss, moved = refinement.objective(
        self.model, latents, context, offset,
        tf.cast(tile, tf.float32)[None] / 255., self._level(quality), shift)
    return {"loss": loss, "latents": moved}

  @tf.function
  def refinement_loss(self, latents, context, offset, tile, quality, shift):
    """bits / pixels + λ_q · MSE of the pixels `tile` coded with `latents` +
    Δ_q · `shift` (and those latents): `context` holds `latents` at
    `offset` with their halo, as the synthesis of `tile` reads them."""
    return self._refinement_loss(latents, context, offset, tile, quality,
                                 shift)

  @tf.function
  def refinement_loss_bfloat16(self, latents, context, offset, tile, quality,
                               shift):
    with layers.precision(self.model.synthesis, layers.MIXED_BFLOAT16):
      return self._refinement_loss(latents, context, offset, tile, quality,
                                   shift)

  @tf.function
  def compress_latents(self, latents, image_shape, quality):
    return self._code_latents(latents, image_shape, quality)

  @tf.function
  def decompress_latents(self, image_shape, quality, checksum, **strings):
    return {"latents": self._decode_latents(image_shape, quality, checksum,
                                            strings)}

  @tf.function(input_signature=[])
  def model_info(self):
    return {k: tf.constant(v) for k, v in self._info.items()}

  @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8),
                                tf.TensorSpec([], tf.float32)])
  def reconstruct(self, image, quality):
    x = pad_to_multiple(image, self.model.downsampling)
    x_hat, bits = self.model(x, training=False, level=self._level(quality))
    return {"image": to_uint8(x_hat, tf.shape(image)[:2]),
            "bits": tf.reduce_sum(bits)}

  def signatures(self):
    latents = tf.TensorSpec(
        [1, None, None, self.model.latent_codec.latent_channels], tf.float32)
    decoding = dict(
        image_shape=tf.TensorSpec([2], tf.int32),
        quality=tf.TensorSpec([], tf.float32),
        checksum=tf.TensorSpec([8], tf.uint8),
        **{n: tf.TensorSpec([None], tf.string)
           for n in self.model.latent_codec.string_names})
    refining = (latents, latents, tf.TensorSpec([2], tf.int32),
                tf.TensorSpec([None, None, 3], tf.uint8),
                tf.TensorSpec([], tf.float32), latents)
    refine = {}
    if self.model.latent_codec.refinable:
      refine = {
          "refinement_loss":
              self.refinement_loss.get_concrete_function(*refining),
          "refinement_loss_bfloat16":
              self.refinement_loss_bfloat16.get_concrete_function(*refining)}
    return {
        **refine,
        "compress": self.compress.get_concrete_function(),
        "decompress": self.decompress.get_concrete_function(**decoding),
        "reconstruct": self.reconstruct.get_concrete_function(),
        "model_info": self.model_info.get_concrete_function(),
        "analyze": self.analyze.get_concrete_function(),
        "synthesize": self.synthesize.get_concrete_function(latents),
        "analyze_bfloat16": self.analyze_bfloat16.get_concrete_function(),
        "synthesize_bfloat16":
            self.synthesize_bfloat16.get_concrete_function(latents),
        "compress_latents": self.compress_latents.get_concrete_function(
            latents, tf.TensorSpec([2], tf.int32),
            tf.TensorSpec([], tf.float32)),
        "decompress_latents": self.decompress_latents.get_concrete_function(
            **decoding),
    }


def export(model, directory, card=None):
  """Writes `model` as a SavedModel to `directory`; returns its model id.

  Next to the SavedModel, `model.json` holds the model id, the architecture,
  its configuration and `card` (free-form facts: λ, steps, measured rates).
  """
  codec = ExportedCodec(model)
  # The signatures only: a tf.function attribute of the saved object would
  # be saved again beside its signature, and loaded twice.
  weights = tf.Module()
  weights.model = codec.model
  tf.saved_model.save(weights, directory, signatures=codec.signatures())
  info = dict(model_id=codec.model_id, architecture=model.architecture,
              config=codec.model.get_config(), card=card or {})
  with open(os.path.join(directory, pretrained.INFO_FILE), "w") as f:
    json.dump(info, f, indent=2, sort_keys=True)
  return codec.model_id
