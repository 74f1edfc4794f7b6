#!/usr/bin/env python3
"""Median seconds of each exported signature coding one image as one tile,
in float32 and in bfloat16: where an encode and a decode spend their time.

    tools/profile_signatures.py IMAGE.png [MODEL] [QUALITY]

Encoding is `analyze` then `compress_latents`; decoding is
`decompress_latents` then `synthesize`. The image must fit one coding tile
(1024x1024 pixels) for the sums to be those of `tfc-sth bench`.
"""

import sys
import time

import numpy as np
import tensorflow as tf

from tfc_sth.runtime import codec
from tfc_sth.runtime import image_io


def median_seconds(function, runs=7):
  function()  # Warm-up: tracing, oneDNN primitives.
  seconds = []
  for _ in range(runs):
    start = time.perf_counter()
    function()
    seconds.append(time.perf_counter() - start)
  return float(np.median(seconds))


def main(image_path, model=None, quality="5"):
  image, _ = image_io.read_png(image_path)
  for precision in (codec.FLOAT32, codec.BFLOAT16):
    coder = codec.Codec.load(model, precision)
    signatures = coder.module.signatures
    suffix = "_bfloat16" if precision == codec.BFLOAT16 else ""
    pad = [(0, -n % coder.downsampling) for n in image.shape[:2]] + [(0, 0)]
    tile = tf.constant(np.pad(image, pad, mode="edge"))
    analyze = signatures["analyze" + suffix]
    latents = analyze(tile=tile)["latents"]
    coding = dict(latents=latents, quality=tf.constant(float(quality)),
                  image_shape=tf.constant(tile.shape[:2], tf.int32))
    coded = signatures["compress_latents"](**coding)
    pieces = {
        "analyze": lambda: analyze(tile=tile)["latents"].numpy(),
        "compress_latents": lambda: signatures["compress_latents"](
            **coding)["checksum"].numpy(),
        "decompress_latents": lambda: signatures["decompress_latents"](
            **coded)["latents"].numpy(),
        "synthesize": lambda: signatures["synthesize" + suffix](
            latents=latents)["image"].numpy(),
    }
    print(f"{precision}: " + ", ".join(
        f"{name} {median_seconds(piece):.3f} s"
        for name, piece in pieces.items()))


if __name__ == "__main__":
  main(*sys.argv[1:])
