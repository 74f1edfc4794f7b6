"""The fast kernel parameter and upsampling match tfc's layers."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_compression as tfc

from tfc_sth.model import layers


@pytest.mark.parametrize("shape", [(5, 5, 3, 8), (3, 3, 6, 4), (5, 5, 1, 1)])
def test_rdft_kernel_equals_tfc_rdft_parameter(shape):
  initial = tf.random.stateless_normal(shape, (1, 2))
  ours, theirs = layers.RDFTKernel(initial), tfc.RDFTParameter(initial)
  np.testing.assert_allclose(ours(), theirs(), atol=1e-5)
  np.testing.assert_allclose(ours(), initial, atol=1e-5)
  weights = tf.random.stateless_normal(shape, (3, 4))
  gradients = []
  for parameter in (ours, theirs):
    with tf.GradientTape() as tape:
      value = tf.reduce_sum(parameter() * weights)
    gradients.append(tape.gradient(value, [parameter.real, parameter.imag]))
  for a, b in zip(*gradients):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_rdft_kernel_checkpoints_are_tfc_checkpoints(tmp_path):
  theirs = tfc.RDFTParameter(tf.random.stateless_normal((5, 5, 2, 3), (5, 6)))
  path = tf.train.Checkpoint(p=theirs).write(os.path.join(tmp_path, "c"))
  ours = layers.RDFTKernel(tf.zeros((5, 5, 2, 3)))
  tf.train.Checkpoint(p=ours).read(path).assert_consumed()
  np.testing.assert_allclose(ours(), theirs(), atol=1e-5)


@pytest.mark.parametrize("kernel,stride,filters,size", [
    (5, 2, 16, (7, 5)), (3, 2, 16, (4, 9)), (5, 2, 32, (1, 1)),
    (5, 2, 3, (6, 6)), (3, 2, 3, (5, 2)), (3, 1, 16, (5, 4)),
    (7, 2, 3, (4, 4))])
def test_signal_conv_matches_tfc(kernel, stride, filters, size):
  """Same outputs as tfc's layer with the same weights, up or down."""
  inputs = tf.random.stateless_normal((2, *size, 8), (7, 8))
  for up in (True, False):
    args = dict(filters=filters, kernel_support=kernel, corr=not up,
                strides_up=stride if up else 1,
                strides_down=1 if up else stride, padding="same_zeros",
                use_bias=True, activation=tf.nn.relu,
                kernel_parameter="variable",
                bias_initializer=tf.keras.initializers.RandomNormal(seed=1))
    ours, theirs = layers.SignalConv2D(**args), tfc.SignalConv2D(**args)
    theirs(inputs)
    ours(inputs)
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(ours(inputs), theirs(inputs), atol=1e-5)
    # And the same gradients, which training follows.
    gradients = []
    for layer in (ours, theirs):
      with tf.GradientTape() as tape:
        tape.watch(inputs)
        value = tf.reduce_sum(layer(inputs) * tf.range(filters, dtype=float))
      gradients.append(tape.gradient(value, [inputs, *layer.weights]))
    for a, b in zip(*gradients):
      np.testing.assert_allclose(a, b, atol=1e-4)


def test_fast_upsampling_covers_the_transforms_upsampling_layers():
  up = dict(corr=False, strides_up=2, padding="same_zeros")
  assert layers.SignalConv2D(16, (5, 5), **up)._fast_up  # pylint: disable=protected-access
  assert layers.SignalConv2D(3, (3, 3), **up)._fast_up  # pylint: disable=protected-access
  assert not layers.SignalConv2D(3, (7, 7), **up)._fast_up  # pylint: disable=protected-access
  # h_s's last layer: a convolution without upsampling.
  assert layers.SignalConv2D(16, (3, 3), corr=False,
                             padding="same_zeros")._flipped  # pylint: disable=protected-access
