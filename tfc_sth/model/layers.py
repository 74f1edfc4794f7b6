"""tfc's layers made faster on a CPU, with the same variables and outputs.

On a CPU, tfc's RDFT parameter costs more than the convolutions themselves:
its inverse FFT over thousands of tiny 5x5 kernels, and that FFT's gradient,
took 0.5 of the 0.95 s of a training step of the default model. The inverse
RDFT is linear, so `RDFTKernel` applies it as one small matrix product
instead: the same variables, checkpoints and training dynamics as tfc's
parameter, at the speed of plain kernels.

Likewise, tfc computes an upsampling convolution as a VALID transposed
convolution and crops it, which oneDNN runs about 1.6x slower than a SAME
one; `SignalConv2D` gets the same output from a SAME transposed convolution
or, for few output channels, a sub-pixel convolution. Synthesis takes a
third less time with these.

`SignalConv2D` and `Dense` are also exact (see `exact.py`) when asked, and
`set_precision` runs a transform in bfloat16. The transforms
(`transforms.py`, `residual.py`) are built of these layers.
"""

import contextlib

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

from tfc_sth.model import exact


class RDFTKernel(tfc.RDFTParameter):
  """tfc's RDFT kernel parameter, with the inverse RDFT as a matrix product.

  The variables (`real`, `imag` of shape [in, out, kh, kw // 2 + 1]) and their
  meaning are tfc's, so checkpoints are interchangeable with
  `tfc.RDFTParameter`; only the computation of the kernel differs.
  """

  def __init__(self, initial_value, name=None, shape=None, dtype=None):
    super().__init__(initial_value, name=name, shape=shape, dtype=dtype)
    if self.shape.rank != 4:
      raise ValueError(f"RDFTKernel is for 2D kernels, not {self.shape}.")
    spectrum = self.real.shape[2:]  # (kh, kw // 2 + 1)
    count = spectrum.num_elements()
    # Row j: the kernel that tfc's inverse RDFT makes of the j-th unit
    # coefficient, real parts first, then imaginary parts.
    units = np.eye(2 * count, dtype=np.float32).reshape((2 * count, 2)
                                                        + tuple(spectrum))
    basis = tf.signal.irfft2d(
        tf.dtypes.complex(units[:, 0], units[:, 1])
        * self.shape[:2].num_elements() ** .5,
        fft_length=self.shape[:2])
    self._basis = tf.constant(
        tf.reshape(basis, (2 * count, -1)).numpy(), self.dtype)

  @tf.Module.with_name_scope
  def __call__(self, compute_dtype=None):
    channels = self.shape[2] * self.shape[3]
    coefficients = tf.concat([tf.reshape(self.real, (channels, -1)),
                              tf.reshape(self.imag, (channels, -1))], axis=1)
    # [kh * kw, in * out] = basisᵀ · coefficientsᵀ, already in kernel order.
    kernel = tf.reshape(
        tf.linalg.matmul(self._basis, coefficients, transpose_a=True,
                         transpose_b=True), self.shape)
    return kernel if compute_dtype is None else tf.cast(kernel, compute_dtype)


