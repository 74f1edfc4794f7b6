"""The training schedule: phases of quantization modes, switched inside `fit`.

Soft then hard (Guo et al., ICML 2021) is two phases: additive uniform noise
on everything, then `hard` quantization with the analysis transforms (g_a,
h_a) frozen, so that the decoder and entropy model are fine-tuned on exactly
the rounded latents decoding will see. The baselines (`noise`, `ste`,
`mixed`, and `anneal`, whose soft rounding temperature rises over the run)
are one phase of the same total length, so every strategy trains from the
same command and the same step budget.

`PhaseSchedule` is a Keras callback: at the first step of a phase it sets the
quantization mode, freezes or unfreezes the encoder and re-traces the train
function (Keras reads `model.train_function` anew at every step). The phase
index lives in `model.phase`, a variable saved with every checkpoint, and the
phase is derived from the optimizer's step count, so a run restored in either
phase resumes in that phase at that step.

Optimizer state carries over the switch unchanged: the Adam moments of the
decoder and entropy model stay valid estimates (their gradients change in
kind only slightly, noise -> rounding), while resetting them would restart
bias correction with large, poorly scaled first steps on a trained model.
The learning rate follows one schedule over the total step count
(`LearningRate`), independent of the phase, so that strategies with
equal total steps see the same learning rates.
"""

import dataclasses
import os

from absl import logging
import tensorflow as tf

from tfc_sth.model import layers
from tfc_sth.model import quantization

STRATEGIES = ("noise", "ste", "mixed", "anneal", "sth")

# Soft rounding temperature of `anneal`: raised geometrically from the first
# value (nearly the identity) to the last (nearly rounding) over its phase.
ANNEAL_ALPHA = (1., 16.)


@dataclasses.dataclass(frozen=True)
class Phase:
  mode: str  # `quantization.MODES`.
  steps: int
  freeze_encoder: bool = False
  precision: str = layers.FLOAT32  # Of the transforms: a Keras policy.


def phases_for(strategy, soft_steps, hard_steps, mixed_precision=False):
  """The phases of a strategy; every strategy trains soft + hard steps.

  With `mixed_precision`, the transforms compute in bfloat16 except in the
  hard phase, which sees exactly the float32 latents that coding sees.
  """
  precision = layers.MIXED_BFLOAT16 if mixed_precision else layers.FLOAT32
  if strategy == "sth":
    return [Phase(quantization.NOISE, soft_steps, precision=precision),
            Phase(quantization.HARD, hard_steps, freeze_encoder=True)]
  if strategy in STRATEGIES:  # One phase, in the mode of the same name.
    return [Phase(strategy, soft_steps + hard_steps, precision=precision)]
  raise ValueError(
      f"Unknown strategy {strategy!r}; expected one of {STRATEGIES}.")


def total_steps(phases):
  return sum(p.steps for p in phases)


def step_of(model):
  """The optimizer's step count (`int()` refuses a distributed variable)."""
  return int(model.optimizer.iterations.numpy())


def phase_at(phases, step):
  """Index of the phase that step `step` (0-based) belongs to."""
  end = 0
  for index, phase in enumerate(phases):
    end += phase.steps
    if step < end:
      return index
  return len(phases) - 1


def soft_round_alpha(step, steps):
  """α at step `step` (0-based) of an `anneal` phase of `steps` steps."""
  start, end = ANNEAL_ALPHA
  return start * (end / start) ** (min(step, steps) / max(steps, 1))


class LearningRate(tf.keras.optimizers.schedules.LearningRateSchedule):
  """A linear warm-up over `warmup` steps, constant, then a tenth of it for
  the last `decay_steps` steps (default: the last fifth)."""

  def __init__(self, learning_rate, total, warmup=0, decay_steps=None):
    self.learning_rate = float(learning_rate)
    self.total = int(total)
    self.warmup = int(warmup)
    self.decay_steps = None if decay_steps is None else int(decay_steps)
    self.decay_start = (int(0.8 * self.total) if decay_steps is None
                        else max(self.total - self.decay_steps, 0))

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    rate = tf.where(step < self.decay_start,
                    self.learning_rate, self.learning_rate / 10)
    if self.warmup:
      rate *= tf.minimum(1., (step + 1) / self.warmup)
    return rate

  def get_config(self):
    return dict(learning_rate=self.learning_rate, total=self.total,
                warmup=self.warmup, decay_steps=self.decay_steps)


