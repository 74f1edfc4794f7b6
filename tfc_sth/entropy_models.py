"""Keras layers around tfc's entropy models, driven by a quantization mode.

`FactorizedPrior` codes a latent with a learned, fully factorized density
(tfc's `ContinuousBatchedEntropyModel` over `NoisyDeepFactorized`);
`GaussianConditional` codes it with a Gaussian whose mean and scale are given
per element (tfc's `LocationScaleIndexedEntropyModel` over `NoisyNormal`),
optionally with a SAUN step Δ (see `saun.py`).

Both are trained with `compression=False` tfc models and switch to range
coding tables once, with `build_tables()`, just before export; the tables then
live in the SavedModel as variables so that encoder and decoder use identical
integers.
"""

import math

import tensorflow as tf
import tensorflow_compression as tfc

from tfc_sth import quantization


class _ModeMixin:
  """The quantization mode, set by the training schedule."""

  @property
  def quantization(self):
    return self._quantization

  @quantization.setter
  def quantization(self, mode):
    self._quantization = quantization.check_mode(mode)


class FactorizedPrior(_ModeMixin, tf.keras.layers.Layer):
  """A latent coded with a learned factorized prior, one density per channel."""

  def __init__(self, channels, quantization_mode=quantization.NOISE, **kwargs):
    super().__init__(**kwargs)
    self.channels = int(channels)
    self.quantization = quantization_mode
    self.prior = tfc.NoisyDeepFactorized(batch_shape=(self.channels,))
    self.entropy_model = self._make_entropy_model(compression=False)

  def _make_entropy_model(self, compression):
    # Rounding to integers rather than to the prior's median offsets: the
    # offset heuristic would be re-estimated at every hard-phase step, and
    # training would round to a grid that drifts away from the coded one.
    return tfc.ContinuousBatchedEntropyModel(
        self.prior, coding_rank=3, compression=compression,
        offset_heuristic=False)

  def build_tables(self):
    self.entropy_model = self._make_entropy_model(compression=True)

  def call(self, z, training=False):
    """Returns (ẑ or z̃, bits per batch element)."""
    return quantization.quantize(
        self.entropy_model, self.entropy_model.quantize, z,
        self.quantization, training)

  def compress(self, z):
    return self.entropy_model.compress(z)

  def decompress(self, strings, shape):
    return self.entropy_model.decompress(strings, shape)

  def get_config(self):
    return dict(super().get_config(), channels=self.channels,
                quantization_mode=self.quantization)


class GaussianConditional(_ModeMixin, tf.keras.layers.Layer):
  """A latent coded with per-element Gaussians N(μ, σ²) and an optional Δ.

  Scales are taken from a log-spaced table of `num_scales` values in
  [scale_min, scale_max]; the table index of each element is computed from
  log σ - log Δ. Where the rate is a discrete likelihood (inference, `ste` and
  `hard`), the index is rounded (straight-through) so that the estimated rate
  is the one the range coder achieves with the same table.
  """

  def __init__(self, quantization_mode=quantization.NOISE, num_scales=64,
               scale_min=0.11, scale_max=256., **kwargs):
    super().__init__(**kwargs)
    self.quantization = quantization_mode
    self.num_scales = int(num_scales)
    self.scale_min = float(scale_min)
    self.scale_max = float(scale_max)
    self._log_min = math.log(self.scale_min)
    self._log_step = (
        math.log(self.scale_max) - self._log_min) / (self.num_scales - 1)
    self.entropy_model = self._make_entropy_model(compression=False)

  def _make_entropy_model(self, compression):
    log_min, log_step = self._log_min, self._log_step
    return tfc.LocationScaleIndexedEntropyModel(
        tfc.NoisyNormal, self.num_scales,
        lambda i: tf.exp(log_min + log_step * i),
        coding_rank=3, compression=compression)

  def build_tables(self):
    self.entropy_model = self._make_entropy_model(compression=True)

  def _indexes(self, log_scale, delta, discrete):
    if delta is not None:
      log_scale -= tf.math.log(delta)
    indexes = (log_scale - self._log_min) / self._log_step
    indexes = tf.clip_by_value(indexes, 0., self.num_scales - 1.)
    return tfc.round_st(indexes) if discrete else indexes

  @staticmethod
  def _normalize(y, loc, delta):
    v = y - loc
    return v if delta is None else v / delta

  @staticmethod
  def _denormalize(v, loc, delta):
    return (v if delta is None else v * delta) + loc

  def call(self, y, loc, log_scale, delta=None, training=False):
    """Returns (ŷ or ỹ, bits per batch element)."""
    v = self._normalize(y, loc, delta)

    def entropy_model_call(value, noisy):
      indexes = self._indexes(log_scale, delta, discrete=not noisy)
      return self.entropy_model(value, indexes, training=noisy)

    v_hat, bits = quantization.quantize(
        entropy_model_call, tfc.round_st, v, self.quantization, training)
    return self._denormalize(v_hat, loc, delta), bits

  def compress(self, y, loc, log_scale, delta=None):
    v = self._normalize(y, loc, delta)
    return self.entropy_model.compress(
        v, self._indexes(log_scale, delta, discrete=True))

  def decompress(self, strings, loc, log_scale, delta=None):
    v = self.entropy_model.decompress(
        strings, self._indexes(log_scale, delta, discrete=True))
    return self._denormalize(v, loc, delta)

  def get_config(self):
    return dict(super().get_config(), quantization_mode=self.quantization,
                num_scales=self.num_scales, scale_min=self.scale_min,
                scale_max=self.scale_max)
