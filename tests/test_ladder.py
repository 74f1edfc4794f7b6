"""Quality ladders: one model, a per-channel step Δ_q and a λ_q per level."""

import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfc_sth.model import architectures
from tfc_sth.runtime import bitstream
from tfc_sth import cli
from tfc_sth.runtime import codec
from tfc_sth import export
from tfc_sth.model import saun
from tfc_sth.training import schedule
from tfc_sth.training import trainer

LMBDAS = [0.002, 0.01, 0.05]


def _ladder(**kwargs):
  tf.keras.utils.set_random_seed(0)
  model = architectures.CompressionModel(
      num_filters=8, latent_channels=12, delta_mode="channel", lmbdas=LMBDAS,
      **kwargs)
  model.create_variables()
  return model


# Δ per level.

def test_at_level_reads_integer_levels_exactly_and_interpolates():
  table = tf.constant([[0., 1.], [2., -3.], [4., 5.]])
  np.testing.assert_array_equal(saun.at_level(table, 1), [2., -3.])
  np.testing.assert_array_equal(saun.at_level(table, 2.), [4., 5.])
  np.testing.assert_allclose(saun.at_level(table, 0.25), [.5, 0.])
  np.testing.assert_allclose(saun.at_level(table, 1.5), [3., 1.])
  # Beyond the ends: the end rows; one level per example: one row each,
  # shaped to broadcast against latents [B, H, W, channels].
  np.testing.assert_array_equal(saun.at_level(table, 7.), [4., 5.])
  np.testing.assert_array_equal(
      saun.at_level(table, tf.constant([2, 0])), [[[[4., 5.]]], [[[0., 1.]]]])


def test_initial_steps_follow_lambda_to_the_minus_one_half():
  model = _ladder()
  log_delta = model.latent_codec.log_delta.numpy()
  assert log_delta.shape == (3, 12)
  # Δ_q / Δ_q+1 = (λ_q+1 / λ_q)^(1/2); the middle level at Δ = 1.
  np.testing.assert_allclose(log_delta[:, 0], [
      math.log(5) / 2, 0., -math.log(5) / 2], rtol=1e-6)


def test_levels_must_increase_in_lambda():
  with pytest.raises(ValueError, match="must increase"):
    architectures.CompressionModel(delta_mode="channel", lmbdas=[0.01, 0.002])


@pytest.mark.parametrize("delta_mode, message", [
    ("none", "needs delta_mode=channel"),
    ("hyper", "needs delta_mode=channel")])
def test_a_ladder_needs_per_channel_steps(delta_mode, message):
  with pytest.raises(ValueError, match=message):
    architectures.CompressionModel(delta_mode=delta_mode, lmbdas=LMBDAS)


def test_the_loss_weighs_each_example_by_its_levels_lambda():
  model = _ladder()
  x = tf.random.stateless_uniform((3, 64, 64, 3), seed=(1, 2))
  levels = tf.constant([2, 0, 1])
  loss, bpp, mse = model.rate_distortion(x, training=False, level=levels)
  # Each example alone at its level, summed by hand.
  expected = []
  for i, level in enumerate(levels.numpy()):
    x_hat, bits = model(x[i:i + 1], level=int(level))
    error = np.mean((np.clip(x_hat, 0, 1) - x[i:i + 1]) ** 2) * 255 ** 2
    expected.append((float(bits[0]) / 64 ** 2, error, LMBDAS[level]))
  rates, errors, lmbdas = np.array(expected).T
  np.testing.assert_allclose(float(bpp), rates.mean(), rtol=1e-4)
  np.testing.assert_allclose(float(mse), errors.mean(), rtol=1e-4)
  np.testing.assert_allclose(float(loss), np.mean(rates + lmbdas * errors),
                             rtol=1e-4)


def test_training_samples_every_level():
  model = _ladder()
  levels = model.sample_levels(3000).numpy()
  assert set(levels) == {0, 1, 2}
  assert np.bincount(levels).min() > 900


def test_config_spaces_lambdas_geometrically():
  config = trainer.TrainConfig(qualities=3, lmbda_min=0.002, lmbda=0.05)
  np.testing.assert_allclose(config.lmbdas(), LMBDAS)
  assert trainer.TrainConfig(lmbda=0.03).lmbdas() == [0.03]
  with pytest.raises(trainer.ConfigError, match="lmbda_min"):
    trainer.TrainConfig(qualities=3, lmbda=0.05).lmbdas()


