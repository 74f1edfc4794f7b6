#!/usr/bin/env python3
"""An export whose h_s ends in a 1x1 layer, fitted to an export whose h_s
ends in a 3x3 one: the start of a faster model, to fine-tune with
`tfc-sth train --hyper_kernel=1 --init_from=TARGET`.

    tools/refit_hyper_kernel.py SOURCE TARGET 'TRAIN_GLOB'

Every other weight is copied. The 1x1 layer is the least-squares fit of the
3x3 layer's outputs (μ and log σ) to its inputs at the same position, over
every latent position of the photos in TRAIN_GLOB (never the validation
photos). It prints the fit's residual, as a fraction of the outputs'
variance, per kind of output.
"""

import glob
import os
import sys

import numpy as np
import tensorflow as tf

from tfc_sth import export
from tfc_sth.model import architectures
from tfc_sth.runtime import image_io


def last_layer_io(model, path):
  """The inputs and outputs of h_s's last layer on one photo, one row per
  latent position."""
  codec = model.latent_codec
  *hidden, last = codec.hyper_synthesis.layers
  image, _ = image_io.read_png(path)
  x = export.pad_to_multiple(tf.constant(image), model.downsampling)
  inputs, _ = codec.hyper_prior(codec._hyper_analysis(model.analysis(x)))  # pylint: disable=protected-access
  for layer in hidden:
    inputs = layer(inputs)
  outputs = last(inputs).numpy().reshape(-1, last.filters)
  return inputs.numpy().reshape(-1, inputs.shape[-1]), outputs


def last_layer_statistics(model, paths):
  """Normal equations of [inputs, 1] -> outputs of h_s's last layer."""
  gram = moments = squares = 0.
  for path in paths:
    inputs, outputs = last_layer_io(model, path)
    inputs = np.concatenate([inputs, np.ones_like(inputs[:, :1])], axis=1)
    gram += inputs.T.astype(np.float64) @ inputs
    moments += inputs.T.astype(np.float64) @ outputs
    squares += np.sum(np.square(outputs, dtype=np.float64), axis=0)
    print(f"{path}: {len(inputs)} positions", file=sys.stderr)
  return gram, moments, squares


def main(source_dir, target_dir, train_glob):
  paths = sorted(glob.glob(train_glob))
  if not paths:
    sys.exit(f"no photos match {train_glob!r}")
  if os.path.exists(target_dir):
    sys.exit(f"{target_dir} exists: not replaced")
  source = export.exported_model(source_dir)
  gram, moments, squares = last_layer_statistics(source, paths)
  # lstsq: some of the inputs (ReLUs that never fire) are always 0.
  fit = np.linalg.lstsq(gram, moments, rcond=None)[0]
  # Unexplained variance per output channel, from the normal equations.
  residual = squares - np.sum(fit * moments, axis=0)
  variance = squares - np.square(moments[-1]) / gram[-1, -1]
  for kind, part in zip(("μ", "log σ"), np.split(residual / variance, 2)):
    print(f"{kind}: median {np.median(part):.3f}, largest {part.max():.3f} "
          "of the variance unexplained")
  *_, last = source.latent_codec.hyper_synthesis.layers
  target = architectures.CompressionModel.from_config(
      dict(source.get_config(), hyper_kernel=1))
  target.create_variables()
  target_last = target.latent_codec.hyper_synthesis.layers[-1]
  for old, new in zip(source.weights, target.weights, strict=True):
    if old is last.kernel_parameter:
      # One tap: the same whether the layer flips its kernel or not.
      new.assign(fit[:-1][None, None].astype(np.float32))
    elif new is target_last.bias_parameter:
      new.assign(fit[-1].astype(np.float32))
    else:
      new.assign(old)
  print(f"{target_dir}: {export.export(target, target_dir)}")


if __name__ == "__main__":
  main(*sys.argv[1:])