class PhaseSchedule(tf.keras.callbacks.Callback):
  """Puts the model into the phase its step count belongs to."""

  def __init__(self, phases):
    super().__init__()
    self.phases = list(phases)

  def _enter(self, index):
    phase = self.phases[index]
    self.model.phase.assign(index)
    self.model.mode = phase.mode
    self.model.freeze_encoder(phase.freeze_encoder)
    self.model.set_precision(phase.precision)
    self.model.train_function = self.model.make_train_function(force=True)
    self._current = index
    logging.info("Phase %d/%d from step %d: mode=%s, encoder %s, %s.",
                 index + 1, len(self.phases),
                 step_of(self.model), phase.mode,
                 "frozen" if phase.freeze_encoder else "trained",
                 phase.precision)

  def on_train_begin(self, logs=None):
    self._enter(phase_at(self.phases, step_of(self.model)))

  def on_train_batch_begin(self, batch, logs=None):
    step = step_of(self.model)
    index = phase_at(self.phases, step)
    if index != self._current:
      self._enter(index)
    phase = self.phases[index]
    if phase.mode == quantization.ANNEAL:
      start = total_steps(self.phases[:index])
      self.model.set_soft_round_alpha(
          soft_round_alpha(step - start, phase.steps))

  def on_train_batch_end(self, batch, logs=None):
    # `fit` runs whole epochs; a schedule that ends mid-epoch ends there.
    if step_of(self.model) >= total_steps(self.phases):
      self.model.stop_training = True


class Checkpoints(tf.keras.callbacks.Callback):
  """Saves model (with its phase) and optimizer at the end of every epoch.

  The last `max_to_keep` checkpoints are kept, and also the one at the end
  of each phase (`phase_<i>_end`, written at that step whether or not an
  epoch ends there), from which variants sharing that phase can branch (e.g.
  soft then hard against noise continued).
  """

  def __init__(self, directory, phases=(), max_to_keep=2):
    super().__init__()
    self.directory = directory
    self.max_to_keep = max_to_keep
    self.phase_ends = {}
    end = 0
    for index, phase in enumerate(phases):
      end += phase.steps
      self.phase_ends.setdefault(end, index)
    self.manager = None

  def set_model(self, model):
    super().set_model(model)
    self.manager = checkpoint_manager(model, self.directory, self.max_to_keep)

  def on_train_batch_end(self, batch, logs=None):
    step = step_of(self.model)
    if step in self.phase_ends:
      self.manager.checkpoint.write(os.path.join(
          self.directory, f"phase_{self.phase_ends[step]}_end"))

  def on_epoch_end(self, epoch, logs=None):
    self.manager.save(checkpoint_number=step_of(self.model))


def checkpoint_manager(model, directory, max_to_keep=2):
  checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
  return tf.train.CheckpointManager(checkpoint, directory, max_to_keep)


def restore(model, checkpoint, required=False):
  """Restores a checkpoint; returns its step (0 if there is none).

  `checkpoint` is a checkpoint directory (its latest checkpoint is taken) or
  a checkpoint path such as `DIR/checkpoints/phase_0_end`. The model must be
  built and compiled, and the optimizer built on all trainable variables, so
  that every saved variable has a place to go.
  """
  path = checkpoint
  if not tf.io.gfile.exists(checkpoint + ".index"):
    path = (tf.train.latest_checkpoint(checkpoint)
            if tf.io.gfile.isdir(checkpoint) else None)
  if path is None:
    if required:
      raise FileNotFoundError(f"No checkpoint at {checkpoint!r}.")
    return 0
  tf.train.Checkpoint(model=model, optimizer=model.optimizer).restore(
      path).assert_existing_objects_matched()
  step = step_of(model)
  logging.info("Restored %s at step %d (phase %d).", path, step,
               int(model.phase.numpy()))
  return step
