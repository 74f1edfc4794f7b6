"""Cheng et al.'s residual transforms, at toy widths (8 filters, 12 latents)."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_compression as tfc

from tfc_sth.model import layers
from tfc_sth.model import residual


def _residual_pair(kernel_parameter="rdft", attention=True):
  return (residual.analysis_transform(
              8, 12, kernel_parameter, attention=attention),
          residual.synthesis_transform(
              8, kernel_parameter, attention=attention))


@pytest.mark.parametrize("attention", [False, True])
def test_residual_transforms_shapes(attention):
  image = tf.random.stateless_uniform((1, 64, 48, 3), (1, 2))
  analysis, synthesis = _residual_pair(attention=attention)
  y = analysis(image)
  assert y.shape == (1, 4, 3, 12)
  assert synthesis(y).shape == (1, 64, 48, 3)
  hyper_analysis = residual.hyper_analysis_transform(8, 6)
  hyper_synthesis = residual.hyper_synthesis_transform(8, 24)
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
    residual.ResidualBlock, residual.ResidualDownBlock,
    residual.ResidualUpBlock, residual.AttentionBlock])
def test_residual_blocks_config_round_trip(block):
  inputs = tf.zeros((1, 8, 6, 8))
  layer = block(8, "variable", name="block")
  config = layer.get_config()
  assert config["filters"] == 8 and config["kernel_parameter"] == "variable"
  rebuilt = block.from_config(config)
  assert rebuilt.get_config() == config
  assert rebuilt(inputs).shape == layer(inputs).shape


@pytest.mark.parametrize("block,paths", [
    (residual.ResidualDownBlock, ["conv_0", "conv_1", "conv_1/_activation",
                                  "skip"]),
    (residual.ResidualUpBlock, ["conv", "conv/_activation", "skip/conv",
                                "up/conv"]),
    (residual.ResidualBlock, ["conv_0", "conv_1", "projection"])])
def test_residual_blocks_keep_their_checkpoint_paths(block, paths, tmp_path):
  """Checkpoints of cheng2020 models find their weights by these paths."""
  layer = block(8, "variable", name="block")
  layer(tf.zeros((1, 4, 4, 3)))
  path = tf.train.Checkpoint(b=layer).write(os.path.join(tmp_path, "c"))
  found = {name.split("/.ATTRIBUTES")[0]
           for name, _ in tf.train.list_variables(path)} - {
               "_CHECKPOINTABLE_OBJECT_GRAPH"}
  expected = set()
  for p in paths:
    names = (("_beta_parameter/variable", "_gamma_parameter/variable")
             if p.endswith("_activation") else
             ("_bias_parameter", "_kernel_parameter"))
    expected |= {f"b/{p}/{name}" for name in names}
  assert found == expected


@pytest.mark.parametrize("kernel_parameter", ["variable", "rdft"])
def test_residual_transforms_build_with_either_kernel(kernel_parameter):
  analysis, synthesis = _residual_pair(kernel_parameter)
  assert synthesis(analysis(tf.zeros((1, 32, 16, 3)))).shape == (1, 32, 16, 3)
  kind = tf.Variable if kernel_parameter == "variable" else (
      layers.RDFTKernel)
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
