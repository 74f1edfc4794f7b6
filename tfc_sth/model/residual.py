"""Residual transforms: those of Cheng et al., "Learned Image Compression
with Discretized Gaussian Mixture Likelihoods and Attention Modules" (CVPR
2020), the `cheng2020` architecture.

3x3 residual blocks, GDN in the resolution-changing blocks, sub-pixel
upsampling and, optionally, their simplified attention module. The blocks
(`ResidualBlock`, `ResidualDownBlock`, `ResidualUpBlock`, `AttentionBlock`)
are Keras layers whose convolutions are `layers.SignalConv2D`s, so export
handles them like the GDN transforms (`transforms.py`).
"""

import tensorflow as tf

from tfc_sth.model import layers


# Registered so that layers' configs can name it.
@tf.keras.utils.register_keras_serializable("tfc_sth", "leaky_relu")
def _leaky_relu(x):
  # The paper leaves the slope unstated; 0.01 is the common default.
  return tf.nn.leaky_relu(x, alpha=0.01)


class _Residual(tf.keras.layers.Layer):
  """Base of the blocks: branch(x) + shortcut(x), `filters` channels wide.

  The shortcut is the identity or, in a block that changes the resolution,
  a convolution (`skip`). Before an identity shortcut, an input of another
  width is mapped to `filters` channels by a 1x1 convolution
  (`projection`), which is created at build: only there is the input's
  width known, and the synthesis's first block receives the latent, whose
  width its builder is not told.
  """

  def __init__(self, filters, kernel_parameter="rdft", **kwargs):
    super().__init__(**kwargs)
    self.filters = int(filters)
    self.kernel_parameter = kernel_parameter
    self.projection = None
    self.skip = None

  def build(self, input_shape):
    if self.skip is None and input_shape[-1] != self.filters:
      self.projection = layers.conv(self.filters, 1, 1, False,
                                    self.kernel_parameter, name="projection")
    super().build(input_shape)

  def branch(self, inputs):
    raise NotImplementedError

  def shortcut(self, inputs):
    return inputs if self.skip is None else self.skip(inputs)

  def call(self, inputs):
    if self.projection is not None:
      inputs = self.projection(inputs)
    return self.branch(inputs) + self.shortcut(inputs)

  def get_config(self):
    return dict(super().get_config(), filters=self.filters,
                kernel_parameter=self.kernel_parameter)


class ResidualBlock(_Residual):
  """Two 3x3 convolutions with LeakyReLU and an identity skip.

  Adds depth at constant resolution; the skip keeps it easy to train.
  """

  def __init__(self, filters, kernel_parameter="rdft", **kwargs):
    super().__init__(filters, kernel_parameter, **kwargs)
    self.conv_0 = layers.conv(self.filters, 3, 1, False, kernel_parameter,
                              _leaky_relu, name="conv_0")
    self.conv_1 = layers.conv(self.filters, 3, 1, False, kernel_parameter,
                              _leaky_relu, name="conv_1")

  def branch(self, inputs):
    return self.conv_1(self.conv_0(inputs))


class ResidualDownBlock(_Residual):
  """Downsampling by 2: (3x3/2 conv, LeakyReLU, 3x3 conv, GDN) + 1x1/2 conv.

  Stacked 3x3 convolutions see at least as far as one 5x5 with fewer
  weights; GDN keeps the divisive normalisation of GDN transforms; the skip
  gives the gradient a short path.
  """

  def __init__(self, filters, kernel_parameter="rdft", **kwargs):
    super().__init__(filters, kernel_parameter, **kwargs)
    self.conv_0 = layers.conv(self.filters, 3, 2, False, kernel_parameter,
                              _leaky_relu, name="conv_0")
    self.conv_1 = layers.conv(self.filters, 3, 1, False, kernel_parameter,
                              layers.GDN(name="gdn"), name="conv_1")
    self.skip = layers.conv(self.filters, 1, 1, False, kernel_parameter,
                            name="skip")

  def build(self, input_shape):
    # The skip's initial weights are drawn before the branch's, so that a
    # seed keeps giving the initial model it always gave.
    with tf.name_scope(self.skip.name):
      self.skip.build(input_shape)
    super().build(input_shape)

  def branch(self, inputs):
    return self.conv_1(self.conv_0(inputs))

  def shortcut(self, inputs):
    # The 1x1 stride-2 skip as subsampling and a stride-1 convolution: the
    # same output, but oneDNN's (TF 2.14) kernel gradient of a strided 1x1
    # convolution crashes the process (double free).
    return self.skip(inputs[:, ::2, ::2, :])


class ResidualUpBlock(_Residual):
  """Upsampling by 2: (sub-pixel conv, LeakyReLU, 3x3 conv, IGDN) + sub-pixel.

  The mirror of `ResidualDownBlock`, with inverse GDN as in GDN synthesis
  transforms.
  """

  def __init__(self, filters, kernel_parameter="rdft", **kwargs):
    super().__init__(filters, kernel_parameter, **kwargs)
    self.up = layers.SubPixelConv(self.filters, kernel_parameter, _leaky_relu,
                                  name="up")
    self.conv = layers.conv(self.filters, 3, 1, False, kernel_parameter,
                            layers.GDN(inverse=True, name="igdn"), name="conv")
    self.skip = layers.SubPixelConv(self.filters, kernel_parameter,
                                    name="skip")

  def branch(self, inputs):
    return self.conv(self.up(inputs))


