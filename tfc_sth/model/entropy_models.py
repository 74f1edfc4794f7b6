"""Keras layers around tfc's entropy models, driven by a quantization mode.

`FactorizedPrior` codes a latent with a learned, fully factorized density
(tfc's `ContinuousBatchedEntropyModel` over `NoisyDeepFactorized`);
`GaussianConditional` codes it with a Gaussian whose mean and scale are given
per element (tfc's `LocationScaleIndexedEntropyModel` over `NoisyNormal`),
optionally with a SAUN step Δ (see `saun.py`).

Rates are evaluated here, from tfc's distributions (the Gaussian's directly,
for speed: `noisy_normal_log_prob`), at the value the quantization mode
chooses (`quantization.perturb`): that is what lets context models supply
their own noise, and `anneal` evaluate the soft-rounded density. The tfc
entropy models are used for what only they do: computing range
coding tables, once, by `build_tables()` just before export; the tables then
live in the SavedModel as variables (`RangeTables`) so that encoder and
decoder use identical integers. Coding itself drives tfc's range coder ops
directly, incrementally (`start_encoding`, `encode`, `finish_encoding` and
the decoding counterparts), so that latents whose distribution depends on
what was decoded before (context models, slices) are one string, written and
read in the same order.

Decoding is bounded by construction. tfc codes values beyond a table's range
with an escape symbol followed by an Elias gamma code, and its decoder reads
that code for as long as the input says "more", so a crafted string can keep
it busy forever. Here the tables are used without escapes: a table's last
interval (tfc's escape) is an ordinary symbol, one beyond its range, and
values further out are clipped to the range, in coding and in the model's
own inference alike. Every decoded symbol then costs one table lookup,
whatever the bytes. The tables are built with a small tail mass
(`TAIL_MASS`), so that clipping needs a value the model deems less likely
than one in a million. The Gaussian's tables reach further and code heavier
tails (`gaussian_tables`): the latents' tails are heavier than the model's.

Coding returns the integer symbols too, so that a file can carry a checksum
of them (see `export.py`).
"""

import math

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc
from tensorflow_compression.python.distributions import helpers
from tensorflow_compression.python.ops import gen_ops

from tfc_sth.model import quantization

LOG2 = math.log(2.)
# Probability mass outside a table's range; see the module docstring.
TAIL_MASS = 2 ** -20
# The latents' tails are heavier than the Gaussian the model is trained with.
# Cut at TAIL_MASS alone, the Gaussian's rows clipped 6e-5 of level 10's
# latents on the validation photos (up to 30 steps out), costing 0.06 dB. So
# each row reaches at least TAIL_REACH σ either side of 0, or MAX_REACH steps
# (twice the farthest clipping seen). The rows are 16-bit (tfc's default is
# 12), so that a symbol added costs 2^-16 of its row's mass, and code a
# mixture: HEAVY_TAIL of the mass from a Gaussian TAIL_WIDTH times as wide.
# On 12 training photos, that took 0.9% off the bits of y (3.2% at level 1)
# against 12-bit rows of the Gaussian alone.
GAUSSIAN_PRECISION = 16
TAIL_REACH = 8.
MAX_REACH = 64.
HEAVY_TAIL = .01
TAIL_WIDTH = 2.


class RangeTables(tf.Module):
  """tfc's range coding tables, read without escape symbols.

  `cdf` is tfc's flat table of rows [-precision, cdf...]; the rows are read
  with positive precision, so the last interval of a row is an ordinary
  symbol. Row i codes the integers offset_i .. offset_i + max_symbol_i.
  """

  def __init__(self, cdf, cdf_offset):
    super().__init__()
    cdf = np.asarray(cdf)
    starts = np.flatnonzero(cdf < 0)  # Each row starts with -precision.
    row_sizes = np.diff(np.append(starts, len(cdf)))
    self.cdf = tf.Variable(np.abs(cdf), trainable=False, name="cdf")
    self.offset = tf.Variable(cdf_offset, trainable=False, name="offset")
    # A row holds precision, 0, then one CDF value per symbol.
    self.max_symbol = tf.Variable(row_sizes.astype(np.int32) - 3,
                                  trainable=False, name="max_symbol")

  def clip(self, values, rows):
    """Integers `values` clipped to the range of their table `rows`."""
    low = tf.cast(tf.gather(self.offset, rows), values.dtype)
    high = low + tf.cast(tf.gather(self.max_symbol, rows), values.dtype)
    return tf.clip_by_value(values, low, high)

  def symbols(self, values, rows):
    """Clipped integers -> the range coder's symbols (int32, from 0)."""
    return tf.cast(self.clip(values, rows), tf.int32) - tf.gather(
        self.offset, rows)

  def values(self, symbols, rows, dtype):
    return tf.cast(symbols + tf.gather(self.offset, rows), dtype)

  def start_encoding(self, batch_size):
    return gen_ops.create_range_encoder([batch_size], self.cdf)

  def start_decoding(self, strings):
    return gen_ops.create_range_decoder(strings, self.cdf)


