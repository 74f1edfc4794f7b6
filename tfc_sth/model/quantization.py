"""Quantization modes: how a latent reaches the rate term and the synthesis.

Every entropy model in this package routes its latents through `perturb`, so
a training strategy is a property of the codec and every architecture gets
every strategy. The modes, for a latent `v` already centred on its predicted
mean (and divided by Δ under SAUN):

- `noise` (AUN): v + u, u ~ U(-1/2, 1/2), for both the rate (a density) and
  the synthesis. Differentiable, but decoding later sees round(v), not v + u.
- `ste`: round(v) with a straight-through gradient, for both. Training sees
  what decoding sees, but the gradient into the encoder is biased.
- `mixed`: v + u for the rate, straight-through round(v) for the synthesis.
- `hard`: round(v), with the gradient stopped at the latent: the rate is the
  discrete likelihood of the rounded value and gradients reach only the
  entropy model and the decoder. This is the second phase of soft-then-hard.
- `anneal` (soft-to-hard annealing): tfc's soft rounding s_α (Agustsson &
  Theis 2020) with a temperature α raised during training. The rate is the
  density of s_α(v) + u, the synthesis sees its conditional mean r_α(s_α(v) +
  u); s_α is the identity at α = 0 and tends to rounding as α grows.

At inference (`training=False`) every mode codes the rounded latent, and the
rate is its discrete likelihood: exactly what the range coder spends.
"""

import tensorflow as tf
import tensorflow_compression as tfc

NOISE = "noise"
STE = "ste"
MIXED = "mixed"
HARD = "hard"
ANNEAL = "anneal"
MODES = (NOISE, STE, MIXED, HARD, ANNEAL)

# What the rate is evaluated on, returned by `perturb`.
DISCRETE = "discrete"  # Integers: the discrete likelihood.
NOISY = "noisy"  # v + u: the density of the latent plus unit uniform noise.
SOFT_ROUNDED = "soft_rounded"  # s_α(v) + u: the density of s_α(V) + U.


def check_mode(mode):
  if mode not in MODES:
    raise ValueError(f"Unknown quantization mode {mode!r}; expected one of {MODES}.")
  return mode


def uniform_noise(like):
  return tf.random.uniform(tf.shape(like), -.5, .5, dtype=like.dtype)


def perturb(v, mode, training, alpha=None, noise=None):
  """Applies a quantization mode to a centred, normalised latent.

  Args:
    v: the latent tensor.
    mode: one of `MODES`, checked where it was set (`check_mode`).
    training: Python bool; at inference every mode rounds.
    alpha: soft rounding temperature (scalar tensor), for `anneal`.
    noise: the uniform noise to add in the noisy modes; drawn if None. Given
      when the caller needs v + u before v is known (context models).

  Returns:
    `(value for the rate, value for the synthesis, kind)`, where kind is
    `DISCRETE`, `NOISY` or `SOFT_ROUNDED` and says which density the rate
    value must be evaluated under.
  """
  if not training or mode == STE:
    rounded = tfc.round_st(v)
    return rounded, rounded, DISCRETE
  if mode == HARD:
    rounded = tf.round(tf.stop_gradient(v))
    return rounded, rounded, DISCRETE
  if noise is None:
    noise = uniform_noise(v)
  if mode == NOISE:
    return v + noise, v + noise, NOISY
  if mode == MIXED:
    return v + noise, tfc.round_st(v), NOISY
  if mode != ANNEAL:
    raise ValueError(f"Unknown quantization mode {mode!r}.")
  soft = tfc.soft_round(v, alpha) + noise
  return soft, tfc.soft_round_conditional_mean(soft, alpha), SOFT_ROUNDED


def is_discrete(mode, training):
  """Whether the rate in this mode is a discrete likelihood of rounded values."""
  return (not training) or mode in (STE, HARD)
