"""Every registered architecture: trains in both phases from the command line,
exports, and round-trips bit-exactly without tfc_sth, on one core or two."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfc_sth.model import architectures
from tfc_sth import cli

# Tiny channel counts; each case also exercises a SAUN mode and the
# architecture's own options. Per-channel Δ cases are quality ladders with a
# bfloat16 soft phase.
LADDER = ["--delta_mode=channel", "--qualities=3", "--lmbda_min=0.002",
          "--mixed_precision"]
CASES = {
    "factorized_prior": LADDER,
    "scale_hyperprior": ["--delta_mode=hyper", "--hyper_kernel=1"],
    "mean_scale_hyperprior": LADDER,
    "joint_autoregressive": LADDER,
    "channelwise_autoregressive": [*LADDER, "--num_slices=3"],
    "cheng2020": ["--delta_mode=hyper"],  # Attention: test_residual.py.
}


def test_every_architecture_has_a_case():
  assert set(CASES) == set(architectures.ARCHITECTURES)


@pytest.fixture(scope="module", params=sorted(CASES))
def trained(request, tmp_path_factory, train_glob):
  """(architecture, train_dir, export_dir) after `tfc-sth train`."""
  name = request.param
  root = tmp_path_factory.mktemp(name)
  train_dir, export_dir = root / "train", root / "export"
  assert cli.main([
      "tfc-sth", "train", f"--model={name}", "--num_filters=8",
      "--latent_channels=12", "--soft_steps=2", "--hard_steps=2",
      "--steps_per_epoch=2", "--batch_size=2", "--patch_size=64",
      "--kernel_parameter=rdft", f"--train_glob={train_glob}",
      f"--train_dir={train_dir}", f"--export_dir={export_dir}",
      *CASES[name]]) == 0
  return name, train_dir, export_dir


def _variables(checkpoint, prefixes):
  reader = tf.train.load_checkpoint(str(checkpoint))
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
          if k.startswith(prefixes) and "OPTIMIZER_SLOT" not in k}


def test_hard_phase_trains_the_decoder_with_the_encoder_frozen(trained):
  _, train_dir, _ = trained
  checkpoints = train_dir / "checkpoints"
  end = tf.train.latest_checkpoint(str(checkpoints))
  encoder = ("model/analysis/", "model/latent_codec/hyper_analysis/")
  before = _variables(checkpoints / "phase_0_end", encoder)
  after = _variables(end, encoder)
  assert before and before.keys() == after.keys()
  for key in before:
    np.testing.assert_array_equal(before[key], after[key], err_msg=key)
  decoder = ("model/synthesis/",)
  before = _variables(checkpoints / "phase_0_end", decoder)
  after = _variables(end, decoder)
  assert any(not np.array_equal(before[k], after[k]) for k in before)


_FRESH_PROCESS = """
import sys
import numpy as np
import tensorflow as tf
import tensorflow_compression  # Registers the range coding ops.
loaded = tf.saved_model.load(sys.argv[1])
image = tf.constant(np.load(sys.argv[2]))
results = {}
for quality in sys.argv[4:]:
  outputs = loaded.signatures["compress"](image=image,
                                          quality=tf.constant(float(quality)))
  results[f"{quality}/decoded"] = loaded.signatures["decompress"](
      **outputs)["image"].numpy()
  results.update({f"{quality}/{k}": v.numpy() for k, v in outputs.items()})
