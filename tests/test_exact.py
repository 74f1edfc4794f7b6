"""Exact entropy-parameter layers: sums computed without rounding."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tfc_sth.model import context_models
from tfc_sth.model import exact
from tfc_sth.model import layers


def _integers(values, bits):
  return np.round(np.asarray(values, np.float64) * 2. ** bits).astype(np.int64)


def test_a_dense_layer_sums_exactly():
  """Against int64 arithmetic on the same fixed-point operands."""
  tf.keras.utils.set_random_seed(0)
  layer = layers.Dense(384)
  # Large, varied inputs: float32 sums of these round differently by order.
  inputs = tf.random.normal((3, 2304), stddev=300.)
  layer.build(inputs.shape)
  layer.bias.assign(tf.random.normal((384,)))
  exact.make_exact(layer)
  kernel = layer.kernel.numpy()
  kernel_bits = exact.KERNEL_BITS - 1 - math.frexp(np.abs(kernel).max())[1]
  sums = (_integers(np.clip(inputs, -exact.INPUT_LIMIT, exact.INPUT_LIMIT),
                    exact.FRACTION_BITS)
          @ _integers(kernel, kernel_bits))
  assert np.abs(sums).max() < 2 ** 53
  expected = (sums * 2. ** -(exact.FRACTION_BITS + kernel_bits)
              + layer.bias.numpy().astype(np.float64)).astype(np.float32)
  np.testing.assert_array_equal(layer(inputs).numpy(), expected)


def test_exact_layers_stay_close_to_float_ones():
  tf.keras.utils.set_random_seed(1)
  inputs = tf.random.normal((1, 12, 16, 24))
  conv = layers.conv(32, 5, 2, True, "variable", tf.nn.relu)
  context = context_models.CausalContext(32)
  for layer in (conv, context):
    expected = layer(inputs)
    exact.make_exact(layer)
    np.testing.assert_allclose(layer(inputs), expected, atol=2e-3, rtol=1e-3)


def test_the_context_models_two_paths_agree_exactly():
  """The parallel convolution and the per-position product of decoding."""
  tf.keras.utils.set_random_seed(2)
  context = context_models.CausalContext(8, 5)
  y_hat = tf.round(tf.random.normal((1, 6, 7, 4), stddev=5.))
  whole = context(y_hat)
  exact.make_exact(context)
  whole = context(y_hat).numpy()
  padded = np.pad(y_hat.numpy(), [(0, 0), (2, 2), (2, 2), (0, 0)])
  taps = context.taps + 2
  for i, j in [(0, 0), (3, 4), (5, 6)]:
    neighbours = padded[:, i + taps[:, 0], j + taps[:, 1]]
    at = context.at(tf.constant(neighbours[:, None]), context.tap_kernel())
    np.testing.assert_array_equal(at[:, 0], whole[:, i, j])


def test_too_wide_a_layer_is_refused():
  layer = layers.Dense(2)
  layer.build((None, 2 ** 16))
  with pytest.raises(ValueError, match="needs .* bits to sum exactly"):
    exact.make_exact(layer)


def test_weights_outside_exact_layers_are_refused():
  network = tf.keras.Sequential([layers.Dense(4),
                                 tf.keras.layers.Dense(4)])
  network.build((None, 3))
  with pytest.raises(ValueError, match="weights outside exact layers"):
    exact.make_exact(network)