# Mixed precision.

def test_soft_phase_in_bfloat16_hard_phase_in_float32():
  phases = schedule.phases_for("sth", 3, 2, mixed_precision=True)
  assert [p.precision for p in phases] == ["mixed_bfloat16", "float32"]
  model = _ladder()
  x = tf.random.stateless_uniform((1, 64, 64, 3), seed=(1, 2))
  reference = model(x, level=1)
  model.set_precision("mixed_bfloat16")
  assert model.synthesis.layers[0].compute_dtype == "bfloat16"
  assert model.latent_codec.hyper_analysis.layers[0].compute_dtype == (
      "bfloat16")
  x_hat, bits = model(x, level=1)
  assert x_hat.dtype == bits.dtype == tf.float32
  # bfloat16 keeps 8 bits of mantissa: close, not equal.
  assert not np.array_equal(x_hat, reference[0])
  np.testing.assert_allclose(x_hat, reference[0], atol=0.05)
  model.set_precision("float32")
  np.testing.assert_array_equal(model(x, level=1)[0], reference[0])


# The exported ladder.

@pytest.fixture(scope="module")
def ladder(tiny_ladder_dir):
  return codec.Codec(str(tiny_ladder_dir), codec.FLOAT32)  # As reconstruct.


def test_exported_ladder_codes_every_level_exactly(ladder, smooth_image):
  assert ladder.qualities == 3 and ladder.default_quality == 2
  image = smooth_image(48, 80, seed=3)
  sizes = []
  for quality in (1, 1.5, 2, 2.5, 3):
    data = ladder.compress(image, quality=quality)
    header, _ = bitstream.read_header(data)
    assert header.quality == quality
    decoded, _ = ladder.decompress(data)
    reconstruction, _ = ladder.reconstruct(image, quality)
    np.testing.assert_array_equal(decoded, reconstruction)
    sizes.append(len(data))
  assert sizes == sorted(sizes), sizes


def test_default_quality_is_the_middle_level(ladder, smooth_image):
  image = smooth_image(32, 32, seed=4)
  header, _ = bitstream.read_header(ladder.compress(image))
  assert header.quality == 2
  assert ladder.compress(image) == ladder.compress(image, quality=2)


@pytest.mark.parametrize("quality", [0, 0.5, 3.01, 4, -1])
def test_qualities_the_model_lacks_are_refused(ladder, smooth_image, quality):
  with pytest.raises(codec.QualityError, match="levels 1 to 3"):
    ladder.compress(smooth_image(16, 16), quality=quality)


@pytest.mark.parametrize("quality", ["0", "3.5", "nine"])
def test_bad_quality_flag_is_a_one_line_usage_error(
    tiny_ladder_dir, tmp_path, smooth_image, png_bytes, capsys, quality):
  (tmp_path / "a.png").write_bytes(png_bytes(smooth_image(16, 16)))
  code = cli.main(["tfc-sth", "compress", str(tmp_path / "a.png"),
                   f"--model={tiny_ladder_dir}", f"--quality={quality}"])
  assert code == cli.EXIT_USAGE
  err = capsys.readouterr().err
  assert len(err.splitlines()) == 1 and "quality" in err, err
  assert not (tmp_path / "a.png.tsth").exists()


def _bpp(data, image):
  return 8 * len(data) / (image.shape[0] * image.shape[1])


@pytest.mark.parametrize("asked", [1.37, 2.24, 2.5])
def test_max_bpp_codes_the_highest_quality_that_fits(
    ladder, smooth_image, asked):
  image = smooth_image(48, 80, seed=5)
  # The budget: exactly the size of the file at quality `asked`.
  budget = _bpp(ladder.compress(image, quality=asked), image)
  data, quality = ladder.compress_to_rate(image, budget)
  assert _bpp(data, image) <= budget
  assert data == ladder.compress(image, quality=quality)
  assert bitstream.read_header(data)[0].quality == quality
  assert asked <= quality < 3
  assert _bpp(ladder.compress(image, quality=quality + 0.01), image) > budget
  np.testing.assert_array_equal(ladder.decompress(data)[0],
                                ladder.reconstruct(image, quality)[0])


def test_max_bpp_above_the_top_level_codes_the_top_level(
    ladder, smooth_image):
  image = smooth_image(48, 80, seed=5)
  top = ladder.compress(image, quality=3)
  assert ladder.compress_to_rate(image, 2 * _bpp(top, image)) == (top, 3)


