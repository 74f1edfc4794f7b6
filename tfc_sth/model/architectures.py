"""Architectures: transforms plus a latent codec, registered by name.

`CompressionModel` is the one Keras model every architecture trains as:

    x ─ g_a ─ y ─ latent codec ─ ŷ ─ g_s ─ x̂,   loss = bpp + λ·MSE

with MSE on the 8-bit scale (tfc's convention, so λ values are comparable
with tfc's examples). An architecture is a function returning
`(analysis, synthesis, latent_codec)`; adding one is adding such a function.
Its keyword arguments and their defaults are its options; those that only
some architectures take are registered with their help (`OPTIONS`), from
which the command line makes its flags.
"""

import inspect
import math
import typing

import tensorflow as tf

from tfc_sth.model import latent_codecs
from tfc_sth.model import layers
from tfc_sth.model import residual
from tfc_sth.model import saun
from tfc_sth.model import transforms

ARCHITECTURES = {}
# The options only some architectures take: {name: Option}.
OPTIONS = {}


class Option(typing.NamedTuple):
  default: object  # The builder's.
  help: str


def _defaults(builder):
  parameters = inspect.signature(builder).parameters
  return {name: p.default for name, p in parameters.items()}


def register(name, **option_help):
  """Registers a builder as `name`; `option_help` holds the help of each of
  its options that other architectures do not take."""
  def decorator(builder):
    ARCHITECTURES[name] = builder
    defaults = _defaults(builder)
    OPTIONS.update({option: Option(defaults[option], text)
                    for option, text in option_help.items()})
    return builder
  return decorator


def _gdn_transforms(num_filters, latent_channels, kernel_parameter):
  return (transforms.analysis_transform(num_filters, latent_channels,
                                        kernel_parameter),
          transforms.synthesis_transform(num_filters, kernel_parameter))


def _gdn_hyperprior(codec, num_filters, latent_channels, delta_mode,
                    kernel_parameter, qualities, hyper_filters=0, **options):
  """GDN transforms around one of the hyperprior latent codecs; its hyper
  transforms have `hyper_filters` filters (and z as many channels), or
  `num_filters` if 0."""
  return (*_gdn_transforms(num_filters, latent_channels, kernel_parameter),
          codec(latent_channels, hyper_filters or num_filters,
                delta_mode=delta_mode, kernel_parameter=kernel_parameter,
                qualities=qualities, **options))


@register("factorized_prior")
def factorized_prior(num_filters=128, latent_channels=192,
                     delta_mode=saun.NONE, kernel_parameter="rdft",
                     qualities=1):
  """Ballé, Laparra, Simoncelli (ICLR 2017): GDN transforms, factorized prior."""
  return (*_gdn_transforms(num_filters, latent_channels, kernel_parameter),
          latent_codecs.FactorizedLatent(
              latent_channels, delta_mode=delta_mode, qualities=qualities))


@register("scale_hyperprior",
          hyper_kernel="Kernel size of h_s's last layer: 3, or 1 to code "
          "faster for some rate.",
          hyper_filters="Filters of h_a and h_s, and channels of z, of the "
          "scale and mean-scale hyperpriors; 0: --num_filters.")
def scale_hyperprior(num_filters=128, latent_channels=192,
                     delta_mode=saun.NONE, kernel_parameter="rdft",
                     qualities=1, hyper_kernel=3, hyper_filters=0):
  """Ballé et al. (ICLR 2018): GDN transforms, N(0, σ²) with σ from h_s."""
  return _gdn_hyperprior(latent_codecs.ScaleHyperprior, num_filters,
                         latent_channels, delta_mode, kernel_parameter,
                         qualities, hyper_filters, hyper_kernel=hyper_kernel)


@register("mean_scale_hyperprior")
def mean_scale_hyperprior(num_filters=128, latent_channels=192,
                          delta_mode=saun.NONE, kernel_parameter="rdft",
                          qualities=1, hyper_kernel=3, hyper_filters=0):
  """Minnen et al. 2018 without context: GDN transforms, Gaussian (μ, σ) prior."""
  return _gdn_hyperprior(latent_codecs.MeanScaleHyperprior, num_filters,
                         latent_channels, delta_mode, kernel_parameter,
                         qualities, hyper_filters, hyper_kernel=hyper_kernel)


@register("joint_autoregressive")
def joint_autoregressive(num_filters=128, latent_channels=192,
                         delta_mode=saun.NONE, kernel_parameter="rdft",
                         qualities=1):
  """Minnen, Ballé, Toderici (NeurIPS 2018): hyperprior plus causal context."""
  return _gdn_hyperprior(latent_codecs.JointAutoregressive, num_filters,
                         latent_channels, delta_mode, kernel_parameter,
                         qualities)


@register("channelwise_autoregressive",
          num_slices="Channel slices of channelwise_autoregressive.")
