"""Quantization modes: how a latent reaches the rate term and the synthesis.

Every latent codec in this package routes its latents through `quantize`, so a
training strategy is a property of the codec and every architecture gets every
strategy. The modes, for a latent `v` already centred on its predicted mean
(and divided by Δ under SAUN):

- `noise` (AUN): v + u, u ~ U(-1/2, 1/2), for both the rate (a density) and
  the synthesis. Differentiable, but decoding later sees round(v), not v + u.
- `ste`: round(v) with a straight-through gradient, for both. Training sees
  what decoding sees, but the gradient into the encoder is biased.
- `mixed`: v + u for the rate, straight-through round(v) for the synthesis.
- `hard`: round(v), with the gradient stopped at the latent: the rate is the
  discrete likelihood of the rounded value and gradients reach only the
  entropy model and the decoder. This is the second phase of soft-then-hard.

At inference (`training=False`) every mode codes the rounded latent, and the
rate is its discrete likelihood: exactly what the range coder spends.
"""

import tensorflow as tf

NOISE = "noise"
STE = "ste"
MIXED = "mixed"
HARD = "hard"
MODES = (NOISE, STE, MIXED, HARD)


def check_mode(mode):
  if mode not in MODES:
    raise ValueError(f"Unknown quantization mode {mode!r}; expected one of {MODES}.")
  return mode


def quantize(entropy_model_call, round_st, value, mode, training):
  """Applies a quantization mode through a tfc-style entropy model call.

  Args:
    entropy_model_call: `f(value, training) -> (perturbed, bits)`, with tfc's
      semantics: `training=True` adds uniform noise and evaluates the density,
      `training=False` rounds (straight-through) and evaluates the discrete
      likelihood.
    round_st: `f(value) -> rounded value` with a straight-through gradient,
      rounding to the same grid as `entropy_model_call(value, False)`.
    value: the latent tensor.
    mode: one of `MODES`.
    training: Python bool; at inference every mode rounds.

  Returns:
    `(value_for_synthesis, bits)`.
  """
  if not training:
    return entropy_model_call(value, False)
  if mode == NOISE:
    return entropy_model_call(value, True)
  if mode == STE:
    return entropy_model_call(value, False)
  if mode == MIXED:
    _, bits = entropy_model_call(value, True)
    return round_st(value), bits
  if mode == HARD:
    return entropy_model_call(tf.stop_gradient(value), False)
  raise ValueError(f"Unknown quantization mode {mode!r}.")


def is_discrete(mode, training):
  """Whether the rate in this mode is a discrete likelihood of rounded values."""
  return (not training) or mode in (STE, HARD)
