"""Each quantization mode sends values and gradients where it should."""

import numpy as np
import pytest
import tensorflow as tf

from tfc_sth.model import entropy_models
from tfc_sth.model import latent_codecs
from tfc_sth.model import quantization


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  shape = (2, 4, 4, 3)
  y = tf.constant(rng.normal(0, 3, shape), tf.float32)
  loc = tf.constant(rng.normal(0, 1, shape), tf.float32)
  log_scale = tf.constant(rng.normal(0.5, 0.5, shape), tf.float32)
  return y, loc, log_scale


def _run(mode, training, delta=None):
  """(ŷ, bits, gradients of bits and of sum(ŷ²) w.r.t. y, loc, log_scale)."""
  layer = entropy_models.GaussianConditional(mode=mode)
  y, loc, log_scale = _inputs()
  with tf.GradientTape(persistent=True) as tape:
    tape.watch([y, loc, log_scale])
    y_hat, bits = layer(y, loc, log_scale, delta, training=training)
    rate = tf.reduce_sum(bits)
    distortion = tf.reduce_sum(tf.square(y_hat))
  rate_grads = tape.gradient(rate, [y, loc, log_scale])
  synthesis_grads = tape.gradient(distortion, [y, loc, log_scale])
  return y_hat, bits, rate_grads, synthesis_grads, (y, loc)


def _is_rounded(y_hat, y, loc):
  offsets = (y_hat - loc).numpy()
  return np.allclose(offsets, np.round(offsets), atol=1e-5) and np.allclose(
      offsets, np.round((y - loc).numpy()), atol=1e-5)


def _nonzero(gradient):
  return gradient is not None and np.abs(gradient.numpy()).sum() > 0


def test_noise_perturbs_and_differentiates_both_terms():
  tf.random.set_seed(1)
  y_hat, _, rate_grads, synthesis_grads, (y, loc) = _run("noise", True)
  noise = (y_hat - y).numpy()
  assert np.all(np.abs(noise) <= 0.5) and np.std(noise) > 0.1
  assert not _is_rounded(y_hat, y, loc)
  assert _nonzero(rate_grads[0]) and _nonzero(synthesis_grads[0])


def test_ste_rounds_with_straight_through_gradient():
  y_hat, _, rate_grads, synthesis_grads, (y, loc) = _run("ste", True)
  assert _is_rounded(y_hat, y, loc)
  # d ŷ / d y = 1 (straight through), so d sum(ŷ²) / d y = 2 ŷ.
  np.testing.assert_allclose(synthesis_grads[0], 2 * y_hat, rtol=1e-5)
  assert _nonzero(rate_grads[0])


def test_mixed_rounds_synthesis_and_noises_rate():
  tf.random.set_seed(2)
  y_hat, bits, rate_grads, _, (y, loc) = _run("mixed", True)
  assert _is_rounded(y_hat, y, loc)
  _, ste_bits, *_ = _run("ste", True)
  # The rate is the noisy density, not the discrete likelihood of ŷ.
  assert not np.allclose(bits, ste_bits)
  assert _nonzero(rate_grads[0])


def test_hard_stops_gradients_at_the_latent():
  y_hat, bits, rate_grads, synthesis_grads, (y, loc) = _run("hard", True)
  assert _is_rounded(y_hat, y, loc)
  assert not _nonzero(rate_grads[0]) and not _nonzero(synthesis_grads[0])
  # The entropy model (scale) learns from the rate, the mean from distortion.
  assert _nonzero(rate_grads[2])
  assert _nonzero(synthesis_grads[1])
  # The rate is the discrete likelihood: the same as at inference.
  _, inference_bits, *_ = _run("hard", False)
  np.testing.assert_allclose(bits, inference_bits, rtol=1e-6)


@pytest.mark.parametrize("mode", quantization.MODES)
def test_inference_rounds_in_every_mode(mode):
  y_hat, bits, *_, (y, loc) = _run(mode, False)
  assert _is_rounded(y_hat, y, loc)
  reference, reference_bits, *_ = _run("hard", False)
  np.testing.assert_array_equal(y_hat, reference)
  np.testing.assert_array_equal(bits, reference_bits)


