#!/usr/bin/env python3
"""An export with more latent channels (M) that codes like its source.

    tools/widen.py SOURCE TARGET --latent_channels=M [--seed=S]

For a ladder whose every channel of y carries bits at its top levels: a
wider y without starting over (Chen, Goodfellow, Shlens, "Net2Net", ICLR
2016: grow the network, then train it). The new channels start silent:

- g_a's new output filters are small random ones: training can grow
  them, and their y rounds to zero at every level's Δ;
- g_s, h_a and h_s's inputs ignore them (zero weights), so the pixels and
  z are the source's;
- h_s predicts μ = 0 and the table's smallest σ/Δ at the finest level for
  them, so their zeros cost about 4e-4 bits each (on the default ladder,
  files 0.02-0.7% larger), and log σ is not clipped where the rate's
  gradient must reach it;
- their Δ at each level is the median of the level's Δs, their decoder
  gain 1.

Then `tfc-sth train --latent_channels=M --init_from=TARGET` trains them.
Tried once on the default ladder, they stayed silent through 14500 steps
(docs/training.md, "a wider latent that stayed silent").
"""

import argparse
import os
import sys

import numpy as np

from tfc_sth import export
from tfc_sth.model import architectures
from tfc_sth.runtime import pretrained

# g_a's new filters, relative to the spread of its old ones: new y at the
# finest level about 0.06 Δ (std), a signal for training to find, and zero
# once rounded.
NEW_FILTER_SCALE = .03
# Above the smallest table index, so log σ gets a gradient at the finest level.
SCALE_INDEX_MARGIN = .5


def _grow(value, axis, new_size, fill):
  """`value` extended along `axis` to `new_size` by `fill(shape)`."""
  shape = list(value.shape)
  shape[axis] = new_size - shape[axis]
  return np.concatenate([value, fill(shape)], axis=axis)


def widen(source, channels, seed=0):
  """A copy of `source` (from `export.exported_model`) with `channels`
  channels of y, coding the same pixels."""
  codec = source.latent_codec
  old = codec.latent_channels
  if channels <= old:
    raise ValueError(f"--latent_channels={channels} must exceed the "
                     f"source's {old}")
  if codec.hyper_features != 2 or not hasattr(codec, "log_delta"):
    raise ValueError("widening needs a mean-scale hyperprior with a "
                     "per-channel Δ (--delta_mode=channel)")
  target = architectures.CompressionModel.from_config(
      dict(source.get_config(), latent_channels=channels))
  target.create_variables()
  for theirs, ours in zip(source.variables, target.variables, strict=True):
    if theirs.shape == ours.shape:  # The rest are widened below.
      ours.assign(theirs)
  rng = np.random.default_rng(seed)
  zeros = lambda shape: np.zeros(shape, np.float32)

  def grow(get, axis, fill, halves=1):
    """Widens the variable `get(model)` along `axis` (each of its halves)."""
    parts = np.split(get(source).numpy(), halves, axis)
    get(target).assign(np.concatenate(
        [_grow(part, axis, channels, fill) for part in parts], axis))

  log_delta = codec.log_delta.numpy()  # [levels, channels]
  grow(lambda m: m.latent_codec.log_delta, 1, lambda shape: np.repeat(
      np.median(log_delta, 1, keepdims=True), shape[1], 1))
  if source.decoder_gain:
    grow(lambda m: m.decoder_gain_weight, 1, zeros)

  last = lambda m: m.analysis.layers[-1]
  spread = NEW_FILTER_SCALE * last(source).kernel_parameter.numpy().std()
  grow(lambda m: last(m).kernel_parameter, 3,
       lambda shape: rng.normal(0., spread, shape).astype(np.float32))
  grow(lambda m: last(m).bias_parameter, 0, zeros)
  grow(lambda m: m.synthesis.layers[0].kernel_parameter, 2, zeros)
  grow(lambda m: m.latent_codec.hyper_analysis.layers[0].kernel_parameter,
       2, zeros)

  # h_s's last layer: [μ | log σ], each half widened.
  hs = lambda m: m.latent_codec.hyper_synthesis.layers[-1]
  grow(lambda m: hs(m).kernel_parameter, 3, zeros, halves=2)
  conditional = codec.conditional
  log_scale = (conditional._log_min  # pylint: disable=protected-access
               + SCALE_INDEX_MARGIN
               * conditional._log_step  # pylint: disable=protected-access
               + np.median(log_delta[-1]))
  bias = hs(source).bias_parameter.numpy()
  hs(target).bias_parameter.assign(np.concatenate([
      _grow(bias[:old], 0, channels, zeros),
      _grow(bias[old:], 0, channels,
            lambda shape: np.full(shape, log_scale, np.float32))]))
  return target


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("source")
  parser.add_argument("target")
  parser.add_argument("--latent_channels", type=int, required=True)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  if os.path.exists(args.target):
    sys.exit(f"{args.target} exists: not replaced")
  try:
    model = widen(export.exported_model(args.source), args.latent_channels,
                  args.seed)
  except ValueError as e:
    sys.exit(f"tools/widen.py: {e}")
  card = pretrained.read_info(args.source).get("card") or {}
  model_id = export.export(model, args.target, card=card)
  print(f"{args.target}: {model_id}")


if __name__ == "__main__":
  main()
