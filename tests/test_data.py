"""Training and validation pipelines, from file globs and from TFDS."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tfc_sth.training import data


@pytest.fixture
def image_glob(tmp_path, smooth_image, png_bytes):
  (tmp_path / "rgb.png").write_bytes(png_bytes(smooth_image(70, 90, seed=1)))
  gray16 = smooth_image(80, 64, seed=2, channels=1).astype(np.uint16) * 257
  (tmp_path / "gray16.png").write_bytes(png_bytes(gray16))
  (tmp_path / "small.png").write_bytes(png_bytes(smooth_image(20, 20)))
  return str(tmp_path / "*.png")


def test_glob_images_are_rgb_uint8(image_glob):
  images = list(data.images_from_glob(image_glob))
  assert len(images) == 3
  assert all(x.dtype == tf.uint8 and x.shape[-1] == 3 for x in images)


def test_glob_without_matches_is_an_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="No files match"):
    data.images_from_glob(str(tmp_path / "*.png"))


def test_training_patches_skip_small_images_and_are_in_unit_range(image_glob):
  patches = data.training_patches(
      data.images_from_glob(image_glob), patch_size=32, batch_size=4, seed=1)
  for batch in patches.take(5):
    assert batch.shape == (4, 32, 32, 3) and batch.dtype == tf.float32
    assert 0. <= float(tf.reduce_min(batch)) and float(
        tf.reduce_max(batch)) <= 1.
  # random_crop fails on an image smaller than the patch: these batches
  # exist only because the 20x20 image was skipped.


def test_validation_crops_are_central_and_same_size(image_glob):
  crops = list(data.validation_crops(data.images_from_glob(image_glob), 48))
  assert len(crops) == 2 and all(c.shape == (1, 48, 48, 3) for c in crops)


def test_tfds_dataset_by_name():
  with tfds.testing.mock_data(num_examples=4,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    images = data.images_from_tfds("clic", "train")
    batch = next(iter(data.training_patches(images, 8, 2, seed=0)))
  assert batch.shape == (2, 8, 8, 3)
