"""Training a `CompressionModel` end to end: data, schedule, checkpoints, export.

`train_dir` holds everything a run needs to resume: `config.json` (the
model and schedule), `checkpoints/`, TensorBoard scalars in `logs/` and
sample reconstructions in `samples/`. Calling `train` again with the same
`train_dir` resumes from the last checkpoint, in the phase it was in.
"""

import csv
import dataclasses
import json
import math
import os
import time
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf

from tfc_sth.model import architectures
from tfc_sth.training import data
from tfc_sth import export
from tfc_sth.training import schedule


class ConfigError(ValueError):
  """A training configuration that cannot run."""


@dataclasses.dataclass
class TrainConfig:
  """What defines a run. Fields marked in `MODEL_FIELDS` must not change on resume."""
  model: str = "mean_scale_hyperprior"
  num_filters: int = 128
  latent_channels: int = 192
  delta: str = "none"
  kernel_parameter: str = "rdft"
  num_slices: int = 6
  attention: bool = False
  lmbda: float = 0.01
  qualities: int = 1
  lmbda_min: Optional[float] = None
  quantization: str = "sth"
  mixed_precision: bool = False
  soft_steps: int = 10000
  hard_steps: int = 2000
  batch_size: int = 8
  patch_size: int = 128
  learning_rate: float = 1e-4
  warmup_steps: Optional[int] = None
  clip_norm: float = 1.0
  steps_per_epoch: int = 100
  seed: int = 0
  dataset: Optional[str] = None
  data_dir: Optional[str] = None
  train_glob: Optional[str] = None
  valid_glob: Optional[str] = None
  valid_crop: int = 256
  init_from: Optional[str] = None

  MODEL_FIELDS = ("model", "num_filters", "latent_channels", "delta",
                  "kernel_parameter", "num_slices", "attention", "qualities",
                  "quantization")
  # Warm-up of a run that starts from an exported model's weights with a
  # fresh optimizer (Adam's first moments are poor estimates).
  EXPORT_WARMUP_STEPS = 500
  # Options that only some architectures take (see `architectures.options`).
  ARCHITECTURE_OPTIONS = ("num_slices", "attention")

  def lmbdas(self):
    """λ per quality level: geometric from lmbda_min up to lmbda."""
    if self.qualities == 1:
      return [self.lmbda]
    if not self.lmbda_min or not 0 < self.lmbda_min < self.lmbda:
      raise ConfigError(f"--qualities={self.qualities} needs 0 < "
                        f"--lmbda_min < --lmbda (the lowest and highest "
                        "quality's λ)")
    ratio = (self.lmbda / self.lmbda_min) ** (1 / (self.qualities - 1))
    return [self.lmbda_min * ratio ** q for q in range(self.qualities)]

  def init_from_export(self):
    return bool(self.init_from) and export.is_export(self.init_from)

  def warmup(self):
    if self.warmup_steps is not None:
      return self.warmup_steps
    return self.EXPORT_WARMUP_STEPS if self.init_from_export() else 0

  def check(self, downsampling):
    if not (self.train_glob or self.dataset):
      raise ConfigError("Give --train_glob or --dataset.")
    for name in ("patch_size", "valid_crop"):
      if getattr(self, name) % downsampling:
        raise ConfigError(f"{name}={getattr(self, name)} is not a multiple "
                          f"of the model's downsampling ({downsampling})")

  def build_model(self):
    if self.model not in architectures.ARCHITECTURES:
      raise ConfigError(f"unknown model {self.model!r}")
    takes = architectures.options(self.model)
    defaults = {f.name: f.default for f in dataclasses.fields(self)}
    options = {}
    for name in self.ARCHITECTURE_OPTIONS:
      value = getattr(self, name)
      if name in takes:
        options[name] = value
      elif value != defaults[name]:
        raise ConfigError(f"--{name} does not apply to {self.model}")
    try:
      return architectures.CompressionModel(
          self.model, lmbdas=self.lmbdas(), num_filters=self.num_filters,
          latent_channels=self.latent_channels, delta=self.delta,
          kernel_parameter=self.kernel_parameter, **options)
    except ValueError as e:
      raise ConfigError(str(e)) from None


