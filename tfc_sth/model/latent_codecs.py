"""Latent codecs: everything between the latent y and its reconstruction ŷ.

A model is transforms plus a latent codec. The codec owns quantization, so
every training strategy applies to every architecture. Each codec answers:

- `call(y, training, level)` -> (ŷ or ỹ for the synthesis, bits per image)
  under the current quantization `mode`;
- `compress(y, level)` -> ({name: strings}, symbols), range coded with tfc;
- `decompress(strings, latent_shape, level)` -> (ŷ, symbols), ŷ identical
  to the inference-mode ŷ of `call`.

`symbols` is the list of the integer tensors coded, the same list on both
sides, from which a file's checksum is computed.

`level` is the quality level of a codec with a ladder of `qualities` per
channel steps Δ_q (SAUN per channel, one row of log Δ per level): counted
from 0, a scalar (fractional levels interpolate log Δ) or, in training, one
level per example. A codec of one quality ignores it.

It also names the entropy layers it created (`entropy_layers`, to which its
`mode` setter passes the mode), the layers that belong to the encoder
(`encoder_layers`, frozen in the hard phase), its extra downsampling
(`downsampling`) and its string names (`string_names`).

Wherever y is coded with a Gaussian, μ and σ (and Δ under SAUN hyper) come
from what the architecture predicts: the hyperprior, the causal context or
the previous channel slices. Rounding is always mean-centred, ŷ = Δ·round((y -
μ)/Δ) + μ, so the hard phase of soft-then-hard and SAUN mean the same thing
in every codec, and training in the discrete modes computes exactly the ŷ
that decoding will.
"""

import tensorflow as tf

from tfc_sth.model import context_models
from tfc_sth.model import entropy_models
from tfc_sth.model import layers
from tfc_sth.model import quantization
from tfc_sth.model import residual
from tfc_sth.model import saun
from tfc_sth.model import transforms


class LatentCodec(tf.keras.layers.Layer):
  """Base: the quantization mode and α of the entropy layers it created."""

  string_names = ("y_string",)
  downsampling = 1
  # Whether the inference-mode ŷ of `call` passes a straight-through
  # gradient to y, which latent refinement (`refinement.py`) needs.
  refinable = True
  _mode = quantization.NOISE  # The entropy layers' own initial mode.

  @property
  def entropy_layers(self):
    """Its `entropy_models.EntropyLayer`s, listed by each codec."""
    raise NotImplementedError

  @property
  def mode(self):
    return self._mode

  @mode.setter
  def mode(self, mode):
    for layer in self.entropy_layers:
      layer.mode = mode  # Which checks it.
    self._mode = mode

  def set_soft_round_alpha(self, alpha):
    for layer in self.entropy_layers:
      layer.alpha.assign(alpha)

  @property
  def encoder_layers(self):
    return []

  @property
  def transforms(self):
    """Its convolutional transforms (h_a, h_s), which may run in bfloat16."""
    return []

  @property
  def entropy_parameter_networks(self):
    """The networks that both sides run to get entropy parameters, which
    must agree bit for bit: exact at inference (`exact.make_exact`)."""
    return []

  def build_tables(self):
    for layer in self.entropy_layers:
      layer.build_tables()

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    if "delta" in config:  # Its name in older configs.
      config["delta_mode"] = config.pop("delta")
    return cls(**config)

  def _add_channel_delta(self, channels, qualities):
    """Under SAUN per channel, the weight log Δ: [channels], or [qualities,
    channels] for a ladder. Zero: the initial model is the plain model, bit
    for bit (a ladder's `CompressionModel` spreads its levels)."""
    self.qualities = int(qualities)
    if self.qualities < 1:
      raise ValueError(f"qualities={qualities} must be at least 1.")
    if self.qualities > 1 and self.delta_mode != saun.CHANNEL:
      raise ValueError("A quality ladder is a per-channel Δ per level: it "
                       "needs delta_mode=channel.")
    if self.delta_mode == saun.CHANNEL:
      shape = (channels,) if self.qualities == 1 else (
          self.qualities, channels)
      self.log_delta = self.add_weight(
          name="log_delta", shape=shape, initializer="zeros")

  def channel_step(self, level):
    """Δ per channel at `level` under SAUN per channel, else 1: the unit in
    which `refinement` moves the latents."""
    if self.delta_mode == saun.CHANNEL:
      return self._channel_delta(level)
    return tf.ones([self.latent_channels])

  def _channel_delta(self, level):
    """Δ per channel at `level`, broadcastable against [B, H, W, channels]."""
    if self.qualities == 1:
      return saun.delta_from_log(self.log_delta)
    if level is None:
      raise ValueError("A codec with a quality ladder needs a level.")
    return saun.delta_from_log(saun.at_level(self.log_delta, level))


