"""Image quality and rate-distortion measures.

- PSNR of 8-bit RGB images.
- MS-SSIM (Wang et al. 2003) with TensorFlow's `tf.image.ssim_multiscale`
  (5 scales, 11x11 Gaussian window, the standard weights), and in dB as
  -10·log10(1 - MS-SSIM), where differences between good codecs show.
- Bjøntegaard delta rate: the average rate difference of two RD curves at
  equal quality, over the qualities both reach. Log-rate is interpolated as a
  function of quality with monotone piecewise-cubic (PCHIP) interpolation,
  as in current codec test conditions, so three points per curve suffice.
"""

import numpy as np

# tf.image.ssim_multiscale needs this many pixels on the short side
# (11-pixel window at the coarsest of 5 scales).
MS_SSIM_MIN_SIDE = 161


def psnr(a, b, peak=255.):
  """PSNR in dB between two images of the same shape (inf when identical)."""
  a, b = np.asarray(a), np.asarray(b)
  # A band of rows at a time: float64 copies of a large image would not fit.
  squares = sum(np.sum((a[i:i + 256].astype(np.float64) - b[i:i + 256]) ** 2)
                for i in range(0, len(a), 256))
  mse = squares / a.size
  return float("inf") if mse == 0 else float(10 * np.log10(peak ** 2 / mse))


def ms_ssim(a, b):
  """MS-SSIM of two uint8 RGB images; NaN when smaller than 161 pixels."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if min(np.shape(a)[:2]) < MS_SSIM_MIN_SIDE:
    return float("nan")
  return float(tf.image.ssim_multiscale(
      tf.cast(a, tf.float32), tf.cast(b, tf.float32), max_val=255.))


def ms_ssim_db(value):
  return float("inf") if value >= 1 else float(-10 * np.log10(1 - value))


def bits_per_pixel(num_bytes, height, width):
  return 8. * num_bytes / (height * width)


def interpolate_at_rate(points, bpp):
  """Quality at rate `bpp` on a curve of (bpp, quality) points.

  Linear between the two points around `bpp` on the curve sorted by rate
  (the upper envelope, so that non-monotonic sweeps do not zig-zag); NaN when
  `bpp` lies outside the curve's range of rates.
  """
  points = sorted(points)
  rates = np.array([p[0] for p in points])
  quality = np.maximum.accumulate(np.array([p[1] for p in points]))
  if not rates[0] <= bpp <= rates[-1]:
    return float("nan")
  return float(np.interp(bpp, rates, quality))


def _pchip(x, y, at):
  """Monotone piecewise-cubic Hermite interpolation (Fritsch-Carlson)."""
  h = np.diff(x)
  slopes = np.diff(y) / h
  d = np.zeros_like(y)
  if len(x) == 2:
    d[:] = slopes[0]
  else:
    # Weighted harmonic mean of neighbouring slopes; 0 at extrema.
    w1, w2 = 2 * h[1:] + h[:-1], h[1:] + 2 * h[:-1]
    same_sign = slopes[:-1] * slopes[1:] > 0
    with np.errstate(divide="ignore", invalid="ignore"):
      d[1:-1] = np.where(same_sign, (w1 + w2) / (w1 / slopes[:-1]
                                                 + w2 / slopes[1:]), 0.)
    for end, (h0, h1, s0, s1) in ((0, (h[0], h[1], slopes[0], slopes[1])),
                                   (-1, (h[-1], h[-2], slopes[-1],
                                         slopes[-2]))):
      value = ((2 * h0 + h1) * s0 - h0 * s1) / (h0 + h1)
      if np.sign(value) != np.sign(s0):
        value = 0.
      elif np.sign(s0) != np.sign(s1) and abs(value) > abs(3 * s0):
        value = 3 * s0
      d[end] = value
  i = np.clip(np.searchsorted(x, at) - 1, 0, len(x) - 2)
  t = (at - x[i]) / h[i]
  h00, h10 = 2 * t**3 - 3 * t**2 + 1, t**3 - 2 * t**2 + t
  h01, h11 = -2 * t**3 + 3 * t**2, t**3 - t**2
  return h00 * y[i] + h10 * h[i] * d[i] + h01 * y[i + 1] + h11 * h[i] * d[i + 1]


def _log_rate_curve(points):
  """(quality ascending, log rate) of a curve's upper envelope."""
  points = sorted(points)
  rates = np.array([p[0] for p in points], np.float64)
  quality = np.array([p[1] for p in points], np.float64)
  # Drop points dominated by a cheaper point of at least their quality.
  keep = quality > np.maximum.accumulate(np.r_[-np.inf, quality[:-1]])
  return quality[keep], np.log(rates[keep])


def bd_rate(reference, test, samples=1000):
  """Bjøntegaard delta rate of `test` against `reference`, in percent.

  Both are lists of (bpp, quality) points (quality: PSNR or MS-SSIM dB).
  Negative means `test` needs fewer bits for the same quality. NaN when a
  curve has fewer than two useful points or the curves share no qualities.
  """
  curves = [_log_rate_curve(c) for c in (reference, test)]
  if any(len(q) < 2 for q, _ in curves):
    return float("nan")
  low = max(q[0] for q, _ in curves)
  high = min(q[-1] for q, _ in curves)
  if not low < high:
    return float("nan")
  at = np.linspace(low, high, samples)
  ref, tst = (_pchip(q, r, at) for q, r in curves)
  mean = np.trapz(tst - ref, at) / (high - low)
  return float((np.exp(mean) - 1) * 100)
