"""Causal context models: predicting a latent from the latents before it.

`CausalContext` is the masked convolution of Minnen et al. (2018): the output
at (i, j) sees only the latents above it and to its left in raster order
(the "type A" mask, without the centre). Training applies it to the whole
latent at once; decoding cannot, because μ at a position depends on the
decoded values before it, and with mean-centred rounding ŷ = round(y - μ) + μ
so does ŷ itself.

`autoregress` runs that recursion exactly. Positions are visited in
wavefronts t = (r + 1)·i + j (r the kernel radius): every position a wavefront
depends on lies in an earlier one, so each wavefront is computed as one batch
(141 steps for the 48x32 latent of a 768x512 image, instead of 1536).
Encoder, decoder and the training of the discrete modes run this same
function, on the same shapes, so the floats that pick μ and the scale table
index are identical on both sides of the channel.
"""

import numpy as np
import tensorflow as tf

from tfc_sth.model import exact


class CausalContext(exact.Layer, tf.keras.layers.Layer):
  """A k x k convolution masked to the positions before the centre; exact
  (see `exact.py`) when asked."""

  def __init__(self, filters, kernel_size=5, **kwargs):
    super().__init__(**kwargs)
    self.filters = int(filters)
    self.kernel_size = int(kernel_size)
    if self.kernel_size % 2 != 1:
      raise ValueError("The context kernel size must be odd.")
    self.radius = self.kernel_size // 2
    r = self.radius
    # (dy, dx) of every causal tap, in the kernel's row-major order.
    self.taps = np.array([(dy, dx) for dy in range(-r, 1)
                          for dx in range(-r, r + 1) if dy < 0 or dx < 0],
                         np.int32)

  def build(self, input_shape):
    channels = int(input_shape[-1])
    k = self.kernel_size
    self.kernel = self.add_weight(
        name="kernel", shape=(k, k, channels, self.filters),
        initializer="glorot_uniform")
    self.bias = self.add_weight(name="bias", shape=(self.filters,),
                                initializer="zeros")
    mask = np.zeros((k, k, 1, 1), np.float32)
    mask[tuple((self.taps + self.radius).T)] = 1.
    self.mask = tf.constant(mask)
    super().build(input_shape)

  @property
  def kernel_variable(self):
    return self.kernel

  def _operands(self, inputs, kernel):
    if not self.exact:
      return inputs, kernel, self.bias
    return (exact.snap(inputs), tf.cast(kernel, tf.float64),
            tf.cast(self.bias, tf.float64))

  def call(self, y_hat):
    y_hat, kernel, bias = self._operands(y_hat, self.kernel * self.mask)
    outputs = tf.nn.bias_add(tf.nn.conv2d(y_hat, kernel, 1, "SAME"), bias)
    return tf.cast(outputs, tf.float32)

  def tap_kernel(self):
    """The kernel's causal taps as a [taps * channels, filters] matrix (in
    float64 when exact: cast once per image, not per wavefront)."""
    kernel = tf.gather_nd(self.kernel, self.taps + self.radius)
    kernel = tf.reshape(kernel, (-1, self.filters))
    return tf.cast(kernel, tf.float64) if self.exact else kernel

  def at(self, neighbours, tap_kernel):
    """The output at positions whose causal taps are `neighbours`.

    neighbours: [..., taps, channels], taps in `self.taps` order;
    tap_kernel: `self.tap_kernel()`, computed once per image, not per call.
    """
    shape = tf.shape(neighbours)
    flat = tf.reshape(neighbours, tf.concat([shape[:-2], [-1]], 0))
    flat, tap_kernel, bias = self._operands(flat, tap_kernel)
    return tf.cast(tf.matmul(flat, tap_kernel) + bias, tf.float32)

  def get_config(self):
    return dict(super().get_config(), filters=self.filters,
                kernel_size=self.kernel_size)


def autoregress(context, features, step, state, channels):
  """Decodes (or encodes) a latent wavefront by wavefront.

  Args:
    context: the `CausalContext` whose taps define the dependencies.
    features: [B, H, W, C] tensors known for every position beforehand
      (hyperprior features, Δ), a tuple; only their spatial shape is shared.
    step: `f(state, positions, context_output, features_at) -> (state,
      ŷ_at)` for `positions` [P, 2] (row, column) of one wavefront, with
      `context_output` [B, P, filters] and each feature [B, P, C]; returns
      ŷ at those positions, [B, P, channels].
    state: the initial state passed to `step` (e.g. a range coder handle).
    channels: the number of latent channels.

  Returns:
    (ŷ [B, H, W, channels], final state).
  """
  shape = tf.shape(features[0])
  batch, height, width = shape[0], shape[1], shape[2]
  r = context.radius
  # Spatial-major, so that positions are gathered with plain `gather_nd`.
  spatial = [tf.transpose(f, (1, 2, 0, 3)) for f in features]
  y_hat = tf.zeros([height + r, width + 2 * r, batch, channels],
                   features[0].dtype)
  taps = tf.constant(context.taps + r)
  tap_kernel = context.tap_kernel()

  def body(t, y_hat, state):
    rows = tf.range(height)
    cols = t - (r + 1) * rows
    keep = (cols >= 0) & (cols < width)
    positions = tf.stack([rows[keep], cols[keep]], axis=-1)
    neighbours = tf.gather_nd(y_hat, positions[:, None, :] + taps)
    context_output = context.at(tf.transpose(neighbours, (2, 0, 1, 3)),
                                tap_kernel)
    at = [tf.transpose(tf.gather_nd(f, positions), (1, 0, 2))
          for f in spatial]
    state, values = step(state, positions, context_output, at)
    y_hat = tf.tensor_scatter_nd_update(
        y_hat, positions + r, tf.transpose(values, (1, 0, 2)))
    return t + 1, y_hat, state

  num_wavefronts = (r + 1) * (height - 1) + width
  _, y_hat, state = tf.while_loop(
      lambda t, *_: t < num_wavefronts, body, (0, y_hat, state))
  return tf.transpose(y_hat[r:, r:width + r], (2, 0, 1, 3)), state
