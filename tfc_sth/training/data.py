"""Training and validation pipelines from a TFDS name or a local file glob.

Photos are decoded once and kept in memory (a few hundred MB for a folder of
megapixel PNGs), so a training step never waits for PNG decoding.
"""

import tensorflow as tf


def _decode(path):
  # decode_image maps 16-bit PNGs to 8 bits and palette/gray/alpha to RGB.
  return tf.io.decode_image(tf.io.read_file(path), channels=3,
                            expand_animations=False)


def images_from_glob(pattern):
  """A dataset of uint8 RGB images, one per file matching `pattern`."""
  files = sorted(tf.io.gfile.glob(pattern))
  if not files:
    raise FileNotFoundError(f"No files match {pattern!r}.")
  return tf.data.Dataset.from_tensor_slices(files).map(
      _decode, num_parallel_calls=tf.data.AUTOTUNE)


def images_from_tfds(name, split, data_dir=None):
  """A dataset of uint8 RGB images from the TFDS dataset `name` (no download)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  dataset = tfds.load(name, split=split, data_dir=data_dir, download=False,
                      shuffle_files=split.startswith("train"))
  return dataset.map(lambda example: example["image"])


def _to_float(image):
  return tf.cast(image, tf.float32) / 255.


def training_patches(images, patch_size, batch_size, seed=0, cache=True):
  """Random, randomly flipped patches of `images`, batched, repeated forever.

  Images smaller than the patch in either dimension are skipped. The crops
  are a function of the seed and the patch's index in the stream, so the
  stream is the same however many threads or replicas read it.
  """
  images = images.filter(lambda x: tf.reduce_all(
      tf.shape(x)[:2] >= patch_size))
  if cache:
    images = images.cache()

  def crop(index, image):
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(
        tf.stack([tf.cast(seed, tf.int64), index]), 2))
    patch = tf.image.stateless_random_crop(
        image, (patch_size, patch_size, 3), seed=crop_seed)
    return tf.image.stateless_random_flip_left_right(patch, seed=flip_seed)

  return (images.shuffle(256, seed=seed).repeat().enumerate()
          .map(crop, num_parallel_calls=tf.data.AUTOTUNE)
          .batch(batch_size, drop_remainder=True)
          .map(_to_float)
          .prefetch(tf.data.AUTOTUNE))


def validation_crops(images, crop_size):
  """Central crops of `images` (same size, so one traced test function)."""
  images = images.filter(lambda x: tf.reduce_all(tf.shape(x)[:2] >= crop_size))
  crop = lambda x: tf.image.resize_with_crop_or_pad(x, crop_size, crop_size)
  return images.map(crop).batch(1).map(_to_float).cache().prefetch(2)