class FactorizedLatent(LatentCodec):
  """y coded with a learned factorized prior (Ballé et al., ICLR 2017).

  There is no predicted mean; under SAUN a per-channel Δ scales the grid.
  """

  def __init__(self, latent_channels, delta_mode=saun.NONE, qualities=1,
               **kwargs):
    super().__init__(**kwargs)
    self.latent_channels = int(latent_channels)
    self.delta_mode = saun.check_delta_mode(delta_mode)
    if self.delta_mode == saun.HYPER:
      raise ValueError("A factorized prior has no hyperprior to predict Δ "
                       "from; use delta_mode=channel or none.")
    self.prior = entropy_models.FactorizedPrior(self.latent_channels)
    self._add_channel_delta(self.latent_channels, qualities)

  @property
  def entropy_layers(self):
    return [self.prior]

  def _delta(self, level):
    if self.delta_mode == saun.CHANNEL:
      return self._channel_delta(level)
    return 1.

  def call(self, y, training=False, level=None):
    delta = self._delta(level)
    v_hat, bits = self.prior(y / delta, training=training)
    return v_hat * delta, bits

  def compress(self, y, level=None):
    string, symbols = self.prior.compress(y / self._delta(level))
    return dict(y_string=string), [symbols]

  def decompress(self, strings, latent_shape, level=None):
    v_hat, symbols = self.prior.decompress(strings["y_string"], latent_shape)
    return v_hat * self._delta(level), [symbols]

  def get_config(self):
    return dict(super().get_config(), latent_channels=self.latent_channels,
                delta_mode=self.delta_mode, qualities=self.qualities)


HYPER_TRANSFORMS = {
    "conv": (transforms.hyper_analysis_transform,
             transforms.hyper_synthesis_transform),
    "residual": (residual.hyper_analysis_transform,
                 residual.hyper_synthesis_transform),
}


