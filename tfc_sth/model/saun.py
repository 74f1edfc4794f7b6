"""Scaled additive uniform noise (SAUN): a learned quantization step Δ > 0.

With a step Δ, the latent y is coded as q = round((y - μ) / Δ) and decoded as
ŷ = Δ·q + μ. Training replaces rounding by y + Δ·u, u ~ U(-1/2, 1/2).

The rate. If y ~ N(μ, σ²), then v = (y - μ) / Δ ~ N(0, (σ/Δ)²), and the noisy
latent ỹ = Δ·(v + u) + μ has density p(ỹ) = p_v(v + u) / Δ, where p_v is the
normal density of scale σ/Δ convolved with a unit-width uniform. The bound
used for training is therefore

    -log2 p(ỹ) - log2 Δ = -log2 p_v(v + u),

the unit-bin likelihood of the normalised latent under scale σ/Δ. This is
exactly what tfc's `NoisyNormal` entropy model computes when given (y - μ)/Δ
and scale σ/Δ, so SAUN needs no entropy model of its own: the latent codec
divides by Δ before the entropy model and multiplies after it. At inference
the rate is the discrete likelihood of q under scale σ/Δ, which is what the
range coder spends.

Δ is part of the model, never side information: per channel it is a weight of
the codec; predicted from the hyperprior it is recomputed by the decoder from
the hyper-latent ẑ.
"""

import math

import numpy as np

import tensorflow as tf
import tensorflow_compression as tfc

NONE = "none"
CHANNEL = "channel"
HYPER = "hyper"
DELTA_MODES = (NONE, CHANNEL, HYPER)

# Below this step the coded values would grow without bound; far below any
# step that makes sense for a latent of unit-scale noise.
MIN_DELTA = 1 / 64


def check_delta_mode(mode):
  if mode not in DELTA_MODES:
    raise ValueError(f"Unknown Δ mode {mode!r}; expected one of {DELTA_MODES}.")
  return mode


def delta_from_log(log_delta):
  """Δ = exp(log Δ), bounded below by `MIN_DELTA` (gradient kept towards it)."""
  return tf.exp(tfc.lower_bound(log_delta, math.log(MIN_DELTA)))



def at_level(table, level):
  """A row of a [levels, channels] table (log Δ, log gain) at a quality level.

  `level` counts from 0 and may be fractional: the row is then interpolated
  linearly between the two levels around it, which gives rates between
  theirs. An integer level reads its row exactly. `level` is a scalar
  ([channels]) or one level per batch element ([B, 1, 1, channels], to
  broadcast against latents).
  """
  last = tf.cast(tf.shape(table)[0] - 1, tf.float32)
  level = tf.clip_by_value(tf.cast(level, tf.float32), 0., last)
  low = tf.floor(level)
  weight = (level - low)[..., None]
  low = tf.cast(low, tf.int32)
  high = tf.minimum(low + 1, tf.cast(last, tf.int32))
  row = tf.gather(table, low) * (1. - weight) + tf.gather(table, high) * weight
  return row[:, None, None, :] if row.shape.rank == 2 else row


def resample_levels(table, lmbdas, new_lmbdas, high_rate_law=True):
  """A [levels, channels] table (log Δ, log gain) for a ladder's λs, from
  another ladder's.

  Between the source's λs, rows are interpolated linearly in log λ. Beyond
  them, log Δ follows the high-rate law Δ ∝ λ^(-1/2) from the nearest level;
  without `high_rate_law` (a gain), the row is the nearest level's. A
  single-rate table ([channels]) is a ladder of one level.
  """
  table = np.reshape(table, (len(lmbdas), -1))
  source = np.log(lmbdas)
  rows = []
  for lmbda in np.log(new_lmbdas):
    nearest = int(np.argmin(np.abs(source - lmbda)))
    if source[0] <= lmbda <= source[-1] and len(source) > 1:
      high = int(np.clip(np.searchsorted(source, lmbda), 1, len(source) - 1))
      weight = (lmbda - source[high - 1]) / (source[high] - source[high - 1])
      rows.append((1 - weight) * table[high - 1] + weight * table[high])
    else:
      law = (source[nearest] - lmbda) / 2 if high_rate_law else 0.
      rows.append(table[nearest] + law)
  return np.stack(rows).astype(np.float32)
