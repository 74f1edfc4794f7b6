"""Keras layers around tfc's entropy models, driven by a quantization mode.

`FactorizedPrior` codes a latent with a learned, fully factorized density
(tfc's `ContinuousBatchedEntropyModel` over `NoisyDeepFactorized`);
`GaussianConditional` codes it with a Gaussian whose mean and scale are given
per element (tfc's `LocationScaleIndexedEntropyModel` over `NoisyNormal`),
optionally with a SAUN step Δ (see `saun.py`).

Rates are evaluated here, from tfc's distributions, at the value the
quantization mode chooses (`quantization.perturb`): that is what lets context
models supply their own noise, and `anneal` evaluate the soft-rounded
density. The tfc entropy models are used for what only they do: range coding
tables and coding. They are built with `compression=False` for training and
rebuilt once with tables by `build_tables()`, just before export; the tables
then live in the SavedModel as variables so that encoder and decoder use
identical integers.

`GaussianConditional` also codes incrementally (`start_encoding`, `encode`,
`finish_encoding` and the decoding counterparts), for latents whose
distribution depends on what was decoded before (context models, slices):
one string, written and read in the same order.
"""

import math

import tensorflow as tf
import tensorflow_compression as tfc
from tensorflow_compression.python.ops import gen_ops

from tfc_sth import quantization

LOG2 = math.log(2.)


class EntropyLayer(tf.keras.layers.Layer):
  """Base: a quantization mode and a soft rounding temperature α.

  Both are set by the training schedule through the model: the mode is a
  Python value (the schedule re-traces when it changes), α a variable
  (it changes every step under `anneal`).
  """

  def __init__(self, quantization_mode=quantization.NOISE, **kwargs):
    super().__init__(**kwargs)
    self.quantization = quantization_mode
    # Not tracked: the schedule sets α before every step, so it is no part of
    # a checkpoint or of the exported weights (and checkpoints written before
    # `anneal` existed still restore).
    object.__setattr__(self, "alpha", tf.Variable(
        0., trainable=False, name="soft_round_alpha"))

  @property
  def quantization(self):
    return self._quantization

  @quantization.setter
  def quantization(self, mode):
    self._quantization = quantization.check_mode(mode)

  def perturb(self, v, training, noise=None):
    return quantization.perturb(v, self.quantization, training, self.alpha,
                                noise)

  def _bits(self, distribution, value, kind, coding_axes=(1, 2, 3)):
    """Bits per batch element of `value` under the density `kind` names."""
    if kind == quantization.SOFT_ROUNDED:
      distribution = tfc.UniformNoiseAdapter(
          tfc.SoftRoundAdapter(distribution.base, self.alpha))
    log_probs = distribution.log_prob(value)
    return -tf.reduce_sum(log_probs, axis=coding_axes) / LOG2

  def get_config(self):
    return dict(super().get_config(), quantization_mode=self.quantization)


class FactorizedPrior(EntropyLayer):
  """A latent coded with a learned factorized prior, one density per channel."""

  def __init__(self, channels, **kwargs):
    super().__init__(**kwargs)
    self.channels = int(channels)
    self.prior = tfc.NoisyDeepFactorized(batch_shape=(self.channels,))
    self.entropy_model = self._make_entropy_model(self.prior,
                                                  compression=False)

  @staticmethod
  def _make_entropy_model(prior, **options):
    # Rounding to integers rather than to the prior's median offsets: the
    # offset heuristic would be re-estimated at every hard-phase step, and
    # training would round to a grid that drifts away from the coded one.
    return tfc.ContinuousBatchedEntropyModel(
        prior, coding_rank=3, offset_heuristic=False, **options)

  def build_tables(self):
    # tfc finds the prior's tails by an iterative search, which runs op by op
    # (10 s) when eager and in under a second as a graph: compute the same
    # tables in a graph, then keep them in a model that holds only tables.
    @tf.function(autograph=False)
    def tables():
      model = self._make_entropy_model(
          self.prior, compression=True, stateless=True)
      return model.cdf, model.cdf_offset

    cdf, cdf_offset = tables()
    self.entropy_model = self._make_entropy_model(
        None, compression=True, prior_shape=(self.channels,), cdf=cdf,
        cdf_offset=cdf_offset)

  def call(self, z, training=False):
    """Returns (ẑ or z̃, bits per batch element)."""
    z_rate, z_hat, kind = self.perturb(z, training)
    return z_hat, self._bits(self.prior, z_rate, kind)

  def compress(self, z):
    return self.entropy_model.compress(z)

  def decompress(self, strings, shape):
    return self.entropy_model.decompress(strings, shape)

  def get_config(self):
    return dict(super().get_config(), channels=self.channels)