def finish_decoding(handle, value):
  """`value`, once the strings are checked to have been read cleanly."""
  with tf.control_dependencies([tf.debugging.assert_equal(
      gen_ops.entropy_decode_finalize(handle), True,
      message="corrupted payload (range decoder)")]):
    return tf.identity(value)


class EntropyLayer(tf.keras.layers.Layer):
  """Base: a quantization mode and a soft rounding temperature α.

  Both are set by the latent codec that owns the layer: the mode is a Python
  value (the schedule re-traces when it changes), α a variable (it changes
  every step under `anneal`).
  """

  def __init__(self, mode=quantization.NOISE, **kwargs):
    super().__init__(**kwargs)
    self.mode = mode
    # Not tracked: the schedule sets α before every step, so it is no part of
    # a checkpoint or of the exported weights (and checkpoints written before
    # `anneal` existed still restore).
    object.__setattr__(self, "alpha", tf.Variable(
        0., trainable=False, name="soft_round_alpha"))

  @property
  def mode(self):
    return self._mode

  @mode.setter
  def mode(self, mode):
    # The one check of a mode: codecs and models pass theirs down to here.
    self._mode = quantization.check_mode(mode)

  def perturb(self, v, training, noise=None):
    return quantization.perturb(v, self.mode, training, self.alpha, noise)

  def _bits(self, distribution, value, kind, coding_axes=(1, 2, 3)):
    """Bits per batch element of `value` under the density `kind` names."""
    if kind == quantization.SOFT_ROUNDED:
      distribution = tfc.UniformNoiseAdapter(
          tfc.SoftRoundAdapter(distribution.base, self.alpha))
    log_probs = distribution.log_prob(value)
    return -tf.reduce_sum(log_probs, axis=coding_axes) / LOG2

  def get_config(self):
    return dict(super().get_config(), mode=self.mode)

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    if "quantization_mode" in config:  # Its name in older configs.
      config["mode"] = config.pop("quantization_mode")
    return cls(**config)


class FactorizedPrior(EntropyLayer):
  """A latent coded with a learned factorized prior, one density per channel."""

  def __init__(self, channels, **kwargs):
    super().__init__(**kwargs)
    self.channels = int(channels)
    self.prior = tfc.NoisyDeepFactorized(batch_shape=(self.channels,))
    self.tables = None

  def build_tables(self):
    # tfc finds the prior's tails by an iterative search, which runs op by op
    # (10 s) when eager and in under a second as a graph.
    @tf.function(autograph=False)
    def tables():
      # Rounding to integers rather than to the prior's median offsets, as
      # in training (where the offset would drift at every hard step).
      model = tfc.ContinuousBatchedEntropyModel(
          self.prior, coding_rank=3, offset_heuristic=False,
          compression=True, stateless=True, tail_mass=TAIL_MASS)
      return model.cdf, model.cdf_offset

    self.tables = RangeTables(*(t.numpy() for t in tables()))

  def _channels(self, z):
    return tf.broadcast_to(tf.range(self.channels), tf.shape(z))

  def call(self, z, training=False):
    """Returns (ẑ or z̃, bits per batch element)."""
    z_rate, z_hat, kind = self.perturb(z, training)
    if not training and self.tables is not None:  # As coded.
      z_rate = z_hat = self.tables.clip(z_hat, self._channels(z))
    return z_hat, self._bits(self.prior, z_rate, kind)

  def compress(self, z):
    """z -> (strings, integer symbols)."""
    symbols = self.tables.symbols(tf.round(z), self._channels(z))
    handle = self.tables.start_encoding(tf.shape(z)[0])
    handle = gen_ops.entropy_encode_channel(handle, symbols)
    return gen_ops.entropy_encode_finalize(handle), symbols

  def decompress(self, strings, shape):
    """-> (ẑ [B, *shape, channels], integer symbols)."""
    handle = self.tables.start_decoding(strings)
    handle, symbols = gen_ops.entropy_decode_channel(
        handle, tf.concat([shape, [self.channels]], 0), tf.int32)
    symbols = finish_decoding(handle, symbols)
    return self.tables.values(symbols, self._channels(symbols),
                              tf.float32), symbols

  def get_config(self):
    return dict(super().get_config(), channels=self.channels)