def test_factorized_prior_hard_mode_has_discrete_rate_and_no_latent_gradient():
  layer = entropy_models.FactorizedPrior(3, mode="hard")
  z = tf.constant(np.random.default_rng(0).normal(0, 2, (2, 4, 4, 3)),
                  tf.float32)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(z)
    z_hat, bits = layer(z, training=True)
    total = tf.reduce_sum(bits)
  assert tape.gradient(total, z) is None or not _nonzero(tape.gradient(total, z))
  prior_grads = tape.gradient(total, layer.trainable_variables)
  assert any(_nonzero(g) for g in prior_grads)
  inference_hat, inference_bits = layer(z, training=False)
  np.testing.assert_array_equal(z_hat, inference_hat)
  np.testing.assert_allclose(bits, inference_bits, rtol=1e-6)


def test_unknown_mode_is_rejected():
  with pytest.raises(ValueError, match="Unknown quantization mode"):
    entropy_models.GaussianConditional(mode="round")


def test_keras_config_keeps_the_mode_and_reads_its_older_name():
  layer = entropy_models.GaussianConditional(mode="ste")
  assert entropy_models.GaussianConditional.from_config(
      layer.get_config()).mode == "ste"
  config = dict(layer.get_config(), quantization_mode="hard")
  del config["mode"]
  assert entropy_models.GaussianConditional.from_config(config).mode == "hard"


@pytest.mark.parametrize("codec_class, args", [
    (latent_codecs.FactorizedLatent, (4,)),
    (latent_codecs.JointAutoregressive, (4, 8))])
def test_a_codec_sets_the_mode_of_the_entropy_layers_it_owns(codec_class,
                                                             args):
  codec = codec_class(*args)
  layers = codec.entropy_layers
  assert layers and all(
      isinstance(l, entropy_models.EntropyLayer) for l in layers)
  assert codec.mode == "noise" and {l.mode for l in layers} == {"noise"}
  codec.mode = "hard"
  assert codec.mode == "hard" and {l.mode for l in layers} == {"hard"}
  with pytest.raises(ValueError, match="Unknown quantization mode"):
    codec.mode = "round"
  assert codec.mode == "hard" and {l.mode for l in layers} == {"hard"}


def _run_anneal(alpha, seed=3):
  layer = entropy_models.GaussianConditional(mode="anneal")
  layer.alpha.assign(alpha)
  y, loc, log_scale = _inputs()
  tf.random.set_seed(seed)
  return layer(y, loc, log_scale, training=True), (y, loc, log_scale)


def test_anneal_at_zero_temperature_is_additive_noise():
  (y_hat, bits), inputs = _run_anneal(0.)
  layer = entropy_models.GaussianConditional(mode="noise")
  tf.random.set_seed(3)
  noisy, noisy_bits = layer(*inputs, training=True)
  np.testing.assert_allclose(y_hat, noisy, atol=1e-6)
  np.testing.assert_allclose(bits, noisy_bits, rtol=1e-5)


def test_anneal_at_high_temperature_approaches_hard_rounding():
  (y_hat, bits), (y, loc, log_scale) = _run_anneal(200.)
  assert _is_rounded(tf.round(y_hat - loc) + loc, y, loc)
  np.testing.assert_allclose(y_hat - loc, np.round(y_hat - loc), atol=0.02)
  _, hard_bits, *_ = _run("hard", True)
  # The rate tends to the discrete likelihood (the scale index is not rounded
  # in a soft mode, hence the tolerance).
  np.testing.assert_allclose(bits, hard_bits, rtol=0.1)


def test_anneal_is_differentiable_in_the_latent():
  layer = entropy_models.FactorizedPrior(3, mode="anneal")
  layer.alpha.assign(4.)
  z = tf.constant(np.random.default_rng(1).normal(0, 2, (2, 4, 4, 3)),
                  tf.float32)
  with tf.GradientTape() as tape:
    tape.watch(z)
    z_hat, bits = layer(z, training=True)
    loss = tf.reduce_sum(bits) + tf.reduce_sum(tf.square(z_hat))
  assert _nonzero(tape.gradient(loss, z))