def test_max_bpp_below_the_lowest_level_is_refused(ladder, smooth_image):
  image = smooth_image(48, 80, seed=5)
  lowest = _bpp(ladder.compress(image, quality=1), image)
  with pytest.raises(codec.RateError, match="even quality 1 takes"):
    ladder.compress_to_rate(image, lowest * 0.99)


def test_max_bpp_flag(tiny_ladder_dir, tmp_path, smooth_image, png_bytes,
                      capsys):
  image = smooth_image(48, 80, seed=5)
  (tmp_path / "a.png").write_bytes(png_bytes(image))
  ladder = codec.Codec(str(tiny_ladder_dir))
  budget = _bpp(ladder.compress(image, quality=2.5), image)
  out = tmp_path / "a.tsth"
  assert cli.main(["tfc-sth", "compress", str(tmp_path / "a.png"), "-v",
                   f"--model={tiny_ladder_dir}", f"--max_bpp={budget}",
                   f"-o={out}"]) == 0
  quality = bitstream.read_header(out.read_bytes())[0].quality
  assert 2.5 <= quality < 3 and _bpp(out.read_bytes(), image) <= budget
  assert f"quality {quality:g}," in capsys.readouterr().out
  # Out of reach: an error for that image, no file.
  assert cli.main(["tfc-sth", "compress", str(tmp_path / "a.png"),
                   f"--model={tiny_ladder_dir}", "--max_bpp=0.001",
                   f"-o={tmp_path / 'b.tsth'}"]) == cli.EXIT_ERROR
  err = capsys.readouterr().err
  assert len(err.splitlines()) == 1 and "even quality 1 takes" in err, err
  assert not (tmp_path / "b.tsth").exists()


def test_max_bpp_and_quality_together_are_a_usage_error(
    tiny_ladder_dir, tmp_path, smooth_image, png_bytes, capsys):
  (tmp_path / "a.png").write_bytes(png_bytes(smooth_image(16, 16)))
  code = cli.main(["tfc-sth", "compress", str(tmp_path / "a.png"),
                   f"--model={tiny_ladder_dir}", "--quality=2",
                   "--max_bpp=1"])
  assert code == cli.EXIT_USAGE
  err = capsys.readouterr().err
  assert len(err.splitlines()) == 1 and "--max_bpp" in err, err
  assert not (tmp_path / "a.png.tsth").exists()


def test_a_file_of_a_level_the_model_lacks_is_refused(ladder, smooth_image):
  data = ladder.compress(smooth_image(16, 16), quality=3)
  header, payload = bitstream.read_header(data)
  forged = bitstream.pack(
      dataclasses.replace(header, quality=4),
      *bitstream.unpack_strings(payload, ladder.string_names, tiles=1))
  with pytest.raises(bitstream.BitstreamError, match="quality 4"):
    ladder.decompress(forged)


def test_single_rate_models_ignore_quality_1_and_refuse_others(
    tiny_codec, smooth_image):
  image = smooth_image(16, 16)
  assert tiny_codec.qualities == 1
  assert tiny_codec.compress(image) == tiny_codec.compress(image, quality=1)
  with pytest.raises(codec.QualityError, match="levels 1 to 1"):
    tiny_codec.compress(image, quality=2)


# Continuing from an export.

def test_import_weights_restores_what_was_exported(
    tiny_ladder_dir, ladder, smooth_image):
  config = trainer.TrainConfig(
      num_filters=8, latent_channels=12, delta_mode="channel", qualities=3,
      lmbda_min=0.002, lmbda=0.05, kernel_parameter="rdft")
  model, _ = trainer.build(config)
  image = smooth_image(64, 64, seed=7)
  x = tf.constant(image[None] / 255., tf.float32)
  before, _ = model(x, level=0)
  export.import_weights(model, str(tiny_ladder_dir))
  assert int(model.optimizer.iterations) == 0
  for quality in (1, 3):
    x_hat, bits = model(x, level=quality - 1)
    expected, expected_bits = ladder.reconstruct(image, quality)
    # RDFT coefficients computed back from plain kernels: float rounding.
    difference = np.abs(np.round(np.clip(x_hat[0], 0, 1) * 255) - expected)
    assert difference.max() <= 1
    assert float(bits[0]) == pytest.approx(expected_bits, rel=1e-3)
  assert np.abs(before[0] * 255 - expected).max() > 1  # It did change.