def gaussian_tables(scales, reach=TAIL_REACH, heavy_tail=HEAVY_TAIL,
                    precision=GAUSSIAN_PRECISION):
  """RangeTables with a row per scale s, for N(0, s²) convolved with U(-½, ½),
  mixed with `heavy_tail` of the same for a scale TAIL_WIDTH·s.

  Each row spans the integers from tfc's tails (of N(0, s²), at TAIL_MASS),
  widened to at least ±min(⌈reach·s⌉, MAX_REACH). With `reach` and
  `heavy_tail` 0 and `precision` 12, the rows are tfc's
  (`LocationScaleIndexedEntropyModel`'s), computed the same way.
  """
  prior = tfc.NoisyNormal(loc=0., scale=scales)
  wide = tfc.NoisyNormal(loc=0., scale=TAIL_WIDTH * scales)
  half_width = np.ceil(np.minimum(reach * scales.numpy(), MAX_REACH))
  low = np.minimum(np.floor(helpers.lower_tail(prior, TAIL_MASS)), -half_width)
  high = np.maximum(np.ceil(helpers.upper_tail(prior, TAIL_MASS)), half_width)
  lengths = (high - low + 1).astype(np.int32)
  # One batched evaluation, as tfc samples its densities (with heavy_tail 0,
  # exactly the Gaussian's).
  samples = np.arange(lengths.max(), dtype=np.float32)[:, None] + low
  pmfs = ((1. - heavy_tail) * prior.prob(samples)
          + heavy_tail * wide.prob(samples))
  rows = []
  for pmf, length in zip(tf.transpose(pmfs).numpy(), lengths):
    pmf = pmf[:length]
    # tfc's overflow interval, here an ordinary symbol (see RangeTables).
    pmf = np.append(pmf, max(1. - pmf.sum(dtype=np.float32), 0.))
    rows += [[-precision], gen_ops.pmf_to_quantized_cdf(
        pmf.astype(np.float32), precision=precision).numpy()]
  return RangeTables(np.concatenate(rows).astype(np.int32),
                     low.astype(np.int32))


def noisy_normal_log_prob(v, scale):
  """log p(v) of N(0, scale²) convolved with U(-½, ½): log(Φ((v + ½)/σ) -
  Φ((v - ½)/σ)), what tfc's `NoisyNormal(0, σ).log_prob` gives, in a third
  of its time (a training step spent 10% of its time there). The density
  is even, so both points are taken left of the mean, where log Φ is
  precise, and tfc's choice between log Φ and log(1 - Φ) is not needed."""
  left = -tf.abs(v)
  upper = _log_ndtr((left + .5) / scale)
  lower = _log_ndtr((left - .5) / scale)
  return upper + tf.math.log1p(-tf.exp(lower - upper))


