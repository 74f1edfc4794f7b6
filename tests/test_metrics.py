"""PSNR, rates and interpolation on rate-distortion curves."""

import math

import numpy as np
import pytest

from tfc_sth import anchors
from tfc_sth import metrics


def test_psnr():
  a = np.zeros((4, 4, 3), np.uint8)
  b = a.copy()
  assert metrics.psnr(a, b) == float("inf")
  b[0, 0, 0] = 255  # MSE = 255² / 48.
  assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(48))


def test_bits_per_pixel():
  assert metrics.bits_per_pixel(100, 10, 20) == 4.


def test_interpolation_inside_and_outside_the_curve():
  curve = [(1., 30.), (0.5, 26.), (2., 34.)]
  assert metrics.interpolate_at_rate(curve, 0.75) == pytest.approx(28.)
  assert metrics.interpolate_at_rate(curve, 2.) == pytest.approx(34.)
  assert math.isnan(metrics.interpolate_at_rate(curve, 0.4))
  assert math.isnan(metrics.interpolate_at_rate(curve, 2.1))


def test_interpolation_uses_the_upper_envelope():
  # A sweep point with more bits but less quality does not pull it down.
  curve = [(0.5, 26.), (0.8, 25.), (1., 30.)]
  assert metrics.interpolate_at_rate(curve, 0.8) >= 26.


def test_jpeg_curve_rises_with_quality(smooth_image):
  image = smooth_image(64, 96, seed=3)
  curve = anchors.jpeg_curve(image, qualities=(10, 50, 90))
  rates, quality = zip(*curve)
  assert list(rates) == sorted(rates) and list(quality) == sorted(quality)
  assert 20 < quality[-1] < 60
