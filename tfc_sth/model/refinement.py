"""Latent refinement: the loss an encoder lowers by optimising its latents
for one image.

g_a is amortised: one pass predicts latents that are good on average over
the training photos, not the best for this photo. With the decoder fixed,
the encoder may send any latents, so it can lower this image's own loss,
bits / pixels + λ_q · MSE at the level coded, by gradient descent on y
(Campos et al., "Content Adaptive Optimization for Neural Image
Compression", CVPR Workshops 2019; Yang et al., "Improving Inference for
Neural Image Compression", NeurIPS 2020). The loss is the inference-mode one,
on rounded latents with a straight-through gradient: the discrete rate the
range coder spends and the pixels the decoder makes. Decoding is unchanged,
so files of refined latents decode with any copy of the model.

This module is the objective, exported as the `refinement_loss` signature;
the search that descends it is the encoder's (`runtime/refinement.py`), so
a SavedModel carries no gradient graph that only refining encoders use.
The latents move in units of each channel's Δ_q, so that one step size of
the search serves every level.
"""

import tensorflow as tf

from tfc_sth.model import saun


def level_lmbda(model, level):
  """λ at `level` (None for a single-rate model), geometric between levels
  as the ladder's λs are."""
  if level is None:
    return tf.constant(model.lmbda, tf.float32)
  log_lmbdas = tf.math.log(tf.constant(model.lmbdas, tf.float32))
  return tf.exp(saun.at_level(log_lmbdas[:, None], level)[0])


def objective(model, y, context, offset, x, level, shift):
  """The loss of coding `x` at `level` with latents y + Δ_q · `shift`.

  Args:
    model: a `CompressionModel` whose latent codec is `refinable`.
    y: float32 [1, h, w, M], g_a's latents of the region being coded.
    context: float32 [1, H, W, M], latents around it (y among them), which
      the synthesis of the region's pixels reads but which are not refined.
    offset: int32 [2], where y starts in `context`, in latents.
    x: float32 [1, p, q, 3] in [0, 1], the region's pixels (p <= 16h and
      q <= 16w: the image may end inside the region's padding).
    level: the quality level (a float32 scalar), or None.
    shift: float32 [1, h, w, M], the move from y in units of Δ_q.

  Returns:
    (bits / pixels + λ_q · MSE in 8-bit units, a float32 scalar;
     the moved latents y + Δ_q · shift).
  """
  codec = model.latent_codec
  factor = model.analysis_downsampling
  pixels = tf.cast(tf.reduce_prod(tf.shape(x)[1:3]), tf.float32)
  # The neighbours as the decoder will see them, up to their own hyperprior.
  context_hat, _ = codec(context, training=False, level=level)
  padding = [[0, 0],
             [offset[0], tf.shape(context)[1] - offset[0] - tf.shape(y)[1]],
             [offset[1], tf.shape(context)[2] - offset[1] - tf.shape(y)[2]],
             [0, 0]]
  core_hat = tf.slice(context_hat, tf.pad(offset, [[1, 1]]), tf.shape(y))
  top, left = offset[0] * factor, offset[1] * factor
  moved = y + codec.channel_step(level) * shift
  y_hat, bits = codec(moved, training=False, level=level)
  latents = context_hat + tf.pad(y_hat - core_hat, padding)
  x_hat = tf.cast(model.synthesis(model.synthesis_input(latents, level)),
                  tf.float32)
  x_hat = tf.slice(x_hat, [0, top, left, 0], tf.shape(x))
  mse = tf.reduce_mean(
      tf.math.squared_difference(tf.clip_by_value(x_hat, 0., 1.), x))
  loss = (tf.reduce_sum(bits) / pixels
          + level_lmbda(model, level) * mse * 255. ** 2)
  return loss, moved