def _check_resumable(config, train_dir):
  path = os.path.join(train_dir, "config.json")
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    changed = [k for k in TrainConfig.MODEL_FIELDS
               if k in saved and saved[k] != getattr(config, k)]
    if changed:
      raise ConfigError(
          f"{train_dir} holds a run with different {', '.join(changed)} "
          f"({', '.join(f'{k}={saved[k]!r}' for k in changed)}); "
          "use another --train_dir.")
  os.makedirs(train_dir, exist_ok=True)
  with open(path, "w") as f:
    json.dump(dataclasses.asdict(config), f, indent=2)


def datasets(config):
  """(training patches, validation crops or None) from the configured source."""
  if config.train_glob:
    train_images = data.images_from_glob(config.train_glob)
  elif config.dataset:
    train_images = data.images_from_tfds(config.dataset, "train",
                                         config.data_dir)
  else:
    raise ConfigError("Give --train_glob or --dataset.")  # See check().
  train = data.training_patches(train_images, config.patch_size,
                                config.batch_size, seed=config.seed)
  valid = None
  if config.valid_glob:
    valid = data.validation_crops(
        data.images_from_glob(config.valid_glob), config.valid_crop)
  elif config.dataset:
    valid = data.validation_crops(
        data.images_from_tfds(config.dataset, "validation", config.data_dir),
        config.valid_crop)
  return train, valid


