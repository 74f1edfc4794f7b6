#!/usr/bin/env python3
"""Where a training step spends its time, by kind of operation, from
TensorFlow's profiler: the model `tfc-sth bench` trains (mixed bfloat16
soft phase, batch 8 of 128x128 random patches).

    tools/profile_training.py [STEPS] [hard]

Times are seconds per step summed over TensorFlow's compute threads, so
they add up to about the step's wall time times the cores in use.
"""

import collections
import glob
import sys
import tempfile

import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from tfc_sth.tools import bench
from tfc_sth.training import schedule
from tfc_sth.training import trainer

# (kind, what an op's name contains), the first match wins.
KINDS = [
    ("convolutions", ("Conv2D",)),
    ("entropy model", ("gaussian_conditional", "factorized")),
    ("GDN", ("gdn",)),
    ("kernel parameterization", ("kernel",)),
    ("optimizer", ("Adam", "Assign", "L2Loss", "clip")),
    ("slices", ("Slice", "Pad")),
]


def kind_of(op):
  return next((kind for kind, parts in KINDS
               if any(part in op for part in parts)), "other")


def op_seconds(logdir):
  """{op name: seconds} summed over the compute threads of a trace."""
  space = xplane_pb2.XSpace()
  path, = glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)
  with open(path, "rb") as f:
    space.ParseFromString(f.read())
  seconds = collections.Counter()
  for plane in space.planes:
    for line in plane.lines:
      if line.name.startswith("tf_Compute"):
        for event in line.events:
          name = plane.event_metadata[event.metadata_id].name
          if not name.startswith("ExecutorState"):  # Encloses the others.
            seconds[name] += event.duration_ps / 1e12
  return seconds


def main(steps=5, phase="soft"):
  config = trainer.TrainConfig(mixed_precision=True)
  model, _ = trainer.build(config)
  patches = bench.random_patches(config.batch_size, config.patch_size)
  # The schedule's phase, long enough for warm-up and the profiled steps.
  first = 0 if phase == "hard" else 100
  timing = schedule.PhaseSchedule(schedule.phases_for(
      "sth", first, 100, config.mixed_precision))
  bench.fit_times(model, patches, 3, [timing])
  with tempfile.TemporaryDirectory() as logdir:
    tf.profiler.experimental.start(logdir)
    wall = bench.fit_times(model, patches, steps, [timing])
    tf.profiler.experimental.stop()
    seconds = op_seconds(logdir)
  kinds = collections.Counter()
  for op, spent in seconds.items():
    kinds[kind_of(op)] += spent / steps
  total = sum(kinds.values())
  print(f"{phase} step: {sorted(wall)[len(wall) // 2]:.3f} s wall (median "
        f"of {steps}); operations {total:.3f} s over the threads:")
  for kind, spent in kinds.most_common():
    print(f"  {kind:24s} {spent:.3f} s  {100 * spent / total:4.1f}%")
  print("the 8 costliest operations:")
  for op, spent in seconds.most_common(8):
    print(f"  {spent / steps:.4f} s  {op}")


if __name__ == "__main__":
  main(*(int(a) if a.isdigit() else a for a in sys.argv[1:]))
