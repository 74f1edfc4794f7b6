"""SAUN: Δ = 1 is the plain model; Δ scales noise, coding and rate as stated."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_compression as tfc

from tfc_sth.model import architectures
from tfc_sth.model import entropy_models
from tfc_sth.model import saun


def _model(delta_mode, architecture="mean_scale_hyperprior"):
  tf.keras.utils.set_random_seed(3)
  model = architectures.CompressionModel(
      architecture, num_filters=8, latent_channels=12, delta_mode=delta_mode)
  model(tf.zeros((1, 64, 64, 3)))
  return model


@pytest.mark.parametrize("architecture", sorted(architectures.ARCHITECTURES))
def test_unit_channel_delta_reproduces_plain_model_exactly(architecture):
  plain, scaled = _model(saun.NONE, architecture), _model(saun.CHANNEL,
                                                          architecture)
  # Same weights; the SAUN model has one more (log Δ = 0).
  for source, target in zip(plain.weights, [
      w for w in scaled.weights if "log_delta" not in w.name]):
    target.assign(source)
  plain.set_soft_round_alpha(3.)
  scaled.set_soft_round_alpha(3.)
  x = tf.random.stateless_uniform((2, 64, 64, 3), seed=(1, 2))
  for mode in ("noise", "ste", "mixed", "hard", "anneal"):
    for training in (True, False):
      plain.mode = scaled.mode = mode
      tf.random.set_seed(7)
      x_plain, bits_plain = plain(x, training=training)
      tf.random.set_seed(7)
      x_scaled, bits_scaled = scaled(x, training=training)
      np.testing.assert_array_equal(x_plain, x_scaled, err_msg=mode)
      np.testing.assert_array_equal(bits_plain, bits_scaled, err_msg=mode)


def _latents(shape=(1, 8, 8, 4)):
  rng = np.random.default_rng(5)
  return (tf.constant(rng.normal(0, 4, shape), tf.float32),
          tf.constant(rng.normal(0, 1, shape), tf.float32),
          tf.constant(rng.normal(1., .3, shape), tf.float32))


def test_training_noise_is_scaled_by_delta():
  y, loc, log_scale = _latents()
  delta = tf.constant([0.25, 0.5, 1., 2.])
  layer = entropy_models.GaussianConditional()
  y_tilde, _ = layer(y, loc, log_scale, delta, training=True)
  noise = ((y_tilde - y) / delta).numpy()
  assert np.all(np.abs(noise) <= 0.5 + 1e-5)
  for c, d in enumerate(delta.numpy()):
    spread = np.abs((y_tilde - y).numpy()[..., c]).max()
    assert d / 4 < spread <= d / 2 + 1e-5


def test_rate_bound_is_unit_bin_likelihood_of_normalised_latent():
  """bits = -log2 p(ỹ) - log2 Δ = -log2 p_v((y - μ)/Δ + u) under σ/Δ."""
  y, loc, log_scale = _latents()
  delta = tf.constant([0.25, 0.5, 1., 2.])
  layer = entropy_models.GaussianConditional()
  tf.random.set_seed(11)
  y_tilde, bits = layer(y, loc, log_scale, delta, training=True)
  v_tilde = (y_tilde - loc) / delta
  scale = tfc.NoisyNormal(
      loc=0., scale=tf.exp(tf.clip_by_value(
          log_scale - tf.math.log(delta), layer._log_min,
          np.log(layer.scale_max))))
  expected = -tf.reduce_sum(scale.log_prob(v_tilde)) / np.log(2.)
  np.testing.assert_allclose(bits[0], expected, rtol=1e-4)


def test_coding_uses_q_round_normalised_and_decodes_delta_q_plus_mu():
  y, loc, log_scale = _latents()
  delta = tf.constant([0.25, 0.5, 1., 2.])
  layer = entropy_models.GaussianConditional()
  layer.build_tables()
  strings, symbols = layer.compress(y, loc, log_scale, delta)
  y_hat, decoded_symbols = layer.decompress(strings, loc, log_scale, delta)
  np.testing.assert_array_equal(decoded_symbols, symbols)
  q = tf.round((y - loc) / delta)
  np.testing.assert_allclose(y_hat, delta * q + loc, rtol=0, atol=1e-5)
  inference, _ = layer(y, loc, log_scale, delta, training=False)
  np.testing.assert_array_equal(y_hat, inference)


def test_coarser_step_costs_fewer_bits():
  y, loc, log_scale = _latents()
  layer = entropy_models.GaussianConditional()
  rates = [float(layer(y, loc, log_scale, tf.constant(d), training=False)[1])
           for d in (0.5, 1., 2.)]
  assert rates[0] > rates[1] > rates[2]


def test_delta_is_bounded_below():
  assert float(saun.delta_from_log(tf.constant(-100.))) == pytest.approx(
      saun.MIN_DELTA)
  assert float(saun.delta_from_log(tf.constant(0.))) == 1.


def test_a_factorized_prior_has_no_hyperprior_delta():
  with pytest.raises(ValueError, match="no hyperprior"):
    architectures.CompressionModel("factorized_prior", delta_mode=saun.HYPER)


def test_configs_with_the_older_name_of_the_delta_mode_still_load():
  model = architectures.CompressionModel(num_filters=8, latent_channels=12,
                                         delta_mode=saun.CHANNEL)
  for config, load in [
      (model.get_config(), architectures.CompressionModel.from_config),
      (model.latent_codec.get_config(),
       type(model.latent_codec).from_config)]:
    config["delta"] = config.pop("delta_mode")  # As exports once wrote it.
    loaded = load(config)
    codec = getattr(loaded, "latent_codec", loaded)
    assert codec.delta_mode == saun.CHANNEL


def test_unknown_delta_mode_is_rejected():
  with pytest.raises(ValueError, match="Unknown Δ mode"):
    architectures.CompressionModel(num_filters=8, latent_channels=12,
                                   delta_mode="pixel")

