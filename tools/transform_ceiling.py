#!/usr/bin/env python3
"""How far rate alone could take a level: PSNR of its files against PSNR
with ŷ = y (no quantization at all), per image.

    tools/transform_ceiling.py MODEL IMAGE... [--quality=Q]

At the top of a ladder, when the two are close, more bits (a finer Δ, more
channels of y) cannot buy much more: g_a and g_s themselves are what caps
the curve. Q defaults to the model's top level; both use float32 transforms
and the level's decoder gain.
"""

import argparse

import numpy as np
import tensorflow as tf

from tfc_sth import export
from tfc_sth.runtime import codec, image_io
from tfc_sth.tools import metrics


def ceiling(model_dir, paths, quality=None):
  """Yields (path, PSNR of the file, PSNR with ŷ = y) per image."""
  model = export.exported_model(model_dir)
  quality = quality or model.qualities
  coder = codec.Codec(model_dir, codec.FLOAT32)
  level = tf.constant(float(quality - 1))
  for path in paths:
    image = image_io.read_png(path)[0]
    decoded = coder.decompress(coder.compress(image, quality=quality))[0]
    x = export.pad_to_multiple(tf.constant(image), model.downsampling)
    y = model.analysis(x)
    x_hat = export.to_uint8(
        model.synthesis(model.synthesis_input(y, level)), image.shape[:2])
    yield path, metrics.psnr(image, decoded), metrics.psnr(image,
                                                           x_hat.numpy())


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
  parser.add_argument("model")
  parser.add_argument("images", nargs="+")
  parser.add_argument("--quality", type=int)
  args = parser.parse_args(argv)
  rows = list(ceiling(args.model, args.images, args.quality))
  for path, coded, unquantized in rows:
    print(f"{path}: file {coded:.2f} dB, ŷ = y {unquantized:.2f} dB")
  coded, unquantized = np.mean([r[1:] for r in rows], axis=0)
  print(f"mean of {len(rows)}: file {coded:.2f} dB, ŷ = y {unquantized:.2f} dB"
        f" ({unquantized - coded:+.2f})")


if __name__ == "__main__":
  main()