class SignalConv2D(exact.Layer, tfc.SignalConv2D):
  """tfc's `SignalConv2D` with faster "rdft" kernels and 2x upsampling.

  Same variables and same outputs (up to float rounding) as tfc's layer;
  exact (see `exact.py`) in float64 on fixed-point operands when asked.
  """

  # Measured on oneDNN: for many output channels a SAME transposed
  # convolution is fastest, for few (the image) a sub-pixel convolution.
  MIN_TRANSPOSED_FILTERS = 16

  def build(self, input_shape):
    if isinstance(self.kernel_parameter, str) and (
        self.kernel_parameter == "rdft"):
      shape = self.kernel_support + (int(input_shape[-1]), self.filters)
      self.kernel_parameter = RDFTKernel(
          self.kernel_initializer(shape=shape, dtype=self.variable_dtype),
          name="kernel")
    super().build(input_shape)

  @property
  def _flipped(self):
    """A convolution without upsampling: tfc flips the kernel and
    correlates, flipping with a negative-stride slice whose gradient is as
    slow as a strided slice's (see `_up_transposed`)."""
    return (not self.corr and self.strides_up == (1, 1)
            and self.strides_down == (1, 1) and self.padding == "same_zeros"
            and self.data_format == "channels_last"
            and all(k % 2 for k in self.kernel_support))

  @property
  def _fast_up(self):
    return (not self.corr and not self.channel_separable
            and self.strides_up == (2, 2) and self.strides_down == (1, 1)
            and self.padding == "same_zeros" and self.extra_pad_end
            and self.data_format == "channels_last"
            and all(k % 2 and k <= 5 for k in self.kernel_support))

  # tfc's output is rows/columns [(k-1)//2, (k-1)//2 + 2n) of the full
  # transposed convolution of n input rows/columns with a k-tap kernel, i.e.
  # output 2m + r = Σ_t x[m + t]·K[r + (k-1)//2 - 2t], t ∈ {-1, 0, 1}.

  def _up_transposed(self, inputs):
    # A SAME transposed convolution of the input padded by one zero row and
    # column starts at (k-2)//2 of the full one, one before tfc's output.
    shape = tf.shape(inputs)
    padded = tf.pad(inputs, [[0, 0], [0, 1], [0, 1], [0, 0]])
    outputs = tf.nn.conv2d_transpose(
        padded, tf.transpose(self.kernel, (0, 1, 3, 2)),
        [shape[0], 2 * shape[1] + 2, 2 * shape[2] + 2, self.filters],
        strides=2, padding="SAME")
    # tf.slice, not [1:-1]: a strided slice's gradient is 30x slower in
    # bfloat16 (measured: 24 ms against 0.7 on [8, 66, 66, 128]).
    return tf.slice(outputs, [0, 1, 1, 0],
                    [-1, 2 * shape[1], 2 * shape[2], -1])

  def _up_sub_pixel(self, inputs):
    # One 3x3 correlation per output phase r = (r_y, r_x), stacked along
    # channels as depth_to_space expects, with the taps of the formula above.
    kernel = self.kernel
    taps = []
    for axis, size in enumerate(self.kernel_support):
      index = np.array([[r + (size - 1) // 2 - 2 * t for t in (-1, 0, 1)]
                        for r in (0, 1)])
      # Out-of-range taps point at an appended zero.
      kernel = tf.pad(kernel, [[0, 1] if a == axis else [0, 0]
                               for a in range(4)])
      taps.append(np.where((index >= 0) & (index < size), index, size))
    (rows, cols) = taps
    # [r_y, t_y, r_x, t_x, in, out] -> [t_y, t_x, in, (r_y, r_x, out)]
    kernel = tf.gather(tf.gather(kernel, rows, axis=0), cols, axis=2)
    kernel = tf.transpose(kernel, (1, 3, 4, 0, 2, 5))
    shape = tf.shape(kernel)
    kernel = tf.reshape(kernel, [3, 3, shape[2], 4 * self.filters])
    outputs = tf.nn.conv2d(inputs, kernel, strides=1, padding="SAME")
    if self.use_bias:
      # Per phase, before depth_to_space: oneDNN then fuses it into the
      # convolution (measured: a separate bias add was 1% of a decode).
      outputs = tf.nn.bias_add(outputs, tf.tile(self.bias, [4]))
    return tf.nn.depth_to_space(outputs, 2)

  def _correlate_down_explicit(self, inputs, kernel, padding):
    # oneDNN has no bfloat16 kernel for explicitly padded convolutions, and
    # TensorFlow's fallback is 20x slower: pad first, then a VALID one.
    if inputs.dtype != tf.bfloat16 or self.data_format != "channels_last":
      return super()._correlate_down_explicit(inputs, kernel, padding)
    padded = tf.pad(inputs, [(0, 0), *padding, (0, 0)])
    return tf.nn.conv2d(padded, kernel, self.strides_down, "VALID")

  @property
  def kernel_variable(self):
    return self.kernel_parameter

  @property
  def kernel(self):
    kernel = super().kernel
    return tf.cast(kernel, tf.float64) if self.exact else kernel

  @property
  def bias(self):
    bias = super().bias
    return tf.cast(bias, tf.float64) if self.exact else bias

  def call(self, inputs):
    if self.exact:
      return tf.cast(self._call(exact.snap(inputs)), tf.float32)
    return self._call(inputs)

  def _call(self, inputs):
    if self._flipped:
      # Zero padding of (k - 1) / 2 on each side, as tfc's same_zeros.
      outputs = tf.nn.conv2d(inputs, tf.reverse(self.kernel, [0, 1]), 1,
                             "SAME")
    elif not self._fast_up:
      return super().call(inputs)
    elif self.filters >= self.MIN_TRANSPOSED_FILTERS:
      outputs = self._up_transposed(inputs)
    else:
      return self._activated(self._up_sub_pixel(inputs))
    if self.use_bias:
      outputs = tf.nn.bias_add(outputs, self.bias)
    return self._activated(outputs)

  def _activated(self, outputs):
    if self.activation is not None:
      outputs = self.activation(outputs)
    return outputs


class GDN(tfc.GDN):
  """tfc's GDN whose constant α and ε are Python numbers.

  tfc converts constant parameters to tensors once, at construction, so
  under a bfloat16 policy set later (`set_precision`) they would stay
  float32; and tfc's call picks its fast paths (a square, a square root) by
  comparing them, which on tensors traced into a graph becomes a graph
  conditional per comparison, around every GDN.
  """

  @property
  def alpha(self):
    return self._number(self.alpha_parameter, lambda: super(GDN, self).alpha)

  @property
  def epsilon(self):
    return self._number(self.epsilon_parameter,
                        lambda: super(GDN, self).epsilon)

  def _number(self, parameter, value):
    constant = None if callable(parameter) else tf.get_static_value(
        parameter)
    if constant is not None:
      return float(constant)
    return tf.cast(value(), self.compute_dtype)


class Dense(exact.Layer, tf.keras.layers.Dense):
  """Keras's `Dense`, exact (see `exact.py`) when asked."""

  @property
  def kernel_variable(self):
    return self.kernel

  def call(self, inputs):
    if not self.exact:
      return super().call(inputs)
    outputs = tf.matmul(exact.snap(inputs), tf.cast(self.kernel, tf.float64))
    outputs = self.activation(outputs + tf.cast(self.bias, tf.float64))
    return tf.cast(outputs, tf.float32)


# The Keras dtype policies the transforms run under (`set_precision`).
FLOAT32 = "float32"
MIXED_BFLOAT16 = "mixed_bfloat16"  # float32 variables, bfloat16 computation


def set_precision(transform, policy):
  """Runs a transform (a layer and all layers inside it) under a Keras dtype
  policy such as "mixed_bfloat16": float32 variables, computation in the
  policy's dtype. Outputs are then in that dtype; callers cast them back."""
  policy = tf.keras.mixed_precision.Policy(policy)
  for layer in [transform, *transform.submodules]:
    if isinstance(layer, tf.keras.layers.Layer):
      layer._set_dtype_policy(policy)  # pylint: disable=protected-access


@contextlib.contextmanager
def precision(transform, policy):
  """`set_precision` while tracing one graph, then the policy it had: one
  set of variables serves graphs of both precisions."""
  before = transform.dtype_policy.name
  set_precision(transform, policy)
  try:
    yield
  finally:
    set_precision(transform, before)


def conv(filters, kernel, stride, up, kernel_parameter, activation=None,
         name=None):
  """A `SignalConv2D` as the transforms use it: a square `kernel`, zero
  padding to keep the size, a bias, and `stride` down (a correlation) or up
  (`up`, a convolution). `kernel_parameter` "rdft" (tfc's default)
  preconditions the gradient and is the most stable; "variable" is a plain
  kernel."""
  return SignalConv2D(
      filters, (kernel, kernel), corr=not up,
      strides_down=1 if up else stride, strides_up=stride if up else 1,
      padding="same_zeros", use_bias=True, activation=activation,
      kernel_parameter=kernel_parameter, name=name)


class SubPixelConv(tf.keras.layers.Layer):
  """A 3x3 convolution to 4x the channels, rearranged to 2x the resolution.

  Cheng et al. upsample this way rather than by transposed convolution.
  """

  def __init__(self, filters, kernel_parameter="rdft", activation=None,
               **kwargs):
    super().__init__(**kwargs)
    self.filters = int(filters)
    self.kernel_parameter = kernel_parameter
    # Pointwise, so it commutes with the rearrangement.
    self.conv = conv(4 * self.filters, 3, 1, False, kernel_parameter,
                     activation, name="conv")

  def call(self, inputs):
    return tf.nn.depth_to_space(self.conv(inputs), 2)

  def get_config(self):
    return dict(super().get_config(), filters=self.filters,
                kernel_parameter=self.kernel_parameter,
                activation=tf.keras.activations.serialize(
                    self.conv.activation))