class GaussianConditional(EntropyLayer):
  """A latent coded with per-element Gaussians N(μ, σ²) and an optional Δ.

  Scales are taken from a log-spaced table of `num_scales` values in
  [scale_min, scale_max]; the table index of each element is computed from
  log σ - log Δ. Where the rate is a discrete likelihood (inference, `ste` and
  `hard`), the index is rounded (straight-through) so that the estimated rate
  is the one the range coder achieves with the same table.
  """

  def __init__(self, num_scales=64, scale_min=0.11, scale_max=256., **kwargs):
    super().__init__(**kwargs)
    self.num_scales = int(num_scales)
    self.scale_min = float(scale_min)
    self.scale_max = float(scale_max)
    self._log_min = math.log(self.scale_min)
    self._log_step = (
        math.log(self.scale_max) - self._log_min) / (self.num_scales - 1)
    self.entropy_model = self._make_entropy_model(compression=False)

  def _scale(self, indexes):
    return tf.exp(self._log_min + self._log_step * indexes)

  def _make_entropy_model(self, compression):
    return tfc.LocationScaleIndexedEntropyModel(
        tfc.NoisyNormal, self.num_scales, self._scale,
        coding_rank=3, compression=compression)

  def build_tables(self):
    self.entropy_model = self._make_entropy_model(compression=True)

  def indexes(self, log_scale, delta, discrete=True):
    """Scale table indexes for log σ (of y) and Δ: the table holds σ/Δ."""
    if delta is not None:
      log_scale -= tf.math.log(delta)
    indexes = (log_scale - self._log_min) / self._log_step
    indexes = tf.clip_by_value(indexes, 0., self.num_scales - 1.)
    return tfc.round_st(indexes) if discrete else indexes

  @staticmethod
  def normalize(y, loc, delta):
    v = y - loc
    return v if delta is None else v / delta

  @staticmethod
  def denormalize(v, loc, delta):
    return (v if delta is None else v * delta) + loc

  def bits(self, v, log_scale, delta, kind, coding_axes=(1, 2, 3)):
    """Bits of a normalised latent `v` (integers if kind is DISCRETE)."""
    indexes = self.indexes(log_scale, delta, kind == quantization.DISCRETE)
    return self._bits(tfc.NoisyNormal(loc=0., scale=self._scale(indexes)), v,
                      kind, coding_axes)

  def call(self, y, loc, log_scale, delta=None, training=False, noise=None):
    """Returns (ŷ or ỹ, bits per batch element).

    `noise`, if given, is the unit uniform noise of the noisy modes, so that
    a context model can see ỹ = y + Δ·noise before μ is known.
    """
    v_rate, v_hat, kind = self.perturb(
        self.normalize(y, loc, delta), training, noise)
    return (self.denormalize(v_hat, loc, delta),
            self.bits(v_rate, log_scale, delta, kind))

  def compress(self, y, loc, log_scale, delta=None):
    return self.entropy_model.compress(
        self.normalize(y, loc, delta), self.indexes(log_scale, delta))

  def decompress(self, strings, loc, log_scale, delta=None):
    v = self.entropy_model.decompress(strings, self.indexes(log_scale, delta))
    return self.denormalize(v, loc, delta)

  # Incremental coding: one string per batch element, appended to in order.

  def _symbols_offset(self, indexes):
    indexes = tf.cast(indexes, tf.int32)
    return indexes, tf.gather(self.entropy_model.cdf_offset, indexes)

  def start_encoding(self, batch_size):
    return gen_ops.create_range_encoder([batch_size], self.entropy_model.cdf)

  def encode(self, handle, y, loc, log_scale, delta=None):
    """Appends round((y - μ)/Δ) to the strings; returns (handle, ŷ)."""
    v_hat = tf.round(self.normalize(y, loc, delta))
    indexes, offset = self._symbols_offset(self.indexes(log_scale, delta))
    handle = gen_ops.entropy_encode_index(
        handle, indexes, tf.cast(v_hat, tf.int32) - offset)
    return handle, self.denormalize(v_hat, loc, delta)

  @staticmethod
  def finish_encoding(handle):
    return gen_ops.entropy_encode_finalize(handle)

  def start_decoding(self, strings):
    return gen_ops.create_range_decoder(strings, self.entropy_model.cdf)

  def decode(self, handle, loc, log_scale, delta=None):
    """Reads what `encode` appended; returns (handle, ŷ)."""
    indexes, offset = self._symbols_offset(self.indexes(log_scale, delta))
    handle, symbols = gen_ops.entropy_decode_index(
        handle, indexes, tf.shape(indexes)[1:], tf.int32)
    v_hat = tf.cast(symbols + offset, loc.dtype)
    return handle, self.denormalize(v_hat, loc, delta)

  @staticmethod
  def finish_decoding(handle, y_hat):
    """`y_hat`, once the strings are checked to have been read cleanly."""
    with tf.control_dependencies([tf.debugging.assert_equal(
        gen_ops.entropy_decode_finalize(handle), True,
        message="corrupted y_string")]):
      return tf.identity(y_hat)

  def get_config(self):
    return dict(super().get_config(), num_scales=self.num_scales,
                scale_min=self.scale_min, scale_max=self.scale_max)
