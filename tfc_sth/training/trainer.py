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
import shutil
import time
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf

from tfc_sth.model import architectures
from tfc_sth.model import saun
from tfc_sth.training import data
from tfc_sth.training import distribute
from tfc_sth import export
from tfc_sth.runtime import image_io
from tfc_sth.training import schedule


class ConfigError(ValueError):
  """A training configuration that cannot run."""


def _field(default, help_text, choices=None):
  """A `TrainConfig` field with the help (and choices) of its flag."""
  metadata = dict(help=help_text)
  if choices is not None:
    metadata["choices"] = tuple(choices)
  return dataclasses.field(default=default, metadata=metadata)


def _non_default(options):
  """Architecture options but those at their defaults, so that runs compare
  equal whether or not an option was given at its default."""
  return {name: value for name, value in options.items()
          if name not in architectures.OPTIONS
          or value != architectures.OPTIONS[name].default}


@dataclasses.dataclass
class TrainConfig:
  """What defines a run, and the flags of `tfc-sth train`: each field's
  default, its flag's help and choices (`metadata`). Fields in
  `MODEL_FIELDS` must not change on resume."""
  model: str = _field("mean_scale_hyperprior", "Architecture.",
                      sorted(architectures.ARCHITECTURES))
  num_filters: int = _field(128, "Channels of the hidden layers (N).")
  latent_channels: int = _field(192, "Channels of the latent y (M).")
  delta_mode: str = _field(
      saun.NONE, "SAUN step Δ: none, per channel, or predicted by the "
      "hyperprior.", saun.DELTA_MODES)
  kernel_parameter: str = _field(
      "rdft", "Convolution kernel parameterisation (tfc).",
      ("rdft", "variable"))
  # A flag each, from the registry, which holds their defaults and help.
  architecture_options: dict = dataclasses.field(
      default_factory=dict, metadata=dict(options=architectures.OPTIONS))
  lmbda: float = _field(
      0.01, "λ: rate-distortion trade-off, loss = bpp + λ·MSE (8-bit "
      "scale); of the highest quality level for a ladder.")
  qualities: int = _field(
      1, "Quality levels: more than 1 trains one model for a rate ladder, "
      "with a per-channel Δ per level (needs --delta_mode=channel) and λ from "
      "--lmbda_min to --lmbda.")
  lmbda_min: Optional[float] = _field(
      None, "λ of the lowest quality level (with --qualities > 1); the "
      "levels' λ are spaced geometrically.")
  decoder_gain: bool = _field(
      False, "With --qualities > 1: a per-channel gain per level on ŷ "
      "before the synthesis, learnt by the decoder.")
  strategy: str = _field(
      "sth", "How to train: noise (AUN), ste, mixed, anneal (soft rounding, "
      "temperature raised over the run), or sth (soft then hard).",
      schedule.STRATEGIES)
  mixed_precision: bool = _field(
      False, "Transforms in bfloat16 (mixed precision) in every phase but "
      "the hard one.")
  soft_steps: int = _field(10000, "Steps of the first (soft) phase.")
  hard_steps: int = _field(
      2000, "Steps of the hard phase (other strategies train soft_steps + "
      "hard_steps steps in one phase).")
  batch_size: int = _field(8, "Patches per step.")
  patch_size: int = _field(128, "Side of the square training patches.")
  learning_rate: float = _field(
      1e-4, "Adam learning rate (divided by 10 for the last --decay_steps).")
  warmup_steps: Optional[int] = _field(
      None, "Linear learning-rate warm-up steps (default: 0, or 500 when "
      "--init_from is an exported model).")
  decay_steps: Optional[int] = _field(
      None, "Steps at the end of the run at a tenth of the learning rate "
      "(default: the last 20%).")
  clip_norm: float = _field(1.0, "Global gradient norm clip (0: none).")
  steps_per_epoch: int = _field(
      100, "Steps between checkpoints and validations.")
  seed: int = _field(0, "Random seed.")
  dataset: Optional[str] = _field(
      None, "TFDS dataset name (its data must be present; no download).")
  data_dir: Optional[str] = _field(None, "TFDS data directory.")
  train_glob: Optional[str] = _field(
      None, "Glob of training images (instead of --dataset).")
  valid_glob: Optional[str] = _field(None, "Glob of validation images.")
  valid_crop: int = _field(256, "Side of the central validation crops.")
  init_from: Optional[str] = _field(
      None, "Start a new run from a checkpoint (a checkpoint folder or path, "
      "e.g. RUN/checkpoints/phase_0_end: weights, optimizer state and step, "
      "then this run's schedule) or from an exported model (its weights "
      "only, a fresh optimizer and step 0).")
  distribute: str = _field(
      distribute.DEFAULT, "tf.distribute: default (one device), mirrored "
      "(this machine's GPUs, or its logical CPUs) or multi_worker (the "
      "machines TF_CONFIG names; run the same command on each). "
      "--batch_size is the global batch.", distribute.KINDS)

  MODEL_FIELDS = ("model", "num_filters", "latent_channels", "delta_mode",
                  "kernel_parameter", "architecture_options", "qualities",
                  "decoder_gain", "strategy")
  # Warm-up of a run that starts from an exported model's weights with a
  # fresh optimizer (Adam's first moments are poor estimates).
  EXPORT_WARMUP_STEPS = 500

  def __post_init__(self):
    self.architecture_options = _non_default(self.architecture_options)

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

  def check_data(self):
    """Refuses a run without training images, before anything is built."""
    if not (self.train_glob or self.dataset):
      raise ConfigError("give --train_glob or --dataset")

  def check(self, downsampling):
    self.check_data()
    for name in ("patch_size", "valid_crop"):
      if getattr(self, name) % downsampling:
        raise ConfigError(f"{name}={getattr(self, name)} is not a multiple "
                          f"of the model's downsampling ({downsampling})")

  def build_model(self):
    if self.model not in architectures.ARCHITECTURES:
      raise ConfigError(f"unknown model {self.model!r}")
    takes = architectures.options(self.model)
    for name in self.architecture_options:
      if name not in takes:
        raise ConfigError(f"--{name} does not apply to {self.model}")
    try:
      return architectures.CompressionModel(
          self.model, lmbdas=self.lmbdas(), num_filters=self.num_filters,
          latent_channels=self.latent_channels, delta_mode=self.delta_mode,
          kernel_parameter=self.kernel_parameter,
          decoder_gain=self.decoder_gain, **self.architecture_options)
    except ValueError as e:
      raise ConfigError(str(e)) from None