def _log_ndtr(x, tail=-10.):
  """log Φ(x): from erfc down to `tail` (erfc underflows float32 at about
  -13), then the asymptotic series -x²/2 - log(-x√(2π)) + log(1 - x⁻² +
  3x⁻⁴). Each branch sees only inputs it is finite on, so that neither
  gives NaN gradients through `where`."""
  near, far = tf.maximum(x, tail), tf.minimum(x, tail)
  from_erfc = tf.math.log(tf.math.erfc(near * -math.sqrt(.5))) - math.log(2.)
  inverse_square = 1. / tf.square(far)
  series = (-.5 * tf.square(far) - tf.math.log(-far)
            - .5 * math.log(2 * math.pi)
            + tf.math.log1p(inverse_square * (3. * inverse_square - 1.)))
  return tf.where(x > tail, from_erfc, series)


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
    self.tables = None

  def _scale(self, indexes):
    return tf.exp(self._log_min + self._log_step * indexes)

  def build_tables(self, **options):
    """The range coding tables; `options` as `gaussian_tables`'."""
    self.tables = gaussian_tables(
        self._scale(tf.range(self.num_scales, dtype=tf.float32)), **options)

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
    scale = self._scale(indexes)
    if kind == quantization.SOFT_ROUNDED:
      return self._bits(tfc.NoisyNormal(loc=0., scale=scale), v, kind,
                        coding_axes)
    return -tf.reduce_sum(noisy_normal_log_prob(v, scale),
                          axis=coding_axes) / LOG2

  def round(self, v, log_scale, delta):
    """round(v), within the coding tables' range once they are built: the
    integers coding sends for a normalised latent v (with a straight-through
    gradient, which latent refinement descends)."""
    v_hat = tfc.round_st(v)
    if self.tables is None:
      return v_hat
    return self.tables.clip(v_hat, self._rows(log_scale, delta))

  def _rows(self, log_scale, delta):
    return tf.cast(self.indexes(log_scale, delta), tf.int32)

  def call(self, y, loc, log_scale, delta=None, training=False, noise=None):
    """Returns (ŷ or ỹ, bits per batch element).

    `noise`, if given, is the unit uniform noise of the noisy modes, so that
    a context model can see ỹ = y + Δ·noise before μ is known.
    """
    v = self.normalize(y, loc, delta)
    v_rate, v_hat, kind = self.perturb(v, training, noise)
    if not training and self.tables is not None:  # As coded.
      v_rate = v_hat = self.round(v, log_scale, delta)
    return (self.denormalize(v_hat, loc, delta),
            self.bits(v_rate, log_scale, delta, kind))

  def compress(self, y, loc, log_scale, delta=None):
    """-> (strings, integer symbols)."""
    handle = self.start_encoding(tf.shape(y)[0])
    handle, _, symbols = self.encode(handle, y, loc, log_scale, delta)
    return self.finish_encoding(handle), symbols

  def decompress(self, strings, loc, log_scale, delta=None):
    """-> (ŷ, integer symbols)."""
    handle = self.start_decoding(strings)
    handle, y_hat, symbols = self.decode(handle, loc, log_scale, delta)
    return finish_decoding(handle, y_hat), symbols

  # Incremental coding: one string per batch element, appended to in order.

  def start_encoding(self, batch_size):
    return self.tables.start_encoding(batch_size)

  def encode(self, handle, y, loc, log_scale, delta=None):
    """Appends the integers of (y - μ)/Δ to the strings; returns (handle,
    ŷ, symbols)."""
    rows = self._rows(log_scale, delta)
    symbols = self.tables.symbols(tf.round(self.normalize(y, loc, delta)),
                                  rows)
    handle = gen_ops.entropy_encode_index(handle, rows, symbols)
    v_hat = self.tables.values(symbols, rows, loc.dtype)
    return handle, self.denormalize(v_hat, loc, delta), symbols

  @staticmethod
  def finish_encoding(handle):
    return gen_ops.entropy_encode_finalize(handle)

  def start_decoding(self, strings):
    return self.tables.start_decoding(strings)

  def decode(self, handle, loc, log_scale, delta=None):
    """Reads what `encode` appended; returns (handle, ŷ, symbols)."""
    rows = self._rows(log_scale, delta)
    handle, symbols = gen_ops.entropy_decode_index(
        handle, rows, tf.shape(rows)[1:], tf.int32)
    v_hat = self.tables.values(symbols, rows, loc.dtype)
    return handle, self.denormalize(v_hat, loc, delta), symbols

  def get_config(self):
    return dict(super().get_config(), num_scales=self.num_scales,
                scale_min=self.scale_min, scale_max=self.scale_max)
