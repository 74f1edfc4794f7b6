"""tools/widen.py: more latent channels, coding as before, then trainable."""

import numpy as np
import pytest

from tfc_sth import export
from tfc_sth.runtime import codec, pretrained
from tfc_sth.training import trainer


@pytest.fixture(scope="module")
def widened(tiny_ladder_dir, tmp_path_factory, tool):
  target = tmp_path_factory.mktemp("widen") / "wide"
  tool("widen").main([str(tiny_ladder_dir), str(target),
                      "--latent_channels=20"])
  return target


def test_the_widened_model_codes_the_same_pixels_at_the_same_rate(
    tiny_ladder_dir, widened, smooth_image):
  assert pretrained.read_info(str(widened))["config"]["latent_channels"] == 20
  narrow = codec.Codec(str(tiny_ladder_dir), codec.FLOAT32)
  wide = codec.Codec(str(widened), codec.FLOAT32)
  image = smooth_image(64, 96, seed=5)
  for quality in (1, 3):
    before, after = (c.compress(image, quality=quality) for c in (narrow, wide))
    # The new channels' zeros cost a few bits; no value of theirs is sent.
    assert 0 <= len(after) - len(before) <= 2
    # The synthesis sums the same products (and zeros) in float: ±1 at most.
    difference = (narrow.decompress(before)[0].astype(int)
                  - wide.decompress(after)[0].astype(int))
    assert np.abs(difference).max() <= 1


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
  with pytest.raises(SystemExit, match="exists"):
    tool("widen").main([str(tiny_ladder_dir), str(widened),
                        "--latent_channels=24"])
