"""The Gaussian conditional's rate against an independent computation."""

import math

import numpy as np
import tensorflow as tf

from tfc_sth.model import entropy_models


def _reference(v, scale):
  """log(Φ((v + ½)/σ) - Φ((v - ½)/σ)) in float64 from the standard
  library's erfc, on the left of the mean (no cancellation)."""
  left = -abs(v)
  cdf = lambda x: .5 * math.erfc(-x / math.sqrt(2.))
  return math.log(cdf((left + .5) / scale) - cdf((left - .5) / scale))


def test_noisy_normal_log_prob_matches_cdf_differences():
  # From the mode to 30 σ out (where float64's erfc still holds), σ over
  # the scale table's range, both signs.
  values, scales = np.meshgrid(
      np.concatenate([np.linspace(-5, 5, 41), np.geomspace(5, 2000, 30)]),
      np.geomspace(.11, 256., 25))
  keep = np.abs(values) / scales < 30
  values, scales = values[keep], scales[keep]
  got = entropy_models.noisy_normal_log_prob(
      tf.constant(values, tf.float32), tf.constant(scales, tf.float32))
  # The inputs' own float32 rounding moves the exact value by about this.
  expected = [_reference(float(np.float32(v)), float(np.float32(s)))
              for v, s in zip(values, scales)]
  np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-5)


def test_noisy_normal_log_prob_far_tail_is_finite_with_finite_gradients():
  # Beyond erfc's range: the asymptotic series, -x²/2 dominating.
  v = tf.constant([60., -500., 3000.])
  scale = tf.constant([.11, 1., 2.])
  with tf.GradientTape() as tape:
    tape.watch([v, scale])
    log_prob = entropy_models.noisy_normal_log_prob(v, scale)
  gradients = tape.gradient(log_prob, [v, scale])
  # log p ≈ log φ(x) for a density flat over the bin, x = (|v| - ½)/σ.
  x = (np.abs(v.numpy()) - .5) / scale.numpy()
  approximate = -x ** 2 / 2 - np.log(x * np.sqrt(2 * np.pi))
  np.testing.assert_allclose(log_prob, approximate, rtol=1e-2)
  assert all(np.isfinite(g).all() for g in gradients)