def test_a_single_rate_export_seeds_every_level(tmp_path):
  single = architectures.CompressionModel(
      num_filters=8, latent_channels=12, delta_mode="channel", lmbda=0.01)
  single.create_variables()
  single.latent_codec.log_delta.assign(tf.range(12, dtype=tf.float32) / 10)
  export.export(single, str(tmp_path / "single"))
  ladder = _ladder()
  spread = ladder.latent_codec.log_delta.numpy()
  export.import_weights(ladder, str(tmp_path / "single"))
  np.testing.assert_allclose(ladder.latent_codec.log_delta.numpy(),
                             spread + np.arange(12) / 10, atol=1e-6)
  x = tf.random.stateless_uniform((1, 64, 64, 3), seed=(5, 6))
  np.testing.assert_allclose(
      ladder.analysis(x), single.analysis(x), atol=1e-4)


def test_train_continues_from_an_export_with_a_warm_up(
    tiny_ladder_dir, train_glob, tmp_path):
  config = trainer.TrainConfig(
      num_filters=8, latent_channels=12, delta_mode="channel", qualities=3,
      lmbda_min=0.002, lmbda=0.05, soft_steps=2, hard_steps=0,
      steps_per_epoch=2, batch_size=2, patch_size=64, train_glob=train_glob,
      init_from=str(tiny_ladder_dir))
  assert config.warmup() == trainer.TrainConfig.EXPORT_WARMUP_STEPS
  model = trainer.train(config, str(tmp_path / "run"), verbose=0)
  assert int(model.optimizer.iterations) == 2
  # Two steps into a 500-step warm-up (and past the decay of this short
  # schedule), the rate is a few thousandths of the peak's tenth.
  assert 0 < float(model.optimizer.learning_rate) <= (
      config.learning_rate / 10 * 3 / config.warmup())


@pytest.mark.parametrize("flags, message", [
    (["--hyper_kernel=1"], "--hyper_kernel=3 there, 1 here"),
    (["--num_filters=16"], "--num_filters=8 there, 16 here"),
    (["--model=scale_hyperprior"],
     "--model=mean_scale_hyperprior there, scale_hyperprior here"),
])
def test_train_refuses_an_export_of_another_architecture(
    tiny_ladder_dir, train_glob, tmp_path, capsys, flags, message):
  assert cli.main([
      "tfc-sth", "train", "--num_filters=8", "--latent_channels=12",
      "--delta_mode=channel", "--qualities=3", "--lmbda_min=0.002",
      "--lmbda=0.05", f"--train_glob={train_glob}",
      f"--init_from={tiny_ladder_dir}", f"--train_dir={tmp_path / 'run'}",
      *flags]) == cli.EXIT_ERROR
  err = capsys.readouterr().err
  assert len(err.splitlines()) == 1 and message in err, err
  assert not (tmp_path / "run").exists()


# Evaluation sweeps a ladder's levels as one curve.

def test_evaluate_draws_one_curve_per_ladder(tiny_ladder_dir, tmp_path,
                                             smooth_image, png_bytes, capsys):
  for i in range(2):
    (tmp_path / f"{i}.png").write_bytes(png_bytes(smooth_image(40, 48, i)))
  assert cli.main(["tfc-sth", "evaluate", str(tmp_path), "--anchors=",
                   f"--model=L={tiny_ladder_dir}"]) == 0
  out = capsys.readouterr().out
  rows = [l for l in out.splitlines() if l.startswith("L ")]
  assert [r.split()[2] for r in rows] == ["q1", "q2", "q3"], out


def test_a_ladder_seeds_a_ladder_with_other_lmbdas(tmp_path):
  source = _ladder(decoder_gain=True)
  table = np.arange(36, dtype=np.float32).reshape(3, 12) / 10
  source.latent_codec.log_delta.assign(table)
  source.decoder_gain_weight.assign(-table)
  export.export(source, str(tmp_path / "source"))
  low, middle, high = LMBDAS
  # Below the range by 4x, halfway (in log λ) between two levels, a level,
  # above the range by 9x.
  lmbdas = [low / 4, math.sqrt(low * middle), high, high * 9]
  target = architectures.CompressionModel(
      num_filters=8, latent_channels=12, delta_mode="channel", lmbdas=lmbdas,
      decoder_gain=True)
  target.create_variables()
  export.import_weights(target, str(tmp_path / "source"))
  expected = [table[0] + math.log(2), (table[0] + table[1]) / 2, table[2],
              table[2] - math.log(3)]
  np.testing.assert_allclose(target.latent_codec.log_delta.numpy(), expected,
                             atol=1e-5)
  # The gain follows no high-rate law: beyond the range, the nearest level's.
  np.testing.assert_allclose(
      target.decoder_gain_weight.numpy(),
      -np.stack([table[0], (table[0] + table[1]) / 2, table[2], table[2]]),
      atol=1e-5)


