"""tools/widen.py: more filters or latent channels, coding as before, then
trainable."""

import numpy as np
import pytest
import tensorflow as tf

from tfc_sth import export
from tfc_sth.runtime import codec, pretrained
from tfc_sth.training import trainer


@pytest.fixture(scope="module")
def widened(tiny_ladder_dir, tmp_path_factory, tool):
  target = tmp_path_factory.mktemp("widen") / "wide"
  tool("widen").main([str(tiny_ladder_dir), str(target),
                      "--latent_channels=20"])
  return target


@pytest.fixture(scope="module")
def wider_filters(tiny_ladder_dir, tmp_path_factory, tool):
  target = tmp_path_factory.mktemp("widen") / "filters"
  tool("widen").main([str(tiny_ladder_dir), str(target), "--num_filters=12"])
  return target


@pytest.fixture(scope="module")
def split_filters(tiny_ladder_dir, tmp_path_factory, tool):
  target = tmp_path_factory.mktemp("widen") / "split"
  tool("widen").main([str(tiny_ladder_dir), str(target), "--num_filters=12",
                      "--split"])
  return target


def _codes_like(source, target, image, extra_bytes):
  """`target` codes `image` in `extra_bytes` (a range) more than `source`,
  to pixels within ±1: the synthesis sums the same products (and zeros) in
  float."""
  narrow, wide = (codec.Codec(str(d), codec.FLOAT32) for d in (source, target))
  for quality in (1, 3):
    before, after = (c.compress(image, quality=quality) for c in (narrow, wide))
    assert len(after) - len(before) in extra_bytes
    difference = (narrow.decompress(before)[0].astype(int)
                  - wide.decompress(after)[0].astype(int))
    assert np.abs(difference).max() <= 1


def _assert_same_transforms(model, expected, rng):
  """g_a and g_s of `model` compute `expected`'s on random inputs; returns
  g_a's input."""
  x = rng.uniform(0., 1., (1, 64, 64, 3)).astype(np.float32)
  np.testing.assert_allclose(model.analysis(x), expected.analysis(x),
                             rtol=1e-4, atol=1e-4)
  y = rng.normal(0., 4., (1, 4, 6, 12)).astype(np.float32)
  np.testing.assert_allclose(model.synthesis(y), expected.synthesis(y),
                             rtol=1e-4, atol=1e-4)
  return x


def test_the_widened_model_codes_the_same_pixels_at_the_same_rate(
    tiny_ladder_dir, widened, smooth_image):
  assert pretrained.read_info(str(widened))["config"]["latent_channels"] == 20
  # The new channels' zeros cost a few bits; no value of theirs is sent.
  _codes_like(tiny_ladder_dir, widened, smooth_image(64, 96, seed=5),
              range(0, 3))