assert not any(m.startswith("tfc_sth") for m in sys.modules), "imported tfc_sth"
np.savez(sys.argv[3], **results)
"""


def test_round_trip_is_exact_in_a_process_without_tfc_sth(
    trained, smooth_image, png_bytes, read_png_array, tmp_path,
    reuse_saved_models):
  name, _, export_dir = trained
  image = smooth_image(70, 90, seed=6)
  np.save(tmp_path / "image.npy", image)
  loaded = tf.saved_model.load(str(export_dir))
  info = loaded.signatures["model_info"]()
  assert info["architecture"].numpy().decode() == name
  config = json.loads(info["config"].numpy())
  assert config["latent_channels"] == 12
  for flag in CASES[name]:  # Each architecture option, recorded.
    option, _, value = flag[2:].partition("=")
    if option in architectures.OPTIONS:
      assert str(config[option]) == value, option
  qualities = int(info["qualities"])
  assert qualities == (3 if "--qualities=3" in CASES[name] else 1)
  # Every level, and a fractional one between two levels of a ladder.
  levels = [str(q) for q in range(1, qualities + 1)] + (
      ["1.5"] if qualities > 1 else [])
  # Compressed and decompressed in a process without tfc_sth; decompressed
  # again here. (Thread counts and ISAs: test_determinism.py, at full width.)
  subprocess.run(
      [sys.executable, "-c", _FRESH_PROCESS, str(export_dir),
       str(tmp_path / "image.npy"), str(tmp_path / "out.npz"), *levels],
      check=True, cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=""),
      timeout=600)
  fresh = dict(np.load(tmp_path / "out.npz", allow_pickle=True))
  sizes = []
  for level in levels:
    outputs = {k.split("/")[1]: tf.constant(v) for k, v in fresh.items()
               if k.startswith(level + "/") and not k.endswith("decoded")}
    decoded = loaded.signatures["decompress"](**outputs)["image"].numpy()
    reference = loaded.signatures["reconstruct"](
        image=image, quality=tf.constant(float(level)))
    np.testing.assert_array_equal(fresh[f"{level}/decoded"], decoded)
    np.testing.assert_array_equal(decoded, reference["image"])
    coded_bits = 8 * sum(len(v.numpy()[0]) for k, v in outputs.items()
                         if k.endswith("_string"))
    # Few steps of training: allow range coder overhead; escaped outliers
    # cost less than the model's estimate, never more.
    assert coded_bits <= 1.05 * float(reference["bits"]) + 64, level
    sizes.append(coded_bits)
  # Higher levels spend more bits (the initial Δ_q alone orders them).
  assert sizes[:qualities] == sorted(sizes[:qualities]), sizes
  # And through the .tsth container, from the command line, with the same
  # (float32) transforms.
  (tmp_path / "image.png").write_bytes(png_bytes(image))
  for command, source, target, extra in [
      ("compress", "image.png", "image.tsth", ["--quality=1"]),
      ("decompress", "image.tsth", "back.png", [])]:
    assert cli.main(["tfc-sth", command, str(tmp_path / source), "-o",
                     str(tmp_path / target), f"--model={export_dir}",
                     "--precision=float32", *extra]) == 0
  np.testing.assert_array_equal(read_png_array(tmp_path / "back.png"),
                                fresh["1/decoded"])


def test_refinement_where_the_latent_codec_allows_it(
    trained, smooth_image, png_bytes, tmp_path, capsys):
  """Refined latents decode (the symbol checksum passes) with every model
  that exports refinement; a serial context model refuses it in one line."""
  name, _, export_dir = trained
  loaded = tf.saved_model.load(str(export_dir))
  # Both code y with the serial context model.
  refinable = name not in ("joint_autoregressive", "cheng2020")
  assert ("refinement_loss" in loaded.signatures) == refinable
  (tmp_path / "image.png").write_bytes(png_bytes(smooth_image(70, 90, seed=7)))
  capsys.readouterr()
  status = cli.main(["tfc-sth", "compress", str(tmp_path / "image.png"),
                     f"--model={export_dir}", "--refine_steps=3"])
  if not refinable:
    assert status == cli.EXIT_ERROR
    (line,) = capsys.readouterr().err.splitlines()
    assert "cannot refine" in line
    assert not (tmp_path / "image.png.tsth").exists()
    return
  assert status == 0
  assert cli.main(["tfc-sth", "decompress", str(tmp_path / "image.png.tsth"),
                   f"--model={export_dir}"]) == 0


@pytest.mark.parametrize("flags, message", [
    (["--model=factorized_prior", "--delta_mode=hyper"], "no hyperprior"),
    (["--model=joint_autoregressive", "--attention"],
     "--attention does not apply to joint_autoregressive"),
    (["--model=mean_scale_hyperprior", "--num_slices=4"],
     "--num_slices does not apply"),
    (["--model=channelwise_autoregressive", "--latent_channels=12",
      "--num_slices=13"], "num_slices=13 must be in 1..12"),
    (["--model=mean_scale_hyperprior", "--hyper_kernel=2"],
     "hyper_kernel=2 must be odd"),
    (["--model=joint_autoregressive", "--hyper_kernel=1"],
     "--hyper_kernel does not apply"),
    (["--model=cheng2020", "--hyper_filters=64"],
     "--hyper_filters does not apply"),
])
def test_train_refuses_options_the_architecture_cannot_take(
    flags, message, tmp_path, train_glob, capsys):
  assert cli.main(["tfc-sth", "train", f"--train_dir={tmp_path / 'run'}",
                   f"--train_glob={train_glob}", *flags]) == cli.EXIT_ERROR
  err = capsys.readouterr().err
  assert len(err.splitlines()) == 1 and message in err, err
  assert not (tmp_path / "run").exists()


def test_architecture_options_are_train_flags_with_the_builders_defaults():
  from absl import flags  # pylint: disable=g-import-not-at-top
  fv = flags.FlagValues()
  cli.define_train(fv)
  assert architectures.OPTIONS
  for name, option in architectures.OPTIONS.items():
    builders = [a for a in architectures.ARCHITECTURES
                if name in architectures.options(a)]
    assert builders, name
    assert {architectures.options(a)[name] for a in builders} == {
        option.default}
    assert fv[name].default == option.default
    assert fv[name].help == option.help


def test_channel_slices_split_the_latent_as_evenly_as_possible():
  from tfc_sth.model import latent_codecs  # pylint: disable=g-import-not-at-top
  codec = latent_codecs.ChannelwiseAutoregressive(12, 8, num_slices=5)
  assert codec.slice_sizes == [3, 3, 2, 2, 2]
  y = tf.random.normal((1, 8, 8, 12))
  y_hat, bits = codec(y, training=False)
  assert y_hat.shape == y.shape and bits.shape == (1,)


@pytest.mark.parametrize("hyper_transforms", ["conv", "residual"])
def test_hyper_kernel_sets_the_kernel_of_the_last_layer_of_h_s(
    hyper_transforms):
  from tfc_sth.model import latent_codecs  # pylint: disable=g-import-not-at-top
  for kernel in (1, 3):
    codec = latent_codecs.MeanScaleHyperprior(
        12, 8, hyper_kernel=kernel, hyper_transforms=hyper_transforms)
    y_hat, _ = codec(tf.random.normal((1, 16, 16, 12)), training=False)
    assert y_hat.shape == (1, 16, 16, 12)
    last = codec.hyper_synthesis.layers[-1]
    assert tuple(last.kernel.shape) == (kernel, kernel, 8 * 3 // 2, 24)
    assert codec.get_config()["hyper_kernel"] == kernel


def test_hyper_filters_set_the_width_of_h_a_h_s_and_z_alone():
  model = architectures.CompressionModel(
      "mean_scale_hyperprior", num_filters=12, latent_channels=16,
      hyper_filters=8)
  x_hat, _ = model(tf.random.uniform((1, 64, 64, 3)), training=False)
  assert x_hat.shape == (1, 64, 64, 3)
  codec = model.latent_codec
  assert [l.filters for l in model.analysis.layers] == [12, 12, 12, 16]
  assert [l.filters for l in model.synthesis.layers] == [12, 12, 12, 3]
  assert [l.filters for l in codec.hyper_analysis.layers] == [8, 8, 8]
  assert [l.filters for l in codec.hyper_synthesis.layers] == [8, 12, 32]
  assert codec.hyper_channels == 8
  # 0, the default, is --num_filters: the hyper transforms as before.
  default = architectures.CompressionModel(
      "mean_scale_hyperprior", num_filters=12, latent_channels=16)
  assert default.latent_codec.num_filters == 12
