"""Latent refinement, the search: an encoder that spends time for smaller
files descends the model's `refinement_loss` (the objective, in the model's
`refinement.py`) from g_a's latents.

Adam moves each latent by about its step per iteration whatever the
gradient's scale, and the objective measures moves in each channel's Δ_q,
so one step size serves every level. The straight-through gradient ignores
the rounding, so the loss does not fall monotonically: the best latents
seen are returned, never worse than g_a's by the model's own loss.

The gradient is taken here, through the loaded signature, rather than
exported: a SavedModel whose every load would carry a gradient graph only
refining encoders use loads slower for every decoder.
"""

import tensorflow as tf

# Adam's step, in units of each channel's Δ, decayed linearly to zero over
# the run. Chosen with the shipped ladder on 512x512 crops of 4 training
# photos at its 10 levels (BD-rate in PSNR against no refinement, real
# files): 0.007 gave -3.8/-4.3/-4.2% at 10/20/40 steps, 0.004
# -3.9/-5.0/-5.5%, 0.002 -4.7/-5.7% at 20/40 (docs/refinement.md).
LEARNING_RATE = 0.004
# Adam's moment decays and ε, as Keras's defaults.
BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7


def refiner(loss):
  """A function (latents, context, offset, tile, quality, steps) -> the
  refined latents, for `loss`, a `refinement_loss` signature (the same
  inputs, with `shift` for `steps`). Traced once, on its first call."""
  latents = tf.TensorSpec([1, None, None, None], tf.float32)

  @tf.function(input_signature=[
      latents, latents, tf.TensorSpec([2], tf.int32),
      tf.TensorSpec([None, None, 3], tf.uint8),
      tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.int32)])
  def refine(latents, context, offset, tile, quality, steps):
    def evaluate(shift):
      return loss(latents=latents, context=context, offset=offset,
                  tile=tile, quality=quality, shift=shift)

    def iterate(i, shift, m, v, best, best_loss):
      with tf.GradientTape() as tape:
        tape.watch(shift)
        outputs = evaluate(shift)
      gradient = tape.gradient(outputs["loss"], shift)
      better = outputs["loss"] < best_loss
      best = tf.where(better, outputs["latents"], best)
      best_loss = tf.minimum(outputs["loss"], best_loss)
      t = tf.cast(i + 1, tf.float32)
      m = BETA_1 * m + (1 - BETA_1) * gradient
      v = BETA_2 * v + (1 - BETA_2) * tf.square(gradient)
      rate = LEARNING_RATE * (1 - tf.cast(i, tf.float32) /
                              tf.cast(steps, tf.float32))
      shift -= rate * (m / (1 - BETA_1 ** t)) / (
          tf.sqrt(v / (1 - BETA_2 ** t)) + EPSILON)
      return i + 1, shift, m, v, best, best_loss

    zeros = tf.zeros_like(latents)
    _, shift, _, _, best, best_loss = tf.while_loop(
        lambda i, *_: i < steps, iterate,
        (tf.constant(0), zeros, zeros, zeros, latents,
         tf.constant(float("inf"))))
    # The last update has not been scored yet.
    outputs = evaluate(shift)
    return tf.where(outputs["loss"] < best_loss, outputs["latents"], best)

  return refine
