"""The fast kernel parameter and upsampling match tfc's layers."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_compression as tfc

from tfc_sth.model import transforms


@pytest.mark.parametrize("shape", [(5, 5, 3, 8), (3, 3, 6, 4), (5, 5, 1, 1)])
def test_rdft_kernel_equals_tfc_rdft_parameter(shape):
  initial = tf.random.stateless_normal(shape, (1, 2))
  ours, theirs = transforms.RDFTKernel(initial), tfc.RDFTParameter(initial)
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
  ours = transforms.RDFTKernel(tf.zeros((5, 5, 2, 3)))
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
    ours, theirs = transforms.SignalConv2D(**args), tfc.SignalConv2D(**args)
    theirs(inputs)
    ours(inputs)
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(ours(inputs), theirs(inputs), atol=1e-5)


def test_fast_upsampling_covers_the_transforms_upsampling_layers():
  up = dict(corr=False, strides_up=2, padding="same_zeros")
  assert transforms.SignalConv2D(16, (5, 5), **up)._fast_up  # pylint: disable=protected-access
  assert transforms.SignalConv2D(3, (3, 3), **up)._fast_up  # pylint: disable=protected-access
  assert not transforms.SignalConv2D(3, (7, 7), **up)._fast_up  # pylint: disable=protected-access


# Cheng et al.'s residual transforms, at toy widths (8 filters, 12 latents).

def _residual_pair(kernel_parameter="rdft", attention=True):
  return (transforms.residual_analysis_transform(
              8, 12, kernel_parameter, attention=attention),
          transforms.residual_synthesis_transform(
              8, kernel_parameter, attention=attention))


@pytest.mark.parametrize("attention", [False, True])
def test_residual_transforms_shapes(attention):
  image = tf.random.stateless_uniform((1, 64, 48, 3), (1, 2))
  analysis, synthesis = _residual_pair(attention=attention)
  y = analysis(image)
  assert y.shape == (1, 4, 3, 12)
  assert synthesis(y).shape == (1, 64, 48, 3)
  hyper_analysis = transforms.residual_hyper_analysis_transform(8, 6)
  hyper_synthesis = transforms.residual_hyper_synthesis_transform(8, 24)
  z = hyper_analysis(tf.zeros((1, 8, 4, 12)))
  assert z.shape == (1, 2, 1, 6)
  assert hyper_synthesis(z).shape == (1, 8, 4, 24)


def test_residual_transforms_train_every_variable():
  image = tf.random.stateless_uniform((1, 32, 32, 3), (3, 4))
  analysis, synthesis = _residual_pair(attention=True)
  with tf.GradientTape() as tape:
    loss = tf.reduce_mean(tf.square(synthesis(analysis(image)) - image))
  variables = analysis.trainable_variables + synthesis.trainable_variables
  gradients = tape.gradient(loss, variables)
  for variable, gradient in zip(variables, gradients):
    assert gradient is not None, variable.name
    assert np.all(np.isfinite(gradient)), variable.name


@pytest.mark.parametrize("block", [
    transforms.ResidualBlock, transforms.ResidualDownBlock,
    transforms.ResidualUpBlock, transforms.AttentionBlock])
def test_residual_blocks_config_round_trip(block):
  inputs = tf.zeros((1, 8, 6, 8))
  layer = block(8, "variable", name="block")
  config = layer.get_config()
  assert config["filters"] == 8 and config["kernel_parameter"] == "variable"
  rebuilt = block.from_config(config)
  assert rebuilt.get_config() == config
  assert rebuilt(inputs).shape == layer(inputs).shape


@pytest.mark.parametrize("kernel_parameter", ["variable", "rdft"])
def test_residual_transforms_build_with_either_kernel(kernel_parameter):
  analysis, synthesis = _residual_pair(kernel_parameter)
  assert synthesis(analysis(tf.zeros((1, 32, 16, 3)))).shape == (1, 32, 16, 3)
  kind = tf.Variable if kernel_parameter == "variable" else (
      transforms.RDFTKernel)
  convs = [l for l in (analysis.submodules + synthesis.submodules)
           if isinstance(l, tfc.SignalConv2D)]
  assert convs and all(isinstance(l.kernel_parameter, kind) for l in convs)


def test_residual_transforms_export_like_the_others(tmp_path):
  """export.inference_copy's recipe: read by object path, bake the kernels."""
  image = tf.random.stateless_uniform((1, 32, 32, 3), (5, 6))
  model, copy = (tf.keras.Sequential(_residual_pair(p)) for p in
                 ("rdft", "variable"))
  model(image)
  copy(image)
  path = tf.train.Checkpoint(m=model).write(os.path.join(tmp_path, "c"))
  tf.train.Checkpoint(m=copy).read(path).expect_partial()
  convs = lambda m: [l for l in m.submodules
                     if isinstance(l, tfc.SignalConv2D)]
  for source, target in zip(convs(model), convs(copy), strict=True):
    target.kernel_parameter.assign(source.kernel)
  np.testing.assert_allclose(copy(image), model(image), atol=1e-4)