class SampleReconstructions(tf.keras.callbacks.Callback):
  """Writes original | reconstruction of one validation crop each epoch."""

  def __init__(self, image, directory):
    super().__init__()
    self.image = image
    self.directory = directory
    self.writer = tf.summary.create_file_writer(
        os.path.join(directory, "..", "logs", "samples"))

  def on_epoch_end(self, epoch, logs=None):
    levels = self.model.levels()
    x_hat, _ = self.model(self.image, training=False,
                          level=levels[len(levels) // 2])
    pair = tf.concat([self.image, tf.clip_by_value(x_hat, 0., 1.)], axis=2)
    step = int(self.model.optimizer.iterations)
    png = tf.io.encode_png(tf.image.convert_image_dtype(pair[0], tf.uint8))
    os.makedirs(self.directory, exist_ok=True)
    tf.io.write_file(os.path.join(self.directory, f"step_{step:07d}.png"), png)
    with self.writer.as_default():
      tf.summary.image("reconstruction", pair, step=step)


VALIDATION_FILE = "validation.csv"


class ValidationLog(tf.keras.callbacks.Callback):
  """Validates at every quality level after each epoch.

  The means over levels go into the epoch's logs as `val_loss`, `val_bpp`,
  `val_mse` and `val_psnr` (shown by the progress bar and TensorBoard); every
  level's figures go to a CSV file with the step and the training seconds so
  far (summed over resumed runs), for curves of quality against wall time.
  """

  FIELDS = ("step", "seconds", "quality", "lmbda", "loss", "bpp", "mse",
            "psnr")

  def __init__(self, data, path):
    super().__init__()
    self.data = data
    self.path = path
    self._validate = None

  def on_train_begin(self, logs=None):
    self._offset = 0.
    if os.path.exists(self.path):
      with open(self.path) as f:
        rows = list(csv.DictReader(f))
      if rows:
        self._offset = float(rows[-1]["seconds"])
    else:
      with open(self.path, "w") as f:
        f.write(",".join(self.FIELDS) + "\n")
    self._start = time.perf_counter()
    model = self.model
    self._validate = tf.function(lambda x: [
        model.rate_distortion(x, training=False, level=level)
        for level in model.levels()])

  def _results(self):
    # In float32 whatever the phase's precision, as decoding computes: the
    # function is traced once, at the first call, under this precision.
    precision = self.model.precision
    self.model.set_precision("float32")
    try:
      return [np.array([[float(v) for v in r] for r in self._validate(x)])
              for x in self.data]
    finally:
      self.model.set_precision(precision)

  def on_epoch_end(self, epoch, logs=None):
    seconds = self._offset + time.perf_counter() - self._start
    results = self._results()
    totals, count = sum(results), len(results)
    means = totals / count  # [level, (loss, bpp, mse)]
    psnr = 10 * np.log10(255. ** 2 / means[:, 2])
    step = int(self.model.optimizer.iterations)
    with open(self.path, "a") as f:
      for level, (row, level_psnr) in enumerate(zip(means, psnr)):
        f.write(",".join(str(v) for v in (
            step, round(seconds, 1), level + 1, self.model.lmbdas[level],
            *row, level_psnr)) + "\n")
    if logs is not None:
      mean = means.mean(axis=0)
      logs.update(val_loss=mean[0], val_bpp=mean[1], val_mse=mean[2],
                  val_psnr=float(psnr.mean()))


def build(config):
  """A compiled model with a built optimizer, ready to restore and fit."""
  model = config.build_model()
  phases = schedule.phases_for(config.quantization, config.soft_steps,
                               config.hard_steps, config.mixed_precision)
  optimizer = tf.keras.optimizers.Adam(
      schedule.LearningRate(config.learning_rate,
                            schedule.total_steps(phases), config.warmup()),
      global_clipnorm=config.clip_norm or None)
  model.compile(optimizer=optimizer)
  model.create_variables()
  optimizer.build(model.trainable_variables)
  return model, phases


def train(config, train_dir, export_dir=None, verbose=1, card=None,
          callbacks=()):
  """Trains (or resumes) the run in `train_dir`; returns the trained model.

  `callbacks` are extra Keras callbacks, run after the schedule's own.
  """
  tf.keras.utils.set_random_seed(config.seed)
  model, phases = build(config)
  # Refuse a run that cannot start before anything is written to train_dir.
  config.check(model.downsampling)
  _check_resumable(config, train_dir)
  step = schedule.restore(model, os.path.join(train_dir, "checkpoints"))
  if not step and config.init_from_export():
    # Weights only: a fresh optimizer and schedule, with a warm-up.
    export.import_weights(model, config.init_from)
  elif not step and config.init_from:
    # A branch: weights, optimizer state and step count of another run.
    step = schedule.restore(model, config.init_from, required=True)
  total = schedule.total_steps(phases)
  epochs = math.ceil(total / config.steps_per_epoch)
  train_data, valid_data = datasets(config)
  callbacks = [
      schedule.PhaseSchedule(phases),
      *callbacks,
      schedule.Checkpoints(os.path.join(train_dir, "checkpoints"), phases),
      tf.keras.callbacks.TensorBoard(os.path.join(train_dir, "logs"),
                                     update_freq=config.steps_per_epoch // 4
                                     or 1),
      tf.keras.callbacks.TerminateOnNaN(),
  ]
  if valid_data is not None:
    sample = next(iter(valid_data))
    callbacks.append(
        SampleReconstructions(sample, os.path.join(train_dir, "samples")))
    # Before TensorBoard and the progress bar, which show what it logs.
    callbacks.insert(1, ValidationLog(
        valid_data, os.path.join(train_dir, VALIDATION_FILE)))
  if step < total:
    logging.info("Training %s (%s) from step %d to %d.", config.model,
                 config.quantization, step, total)
    model.fit(train_data, epochs=epochs,
              steps_per_epoch=config.steps_per_epoch,
              initial_epoch=step // config.steps_per_epoch,
              callbacks=callbacks, verbose=verbose)
  if not np.isfinite(model.get_weights()[0]).all():
    raise RuntimeError("Training diverged (non-finite weights).")
  if export_dir:
    model_id = export.export(model, export_dir, card=card)
    logging.info("Exported %s to %s.", model_id, export_dir)
  return model
