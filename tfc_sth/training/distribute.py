"""Training on several devices and machines, through tf.distribute.

- `default`: one device, no distribution.
- `mirrored`: `tf.distribute.MirroredStrategy` over this machine's GPUs, or
  over its logical CPU devices if it has none (one, unless configured).
- `multi_worker`: `tf.distribute.MultiWorkerMirroredStrategy` over the
  machines that the `TF_CONFIG` environment variable names, as in
  TensorFlow's own guides; every worker runs the same command.

`--batch_size` is the global batch; Keras splits it across the replicas, and
the train step scales each replica's loss so that the summed gradient is the
gradient of the global mean. Each worker keeps its own shard of the data:
a glob of photos is not a file per replica, so the pipeline is sharded by
data (every worker runs it and keeps its part of every global batch).

The project's own checkpoints, not `BackupAndRestore`: they also hold the
phase of soft then hard and the phase-end checkpoints that other runs branch
from. Every worker saves (saving reads variables aggregated across workers,
a collective step), the others into a scratch folder; every worker restores
from the chief's, so after any worker dies, restarting them all resumes from
the last checkpoint, in its phase. Only the chief writes logs, samples,
validation figures and the export.
"""

import os

import tensorflow as tf

DEFAULT = "default"
MIRRORED = "mirrored"
MULTI_WORKER = "multi_worker"
KINDS = (DEFAULT, MIRRORED, MULTI_WORKER)


def strategy(kind):
  """The `tf.distribute.Strategy` that `kind` names.

  A multi-worker strategy must be made before TensorFlow runs anything else
  in the process (it configures the collective ops at start-up).
  """
  if kind == DEFAULT:
    return tf.distribute.get_strategy()
  if kind == MIRRORED:
    devices = (tf.config.list_logical_devices("GPU")
               or tf.config.list_logical_devices("CPU"))
    return tf.distribute.MirroredStrategy([d.name for d in devices])
  if kind == MULTI_WORKER:
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise ValueError(f"Unknown distribution {kind!r}; expected one of {KINDS}.")


def is_chief(distribution):
  return distribution.extended.should_checkpoint


def worker_index(distribution):
  """0 for the chief (or a single worker), then 1, 2, ... for the others."""
  resolver = getattr(distribution, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return 0
  has_chief = "chief" in resolver.cluster_spec().jobs
  return resolver.task_id + (resolver.task_type == "worker" and has_chief)


def shard_by_data(dataset):
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = (
      tf.data.experimental.AutoShardPolicy.DATA)
  return dataset.with_options(options)


def checkpoint_dir(train_dir, distribution):
  """Where this worker writes checkpoints; all restore from the chief's."""
  if is_chief(distribution):
    return os.path.join(train_dir, "checkpoints")
  resolver = distribution.cluster_resolver
  return os.path.join(train_dir, "workers",
                      f"{resolver.task_type}_{resolver.task_id}",
                      "checkpoints")