# Fields renamed since config.json files were first written: {old: new}.
_RENAMED = {"quantization": "strategy", "delta": "delta_mode"}


def _read_config(path):
  """A config.json with today's field names; older files also hold each
  architecture option as a field of its own."""
  with open(path) as f:
    saved = json.load(f)
  saved = {_RENAMED.get(k, k): v for k, v in saved.items()}
  options = {k: saved.pop(k) for k in architectures.OPTIONS if k in saved}
  if options:
    saved["architecture_options"] = _non_default(options)
  return saved


def _check_resumable(config, train_dir, write=True):
  """Refuses a train_dir of another model (on every worker, so that none
  waits for a chief that refused); the chief writes config.json."""
  path = os.path.join(train_dir, "config.json")
  if os.path.exists(path):
    saved = _read_config(path)
    changed = [k for k in TrainConfig.MODEL_FIELDS
               if k in saved and saved[k] != getattr(config, k)]
    if changed:
      raise ConfigError(
          f"{train_dir} holds a run with different {', '.join(changed)} "
          f"({', '.join(f'{k}={saved[k]!r}' for k in changed)}); "
          "use another --train_dir.")
  if write:
    os.makedirs(train_dir, exist_ok=True)
    # Atomically: other workers may be reading it.
    image_io.write_atomically(path, json.dumps(
        dataclasses.asdict(config), indent=2).encode(), force=True)


