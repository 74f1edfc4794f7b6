"""Latent refinement: an encoder that optimises its latents for one image.

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

Adam moves each latent by about its step per iteration whatever the
gradient's scale, so steps are measured in each channel's Δ_q: one step size
serves every level. The straight-through gradient ignores the rounding, so
the loss does not fall monotonically: the best latents seen are returned,
never worse than g_a's.
"""

import tensorflow as tf

from tfc_sth.model import saun

# Adam's step, in units of each channel's Δ, decayed linearly to zero over
# the run. Chosen with the shipped ladder on 512x512 crops of 4 training
# photos at its 10 levels (BD-rate in PSNR against no refinement, real
# files): 0.007 gave -3.8/-4.3/-4.2% at 10/20/40 steps, 0.004
# -3.9/-5.0/-5.5%, 0.002 -4.7/-5.7% at 20/40 (docs/refinement.md).
LEARNING_RATE = 0.004
# Adam's moment decays and ε, as Keras's defaults.
BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7


def level_lmbda(model, level):
  """λ at `level` (None for a single-rate model), geometric between levels
  as the ladder's λs are."""
  if level is None:
    return tf.constant(model.lmbda, tf.float32)
  log_lmbdas = tf.math.log(tf.constant(model.lmbdas, tf.float32))
  return tf.exp(saun.at_level(log_lmbdas[:, None], level)[0])


def refine(model, y, context, offset, x, level, steps):
  """Latents that code `x` at `level` with a lower loss than `y`.

  Args:
    model: a `CompressionModel` whose latent codec is `refinable`.
    y: float32 [1, h, w, M], g_a's latents of the region being coded.
    context: float32 [1, H, W, M], latents around it (y among them), which
      the synthesis of the region's pixels reads but which are not refined.
    offset: int32 [2], where y starts in `context`, in latents.
    x: float32 [1, p, q, 3] in [0, 1], the region's pixels (p <= 16h and
      q <= 16w: the image may end inside the region's padding).
    level: the quality level (a float32 scalar), or None.
    steps: int32 scalar, the iterations.

  Returns:
    float32 [1, h, w, M]: the best latents seen (y if none was better).
  """
  codec = model.latent_codec
  factor = model.analysis_downsampling
  lmbda = level_lmbda(model, level)
  pixels = tf.cast(tf.reduce_prod(tf.shape(x)[1:3]), tf.float32)
  # The neighbours as the decoder will see them, up to their own hyperprior.
  context_hat, _ = codec(context, training=False, level=level)
  padding = [[0, 0],
             [offset[0], tf.shape(context)[1] - offset[0] - tf.shape(y)[1]],
             [offset[1], tf.shape(context)[2] - offset[1] - tf.shape(y)[2]],
             [0, 0]]
  core_hat = tf.slice(context_hat, tf.pad(offset, [[1, 1]]),
                      tf.shape(y))
  top, left = offset[0] * factor, offset[1] * factor
  step = codec.channel_step(level)

  def loss(u):
    y_hat, bits = codec(y + step * u, training=False, level=level)
    latents = context_hat + tf.pad(y_hat - core_hat, padding)
    x_hat = tf.cast(model.synthesis(model.synthesis_input(latents, level)),
                    tf.float32)
    x_hat = tf.slice(x_hat, [0, top, left, 0], tf.shape(x))
    mse = tf.reduce_mean(
        tf.math.squared_difference(tf.clip_by_value(x_hat, 0., 1.), x))
    return tf.reduce_sum(bits) / pixels + lmbda * mse * 255. ** 2

  def iterate(i, u, m, v, best_u, best_loss):
    with tf.GradientTape() as tape:
      tape.watch(u)
      value = loss(u)
    gradient = tape.gradient(value, u)
    better = value < best_loss
    best_u = tf.where(better, u, best_u)
    best_loss = tf.minimum(value, best_loss)
    t = tf.cast(i + 1, tf.float32)
    m = BETA_1 * m + (1 - BETA_1) * gradient
    v = BETA_2 * v + (1 - BETA_2) * tf.square(gradient)
    rate = LEARNING_RATE * (1 - tf.cast(i, tf.float32) /
                            tf.cast(steps, tf.float32))
    u -= rate * (m / (1 - BETA_1 ** t)) / (
        tf.sqrt(v / (1 - BETA_2 ** t)) + EPSILON)
    return i + 1, u, m, v, best_u, best_loss

  zeros = tf.zeros_like(y)
  _, u, _, _, best_u, best_loss = tf.while_loop(
      lambda i, *_: i < steps, iterate,
      (tf.constant(0), zeros, zeros, zeros, zeros, tf.constant(float("inf"))))
  # The last update has not been scored yet.
  best_u = tf.where(loss(u) < best_loss, u, best_u)
  return y + step * best_u
