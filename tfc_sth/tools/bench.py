"""Speed and memory: coding seconds per image, and training throughput.

Every time is the median of several runs after warm-up runs, reported with
its minimum and maximum, because one-off costs (graph tracing, oneDNN
kernel set-up for a new image size, page faults) would otherwise dominate.
Peak memory is the process's peak resident set while coding (Linux
VmHWM, reset before the runs), beside its resident set with the model
loaded.
"""

import time

import numpy as np
import tensorflow as tf

from tfc_sth.training import schedule


def _spread(seconds, megapixels):
  median = float(np.median(seconds))
  return {"median_seconds": median, "min_seconds": float(np.min(seconds)),
          "max_seconds": float(np.max(seconds)), "runs": len(seconds),
          "megapixels_per_second": megapixels / median}


def _memory_mb(field):
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  return float("nan")


def _reset_peak_memory():
  try:  # Linux: "5" resets VmHWM to the current resident set.
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
  except OSError:
    pass


def coding(codec, image, runs=7, warm_up=2, quality=None):
  """Encode and decode times of a loaded `codec.Codec` on one uint8 image,
  at a quality level (default: the model's)."""
  for _ in range(warm_up):
    data = codec.compress(image, quality=quality)
    codec.decompress(data)
  resident = _memory_mb("VmRSS")
  _reset_peak_memory()
  encode, decode = [], []
  for _ in range(runs):
    start = time.perf_counter()
    data = codec.compress(image, quality=quality)
    encode.append(time.perf_counter() - start)
    start = time.perf_counter()
    codec.decompress(data)
    decode.append(time.perf_counter() - start)
  height, width = image.shape[:2]
  megapixels = height * width / 1e6
  return {"width": width, "height": height,
          "quality": codec.check_quality(quality), "num_bytes": len(data),
          "bpp": 8 * len(data) / (height * width),
          "encode": _spread(encode, megapixels),
          "decode": _spread(decode, megapixels),
          "resident_mb": resident, "peak_mb": _memory_mb("VmHWM")}


class _StepTimes(tf.keras.callbacks.Callback):

  def __init__(self):
    super().__init__()
    self.seconds = []

  def on_train_batch_begin(self, batch, logs=None):
    self._start = time.perf_counter()

  def on_train_batch_end(self, batch, logs=None):
    self.seconds.append(time.perf_counter() - self._start)


def training(config, steps=10, warm_up=3):
  """Seconds per training step of `config` (a `TrainConfig`), per phase kind.

  Runs Keras `fit` on random patches of the configured batch and patch size
  through the soft-then-hard schedule: the soft phase (noise, everything
  trained), then the hard phase (rounding, encoder frozen). Returns
  {"soft": spread, "hard": spread} with megapixels per second of training
  images.
  """
  from tfc_sth import training as training_lib  # pylint: disable=g-import-not-at-top
  model, _ = training_lib.build(config)
  shape = (config.batch_size, config.patch_size, config.patch_size, 3)
  patches = tf.data.Dataset.from_tensors(
      tf.random.stateless_uniform(shape, (config.seed, 0))).repeat()
  per_phase = warm_up + steps
  times = _StepTimes()
  model.fit(patches, epochs=1, steps_per_epoch=2 * per_phase, verbose=0,
            callbacks=[schedule.PhaseSchedule(
                schedule.phases_for("sth", per_phase, per_phase,
                                    config.mixed_precision)), times])
  megapixels = config.batch_size * config.patch_size ** 2 / 1e6
  return {"soft": _spread(times.seconds[warm_up:per_phase], megapixels),
          "hard": _spread(times.seconds[per_phase + warm_up:], megapixels)}
