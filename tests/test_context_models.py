"""The causal context and the wavefront recursion that codes with it."""

import numpy as np
import pytest
import tensorflow as tf

from tfc_sth.model import context_models
from tfc_sth.model import latent_codecs
from tfc_sth.model import saun


def _context(channels=3, filters=4, seed=0):
  tf.keras.utils.set_random_seed(seed)
  context = context_models.CausalContext(filters)
  context.build((None, None, None, channels))
  context.bias.assign(tf.random.normal(context.bias.shape))
  return context


def test_context_sees_only_earlier_positions_in_raster_order():
  context = _context()
  y = tf.random.normal((1, 7, 6, 3))
  base = context(y).numpy()
  i, j = 3, 2
  for (a, b) in [(i, j), (i, j + 1), (i + 1, j - 2), (6, 0)]:  # Not before.
    changed = tf.tensor_scatter_nd_add(y, [[0, a, b]], [[5., 5., 5.]])
    np.testing.assert_array_equal(context(changed)[0, i, j], base[0, i, j])
  for (a, b) in [(i, j - 1), (i - 1, j + 2), (i - 2, j - 2)]:  # Before.
    changed = tf.tensor_scatter_nd_add(y, [[0, a, b]], [[5., 5., 5.]])
    assert not np.allclose(context(changed)[0, i, j], base[0, i, j])


@pytest.mark.parametrize("height, width", [(1, 1), (5, 4), (3, 9)])
def test_wavefronts_see_what_the_masked_convolution_sees(height, width):
  """Fed known values, every wavefront's context is the convolution's."""
  context = _context()
  y = tf.random.normal((2, height, width, 3))
  visited = tf.zeros((height, width), tf.int32)

  def step(visited, positions, context_output, at):
    # Record the visit and the context output, and "decode" y itself.
    visited = tf.tensor_scatter_nd_add(
        visited, positions, tf.ones(tf.shape(positions)[:1], tf.int32))
    step.outputs.append((positions, context_output))
    return visited, at[0]

  step.outputs = []
  y_hat, visited = context_models.autoregress(context, (y,), step, visited,
                                              channels=3)
  np.testing.assert_array_equal(y_hat, y)
  np.testing.assert_array_equal(visited, np.ones((height, width)))
  expected = context(y).numpy()
  for positions, output in step.outputs:
    for p, (i, j) in enumerate(positions.numpy()):
      np.testing.assert_allclose(output[:, p], expected[:, i, j], atol=1e-5)


@pytest.mark.parametrize("delta_mode", [saun.NONE, saun.HYPER])
def test_serial_latent_is_the_mean_centred_rounding_of_its_own_prediction(
    delta_mode):
  """ŷ = Δ·round((y - μ(ŷ))/Δ) + μ(ŷ), with μ(ŷ) from the parallel context."""
  tf.keras.utils.set_random_seed(1)
  codec = latent_codecs.JointAutoregressive(6, 8, delta_mode=delta_mode)
  y = 3 * tf.random.normal((1, 8, 12, 6))
  codec(y)
  for weight in codec.context.weights + codec.entropy_parameters.weights:
    weight.assign(weight * 3)  # A context that matters.
  y_hat, _ = codec(y, training=False)
  z_hat, _ = codec.hyper_prior(codec.hyper_analysis(y), training=False)
  features, delta_value = codec._hyper_parameters(z_hat, None)
  loc, _ = codec._gaussian(features, codec.context(y_hat))
  step = 1. if delta_value is None else delta_value
  q = tf.round((y - loc) / step)
  mismatch = np.abs((q * step + loc - y_hat).numpy())
  # Exact up to float rounding, and no rounding tie decided differently.
  assert mismatch.max() < 1e-3
  assert np.std(loc.numpy()) > 0.1