def datasets(config):
  """(training patches, validation crops or None) from the configured source."""
  if config.train_glob:
    train_images = data.images_from_glob(config.train_glob)
  else:  # One or the other: see `TrainConfig.check_data`.
    train_images = data.images_from_tfds(config.dataset, "train",
                                         config.data_dir)
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
    step = schedule.step_of(self.model)
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
    step = schedule.step_of(self.model)
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
  phases = schedule.phases_for(config.strategy, config.soft_steps,
                               config.hard_steps, config.mixed_precision)
  optimizer = tf.keras.optimizers.Adam(
      schedule.LearningRate(config.learning_rate,
                            schedule.total_steps(phases), config.warmup(),
                            config.decay_steps),
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
  # First: a multi-worker strategy configures TensorFlow at start-up.
  distribution = distribute.strategy(config.distribute)
  chief = distribute.is_chief(distribution)
  if config.batch_size % distribution.num_replicas_in_sync:
    raise ConfigError(f"--batch_size={config.batch_size} does not split "
                      f"evenly over {distribution.num_replicas_in_sync} "
                      "replicas")
  tf.keras.utils.set_random_seed(config.seed)
  with distribution.scope():
    model, phases = build(config)
  # Refuse a run that cannot start before anything is written to train_dir.
  config.check(model.downsampling)
  checkpoints = os.path.join(train_dir, "checkpoints")
  if (config.init_from_export()
      and tf.train.latest_checkpoint(checkpoints) is None):
    # Weights only: a fresh optimizer and schedule, with a warm-up.
    try:
      export.import_weights(model, config.init_from)
    except ValueError as e:
      raise ConfigError(f"--init_from: {e}") from None
  _check_resumable(config, train_dir, write=chief)
  step = schedule.restore(model, checkpoints)
  if not step and config.init_from and not config.init_from_export():
    # A branch: weights, optimizer state and step count of another run.
    step = schedule.restore(model, config.init_from, required=True)
  total = schedule.total_steps(phases)
  epochs = math.ceil(total / config.steps_per_epoch)
  train_data, valid_data = datasets(config)
  # The data's seeds are fixed by now and shared, each worker keeping its
  # shard; the noise and quality levels, drawn in the train step, are each
  # worker's own.
  tf.random.set_seed(config.seed + distribute.worker_index(distribution))
  callbacks = [
      schedule.PhaseSchedule(phases),
      *callbacks,
      schedule.Checkpoints(distribute.checkpoint_dir(train_dir, distribution),
                           phases),
      tf.keras.callbacks.TerminateOnNaN(),
  ]
  if chief:
    callbacks.insert(-1, tf.keras.callbacks.TensorBoard(
        os.path.join(train_dir, "logs"),
        update_freq=config.steps_per_epoch // 4 or 1))
  if chief and valid_data is not None:
    sample = next(iter(valid_data))
    callbacks.append(
        SampleReconstructions(sample, os.path.join(train_dir, "samples")))
    # Before TensorBoard and the progress bar, which show what it logs.
    callbacks.insert(1, ValidationLog(
        valid_data, os.path.join(train_dir, VALIDATION_FILE)))
  if step < total:
    logging.info("Training %s (%s) from step %d to %d.", config.model,
                 config.strategy, step, total)
    model.fit(distribute.shard_by_data(train_data), epochs=epochs,
              steps_per_epoch=config.steps_per_epoch,
              initial_epoch=step // config.steps_per_epoch,
              callbacks=callbacks, verbose=verbose if chief else 0)
  if not np.isfinite(model.get_weights()[0]).all():
    raise RuntimeError("Training diverged (non-finite weights).")
  if export_dir:
    # Every worker exports (copying the weights is a collective step); only
    # the chief's export is kept.
    directory = export_dir if chief else os.path.join(
        os.path.dirname(distribute.checkpoint_dir(train_dir, distribution)),
        "export")
    model_id = export.export(model, directory, card=card)
    if chief:
      logging.info("Exported %s to %s.", model_id, export_dir)
    else:
      shutil.rmtree(directory)
  return model
