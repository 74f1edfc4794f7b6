"""Codes with exported models in a process of its own, for
test_determinism.py: the thread count and oneDNN's instruction set are
fixed per process, by the environment.

    python determinism_worker.py encode|decode OUT_DIR IMAGE.png MODEL_DIR...

`encode` writes OUT_DIR/<i>.<quality>.tsth for every quality level of
model i (coded at the runtime's own precision); both write
OUT_DIR/<i>.<quality>.<tag>.<precision>.npy (the decoded pixels, or the
one-line error) for float32 and for the precision the runtime picks here,
and OUT_DIR/<tag>.json, which names that precision, lists each model's
levels and records a float32 product whose summation order depends on
threads and ISA: the proof that this process sums differently from
another.
"""

import hashlib
import json
import os
import sys
from unittest import mock

import numpy as np
import tensorflow as tf

from tfc_sth.runtime import codec
from tfc_sth.runtime import image_io


def main(stage, out_dir, image_path, *models):
  tag = os.environ["WORKER_TAG"]
  image, _ = image_io.read_png(image_path)
  levels = []
  for i, model in enumerate(models):
    # One load for both: a process keeps every SavedModel it loads, and
    # three of these processes run at once.
    module = tf.saved_model.load(model)
    with mock.patch.object(tf.saved_model, "load", return_value=module):
      coders = {p: codec.Codec(model, p) for p in ("auto", codec.FLOAT32)}
    levels.append(coders["auto"].qualities)
    for quality in range(1, levels[-1] + 1):
      path = os.path.join(out_dir, f"{i}.{quality}.tsth")
      if stage == "encode":
        with open(path, "wb") as f:
          f.write(coders["auto"].compress(image, quality=quality))
      with open(path, "rb") as f:
        data = f.read()
      for coder in coders.values():
        try:
          decoded = coder.decompress(data)[0]
        except ValueError as e:  # A refused file: the test reports it.
          decoded = np.array(str(e))
        np.save(os.path.join(
            out_dir, f"{i}.{quality}.{tag}.{coder.precision}.npy"), decoded)
  generator = tf.random.Generator.from_seed(1)
  # The case: one row times a [2304, 384] matrix.
  rows = tf.matmul(generator.normal((1, 2304)), generator.normal((2304, 384)))
  with open(os.path.join(out_dir, f"{tag}.json"), "w") as f:
    json.dump(dict(float_rows=hashlib.sha256(rows.numpy().tobytes())
                   .hexdigest(), precision=coders["auto"].precision,
                   levels=levels), f)


if __name__ == "__main__":
  main(*sys.argv[1:])