def test_g_s_and_h_a_ignore_the_new_channels_whatever_they_hold(
    tiny_ladder_dir, widened):
  # In the soft phase the new channels hold noise, not rounded zeros.
  narrow = export.exported_model(str(tiny_ladder_dir))
  wide = export.exported_model(str(widened))
  rng = np.random.default_rng(0)
  y = rng.normal(0., 4., (1, 4, 6, 12)).astype(np.float32)
  noisy = np.concatenate(
      [y, rng.normal(0., 4., (1, 4, 6, 8)).astype(np.float32)], -1)
  np.testing.assert_allclose(wide.synthesis(noisy), narrow.synthesis(y),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(wide.latent_codec.hyper_analysis(noisy),
                             narrow.latent_codec.hyper_analysis(y),
                             rtol=1e-5, atol=1e-5)


def test_wider_filters_code_the_same_pixels_at_the_same_rate(
    tiny_ladder_dir, wider_filters, smooth_image):
  config = pretrained.read_info(str(wider_filters))["config"]
  assert (config["num_filters"], config["hyper_filters"]) == (12, 8)
  # y is the same up to float summation order, which may flip a rounding.
  _codes_like(tiny_ladder_dir, wider_filters, smooth_image(64, 96, seed=6),
              range(-2, 3))


def test_g_a_and_g_s_ignore_the_new_filters_whatever_they_compute(
    tiny_ladder_dir, wider_filters):
  # Training will change the new filters: until the layers after them (and
  # GDN's norms) learn to listen, the outputs stay the source's.
  narrow = export.exported_model(str(tiny_ladder_dir))
  wide = export.exported_model(str(wider_filters))
  rng = np.random.default_rng(1)
  for transform in (wide.analysis, wide.synthesis):
    for layer in transform.layers[:-1]:
      kernel = layer.kernel_parameter.numpy()
      kernel[..., 8:] = rng.normal(0., 1., kernel[..., 8:].shape)
      layer.kernel_parameter.assign(kernel)
  _assert_same_transforms(wide, narrow, rng)


def test_split_filters_code_the_same_pixels_at_the_same_rate(
    tiny_ladder_dir, split_filters, smooth_image):
  _codes_like(tiny_ladder_dir, split_filters, smooth_image(64, 96, seed=7),
              range(-2, 3))


def test_split_filters_are_heard_and_learn_apart_from_their_sources(
    split_filters):
  wide = export.exported_model(str(split_filters))
  rng = np.random.default_rng(2)
  x = tf.constant(rng.uniform(0., 1., (1, 64, 64, 3)), tf.float32)
  weights = tf.constant(rng.normal(size=(1, 64, 64, 3)), tf.float32)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(weights * wide.synthesis(wide.analysis(x)))
  layers = wide.analysis.layers[:-1] + wide.synthesis.layers[:-1]
  gradients = tape.gradient(loss, [l.kernel_parameter for l in layers])
  for layer, gradient in zip(layers, gradients):
    bias = layer.bias_parameter.numpy()
    for copy in range(8, 12):
      source, = np.flatnonzero(bias[:8] == bias[copy])
      # Unequal shares of the outgoing weights: unequal gradients.
      assert not np.allclose(gradient[..., copy], gradient[..., source],
                             rtol=.05), layer.name
  # Unlike plain widening's new filters, the copies are listened to.
  before = wide.analysis(x).numpy()
  kernel = layers[0].kernel_parameter.numpy()
  kernel[..., 8:] = rng.normal(0., 1., kernel[..., 8:].shape)
  layers[0].kernel_parameter.assign(kernel)
  assert np.abs(wide.analysis(x).numpy() - before).max() > .1


def test_kept_filters_code_as_if_the_rest_were_silent(
    tiny_ladder_dir, tmp_path, tool):
  target = tmp_path / "refilled"
  tool("widen").main([str(tiny_ladder_dir), str(target), "--split",
                      "--keep_filters=6"])
  refilled = export.exported_model(str(target))
  silenced = export.exported_model(str(tiny_ladder_dir))
  for transform in (silenced.analysis, silenced.synthesis):
    for i, layer in enumerate(transform.layers):
      if i > 0:
        kernel = layer.kernel_parameter.numpy()
        kernel[:, :, 6:] = 0.
        layer.kernel_parameter.assign(kernel)
      if i < len(transform.layers) - 1:
        gamma = layer.activation.gamma_parameter
        value = gamma.variable.numpy()
        value[6:] = gamma.offset  # γ = 0: silent in every norm.
        gamma.variable.assign(value)
  x = _assert_same_transforms(refilled, silenced, np.random.default_rng(3))
  assert not np.allclose(refilled.analysis(x), export.exported_model(
      str(tiny_ladder_dir)).analysis(x), atol=1e-3)


def test_training_grows_the_weights_from_the_new_filters(
    wider_filters, tmp_path, train_glob):
  config = trainer.TrainConfig(
      num_filters=12, latent_channels=12, delta_mode="channel", qualities=3,
      architecture_options=dict(hyper_filters=8), lmbda_min=0.002,
      lmbda=0.05, soft_steps=2, hard_steps=0, steps_per_epoch=2,
      batch_size=2, patch_size=64, init_from=str(wider_filters),
      train_glob=train_glob)
  model = trainer.train(config, str(tmp_path / "run"), verbose=0)
  # They start at zero; their gradient is not, so the first steps move them.
  for transform in (model.analysis, model.synthesis):
    for layer in transform.layers[1:]:
      assert np.abs(layer.kernel.numpy()[:, :, 8:]).max() > 0, layer.name


def test_training_starts_from_the_widened_export(widened, tmp_path,
                                                 train_glob):
  config = trainer.TrainConfig(
      num_filters=8, latent_channels=20, delta_mode="channel", qualities=3,
      lmbda_min=0.002, lmbda=0.05, soft_steps=2, hard_steps=0,
      steps_per_epoch=2, batch_size=2, patch_size=64,
      init_from=str(widened), train_glob=train_glob)
  model = trainer.train(config, str(tmp_path / "run"), verbose=0)
  source = export.exported_model(str(widened))
  # Two steps of Adam at a warm-up learning rate move a weight by little.
  np.testing.assert_allclose(
      model.latent_codec.log_delta.numpy(),
      source.latent_codec.log_delta.numpy(), atol=1e-3)


def test_widening_refuses_fewer_channels_and_an_existing_target(
    tiny_ladder_dir, widened, tmp_path, tool):
  with pytest.raises(SystemExit, match="must exceed"):
    tool("widen").main([str(tiny_ladder_dir), str(tmp_path / "narrow"),
                        "--latent_channels=12"])
  with pytest.raises(SystemExit, match="must exceed"):
    tool("widen").main([str(tiny_ladder_dir), str(tmp_path / "narrow"),
                        "--num_filters=8"])
  with pytest.raises(SystemExit, match="at least half"):
    tool("widen").main([str(tiny_ladder_dir), str(tmp_path / "narrow"),
                        "--split", "--keep_filters=3"])
  with pytest.raises(SystemExit) as refused:
    tool("widen").main([str(tiny_ladder_dir), str(tmp_path / "narrow"),
                        "--keep_filters=6"])
  assert refused.value.code == 2  # --keep_filters needs --split.
  assert not (tmp_path / "narrow").exists()
  with pytest.raises(SystemExit, match="exists"):
    tool("widen").main([str(tiny_ladder_dir), str(widened),
                        "--latent_channels=24"])
