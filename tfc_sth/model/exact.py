"""Entropy parameters that come out bit-identical on every machine.

The decoder recomputes μ, the scale-table index and Δ from what it has
decoded, and must get exactly the encoder's values: one flipped index or μ
desynchronises the range decoder. A float32 convolution or matrix product
is not a function of its inputs alone: oneDNN picks the summation order by
thread count and instruction set, and the last bits follow.

So the networks that compute entropy parameters (h_s, the context model,
the layers that combine them) run exact at inference, the idea of integer
networks (Ballé, Johnston, Minnen, ICLR 2019) without retraining. Each
such layer rounds its input to a multiple of 2^-FRACTION_BITS within
±INPUT_LIMIT, its kernel (once, at export) to KERNEL_BITS significant
bits, and sums in float64. Every product is then an integer multiple of one
power of two, and every partial sum stays below 2^53 of those units (see
`check_fan_in`), so float64 adds them without rounding, in any order: the
sum is exact, hence the same everywhere. Bias and activation are single
correctly rounded operations on it, and the output is cast to float32 for
the rest of the model, which is deterministic too. The rounding is far
below what changes a rate (the cost is measured in the README).

Element-wise functions after these layers (tanh, exp, log of Δ) run in
TensorFlow's Eigen kernels, which are compiled once for the AVX baseline
and give the same result for any thread count and oneDNN ISA; the tests
check both.
"""

import math

import numpy as np
import tensorflow as tf
import tensorflow_compression as tfc

FRACTION_BITS = 12
INPUT_LIMIT = 2. ** 12
KERNEL_BITS = 15
FLOAT64_BITS = 53


def snap(inputs):
  """Inputs on the fixed-point grid, as float64. The rounding passes the
  gradient straight through (its output is tf.round's, bit for bit), for
  the encoder's latent refinement, which descends through h_s."""
  scale = 2. ** FRACTION_BITS
  inputs = tfc.round_st(tf.cast(inputs, tf.float64) * scale)
  return tf.clip_by_value(inputs, -INPUT_LIMIT * scale,
                          INPUT_LIMIT * scale) / scale


def snap_kernel(kernel):
  """A kernel rounded to KERNEL_BITS significant bits (of its largest
  magnitude), exactly representable in float32."""
  kernel = np.asarray(kernel, np.float64)
  largest = np.max(np.abs(kernel))
  if not largest:
    return kernel.astype(np.float32)
  scale = 2. ** (KERNEL_BITS - 1 - math.frexp(largest)[1])
  return (np.round(kernel * scale) / scale).astype(np.float32)


def check_fan_in(layer, fan_in):
  """Refuses a layer whose sums could exceed float64's exact range."""
  # |input| < 2^(FRACTION_BITS + log2 INPUT_LIMIT) units, |kernel| <
  # 2^(KERNEL_BITS - 1) units, fan_in products.
  bits = (FRACTION_BITS + math.log2(INPUT_LIMIT) + KERNEL_BITS - 1
          + math.log2(fan_in))
  if bits > FLOAT64_BITS:
    raise ValueError(f"{layer.name}: a fan-in of {fan_in} needs {bits:.1f} "
                     f"bits to sum exactly, float64 has {FLOAT64_BITS}.")


class Layer:
  """Mixin of the layers that can run exact: `exact` is off until export
  switches it on (`make_exact`); `kernel_variable` is what gets rounded."""

  exact = False

  @property
  def kernel_variable(self):
    raise NotImplementedError


def make_exact(network):
  """Switches every layer of `network` (built) to exact inference.

  Rounds their kernels in place, so it is meant for an inference copy.
  Refuses a network with weights in a layer that cannot run exact.
  """
  layers = [l for l in [network, *network.submodules]
            if isinstance(l, Layer)]
  exact_weights = set()
  for layer in layers:
    kernel = layer.kernel_variable
    check_fan_in(layer, int(np.prod(kernel.shape[:-1])))
    kernel.assign(snap_kernel(kernel.numpy()))
    layer.exact = True
    exact_weights.update(id(w) for w in layer.weights)
  others = [w.name for w in network.weights if id(w) not in exact_weights]
  if others:
    raise ValueError(f"{network.name} has weights outside exact layers: "
                     f"{others}")
