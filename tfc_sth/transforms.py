"""Analysis and synthesis transforms (g_a, g_s) and hyper transforms (h_a, h_s).

Built from tfc's `SignalConv2D` and `GDN`. `kernel_parameter` chooses the
kernel parameterisation: "rdft" (tfc's default) preconditions the gradient and
is the most stable; "variable" is a plain kernel and is faster per step on CPU.
"""

import tensorflow as tf
import tensorflow_compression as tfc


def _conv(filters, kernel, stride, up, kernel_parameter, activation=None,
          name=None):
  return tfc.SignalConv2D(
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
