"""The two-phase fit: phase switch, frozen encoder, resume in either phase."""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

from tfc_sth.training import schedule
from tfc_sth.training import trainer


@pytest.fixture(scope="module")
def patch_glob(tmp_path_factory):
  directory = tmp_path_factory.mktemp("patches")
  rng = np.random.default_rng(0)
  for i in range(3):
    image = rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)
    tf.io.write_file(str(directory / f"{i}.png"), tf.io.encode_png(image))
  return str(directory / "*.png")


def test_phases_of_each_strategy_have_equal_total_steps():
  sth = schedule.phases_for("sth", 30, 10)
  assert [(p.mode, p.steps, p.freeze_encoder) for p in sth] == [
      ("noise", 30, False), ("hard", 10, True)]
  for strategy in ("noise", "ste", "mixed", "anneal"):
    phases = schedule.phases_for(strategy, 30, 10)
    assert len(phases) == 1 and phases[0].mode == strategy
    assert schedule.total_steps(phases) == 40
  with pytest.raises(ValueError, match="Unknown strategy"):
    schedule.phases_for("anneal-ish", 1, 1)


def test_phase_at_step():
  phases = schedule.phases_for("sth", 3, 2)
  assert [schedule.phase_at(phases, s) for s in range(6)] == [
      0, 0, 0, 1, 1, 1]


def test_learning_rate_drops_tenfold_for_the_last_fifth():
  lr = schedule.LearningRate(1e-3, 100)
  assert float(lr(0)) == pytest.approx(1e-3)
  assert float(lr(79)) == pytest.approx(1e-3)
  assert float(lr(81)) == pytest.approx(1e-4)


def test_learning_rate_decays_for_the_steps_asked():
  lr = schedule.LearningRate(1e-3, 1000, decay_steps=30)
  assert float(lr(969)) == pytest.approx(1e-3)
  assert float(lr(970)) == pytest.approx(1e-4)
  assert float(lr(999)) == pytest.approx(1e-4)
  # More decay steps than the run has: all of it decayed.
  assert float(schedule.LearningRate(1e-3, 10, decay_steps=50)(0)) == (
      pytest.approx(1e-4))


def test_learning_rate_warms_up_linearly():
  lr = schedule.LearningRate(1e-3, 1000, warmup=10)
  assert float(lr(0)) == pytest.approx(1e-4)
  assert float(lr(4)) == pytest.approx(5e-4)
  assert float(lr(9)) == pytest.approx(1e-3)
  assert float(lr(500)) == pytest.approx(1e-3)
  assert float(lr(900)) == pytest.approx(1e-4)


class _Recorder(tf.keras.callbacks.Callback):
  """Snapshots weights after every step; optionally stops at a step."""

  def __init__(self, stop_at=None):
    super().__init__()
    self.stop_at = stop_at
    self.snapshots = {}

  def on_train_batch_end(self, batch, logs=None):
    step = int(self.model.optimizer.iterations)
    self.snapshots[step] = dict(
        encoder=[w.numpy() for layer in self.model.encoder_layers
                 for w in layer.weights],
        decoder=[w.numpy() for w in self.model.synthesis.weights],
        phase=int(self.model.phase), mode=self.model.mode,
        alpha=float(self.model.latent_codec.entropy_layers[0].alpha))
    if step == self.stop_at:
      self.model.stop_training = True


def _config(train_glob, **kwargs):
  kwargs = dict(dict(num_filters=8, latent_channels=12, soft_steps=4,
                     hard_steps=4, steps_per_epoch=2, batch_size=2,
                     patch_size=64), **kwargs)
  return trainer.TrainConfig(train_glob=train_glob, **kwargs)


def _changed(a, b):
  return any(not np.array_equal(x, y) for x, y in zip(a, b))


def test_sth_switches_phase_and_freezes_encoder(tmp_path, patch_glob):
  recorder = _Recorder()
  trainer.train(_config(patch_glob), str(tmp_path), callbacks=[recorder])
  s = recorder.snapshots
  assert [s[i]["mode"] for i in range(1, 9)] == ["noise"] * 4 + ["hard"] * 4
  assert [s[i]["phase"] for i in range(1, 9)] == [0] * 4 + [1] * 4
  assert _changed(s[1]["encoder"], s[4]["encoder"])
  for step in range(5, 9):  # Hard phase: encoder still, decoder moving.
    assert not _changed(s[4]["encoder"], s[step]["encoder"])
    assert _changed(s[step - 1]["decoder"], s[step]["decoder"])


@pytest.mark.parametrize("stop_at", [2, 6])
def test_resume_after_interruption_in_each_phase(tmp_path, patch_glob,
                                                 stop_at):
  config = _config(patch_glob)
  first = _Recorder(stop_at=stop_at)
  trainer.train(config, str(tmp_path), callbacks=[first])
  assert max(first.snapshots) == stop_at
  resumed = _Recorder()
  model = trainer.train(config, str(tmp_path), callbacks=[resumed])
  assert min(resumed.snapshots) == stop_at + 1  # Continued, not restarted.
  assert int(model.optimizer.iterations) == 8
  s = resumed.snapshots
  assert s[stop_at + 1]["phase"] == schedule.phase_at(
      schedule.phases_for("sth", 4, 4), stop_at)
  assert s[8]["phase"] == 1 and s[8]["mode"] == "hard"
  # Resumed from the checkpoint: the encoder froze at the switch (step 4).
  if stop_at >= 4:
    assert not _changed(first.snapshots[stop_at]["encoder"], s[8]["encoder"])


