"""SavedModel export: `compress` and `decompress` signatures on uint8 images.

The exported module needs only tensorflow and tensorflow_compression to load
(tfc registers the range coding ops). Its signatures:

- `compress(image: uint8[H, W, 3])` -> {"image_shape": int32[2],
  <string name>: string[1] for each of the latent codec's strings};
- `decompress(**outputs of compress)` -> {"image": uint8[H, W, 3]};
- `reconstruct(image)` -> {"image", "bits"}: the model's own inference-mode
  reconstruction and estimated rate, without range coding (what
  `decompress(compress(image))` must equal, and what the file size should be
  close to);
- `model_info()` -> {"model_id", "architecture", "config"} (strings).

The inputs of `decompress` are named like the outputs of `compress`, so a
client can pass one to the other unchanged. Range coding tables are built
once, here, and saved as variables, so every process codes with the same
integers.

Images are padded at the bottom and right by repeating the edge pixels to a
multiple of the model's total downsampling, and the padding is cropped after
synthesis.
"""

import hashlib
import json
import os
import tempfile

import tensorflow as tf
import tensorflow_compression as tfc

from tfc_sth import architectures

INFO_FILE = "model.json"


def pad_to_multiple(image, factor):
  """uint8 [H, W, 3] -> float [1, H', W', 3] in [0, 1], edge-padded."""
  shape = tf.shape(image)[:2]
  padded = (shape + factor - 1) // factor * factor
  rows = tf.minimum(tf.range(padded[0]), shape[0] - 1)
  cols = tf.minimum(tf.range(padded[1]), shape[1] - 1)
  image = tf.gather(tf.gather(image, rows, axis=0), cols, axis=1)
  return tf.cast(image, tf.float32)[None] / 255.


def to_uint8(x_hat, image_shape):
  """float [1, H', W', 3] -> uint8 [H, W, 3], cropped, clipped and rounded."""
  x_hat = x_hat[0, :image_shape[0], :image_shape[1], :]
  return tf.cast(tf.round(tf.clip_by_value(x_hat, 0., 1.) * 255.), tf.uint8)


def inference_copy(model):
  """A copy of `model` for export: plain kernels, no optimizer state.

  The training parameterisation of the kernels (RDFT) would be re-computed
  at every call, and a compiled model carries its optimizer, whose slots
  would triple the SavedModel. The copy holds each kernel as computed once.
  """
  config = dict(model.get_config(), kernel_parameter="variable")
  copy = architectures.CompressionModel.from_config(config)
  copy(tf.zeros((1, model.downsampling, model.downsampling, 3)))
  # Variables are matched by their path in the object graph, which does not
  # depend on which layers are frozen; only the kernels differ in kind.
  with tempfile.TemporaryDirectory() as directory:
    path = tf.train.Checkpoint(model=model).write(
        os.path.join(directory, "weights"))
    tf.train.Checkpoint(model=copy).read(path).expect_partial()
  convs = lambda m: [l for l in m.submodules
                     if isinstance(l, tfc.SignalConv2D)]
  for source, target in zip(convs(model), convs(copy), strict=True):
    target.kernel_parameter.assign(source.kernel)
  return copy


def model_id(model):
  """An identifier of the trained weights: architecture plus a weight hash."""
  digest = hashlib.sha256()
  for variable in model.weights:
    digest.update(variable.numpy().tobytes())
  return f"{model.architecture}-{digest.hexdigest()[:12]}"


class ExportedCodec(tf.Module):
  """A trained `CompressionModel` with its range coding tables, as a tf.Module."""

  def __init__(self, model):
    super().__init__()
    self.model = model = inference_copy(model)
    self.model_id = model_id(model)
    model.latent_codec.build_tables()
    self._info = {
        "model_id": self.model_id,
        "architecture": model.architecture,
        "config": json.dumps(model.get_config(), sort_keys=True),
    }

  def _latent_shape(self, image_shape):
    factor = self.model.downsampling
    return ((image_shape + factor - 1) // factor * factor
            // self.model.analysis_downsampling)

  @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
  def compress(self, image):
    x = pad_to_multiple(image, self.model.downsampling)
    strings = self.model.latent_codec.compress(self.model.analysis(x))
    return dict(strings, image_shape=tf.shape(image)[:2])

  @tf.function
  def decompress(self, image_shape, **strings):
    y_hat = self.model.latent_codec.decompress(
        strings, self._latent_shape(image_shape))
    return {"image": to_uint8(self.model.synthesis(y_hat), image_shape)}

  @tf.function(input_signature=[])
  def model_info(self):
    return {k: tf.constant(v) for k, v in self._info.items()}

  @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
  def reconstruct(self, image):
    x = pad_to_multiple(image, self.model.downsampling)
    x_hat, bits = self.model(x, training=False)
    return {"image": to_uint8(x_hat, tf.shape(image)[:2]),
            "bits": tf.reduce_sum(bits)}

  def signatures(self):
    string_spec = tf.TensorSpec([None], tf.string)
    decompress = self.decompress.get_concrete_function(
        image_shape=tf.TensorSpec([2], tf.int32),
        **{n: string_spec for n in self.model.latent_codec.string_names})
    return {"compress": self.compress.get_concrete_function(),
            "decompress": decompress,
            "reconstruct": self.reconstruct.get_concrete_function(),
            "model_info": self.model_info.get_concrete_function()}


def export(model, directory, card=None):
  """Writes `model` as a SavedModel to `directory`; returns its model id.

  Next to the SavedModel, `model.json` holds the model id, the architecture,
  its configuration and `card` (free-form facts: λ, steps, measured rates).
  """
  codec = ExportedCodec(model)
  tf.saved_model.save(codec, directory, signatures=codec.signatures())
  info = dict(model_id=codec.model_id, architecture=model.architecture,
              config=codec.model.get_config(), card=card or {})
  with open(os.path.join(directory, INFO_FILE), "w") as f:
    json.dump(info, f, indent=2, sort_keys=True)
  return codec.model_id
