"""PSNR, rates and interpolation on rate-distortion curves."""

import math

import numpy as np
import pytest

from tfc_sth.tools import metrics


def test_psnr():
  a = np.zeros((4, 4, 3), np.uint8)
  b = a.copy()
  assert metrics.psnr(a, b) == float("inf")
  b[0, 0, 0] = 255  # MSE = 255² / 48.
  assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(48))


def test_psnr_of_an_image_taller_than_a_band():
  # Errors in the first and the last band of rows both count.
  a = np.zeros((600, 5, 3), np.uint8)
  b = a.copy()
  b[0], b[599] = 10, 20  # MSE = (100 + 400) / 600.
  assert metrics.psnr(a, b) == pytest.approx(
      10 * math.log10(255 ** 2 * 600 / 500))
  assert metrics.psnr(b, a) == metrics.psnr(a, b)  # No uint8 wrap-around.


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


def test_ms_ssim(smooth_image):
  image = smooth_image(176, 192, seed=4)
  assert metrics.ms_ssim(image, image) == pytest.approx(1.)
  noisy = np.clip(image + np.random.default_rng(0).normal(0, 20, image.shape),
                  0, 255).astype(np.uint8)
  assert 0 < metrics.ms_ssim(image, noisy) < .99
  assert math.isnan(metrics.ms_ssim(image[:160], noisy[:160]))
  assert metrics.ms_ssim_db(.9) == pytest.approx(10.)
  assert metrics.ms_ssim_db(1.) == float("inf")


REFERENCE = [(.2, 28.), (.4, 31.), (.8, 34.), (1.6, 36.5)]


@pytest.mark.parametrize("factor", [.9, 1., 1.25])
def test_bd_rate_of_a_uniformly_scaled_curve(factor):
  test = [(r * factor, q) for r, q in REFERENCE]
  assert metrics.bd_rate(REFERENCE, test) == pytest.approx(
      (factor - 1) * 100, abs=1e-9)


def test_bd_rate_is_antisymmetric_and_needs_common_qualities():
  test = [(.25, 28.5), (.5, 32.), (1.2, 35.), (2., 38.)]
  forward, backward = (metrics.bd_rate(REFERENCE, test),
                       metrics.bd_rate(test, REFERENCE))
  assert (1 + forward / 100) * (1 + backward / 100) == pytest.approx(1.)
  assert math.isnan(metrics.bd_rate(REFERENCE, [(.1, 20.), (.15, 22.)]))
  assert math.isnan(metrics.bd_rate(REFERENCE, [(.4, 31.)]))


def test_bd_rate_sign_and_size_for_a_better_curve():
  better = [(r, q + 1.) for r, q in REFERENCE]  # +1 dB everywhere.
  rate = metrics.bd_rate(REFERENCE, better)
  assert -40 < rate < -5


def test_pchip_interpolates_and_stays_monotone():
  x = np.array([0., 1., 2., 5.])
  y = np.array([0., 1., 1.5, 4.])
  assert np.allclose(metrics._pchip(x, y, x), y)  # pylint: disable=protected-access
  dense = metrics._pchip(x, y, np.linspace(0, 5, 501))  # pylint: disable=protected-access
  assert np.all(np.diff(dense) >= -1e-12)
  line = metrics._pchip(x, 2 * x + 1, np.array([.5, 3.3]))  # pylint: disable=protected-access
  assert np.allclose(line, [2., 7.6])