def test_resume_refuses_a_different_model(tmp_path, patch_glob):
  trainer.train(_config(patch_glob, soft_steps=2, hard_steps=0),
                 str(tmp_path))
  with pytest.raises(ValueError, match="different latent_channels"):
    trainer.train(_config(patch_glob, latent_channels=16), str(tmp_path))


def test_resume_reads_the_older_names_of_a_run_config(tmp_path):
  """config.json from before `strategy`, `delta_mode` and
  `architecture_options`, which had a field per architecture option."""
  older = dict(model="channelwise_autoregressive", num_filters=8,
               latent_channels=12, delta="channel", kernel_parameter="rdft",
               num_slices=4, attention=False, qualities=1, quantization="ste")
  (tmp_path / "config.json").write_text(json.dumps(older))
  same = trainer.TrainConfig(
      model="channelwise_autoregressive", num_filters=8, latent_channels=12,
      delta_mode="channel", architecture_options=dict(num_slices=4),
      strategy="ste")
  for changed, name in [(dict(strategy="sth"), "strategy"),
                        (dict(delta_mode="none"), "delta_mode"),
                        (dict(architecture_options={}),
                         "architecture_options")]:
    with pytest.raises(trainer.ConfigError, match=f"different {name} "):
      trainer._check_resumable(dataclasses.replace(same, **changed),
                               str(tmp_path))
  trainer._check_resumable(same, str(tmp_path))
  saved = json.loads((tmp_path / "config.json").read_text())
  assert saved["strategy"] == "ste" and saved["delta_mode"] == "channel"
  assert saved["architecture_options"] == dict(num_slices=4)


def test_options_at_their_defaults_are_the_same_run():
  given = trainer.TrainConfig(model="channelwise_autoregressive",
                              architecture_options=dict(num_slices=6))
  assert given == trainer.TrainConfig(model="channelwise_autoregressive")


def test_branch_from_the_end_of_the_soft_phase(tmp_path, patch_glob):
  """AUN continued against STH: both start from the soft phase's checkpoint."""
  sth = _Recorder()
  trainer.train(_config(patch_glob), str(tmp_path / "sth"), callbacks=[sth])
  branch = _Recorder()
  trainer.train(
      _config(patch_glob, strategy="noise", soft_steps=8, hard_steps=0,
              init_from=str(tmp_path / "sth" / "checkpoints" /
                            "phase_0_end")),
      str(tmp_path / "noise"), callbacks=[branch])
  assert sorted(branch.snapshots) == [5, 6, 7, 8]
  assert {s["mode"] for s in branch.snapshots.values()} == {"noise"}
  # Step 5 of both branches starts from the same encoder; AUN then moves it.
  assert _changed(sth.snapshots[4]["encoder"], branch.snapshots[5]["encoder"])
  assert not _changed(sth.snapshots[4]["encoder"], sth.snapshots[8]["encoder"])


def test_branch_from_a_missing_checkpoint_is_an_error(tmp_path, patch_glob):
  with pytest.raises(FileNotFoundError, match="No checkpoint"):
    trainer.train(_config(patch_glob, init_from=str(tmp_path / "nothing")),
                   str(tmp_path / "run"))


def test_anneal_raises_the_soft_rounding_temperature_over_the_run(
    tmp_path, patch_glob):
  recorder = _Recorder()
  trainer.train(_config(patch_glob, strategy="anneal", model=
                         "factorized_prior"), str(tmp_path),
                 callbacks=[recorder])
  s = recorder.snapshots
  assert [s[i]["mode"] for i in range(1, 9)] == ["anneal"] * 8
  alphas = [s[i]["alpha"] for i in range(1, 9)]
  start, end = schedule.ANNEAL_ALPHA
  assert alphas[0] == pytest.approx(start)
  assert all(a < b for a, b in zip(alphas, alphas[1:])) and alphas[-1] < end
  assert schedule.soft_round_alpha(8, 8) == pytest.approx(end)
  assert _changed(s[1]["encoder"], s[8]["encoder"])


def test_soft_round_alpha_is_set_per_step_not_checkpointed(tmp_path):
  """So that checkpoints from before `anneal` existed restore unchanged."""
  from tfc_sth.model import architectures  # pylint: disable=g-import-not-at-top
  model = architectures.CompressionModel(num_filters=8, latent_channels=12)
  model(tf.zeros((1, 64, 64, 3)))
  model.set_soft_round_alpha(5.)
  path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
  names = [name for name, _ in tf.train.list_variables(path)]
  assert any("hyper_prior" in n for n in names)
  assert not any("alpha" in n for n in names)
  assert all(float(layer.alpha) == 5.
             for layer in model.latent_codec.entropy_layers)


def test_phase_end_is_saved_even_between_epochs(tmp_path, patch_glob):
  trainer.train(_config(patch_glob, soft_steps=3, hard_steps=3),
                 str(tmp_path))
  reader = tf.train.load_checkpoint(
      str(tmp_path / "checkpoints" / "phase_0_end"))
  assert reader.get_tensor(
      "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 3
  assert reader.get_tensor("model/phase/.ATTRIBUTES/VARIABLE_VALUE") == 0


def test_training_stops_at_the_scheduled_step_mid_epoch(tmp_path, patch_glob):
  recorder = _Recorder()
  trainer.train(_config(patch_glob, soft_steps=3, hard_steps=2),
                 str(tmp_path), callbacks=[recorder])
  assert sorted(recorder.snapshots) == [1, 2, 3, 4, 5]
  assert tf.train.latest_checkpoint(
      str(tmp_path / "checkpoints")).endswith("ckpt-5")
