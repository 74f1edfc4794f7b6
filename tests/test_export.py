"""The SavedModel: exact round trips, named signatures, no tfc_sth needed."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfc_sth.model import architectures
from tfc_sth import export
from tfc_sth.runtime import pretrained


QUALITY = {"quality": tf.constant(1.)}


@pytest.fixture(scope="module", params=["none", "channel", "hyper"])
def exported(request, tmp_path_factory):
  """A SavedModel of an untrained tiny model for each Δ mode, loaded."""
  tf.keras.utils.set_random_seed(0)
  model = architectures.CompressionModel(
      num_filters=8, latent_channels=12, delta_mode=request.param)
  model.create_variables()
  directory = str(tmp_path_factory.mktemp("export") / request.param)
  export.export(model, directory)
  return directory, tf.saved_model.load(directory)


@pytest.mark.parametrize("shape", [(1, 1), (37, 70), (128, 192), (130, 65)])
def test_decompress_of_compress_is_the_models_reconstruction(
    exported, smooth_image, shape):
  _, loaded = exported
  image = tf.constant(smooth_image(*shape, seed=sum(shape)))
  outputs = loaded.signatures["compress"](image=image, **QUALITY)
  decoded = loaded.signatures["decompress"](**outputs)["image"]
  reference = loaded.signatures["reconstruct"](image=image, **QUALITY)
  assert decoded.shape == image.shape and decoded.dtype == tf.uint8
  np.testing.assert_array_equal(decoded, reference["image"])
  coded_bits = 8 * sum(len(outputs[n].numpy()[0])
                       for n in ("y_string", "z_string"))
  # Tiny untrained models code few bits: allow range coder overhead.
  assert coded_bits <= 1.05 * float(reference["bits"]) + 64


def test_decompress_inputs_are_named_like_compress_outputs(exported):
  _, loaded = exported
  outputs = loaded.signatures["compress"].structured_outputs
  _, inputs = loaded.signatures["decompress"].structured_input_signature
  assert set(inputs) == set(outputs) == {"image_shape", "quality", "checksum",
                                         "y_string", "z_string"}


def test_model_info_matches_model_json(exported):
  directory, loaded = exported
  info = {k: v.numpy() for k, v in loaded.signatures["model_info"]().items()}
  info.update({k: info[k].decode() for k in ("model_id", "config")})
  with open(os.path.join(directory, pretrained.INFO_FILE)) as f:
    saved = json.load(f)
  assert info["qualities"] == info["default_quality"] == 1
  assert info["model_id"] == saved["model_id"]
  assert info["model_id"].startswith("mean_scale_hyperprior-")
  assert json.loads(info["config"]) == saved["config"]


def test_model_id_depends_on_weights():
  tf.keras.utils.set_random_seed(0)
  model = architectures.CompressionModel(num_filters=8, latent_channels=12)
  model.create_variables()
  before = export.model_id(model)
  model.synthesis.weights[0].assign_add(tf.ones_like(model.synthesis.weights[0]))
  assert export.model_id(model) != before


def test_model_id_depends_on_coding_tables():
  # Files coded with other tables do not decode: the id must tell them apart.
  tf.keras.utils.set_random_seed(0)
  model = architectures.CompressionModel(num_filters=8, latent_channels=12)
  model.create_variables()
  model.latent_codec.build_tables()
  before = export.model_id(model)
  model.latent_codec.conditional.build_tables(reach=0.)
  assert export.model_id(model) != before


_FRESH_PROCESS = """
import sys
import numpy as np
import tensorflow as tf
import tensorflow_compression  # Registers the range coding ops.
loaded = tf.saved_model.load(sys.argv[1])
image = tf.constant(np.load(sys.argv[2]))
outputs = loaded.signatures["compress"](image=image, quality=tf.constant(1.))
decoded = loaded.signatures["decompress"](**outputs)["image"].numpy()
assert not any(m.startswith("tfc_sth") for m in sys.modules), "imported tfc_sth"
np.save(sys.argv[3], decoded)
"""


def test_saved_model_round_trips_without_tfc_sth(tiny_model_dir, smooth_image,
                                                 tmp_path):
  directory = str(tiny_model_dir)
  loaded = tf.saved_model.load(directory)
  image = smooth_image(70, 90, seed=4)
  np.save(tmp_path / "image.npy", image)
  env = dict(os.environ, PYTHONPATH="")
  subprocess.run(
      [sys.executable, "-c", _FRESH_PROCESS, directory,
       str(tmp_path / "image.npy"), str(tmp_path / "decoded.npy")],
      check=True, cwd=str(tmp_path), env=env, timeout=300)
  expected = loaded.signatures["reconstruct"](image=image, **QUALITY)["image"]
  np.testing.assert_array_equal(np.load(tmp_path / "decoded.npy"), expected)


_SAVED_MODEL_CLI_WITH_TFC = (
    "import sys, tensorflow_compression; "
    "from tensorflow.python.tools import saved_model_cli; "
    "sys.argv[0] = 'saved_model_cli'; saved_model_cli.main()")


def test_saved_model_cli_lists_both_signatures(tiny_model_dir):
  directory = str(tiny_model_dir)
  cli = shutil.which("saved_model_cli", path=os.path.dirname(sys.executable))
  if cli is None:
    pytest.skip("saved_model_cli is not installed next to this Python")
  # The plain tool lists the signatures, then fails on the concrete
  # functions because tfc's range coding ops are not registered in it.
  shown = subprocess.run([cli, "show", "--dir", directory, "--all"],
                         capture_output=True, text=True, timeout=300).stdout
  with_tfc = subprocess.run(
      [sys.executable, "-c", _SAVED_MODEL_CLI_WITH_TFC, "show", "--dir",
       directory, "--all"], check=True, capture_output=True, text=True,
      timeout=300).stdout
  for output in (shown, with_tfc):
    for name in ("compress", "decompress"):
      assert f"signature_def['{name}']" in output
  assert "Concrete Functions" in with_tfc


@pytest.mark.parametrize("freeze", [False, True])
def test_inference_copy_computes_what_the_model_computes(freeze):
  """Also with the encoder frozen, which reorders Keras' weight lists."""
  tf.keras.utils.set_random_seed(1)
  model = architectures.CompressionModel(
      num_filters=8, latent_channels=12, delta_mode="channel")
  x = tf.random.stateless_uniform((1, 64, 64, 3), seed=(3, 4))
  model(x)
  for variable in model.trainable_variables:  # Away from initial values.
    variable.assign_add(tf.random.normal(variable.shape, stddev=0.01))
  model.freeze_encoder(freeze)
  copy = export.inference_copy(model)
  assert isinstance(copy.analysis.layers[0].kernel_parameter, tf.Variable)
  x_model, bits_model = model(x, training=False)
  x_copy, bits_copy = copy(x, training=False)
  np.testing.assert_allclose(x_copy, x_model, atol=1e-4)
  np.testing.assert_allclose(bits_copy, bits_model, rtol=1e-3)
  assert not hasattr(copy, "optimizer") or copy.optimizer is None


def test_a_model_left_in_bfloat16_exports_float32_kernels():
  """`noise` to the end under --mixed_precision never returns to float32."""
  model = architectures.CompressionModel(num_filters=8, latent_channels=12)
  model.create_variables()
  expected = [l.kernel.numpy() for l in export._convs(model)]  # pylint: disable=protected-access
  model.set_precision("mixed_bfloat16")
  copy = export.inference_copy(model)
  for kernel, layer in zip(expected, export._convs(copy)):  # pylint: disable=protected-access
    # Within exact's rounding of h_s kernels (2^-15 of the largest), far
    # below bfloat16's (2^-9 of each).
    np.testing.assert_allclose(layer.kernel_parameter.numpy(), kernel,
                               rtol=0, atol=2e-5)