def channelwise_autoregressive(num_filters=128, latent_channels=192,
                               delta_mode=saun.NONE, kernel_parameter="rdft",
                               qualities=1, num_slices=6):
  """Minnen & Singh (ICIP 2020): channel slices with latent residual
  prediction."""
  return _gdn_hyperprior(latent_codecs.ChannelwiseAutoregressive,
                         num_filters, latent_channels, delta_mode,
                         kernel_parameter, qualities, num_slices=num_slices)


@register("cheng2020", attention="Attention modules in cheng2020's transforms.")
def cheng2020(num_filters=128, latent_channels=192, delta_mode=saun.NONE,
              kernel_parameter="rdft", qualities=1, attention=False):
  """Cheng et al. (CVPR 2020), the "anchor": residual blocks, sub-pixel
  upsampling, joint context model; `attention` adds the simplified attention
  modules. The likelihood is a single Gaussian (see the README)."""
  return (
      residual.analysis_transform(
          num_filters, latent_channels, kernel_parameter, attention=attention),
      residual.synthesis_transform(
          num_filters, kernel_parameter, attention=attention),
      latent_codecs.JointAutoregressive(
          latent_channels, num_filters, delta_mode=delta_mode,
          kernel_parameter=kernel_parameter, hyper_transforms="residual",
          qualities=qualities),
  )


def options(architecture):
  """The keyword arguments an architecture takes, with their defaults."""
  return _defaults(ARCHITECTURES[architecture])


def _mean(name):
  return tf.keras.metrics.Mean(name=name)


