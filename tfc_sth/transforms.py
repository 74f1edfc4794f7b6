"""Analysis and synthesis transforms (g_a, g_s) and hyper transforms (h_a, h_s).

Built from tfc's `SignalConv2D` and `GDN`. `kernel_parameter` chooses the
kernel parameterisation: "rdft" (tfc's default) preconditions the gradient and
is the most stable; "variable" is a plain kernel.

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
"""

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc


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


class SignalConv2D(tfc.SignalConv2D):
  """tfc's `SignalConv2D` with faster "rdft" kernels and 2x upsampling.

  Same variables and same outputs (up to float rounding) as tfc's layer.
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
    return outputs[:, 1:2 * shape[1] + 1, 1:2 * shape[2] + 1, :]

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
    return tf.nn.depth_to_space(
        tf.nn.conv2d(inputs, kernel, strides=1, padding="SAME"), 2)

  def call(self, inputs):
    if not self._fast_up:
      return super().call(inputs)
    if self.filters >= self.MIN_TRANSPOSED_FILTERS:
      outputs = self._up_transposed(inputs)
    else:
      outputs = self._up_sub_pixel(inputs)
    if self.use_bias:
      outputs = tf.nn.bias_add(outputs, self.bias)
    if self.activation is not None:
      outputs = self.activation(outputs)
    return outputs


def _conv(filters, kernel, stride, up, kernel_parameter, activation=None,
          name=None):
  return SignalConv2D(
      filters, (kernel, kernel), corr=not up,
      strides_down=1 if up else stride, strides_up=stride if up else 1,
      padding="same_zeros", use_bias=True, activation=activation,
      kernel_parameter=kernel_parameter, name=name)


def analysis_transform(num_filters, latent_channels, kernel_parameter="rdft",
                       name="analysis"):
  """g_a: image -> latent y, four stride-2 5x5 convolutions with GDN."""
  layers = [
      _conv(num_filters, 5, 2, False, kernel_parameter,
            tfc.GDN(name=f"gdn_{i}"), name=f"conv_{i}") for i in range(3)]
  layers.append(_conv(latent_channels, 5, 2, False, kernel_parameter,
                      name="conv_3"))
  return tf.keras.Sequential(layers, name=name)


def synthesis_transform(num_filters, kernel_parameter="rdft", channels=3,
                        name="synthesis"):
  """g_s: ŷ -> image, four stride-2 5x5 transposed convolutions with IGDN."""
  layers = [
      _conv(num_filters, 5, 2, True, kernel_parameter,
            tfc.GDN(inverse=True, name=f"igdn_{i}"), name=f"conv_{i}")
      for i in range(3)]
  layers.append(_conv(channels, 5, 2, True, kernel_parameter, name="conv_3"))
  return tf.keras.Sequential(layers, name=name)


def hyper_analysis_transform(num_filters, hyper_channels,
                             kernel_parameter="rdft", name="hyper_analysis"):
  """h_a: y -> hyper-latent z, downsampling by 4."""
  return tf.keras.Sequential([
      _conv(num_filters, 3, 1, False, kernel_parameter, tf.nn.relu,
            name="conv_0"),
      _conv(num_filters, 5, 2, False, kernel_parameter, tf.nn.relu,
            name="conv_1"),
      _conv(hyper_channels, 5, 2, False, kernel_parameter, name="conv_2"),
  ], name=name)


def hyper_synthesis_transform(num_filters, out_channels,
                              kernel_parameter="rdft", name="hyper_synthesis"):
  """h_s: ẑ -> entropy parameters of y (μ, log σ and, under SAUN, log Δ)."""
  return tf.keras.Sequential([
      _conv(num_filters, 5, 2, True, kernel_parameter, tf.nn.relu,
            name="conv_0"),
      _conv(num_filters * 3 // 2, 5, 2, True, kernel_parameter, tf.nn.relu,
            name="conv_1"),
      _conv(out_channels, 3, 1, True, kernel_parameter, name="conv_2"),
  ], name=name)
