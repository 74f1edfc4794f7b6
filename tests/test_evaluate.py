"""Evaluation through the real bitstream, and `tfc-sth evaluate`."""

import json
import math

import pytest

from tfc_sth import anchors
from tfc_sth import cli
from tfc_sth import evaluate
from tfc_sth import image_io
from tfc_sth import metrics


@pytest.fixture
def photo_path(tmp_path, smooth_image, png_bytes):
  path = tmp_path / "photo.png"
  path.write_bytes(png_bytes(smooth_image(70, 100, seed=9)))
  return str(path)


def test_evaluate_image_reports_the_files_figures(tiny_codec, photo_path):
  result = evaluate.evaluate_image(tiny_codec, photo_path)
  image, channels = image_io.read_png(photo_path)
  data = tiny_codec.compress(image, channels)
  decoded, _ = tiny_codec.decompress(data)
  assert result.num_bytes == len(data)
  assert result.bpp == pytest.approx(8 * len(data) / (70 * 100))
  assert result.psnr == pytest.approx(metrics.psnr(image, decoded))
  assert result.estimated_bpp <= result.bpp
  assert result.encode_seconds > 0 and result.decode_seconds > 0
  # The tiny model's rate may lie below JPEG's lowest: NaN, never made up.
  jpeg = metrics.interpolate_at_rate(anchors.jpeg_curve(image), result.bpp)
  assert (math.isnan(result.jpeg_psnr_at_bpp) and math.isnan(jpeg)) or (
      result.jpeg_psnr_at_bpp == pytest.approx(jpeg))


def test_evaluate_command_writes_json(tiny_model_dir, photo_path, tmp_path,
                                      capsys, reuse_saved_models):
  out = tmp_path / "results.json"
  code = cli.main(["tfc-sth", "evaluate", "--model", str(tiny_model_dir),
                   "--nojpeg", "-o", str(out), photo_path, photo_path])
  assert code == 0
  report = json.loads(out.read_text())
  assert len(report["images"]) == 2
  assert report["means"]["bpp"] == pytest.approx(report["images"][0]["bpp"])
  assert "psnr" in capsys.readouterr().out
  # An existing report is not overwritten without --force.
  code = cli.main(["tfc-sth", "evaluate", "--model", str(tiny_model_dir),
                   "--nojpeg", "-o", str(out), photo_path])
  assert code == cli.EXIT_ERROR
