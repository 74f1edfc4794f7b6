"""The Gaussian conditional's rate against an independent computation, and
its range coding tables against tfc's."""

import math

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

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


def _tfc_tables(conditional):
  model = tfc.LocationScaleIndexedEntropyModel(
      tfc.NoisyNormal, conditional.num_scales, conditional._scale,  # pylint: disable=protected-access
      coding_rank=3, compression=True, tail_mass=entropy_models.TAIL_MASS)
  return np.abs(model.cdf.numpy()), model.cdf_offset.numpy()


def test_gaussian_tables_configured_as_tfc_are_tfcs():
  conditional = entropy_models.GaussianConditional()
  conditional.build_tables(reach=0., heavy_tail=0., precision=12)
  cdf, offset = _tfc_tables(conditional)
  np.testing.assert_array_equal(conditional.tables.cdf, cdf)
  np.testing.assert_array_equal(conditional.tables.offset, offset)


def test_values_eight_sigmas_out_are_coded_exactly():
  conditional = entropy_models.GaussianConditional()
  conditional.build_tables()
  _, tfc_offset = _tfc_tables(conditional)
  # Up to 8 σ from the mean, where tfc's rows (cut at TAIL_MASS) end
  # near 5 σ, and at most MAX_REACH steps out for a wide row.
  scale = tf.constant([[[[.3, .8, 2.5, 2.5, 10.]]]])
  y = tf.constant([[[[-3., 6., 20., -20., 64.]]]])
  loc = tf.zeros_like(y)
  rows = conditional.indexes(tf.math.log(scale), None).numpy().ravel()
  assert (np.abs(y.numpy().ravel()) > -tfc_offset[rows.astype(int)]).all()
  strings, _ = conditional.compress(y, loc, tf.math.log(scale))
  decoded, _ = conditional.decompress(strings, loc, tf.math.log(scale))
  np.testing.assert_array_equal(decoded, y)
  # Each costs at most a symbol of least mass, 2^-16 of its row.
  assert len(strings.numpy()[0]) * 8 <= 5 * 16 + 16


def test_gaussian_rows_code_the_heavy_tailed_mixture():
  conditional = entropy_models.GaussianConditional()
  conditional.build_tables()
  tables = conditional.tables
  cdf, offset = tables.cdf.numpy(), tables.offset.numpy()
  starts = np.cumsum(np.r_[0, tables.max_symbol.numpy()[:-1] + 3])
  mass = lambda k, s: (.5 * math.erfc(-(k + .5) / (s * math.sqrt(2.)))
                       - .5 * math.erfc(-(k - .5) / (s * math.sqrt(2.))))
  for row in (0, 10, 20, 30):
    scale = float(conditional._scale(float(row)))  # pylint: disable=protected-access
    assert cdf[starts[row]] == 16  # The row's precision.
    counts = np.diff(cdf[starts[row] + 1:starts[row + 1]])
    values = offset[row] + np.arange(len(counts) - 1)
    expected = [(1. - entropy_models.HEAVY_TAIL) * mass(k, scale)
                + entropy_models.HEAVY_TAIL
                * mass(k, entropy_models.TAIL_WIDTH * scale)
                for k in values]
    # Quantized to 2^-16, every symbol at least one count.
    np.testing.assert_allclose(counts[:-1] / 2. ** 16, expected,
                               atol=4 / 2. ** 16)
    assert counts.min() >= 1