class _BottleneckUnit(_Residual):
  """1x1 to filters // 2, ReLU, 3x3, ReLU, 1x1 back, plus identity."""

  def __init__(self, filters, kernel_parameter="rdft", **kwargs):
    super().__init__(filters, kernel_parameter, **kwargs)
    half = self.filters // 2
    self.convs = tf.keras.Sequential([
        layers.conv(half, 1, 1, False, kernel_parameter, tf.nn.relu,
                    name="conv_0"),
        layers.conv(half, 3, 1, False, kernel_parameter, tf.nn.relu,
                    name="conv_1"),
        layers.conv(self.filters, 1, 1, False, kernel_parameter,
                    name="conv_2"),
    ], name="convs")

  def branch(self, inputs):
    return self.convs(inputs)


class AttentionBlock(_Residual):
  """Cheng et al.'s simplified attention: x + trunk(x) · sigmoid(mask(x)).

  The mask in (0, 1) weights the trunk's correction per position and
  channel, so that bits and detail go where the content is complex. No
  non-local part: the paper dropped it for speed at no loss.
  """

  def __init__(self, filters, kernel_parameter="rdft", **kwargs):
    super().__init__(filters, kernel_parameter, **kwargs)
    units = lambda: [
        _BottleneckUnit(self.filters, kernel_parameter, name=f"unit_{i}")
        for i in range(3)]
    self.trunk = tf.keras.Sequential(units(), name="trunk")
    self.mask = tf.keras.Sequential(
        units() + [layers.conv(self.filters, 1, 1, False, kernel_parameter,
                               tf.sigmoid, name="conv")], name="mask")

  def branch(self, inputs):
    return self.trunk(inputs) * self.mask(inputs)


def analysis_transform(num_filters, latent_channels, kernel_parameter="rdft",
                       attention=False, name="analysis"):
  """g_a of Cheng et al.: image -> latent y, downsampling by 16."""
  n, k = num_filters, kernel_parameter
  stack = [ResidualDownBlock(n, k, name="down_0"),
           ResidualBlock(n, k, name="res_0"),
           ResidualDownBlock(n, k, name="down_1")]
  if attention:
    stack.append(AttentionBlock(n, k, name="attention_0"))
  stack += [ResidualBlock(n, k, name="res_1"),
            ResidualDownBlock(n, k, name="down_2"),
            ResidualBlock(n, k, name="res_2"),
            layers.conv(latent_channels, 3, 2, False, k, name="conv")]
  if attention:
    stack.append(AttentionBlock(latent_channels, k, name="attention_1"))
  return tf.keras.Sequential(stack, name=name)


def synthesis_transform(num_filters, kernel_parameter="rdft",
                        attention=False, channels=3, name="synthesis"):
  """g_s of Cheng et al.: ŷ -> image, upsampling by 16.

  The first block maps ŷ to `num_filters` channels by a 1x1 convolution if
  its width differs (see `_Residual`); in the paper both are N.
  """
  n, k = num_filters, kernel_parameter
  stack = [AttentionBlock(n, k, name="attention_0")] if attention else []
  stack += [ResidualBlock(n, k, name="res_0"),
            ResidualUpBlock(n, k, name="up_0"),
            ResidualBlock(n, k, name="res_1"),
            ResidualUpBlock(n, k, name="up_1")]
  if attention:
    stack.append(AttentionBlock(n, k, name="attention_1"))
  stack += [ResidualBlock(n, k, name="res_2"),
            ResidualUpBlock(n, k, name="up_2"),
            ResidualBlock(n, k, name="res_3"),
            layers.SubPixelConv(channels, k, name="up_3")]
  return tf.keras.Sequential(stack, name=name)


def hyper_analysis_transform(num_filters, hyper_channels,
                             kernel_parameter="rdft", name="hyper_analysis"):
  """h_a of Cheng et al.: y -> hyper-latent z, downsampling by 4."""
  conv = lambda i, filters, stride, activation=_leaky_relu: layers.conv(
      filters, 3, stride, False, kernel_parameter, activation,
      name=f"conv_{i}")
  return tf.keras.Sequential([
      conv(0, num_filters, 1), conv(1, num_filters, 1),
      conv(2, num_filters, 2), conv(3, num_filters, 1),
      conv(4, hyper_channels, 2, None),
  ], name=name)


def hyper_synthesis_transform(num_filters, out_channels,
                              kernel_parameter="rdft", last_kernel=3,
                              name="hyper_synthesis"):
  """h_s of Cheng et al.: ẑ -> entropy parameters of y, upsampling by 4;
  `last_kernel` as in `transforms.hyper_synthesis_transform`."""
  k, wide = kernel_parameter, num_filters * 3 // 2
  return tf.keras.Sequential([
      layers.conv(num_filters, 3, 1, False, k, _leaky_relu, name="conv_0"),
      layers.SubPixelConv(num_filters, k, _leaky_relu, name="up_0"),
      layers.conv(wide, 3, 1, False, k, _leaky_relu, name="conv_1"),
      layers.SubPixelConv(wide, k, _leaky_relu, name="up_1"),
      layers.conv(out_channels, last_kernel, 1, False, k, name="conv_2"),
  ], name=name)