# The decoder gain.

def _gained_ladder():
  model = _ladder(decoder_gain=True)
  rng = np.random.default_rng(1)
  model.decoder_gain_weight.assign(rng.uniform(-.07, .07, (3, 12)))
  return model


def test_the_decoder_gain_scales_what_the_synthesis_sees():
  model = _gained_ladder()
  gain = np.exp(10 * model.decoder_gain_weight.numpy())
  y_hat = tf.random.stateless_normal((2, 3, 5, 12), seed=(1, 2))
  for level, row in [(0, gain[0]), (2, gain[2]),
                     (1.25, gain[1] ** .75 * gain[2] ** .25)]:
    np.testing.assert_allclose(model.synthesis_input(y_hat, level),
                               y_hat * row, rtol=1e-6)
  per_example = model.synthesis_input(y_hat, tf.constant([2, 0]))
  np.testing.assert_allclose(per_example, y_hat * gain[[2, 0], None, None],
                             rtol=1e-6)


def test_a_decoder_gain_needs_a_ladder():
  with pytest.raises(ValueError, match="needs a ladder"):
    architectures.CompressionModel(
        num_filters=8, latent_channels=12, delta_mode="channel", lmbda=0.01,
        decoder_gain=True)


def test_an_exported_decoder_gain_decodes_what_the_model_reconstructs(
    tmp_path, smooth_image):
  model = _gained_ladder()
  log_gain = 10 * model.decoder_gain_weight.numpy()
  export.export(model, str(tmp_path / "gained"))
  model.decoder_gain_weight.assign(tf.zeros((3, 12)))
  export.export(model, str(tmp_path / "plain"))
  gained, plain = (codec.Codec(str(tmp_path / name), codec.FLOAT32)
                   for name in ("gained", "plain"))
  image = smooth_image(64, 64, seed=5)
  for quality in (1, 2.5, 3):
    coded = gained.module.signatures["compress"](
        image=tf.constant(image), quality=tf.constant(quality, tf.float32))
    # The same encoder, so the same symbols: the gain is the decoder's.
    assert coded["y_string"].numpy() == plain.module.signatures["compress"](
        image=tf.constant(image), quality=tf.constant(quality, tf.float32)
    )["y_string"].numpy()
    latents = [c.module.signatures["decompress_latents"](**coded)["latents"]
               for c in (gained, plain)]
    row = [np.interp(quality - 1, [0, 1, 2], log_gain[:, c])
           for c in range(12)]
    np.testing.assert_allclose(latents[0], latents[1] * np.exp(row),
                               rtol=1e-5)
    decoded, _ = gained.decompress(gained.compress(image, quality=quality))
    np.testing.assert_array_equal(decoded,
                                  gained.reconstruct(image, quality)[0])


def test_a_decoder_gain_is_not_dropped_silently(tmp_path):
  export.export(_gained_ladder(), str(tmp_path / "gained"))
  with pytest.raises(ValueError, match="decoder gain"):
    export.import_weights(_ladder(), str(tmp_path / "gained"))


def test_an_export_without_a_gain_seeds_one_at_unit_gain(
    tiny_ladder_dir, ladder, smooth_image):
  config = trainer.TrainConfig(
      num_filters=8, latent_channels=12, delta_mode="channel", qualities=3,
      lmbda_min=0.002, lmbda=0.05, decoder_gain=True)
  model, _ = trainer.build(config)
  export.import_weights(model, str(tiny_ladder_dir))
  np.testing.assert_array_equal(model.decoder_gain_weight.numpy(), 0.)
  image = smooth_image(64, 64, seed=8)
  x_hat, _ = model(tf.constant(image[None] / 255., tf.float32), level=2)
  expected, _ = ladder.reconstruct(image, 3)
  # As the export decodes, up to the RDFT's float rounding.
  assert np.abs(np.round(np.clip(x_hat[0], 0, 1) * 255) - expected).max() <= 1
