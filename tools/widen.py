#!/usr/bin/env python3
"""An export with wider transforms or more latent channels that codes like
its source.

    tools/widen.py SOURCE TARGET [--num_filters=N] [--split [--keep_filters=K]]
                                 [--latent_channels=M]

For a ladder whose transforms or latent are full: more capacity without
starting over (Chen, Goodfellow, Shlens, "Net2Net", ICLR 2016: grow the
network, then train it). Then `tfc-sth train --init_from=TARGET` with the
target's `--num_filters`, `--hyper_filters` and `--latent_channels`.

More filters (N) in g_a and g_s: the new filters start as a fresh
initialisation would, and the layer after each ignores them (zero
weights), as GDN ignores them in the old filters' norms. The output is the
source's; a new filter's outgoing weights get a gradient from the first
step. h_a, h_s and z keep the source's width (`--hyper_filters`).

With `--split`, each new filter is instead a copy of a random old one
(Net2Net's split): the copy and its source share the source's outgoing
weights (and its weights in GDN's norms) by random fractions that sum to
one. The output is still the source's, but the copies compute features
the model already uses, and the uneven shares give them different
gradients, so they can part from their sources at once.
`--keep_filters=K` refills the filters from K on this way, also without
widening: what they contributed is lost, for filters that an earlier
widening left barely used.

More channels of y (M) start silent:

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

Tried once on the default ladder, new channels of y stayed silent through
14500 steps (docs/training.md, "a wider latent that stayed silent"): each
costs rate before g_s has learnt to use it, which new filters do not.
Widened from 128 to 160 filters and trained 22500 steps, the default
ladder gained 0.93% (docs/training.md, "Where the top of the ladder is
capped"), though the new filters' weights grew slowly at 3e-5.
Refilled by `--split --keep_filters=128` after that, they trained worse
than as they were: +0.43% on the validation crops after 6000 steps of
each (docs/training.md, "Splitting the barely used filters").
"""

import argparse
import os
import sys

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

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


def widen_filters(source, filters, seed=0):
  """A copy of `source` (from `export.exported_model`) with `filters`
  filters in g_a and g_s, coding the same pixels."""
  config = source.get_config()
  if filters <= config["num_filters"]:
    raise ValueError(f"--num_filters={filters} must exceed the source's "
                     f"{config['num_filters']}")
  if "hyper_filters" not in architectures.options(source.architecture):
    raise ValueError(f"widening the filters of {source.architecture} is not "
                     "supported: its hyper transforms would widen too")
  target = architectures.CompressionModel.from_config(dict(
      config, num_filters=filters,
      hyper_filters=config.get("hyper_filters") or config["num_filters"]))
  tf.keras.utils.set_random_seed(seed)
  target.create_variables()  # The new filters' initialisation.
  for theirs, ours in zip(source.variables, target.variables, strict=True):
    value = np.array(ours.numpy())  # Scalars too.
    value[tuple(slice(0, n) for n in theirs.shape)] = theirs.numpy()
    if value.ndim == 4:  # A kernel: the new input channels are ignored.
      value[:, :, theirs.shape[2]:] = 0.
    # GDN's γ[i, j] weighs input i in the norm of output j: its fresh value
    # (a diagonal) has no new input in an old norm.
    ours.assign(value)
  return target


def _gdn_layers(model):
  """g_a's and g_s's layers, each with GDN but the last, or ValueError."""
  layers = [model.analysis.layers, model.synthesis.layers]
  for transform in layers:
    if not all(isinstance(l.activation, tfc.GDN) for l in transform[:-1]):
      raise ValueError(f"splitting the filters of {model.architecture} is "
                       "not supported: its transforms are not conv and GDN")
  return layers


def _share(value, axis, sources, keep, rng):
  """Divides the slices `sources` along `axis` between themselves and the
  copies from `keep` on, by random fractions."""
  value = np.moveaxis(value, axis, 0)
  whole = value[sources]
  fraction = rng.uniform(.25, .75, whole.shape)
  value[sources] = fraction * whole
  value[keep:] = (1. - fraction) * whole
  return np.moveaxis(value, 0, axis)


def split_filters(model, keep, seed=0):
  """Makes g_a's and g_s's filters from `keep` on copies of distinct random
  filters below it, in place; the output is as if those filters were
  silent."""
  filters = model.get_config()["num_filters"]
  if not filters <= 2 * keep < 2 * filters:
    raise ValueError(f"--keep_filters={keep} must be below the "
                     f"{filters} filters and at least half of them")
  transforms = _gdn_layers(model)
  rng = np.random.default_rng(seed)
  sources = np.sort(rng.choice(keep, filters - keep, replace=False))
  order = np.concatenate([np.arange(keep), sources])
  for layers in transforms:
    for i, layer in enumerate(layers):
      kernel = layer.kernel_parameter.numpy().astype(np.float64)
      if i < len(layers) - 1:  # Its output filters, and their GDN.
        kernel = kernel[..., order]
        layer.bias_parameter.assign(layer.bias_parameter.numpy()[order])
        gdn = layer.activation
        gdn.beta_parameter.variable.assign(
            gdn.beta_parameter.variable.numpy()[order])
        # γ[i, j] weighs input i in the norm of output j.
        gamma = gdn.gamma.numpy().astype(np.float64)[order][:, order]
        gamma = _share(gamma, 0, sources, keep, rng)
        pedestal = gdn.gamma_parameter.offset ** 2
        gdn.gamma_parameter.variable.assign(np.sqrt(gamma + pedestal))
      if i > 0:  # Its input filters.
        kernel = _share(kernel[:, :, order], 2, sources, keep, rng)
      layer.kernel_parameter.assign(kernel)
  return model


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
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
  parser.add_argument("source")
  parser.add_argument("target")
  parser.add_argument("--num_filters", type=int)
  parser.add_argument("--split", action="store_true",
                      help="new filters are splits of old ones")
  parser.add_argument("--keep_filters", type=int,
                      help="with --split: refill the filters from this on")
  parser.add_argument("--latent_channels", type=int)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  if args.keep_filters is not None and not args.split:
    parser.error("--keep_filters needs --split")
  if args.split and args.num_filters is None and args.keep_filters is None:
    parser.error("--split needs --num_filters or --keep_filters")
  if (args.num_filters is None and args.latent_channels is None
      and args.keep_filters is None):
    parser.error("give --num_filters, --keep_filters or --latent_channels")
  if os.path.exists(args.target):
    sys.exit(f"{args.target} exists: not replaced")
  try:
    model = export.exported_model(args.source)
    keep = args.keep_filters
    if keep is None:  # Split into the new filters.
      keep = model.get_config()["num_filters"]
    if args.num_filters is not None:
      model = widen_filters(model, args.num_filters, args.seed)
    if args.split:
      split_filters(model, keep, args.seed)
    if args.latent_channels is not None:
      model = widen(model, args.latent_channels, args.seed)
  except ValueError as e:
    sys.exit(f"tools/widen.py: {e}")
  card = pretrained.read_info(args.source).get("card") or {}
  model_id = export.export(model, args.target, card=card)
  print(f"{args.target}: {model_id}")


if __name__ == "__main__":
  main()
