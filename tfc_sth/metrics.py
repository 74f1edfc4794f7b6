"""Image quality and rate-distortion measures."""

import numpy as np


def psnr(a, b, peak=255.):
  """PSNR in dB between two images of the same shape (inf when identical)."""
  mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
  return float("inf") if mse == 0 else float(10 * np.log10(peak ** 2 / mse))


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