class CompressionModel(tf.keras.Model):
  """An image codec: analysis/synthesis transforms around a latent codec.

  Images enter as floats in [0, 1]. `call` returns (x̂, bits per image).
  The quantization mode of the latent codec, whether the encoder is frozen
  and the precision of the transforms are set by the training schedule
  (`schedule.py`); `phase` records which phase of that schedule the model is
  in, so that checkpoints carry it.

  `lmbdas` holds one λ per quality level. With more than one, the model is a
  rate ladder: the latent codec learns a per-channel step Δ_q per level
  (SAUN), training draws a level for every example and weighs its
  distortion by that level's λ, and coding takes the level as an input.
  With `decoder_gain`, the decoder also learns a per-channel gain γ_q for
  each level, applied to ŷ before g_s (log γ is interpolated at fractional
  levels like log Δ): what g_s sees of a coarse level need not be scaled
  like a fine one.
  """

  # Downsampling of every analysis transform here (four stride-2 stages).
  analysis_downsampling = 16
  # log γ = rate x the decoder gain's weight. Adam moves a weight by about
  # the learning rate per step: at 3e-5, a few thousand steps would move log
  # γ by hundredths, where it needs tenths.
  DECODER_GAIN_RATE = 10.

  def __init__(self, architecture="mean_scale_hyperprior", lmbda=0.01,
               lmbdas=None, decoder_gain=False, **architecture_kwargs):
    super().__init__()
    if architecture not in ARCHITECTURES:
      raise ValueError(
          f"Unknown architecture {architecture!r}; "
          f"known: {', '.join(sorted(ARCHITECTURES))}.")
    self.architecture = architecture
    self.architecture_kwargs = dict(architecture_kwargs)
    self.lmbdas = tuple(float(l) for l in (lmbdas or [lmbda]))
    if list(self.lmbdas) != sorted(set(self.lmbdas)):
      raise ValueError(f"lmbdas {list(self.lmbdas)} must increase: a higher "
                       "quality level has a larger λ.")
    self.analysis, self.synthesis, self.latent_codec = (
        ARCHITECTURES[architecture](qualities=self.qualities,
                                    **architecture_kwargs))
    if self.qualities > 1:
      # Δ_q ∝ λ_q^(-1/2), the high-rate optimum for an MSE distortion; the
      # middle level starts at Δ = 1. Training refines every level.
      middle = (math.log(self.lmbdas[0]) + math.log(self.lmbdas[-1])) / 2
      log_delta = [(middle - math.log(l)) / 2 for l in self.lmbdas]
      self.latent_codec.log_delta.assign(tf.tile(
          tf.constant(log_delta)[:, None],
          [1, self.latent_codec.latent_channels]))
    self.decoder_gain = bool(decoder_gain)
    if self.decoder_gain:
      if self.qualities == 1:
        raise ValueError("A decoder gain is per quality level: it needs a "
                         "ladder (more than one λ).")
      self.decoder_gain_weight = self.add_weight(
          name="decoder_gain_weight", initializer="zeros",
          shape=(self.qualities, self.latent_codec.latent_channels))
    self.downsampling = (
        self.analysis_downsampling * self.latent_codec.downsampling)
    self.phase = tf.Variable(0, trainable=False, dtype=tf.int64, name="phase")
    self.precision = "float32"
    self.metric_trackers = [
        _mean(n) for n in ("loss", "bpp", "mse", "psnr")]

  @property
  def qualities(self):
    return len(self.lmbdas)

  @property
  def lmbda(self):
    """λ of the top quality level (the only one of a single-rate model)."""
    return self.lmbdas[-1]

  def levels(self):
    """The quality levels to evaluate: [None] for a single-rate model."""
    return [None] if self.qualities == 1 else list(range(self.qualities))

  @property
  def mode(self):
    """The quantization mode of the latent codec (`quantization.MODES`)."""
    return self.latent_codec.mode

  @mode.setter
  def mode(self, mode):
    self.latent_codec.mode = mode

  def set_soft_round_alpha(self, alpha):
    """The temperature of the `anneal` mode (0: no rounding at all)."""
    self.latent_codec.set_soft_round_alpha(alpha)

  @property
  def encoder_layers(self):
    """The analysis transforms: frozen in the hard phase of soft-then-hard."""
    return [self.analysis] + self.latent_codec.encoder_layers

  def freeze_encoder(self, frozen=True):
    for layer in self.encoder_layers:
      layer.trainable = not frozen

  def set_precision(self, policy):
    """Runs g_a, g_s, h_a and h_s under a Keras dtype policy ("float32" or
    "mixed_bfloat16"); the entropy model always computes in float32."""
    for transform in [self.analysis, self.synthesis,
                      *self.latent_codec.transforms]:
      layers.set_precision(transform, policy)
    self.precision = policy

  def call(self, x, training=False, level=None):
    if level is None and self.qualities > 1:
      level = self.qualities // 2  # The middle, as e.g. Keras traces call.
    y = tf.cast(self.analysis(x), tf.float32)
    y_hat, bits = self.latent_codec(y, training=training, level=level)
    x_hat = tf.cast(self.synthesis(self.synthesis_input(y_hat, level)),
                    tf.float32)
    return x_hat, bits

  def synthesis_input(self, y_hat, level):
    """ŷ times the decoder gain at `level` (a scalar or one per example)."""
    if not self.decoder_gain:
      return y_hat
    log_gain = self.DECODER_GAIN_RATE * self.decoder_gain_weight
    return y_hat * tf.exp(saun.at_level(log_gain, level))

  def create_variables(self):
    """Builds every layer with one call on a small blank image."""
    size = self.downsampling
    self(tf.zeros((1, size, size, 3)), level=self.levels()[0])

  def sample_levels(self, batch_size):
    """A quality level per example, uniformly (None for one level)."""
    if self.qualities == 1:
      return None
    return tf.random.uniform([batch_size], 0, self.qualities, tf.int32)

  def rate_distortion(self, x, training, level=None):
    """Returns (loss, bpp, mse on the 8-bit scale) for a batch in [0, 1],
    each the mean over the batch, the loss with each example's λ."""
    x_hat, bits = self(x, training=training, level=level)
    if not training:
      x_hat = tf.clip_by_value(x_hat, 0., 1.)
    pixels = tf.cast(tf.reduce_prod(tf.shape(x)[1:-1]), bits.dtype)
    bpp = bits / pixels
    mse = tf.reduce_mean(tf.math.squared_difference(x, x_hat),
                         axis=(1, 2, 3)) * 255. ** 2
    lmbda = self.lmbda if level is None else tf.gather(self.lmbdas, level)
    return (tf.reduce_mean(bpp + lmbda * mse), tf.reduce_mean(bpp),
            tf.reduce_mean(mse))

  def _update_metrics(self, loss, bpp, mse):
    psnr = 10. * tf.math.log(255. ** 2 / mse) / tf.math.log(10.)
    for tracker, value in zip(self.metric_trackers, (loss, bpp, mse, psnr)):
      tracker.update_state(value)
    return {m.name: m.result() for m in self.metric_trackers}

  @property
  def metrics(self):
    return self.metric_trackers

  def train_step(self, x):
    # Read at trace time: the schedule re-traces when it freezes the encoder.
    variables = self.trainable_variables
    levels = self.sample_levels(tf.shape(x)[0])
    with tf.GradientTape() as tape:
      loss, bpp, mse = self.rate_distortion(x, training=True, level=levels)
      # Under tf.distribute the optimizer sums the replicas' gradients: each
      # replica contributes its share of the global mean.
      share = loss / tf.distribute.get_replica_context().num_replicas_in_sync
    gradients = tape.gradient(share, variables)
    self.optimizer.apply_gradients(zip(gradients, variables))
    return self._update_metrics(loss, bpp, mse)

  def test_step(self, x):
    """Means over the quality levels of a ladder."""
    results = [self.rate_distortion(x, training=False, level=level)
               for level in self.levels()]
    return self._update_metrics(
        *(tf.reduce_mean(values) for values in zip(*results)))

  def get_config(self):
    # Only when set, so that configs from before it existed are unchanged.
    gain = dict(decoder_gain=True) if self.decoder_gain else {}
    return dict(architecture=self.architecture, lmbdas=list(self.lmbdas),
                **gain, **self.architecture_kwargs)

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    if "delta" in config:  # Its name in older configs (and exports).
      config["delta_mode"] = config.pop("delta")
    return cls(**config)
