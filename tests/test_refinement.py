"""Latent refinement with the shipped model: files that cost less in the
rate-distortion loss the model was trained for, decoded by the unchanged
decoder, in one coding tile or many."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tfc_sth.runtime import codec
from tfc_sth.runtime import image_io
from tfc_sth.runtime import pretrained

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(REPO, "samples", "avenches.png")


@pytest.fixture(scope="module")
def shipped():
  return codec.Codec.load(precision=codec.FLOAT32)


@pytest.fixture(scope="module")
def sample():
  return image_io.read_png(SAMPLE)[0]


def _loss(shipped, image, quality, data):
  """bits per pixel of the file + λ_q · MSE of what it decodes to: counted
  from the bytes and the pixels, not by the model."""
  lmbda = pretrained.read_info(shipped.path)["config"]["lmbdas"][quality - 1]
  decoded, _ = shipped.decompress(data)
  mse = np.mean((decoded.astype(np.float64) - image) ** 2)
  return 8 * len(data) / (image.shape[0] * image.shape[1]) + lmbda * mse


def test_the_shipped_model_refines(shipped):
  assert shipped.can_refine


@pytest.mark.parametrize("quality", [2, 5, 9])
def test_refined_files_cost_less(shipped, sample, quality):
  plain = _loss(shipped, sample, quality,
                shipped.compress(sample, quality=quality))
  refined = _loss(shipped, sample, quality, shipped.compress(
      sample, quality=quality, refine_steps=20))
  # Measured on the sample: 2-5% less.
  assert refined < 0.99 * plain, (refined, plain)


def test_refined_tiles_code_their_own_pixels(shipped, sample, monkeypatch):
  """In coding tiles of 16 latents (3 x 2 of them on the sample), each tile
  is refined against its own pixels, with its neighbours' latents around
  it: misplaced pixels or context would make the files cost more, not
  less."""
  monkeypatch.setattr(codec, "TILE", 16)
  monkeypatch.setattr(codec, "TRANSFORM_TILE", 16)
  quality = 5
  plain = shipped.compress(sample, quality=quality)
  refined = shipped.compress(sample, quality=quality, refine_steps=20)
  assert _loss(shipped, sample, quality, refined) < 0.99 * _loss(
      shipped, sample, quality, plain)


def test_refinement_is_bounded(shipped, sample):
  with pytest.raises(codec.RefinementError, match="out of range"):
    shipped.compress(sample, refine_steps=codec.MAX_REFINE_STEPS + 1)


def test_max_bpp_refines_each_quality_it_tries(shipped, sample):
  image = sample[:256, :256]
  data, quality = shipped.compress_to_rate(image, 0.5, refine_steps=5)
  pixels = image.shape[0] * image.shape[1]
  assert 8 * len(data) / pixels <= 0.5
  plain, plain_quality = shipped.compress_to_rate(image, 0.5)
  # Refined latents cost fewer bits, so a higher quality fits.
  assert quality >= plain_quality
  shipped.decompress(data)


@pytest.mark.parametrize("quality", [2, 9])
def test_the_exported_objective_is_the_files_loss(shipped, sample, quality):
  """The loss the search descends, at g_a's latents, against the bytes and
  pixels of the plain file (one coding tile: the sample is 48 x 32
  latents): a wrong λ, pixel count or crop would be far off."""
  signatures = shipped.module.signatures
  latents = signatures["analyze"](tile=tf.constant(sample))["latents"]
  objective = signatures["refinement_loss"](
      latents=latents, context=latents, offset=tf.constant([0, 0]),
      tile=tf.constant(sample), quality=tf.constant(float(quality)),
      shift=tf.zeros_like(latents))
  real = _loss(shipped, sample, quality,
               shipped.compress(sample, quality=quality))
  np.testing.assert_allclose(objective["loss"].numpy(), real, rtol=0.02)
  np.testing.assert_array_equal(objective["latents"], latents)
