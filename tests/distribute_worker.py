"""Trains a tiny model under tf.distribute in a process of its own, for
test_distribute.py (logical devices and TF_CONFIG are fixed per process).

    python distribute_worker.py mirrored OUT.json PHOTOS_GLOB
    python distribute_worker.py multi_worker TRAIN_DIR PHOTOS_GLOB [DIE_AT_STEP]

`mirrored` trains the same run on one device and on two logical CPU devices
and writes both loss curves. `multi_worker` is one worker of the cluster
TF_CONFIG names (soft then hard, the chief exports); with DIE_AT_STEP it
kills itself with SIGKILL at that step. It writes TRAIN_DIR/weights_<i>.npz.
"""

import json
import os
import signal
import sys

from absl import logging
import numpy as np
import tensorflow as tf

TINY = dict(num_filters=8, latent_channels=12, patch_size=64, valid_crop=64,
            steps_per_epoch=1, batch_size=4, learning_rate=1e-3)


def _config(photos, **kwargs):
  from tfc_sth.training import trainer  # pylint: disable=g-import-not-at-top
  return trainer.TrainConfig(model="mean_scale_hyperprior", train_glob=photos,
                             **dict(TINY, **kwargs))


class Losses(tf.keras.callbacks.Callback):
  """The loss of every step (one step per epoch: Keras's epoch mean)."""

  def __init__(self):
    super().__init__()
    self.losses = []

  def on_epoch_end(self, epoch, logs=None):
    self.losses.append(float(logs["loss"]))


def mirrored(out_path, photos):
  cpu, = tf.config.list_physical_devices("CPU")
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  from tfc_sth.model import quantization  # pylint: disable=g-import-not-at-top
  from tfc_sth.training import trainer  # pylint: disable=g-import-not-at-top
  # Noise as a function of the latent, not of a random stream: every
  # replica runs random ops of its own, which cannot draw what one device
  # draws for the whole batch. Everything else is the real path.
  quantization.uniform_noise = lambda like: tf.stop_gradient(tf.math.floormod(
      tf.sin(like * 12.9898) * 43758.5453, 1.) - .5)
  results = {}
  for kind in ("default", "mirrored"):
    losses = Losses()
    model = trainer.train(
        _config(photos, soft_steps=3, hard_steps=3, distribute=kind,
                valid_glob=photos),
        os.path.join(os.path.dirname(out_path), kind), verbose=0,
        callbacks=[losses])
    results[kind] = dict(
        losses=losses.losses,
        replicas=model.distribute_strategy.num_replicas_in_sync,
        validation=open(os.path.join(os.path.dirname(out_path), kind,
                                     "validation.csv")).read())
  try:
    trainer.train(_config(photos, batch_size=3, distribute="mirrored"),
                  os.path.join(os.path.dirname(out_path), "uneven"))
  except trainer.ConfigError as e:
    results["uneven"] = str(e)
  with open(out_path, "w") as f:
    json.dump(results, f)


class Die(tf.keras.callbacks.Callback):

  def __init__(self, step):
    super().__init__()
    self.step = step

  def on_train_batch_end(self, batch, logs=None):
    if int(self.model.optimizer.iterations.numpy()) == self.step:
      os.kill(os.getpid(), signal.SIGKILL)


def multi_worker(train_dir, photos, die_at=None):
  from tfc_sth.training import trainer  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.INFO)  # "Restored ... at step N (phase P)".
  index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
  model = trainer.train(
      _config(photos, soft_steps=3, hard_steps=5, distribute="multi_worker"),
      train_dir, os.path.join(train_dir, "export"), verbose=0,
      callbacks=[Die(int(die_at))] if die_at else [])
  np.savez(os.path.join(train_dir, f"weights_{index}.npz"),
           *model.get_weights())
  print("phase", int(model.phase.numpy()), "step",
        int(model.optimizer.iterations.numpy()))


if __name__ == "__main__":
  {"mirrored": mirrored, "multi_worker": multi_worker}[sys.argv[1]](
      *sys.argv[2:])