class Hyperprior(LatentCodec):
  """Base of the codecs with a hyper-latent z (coded with a factorized prior).

  h_s(ẑ) predicts `hyper_features` channels of entropy parameters for y,
  plus log Δ under SAUN hyper. Subclasses say how y is coded from those
  features and Δ: `_code_y(y, features, Δ, training)` -> (ŷ, bits),
  `_compress_y(y, features, Δ)` -> ({"y_string": ...}, symbols) and
  `_decompress_y(strings, features, Δ)` -> (ŷ, symbols).
  """

  string_names = ("y_string", "z_string")
  downsampling = 4
  hyper_features = None  # Set by subclasses, in units of latent_channels.

  def __init__(self, latent_channels, num_filters, hyper_channels=None,
               delta_mode=saun.NONE, kernel_parameter="rdft",
               hyper_transforms="conv", hyper_kernel=3, qualities=1,
               **kwargs):
    super().__init__(**kwargs)
    self.latent_channels = int(latent_channels)
    self.num_filters = int(num_filters)
    self.hyper_channels = int(hyper_channels or num_filters)
    self.hyper_kernel = int(hyper_kernel)
    if self.hyper_kernel < 1 or not self.hyper_kernel % 2:
      raise ValueError(f"hyper_kernel={hyper_kernel} must be odd: a layer "
                       "centred on each latent")
    self.delta_mode = saun.check_delta_mode(delta_mode)
    self.kernel_parameter = kernel_parameter
    self.hyper_transforms = hyper_transforms
    analysis, synthesis = HYPER_TRANSFORMS[hyper_transforms]
    outputs = self.hyper_features + (self.delta_mode == saun.HYPER)
    self.hyper_analysis = analysis(
        self.num_filters, self.hyper_channels, kernel_parameter)
    self.hyper_synthesis = synthesis(
        self.num_filters, outputs * self.latent_channels, kernel_parameter,
        last_kernel=self.hyper_kernel)
    self.hyper_prior = entropy_models.FactorizedPrior(self.hyper_channels)
    self.conditional = entropy_models.GaussianConditional()
    self._add_channel_delta(self.latent_channels, qualities)

  @property
  def entropy_layers(self):
    return [self.hyper_prior, self.conditional]

  @property
  def encoder_layers(self):
    return [self.hyper_analysis]

  @property
  def transforms(self):
    return [self.hyper_analysis, self.hyper_synthesis]

  @property
  def entropy_parameter_networks(self):
    return [self.hyper_synthesis]

  def _hyper_analysis(self, y):
    return tf.cast(self.hyper_analysis(self._hyper_input(y)), tf.float32)

  def _hyper_input(self, y):
    return y

  def _hyper_parameters(self, z_hat, level):
    """h_s(ẑ) as (entropy features, Δ or None)."""
    features = tf.cast(self.hyper_synthesis(z_hat), tf.float32)
    if self.delta_mode == saun.HYPER:
      split = self.hyper_features * self.latent_channels
      return (features[..., :split],
              saun.delta_from_log(features[..., split:]))
    if self.delta_mode == saun.CHANNEL:
      return features, self._channel_delta(level)
    return features, None

  def call(self, y, training=False, level=None):
    z_hat, z_bits = self.hyper_prior(self._hyper_analysis(y),
                                     training=training)
    features, delta = self._hyper_parameters(z_hat, level)
    y_hat, y_bits = self._code_y(y, features, delta, training)
    return y_hat, y_bits + z_bits

  def compress(self, y, level=None):
    z = self._hyper_analysis(y)
    z_string, z_symbols = self.hyper_prior.compress(z)
    z_hat, _ = self.hyper_prior(z)  # The coded values, as decoded.
    strings, y_symbols = self._compress_y(
        y, *self._hyper_parameters(z_hat, level))
    return dict(strings, z_string=z_string), [z_symbols, *y_symbols]

  def decompress(self, strings, latent_shape, level=None):
    z_hat, z_symbols = self.hyper_prior.decompress(
        strings["z_string"], latent_shape // self.downsampling)
    y_hat, y_symbols = self._decompress_y(
        strings, *self._hyper_parameters(z_hat, level))
    return y_hat, [z_symbols, *y_symbols]

  def get_config(self):
    return dict(
        super().get_config(), latent_channels=self.latent_channels,
        num_filters=self.num_filters, hyper_channels=self.hyper_channels,
        delta_mode=self.delta_mode, kernel_parameter=self.kernel_parameter,
        hyper_transforms=self.hyper_transforms,
        hyper_kernel=self.hyper_kernel, qualities=self.qualities)


class ScaleHyperprior(Hyperprior):
  """y coded with N(0, σ²), σ from a hyper-latent of |y|.

  Ballé, Minnen, Singh, Hwang, Johnston, "Variational Image Compression with
  a Scale Hyperprior", ICLR 2018. μ = 0, so rounding is to the integers (or
  to multiples of Δ).
  """

  hyper_features = 1

  def _hyper_input(self, y):
    return tf.abs(y)

  def _gaussian(self, features):
    """(μ, log σ) from h_s's features."""
    return tf.zeros_like(features), features

  def _code_y(self, y, features, delta, training):
    return self.conditional(y, *self._gaussian(features), delta,
                            training=training)

  def _compress_y(self, y, features, delta):
    string, symbols = self.conditional.compress(
        y, *self._gaussian(features), delta)
    return dict(y_string=string), [symbols]

  def _decompress_y(self, strings, features, delta):
    y_hat, symbols = self.conditional.decompress(
        strings["y_string"], *self._gaussian(features), delta)
    return y_hat, [symbols]


class MeanScaleHyperprior(ScaleHyperprior):
  """y coded with N(μ, σ²) predicted from the hyper-latent alone.

  Minnen, Ballé, Toderici, "Joint Autoregressive and Hierarchical Priors for
  Learned Image Compression", NeurIPS 2018, without the context model: the
  scale hyperprior with a predicted mean as well, whose h_a sees y itself,
  sign included, as the mean needs.
  """

  hyper_features = 2

  def _hyper_input(self, y):
    return y

  def _gaussian(self, features):
    loc, log_scale = tf.split(features, 2, axis=-1)
    return loc, log_scale


def _entropy_parameters(channels, outputs):
  """1x1 layers from (hyper features, context) to (μ, log σ); Dense works
  both on whole latents and on the rows of one wavefront."""
  return tf.keras.Sequential([
      layers.Dense(channels * 10 // 3, tf.nn.leaky_relu),
      layers.Dense(channels * 8 // 3, tf.nn.leaky_relu),
      layers.Dense(outputs),
  ], name="entropy_parameters")


class JointAutoregressive(Hyperprior):
  """y coded with N(μ, σ²) from the hyperprior and a causal context of ŷ.

  Minnen, Ballé, Toderici (NeurIPS 2018): a masked 5x5 convolution over ŷ,
  combined with h_s(ẑ) by 1x1 layers. Δ (SAUN) comes from the hyperprior
  alone, so that ỹ = y + Δ·u is known before the context is.

  Soft modes (noise, mixed, anneal) feed the context y + Δ·u, as Minnen et
  al. train. Discrete modes (ste, hard, inference) feed it the exact
  mean-centred ŷ, computed serially by `context_models.autoregress`, without
  gradient; a parallel pass over that ŷ then gives μ and σ with gradients.
  """

  hyper_features = 2
  refinable = False  # Inference's ŷ is the serial one, without gradient.

  def __init__(self, latent_channels, num_filters, context_kernel=5,
               **kwargs):
    super().__init__(latent_channels, num_filters, **kwargs)
    self.context_kernel = int(context_kernel)
    self.context = context_models.CausalContext(
        2 * self.latent_channels, self.context_kernel)
    self.entropy_parameters = _entropy_parameters(
        self.latent_channels, 2 * self.latent_channels)

  def build(self, input_shape):
    # Built here, not in the decoding loop, where no variable may be created.
    self.context.build(input_shape)
    self.entropy_parameters.build((None, 4 * self.latent_channels))
    super().build(input_shape)

  @property
  def entropy_parameter_networks(self):
    return [self.hyper_synthesis, self.context, self.entropy_parameters]

  def _gaussian(self, features, context_output):
    params = self.entropy_parameters(
        tf.concat([features, context_output], axis=-1))
    loc, log_scale = tf.split(params, 2, axis=-1)
    return loc, log_scale

  def _serial(self, y_or_none, features, delta, step, state):
    """ŷ by the causal recursion; `step(state, y_at, loc, log_scale, Δ_at)`."""
    spatial = [features]
    if delta is not None:  # Per channel or per example, gathered like Δ_hyper.
      spatial.append(tf.broadcast_to(delta, tf.concat(
          [tf.shape(features)[:-1], [self.latent_channels]], 0)))
    if y_or_none is not None:
      spatial.append(y_or_none)

    def wavefront(state, positions, context_output, at):
      loc, log_scale = self._gaussian(at[0], context_output)
      delta_at = None if delta is None else at[1]
      y_at = at[-1] if y_or_none is not None else None
      return step(state, y_at, loc, log_scale, delta_at)

    return context_models.autoregress(
        self.context, spatial, wavefront, state, self.latent_channels)

  def _round(self, state, y, loc, log_scale, delta):
    conditional = self.conditional
    v_hat = conditional.round(conditional.normalize(y, loc, delta),
                              log_scale, delta)
    return state, conditional.denormalize(v_hat, loc, delta)

  def _code_y(self, y, features, delta, training):
    mode = self.mode
    noise = None
    if quantization.is_discrete(mode, training):
      y_serial, _ = self._serial(
          tf.stop_gradient(y), tf.stop_gradient(features),
          None if delta is None else tf.stop_gradient(delta), self._round,
          tf.constant(0))
      y_serial = tf.stop_gradient(y_serial)
      y_context = y + tf.stop_gradient(y_serial - y) if (
          training and mode == quantization.STE) else y_serial
    else:
      noise = quantization.uniform_noise(y)
      y_context = y + (noise if delta is None else noise * delta)
    loc, log_scale = self._gaussian(features, self.context(y_context))
    y_hat, bits = self.conditional(y, loc, log_scale, delta,
                                   training=training, noise=noise)
    # At inference, the serial ŷ: what decompress returns, bit for bit.
    return (y_hat if training else y_serial), bits

  # Coding keeps, beside the range coder, the symbols of every wavefront.

  @staticmethod
  def _symbol_log():
    return tf.TensorArray(tf.int32, size=0, dynamic_size=True,
                          infer_shape=False)

  def _compress_y(self, y, features, delta):
    def encode(state, y_at, loc, log_scale, delta_at):
      handle, log = state
      handle, y_hat, symbols = self.conditional.encode(
          handle, y_at, loc, log_scale, delta_at)
      return (handle, log.write(log.size(), tf.reshape(symbols, [-1]))), y_hat

    state = (self.conditional.start_encoding(tf.shape(y)[0]),
             self._symbol_log())
    _, (handle, log) = self._serial(y, features, delta, encode, state)
    return (dict(y_string=self.conditional.finish_encoding(handle)),
            [log.concat()])

  def _decompress_y(self, strings, features, delta):
    def decode(state, _, loc, log_scale, delta_at):
      handle, log = state
      handle, y_hat, symbols = self.conditional.decode(
          handle, loc, log_scale, delta_at)
      return (handle, log.write(log.size(), tf.reshape(symbols, [-1]))), y_hat

    state = (self.conditional.start_decoding(strings["y_string"]),
             self._symbol_log())
    y_hat, (handle, log) = self._serial(None, features, delta, decode, state)
    return entropy_models.finish_decoding(handle, y_hat), [log.concat()]

  def get_config(self):
    return dict(super().get_config(), context_kernel=self.context_kernel)


class ChannelwiseAutoregressive(Hyperprior):
  """y coded in channel slices, each conditioned on the slices before it.

  Minnen & Singh, "Channel-wise Autoregressive Entropy Models for Learned
  Image Compression", ICIP 2020. h_s(ẑ) gives mean and scale features; slice
  k's μ_k and σ_k come from them and the decoded slices ŷ_<k, and latent
  residual prediction (LRP) adds 0.5·tanh(f(features, ŷ_≤k)) to ŷ_k, which
  both the synthesis and the later slices see. Each slice is parallel in
  space, so training computes the exact ŷ of decoding in every mode.
  """

  hyper_features = 2

  def __init__(self, latent_channels, num_filters, num_slices, **kwargs):
    super().__init__(latent_channels, num_filters, **kwargs)
    self.num_slices = int(num_slices)
    if not 1 <= self.num_slices <= self.latent_channels:
      raise ValueError(f"num_slices={num_slices} must be in 1.."
                       f"{self.latent_channels}.")
    base, extra = divmod(self.latent_channels, self.num_slices)
    self.slice_sizes = [base + (k < extra) for k in range(self.num_slices)]
    parameter = self.kernel_parameter

    def transform(name, k):
      size = self.slice_sizes[k]
      return transforms.slice_transform(
          self.latent_channels, size, parameter, name=f"{name}_{k}")

    self.mean_transforms = [transform("mean", k)
                            for k in range(self.num_slices)]
    self.scale_transforms = [transform("scale", k)
                             for k in range(self.num_slices)]
    self.residual_transforms = [transform("lrp", k)
                                for k in range(self.num_slices)]

  @property
  def entropy_parameter_networks(self):
    return [self.hyper_synthesis, *self.mean_transforms,
            *self.scale_transforms, *self.residual_transforms]

  def _slices(self, features, delta, code):
    """ŷ slice by slice; `code(k, loc, log_scale, Δ_k)` -> ŷ_k before LRP."""
    mean_features, scale_features = tf.split(features, 2, axis=-1)
    deltas = ([None] * self.num_slices if delta is None
              else tf.split(delta, self.slice_sizes, axis=-1))
    decoded = []
    for k in range(self.num_slices):
      mean_support = tf.concat([mean_features] + decoded, axis=-1)
      loc = self.mean_transforms[k](mean_support)
      log_scale = self.scale_transforms[k](
          tf.concat([scale_features] + decoded, axis=-1))
      y_k = code(k, loc, log_scale, deltas[k])
      lrp = self.residual_transforms[k](
          tf.concat([mean_support, y_k], axis=-1))
      decoded.append(y_k + .5 * tf.tanh(lrp))
    return tf.concat(decoded, axis=-1)

  def _code_y(self, y, features, delta, training):
    y_slices = tf.split(y, self.slice_sizes, axis=-1)
    bits = []

    def code(k, loc, log_scale, delta_k):
      y_hat, slice_bits = self.conditional(
          y_slices[k], loc, log_scale, delta_k, training=training)
      bits.append(slice_bits)
      return y_hat

    y_hat = self._slices(features, delta, code)
    return y_hat, tf.add_n(bits)

  def _compress_y(self, y, features, delta):
    y_slices = tf.split(y, self.slice_sizes, axis=-1)
    handle = [self.conditional.start_encoding(tf.shape(y)[0])]
    symbols = []

    def code(k, loc, log_scale, delta_k):
      handle[0], y_hat, slice_symbols = self.conditional.encode(
          handle[0], y_slices[k], loc, log_scale, delta_k)
      symbols.append(slice_symbols)
      return y_hat

    self._slices(features, delta, code)
    return (dict(y_string=self.conditional.finish_encoding(handle[0])),
            symbols)

  def _decompress_y(self, strings, features, delta):
    handle = [self.conditional.start_decoding(strings["y_string"])]
    symbols = []

    def code(k, loc, log_scale, delta_k):
      handle[0], y_hat, slice_symbols = self.conditional.decode(
          handle[0], loc, log_scale, delta_k)
      symbols.append(slice_symbols)
      return y_hat

    y_hat = self._slices(features, delta, code)
    return entropy_models.finish_decoding(handle[0], y_hat), symbols

  def get_config(self):
    return dict(super().get_config(), num_slices=self.num_slices)
