"""The GDN transforms of Ballé et al. and Minnen et al.: g_a, g_s, h_a, h_s.

Analysis and synthesis transforms (g_a, g_s) of four stride-2 5x5
convolutions with GDN (Ballé, Laparra, Simoncelli, ICLR 2017), hyper
transforms (h_a, h_s) of the hyperprior models (Ballé et al., ICLR 2018;
Minnen et al., NeurIPS 2018), and the channel-slice transforms of Minnen &
Singh (ICIP 2020). Built from `layers.SignalConv2D` and `layers.GDN`;
Cheng et al.'s residual transforms are in `residual.py`.
"""

import tensorflow as tf

from tfc_sth.model import layers


def analysis_transform(num_filters, latent_channels, kernel_parameter="rdft",
                       name="analysis"):
  """g_a: image -> latent y, four stride-2 5x5 convolutions with GDN."""
  stack = [
      layers.conv(num_filters, 5, 2, False, kernel_parameter,
                  layers.GDN(name=f"gdn_{i}"), name=f"conv_{i}")
      for i in range(3)]
  stack.append(layers.conv(latent_channels, 5, 2, False, kernel_parameter,
                           name="conv_3"))
  return tf.keras.Sequential(stack, name=name)


def synthesis_transform(num_filters, kernel_parameter="rdft", channels=3,
                        name="synthesis"):
  """g_s: ŷ -> image, four stride-2 5x5 transposed convolutions with IGDN."""
  stack = [
      layers.conv(num_filters, 5, 2, True, kernel_parameter,
                  layers.GDN(inverse=True, name=f"igdn_{i}"),
                  name=f"conv_{i}")
      for i in range(3)]
  stack.append(layers.conv(channels, 5, 2, True, kernel_parameter,
                           name="conv_3"))
  return tf.keras.Sequential(stack, name=name)


def hyper_analysis_transform(num_filters, hyper_channels,
                             kernel_parameter="rdft", name="hyper_analysis"):
  """h_a: y -> hyper-latent z, downsampling by 4."""
  return tf.keras.Sequential([
      layers.conv(num_filters, 3, 1, False, kernel_parameter, tf.nn.relu,
                  name="conv_0"),
      layers.conv(num_filters, 5, 2, False, kernel_parameter, tf.nn.relu,
                  name="conv_1"),
      layers.conv(hyper_channels, 5, 2, False, kernel_parameter,
                  name="conv_2"),
  ], name=name)


def hyper_synthesis_transform(num_filters, out_channels,
                              kernel_parameter="rdft", last_kernel=3,
                              name="hyper_synthesis"):
  """h_s: ẑ -> entropy parameters of y (μ, log σ and, under SAUN, log Δ).

  Its last layer runs exact, in float64, on both sides of the codec, where
  a 3x3 kernel costs about a quarter of a decode: `last_kernel` 1 costs a
  ninth of that, and some rate."""
  return tf.keras.Sequential([
      layers.conv(num_filters, 5, 2, True, kernel_parameter, tf.nn.relu,
                  name="conv_0"),
      layers.conv(num_filters * 3 // 2, 5, 2, True, kernel_parameter,
                  tf.nn.relu, name="conv_1"),
      layers.conv(out_channels, last_kernel, 1, True, kernel_parameter,
                  name="conv_2"),
  ], name=name)


def slice_transform(latent_channels, out_channels, kernel_parameter="rdft",
                    name="slice"):
  """Channel-wise context: (features, decoded slices) -> one slice's μ, σ or
  latent residual, three 3x3 convolutions (Minnen & Singh 2020)."""
  return tf.keras.Sequential([
      layers.conv(latent_channels * 2 // 3, 3, 1, False, kernel_parameter,
                  tf.nn.relu, name="conv_0"),
      layers.conv(latent_channels // 3, 3, 1, False, kernel_parameter,
                  tf.nn.relu, name="conv_1"),
      layers.conv(out_channels, 3, 1, False, kernel_parameter, name="conv_2"),
  ], name=name)
