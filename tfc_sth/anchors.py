"""Classical codecs as anchors: what a learned codec has to beat.

JPEG (4:2:0 chroma subsampling, baseline, Pillow's libjpeg) over a sweep of
quality settings, measured like the learned codec: bits of the whole file per
pixel and PSNR of the decoded RGB image.
"""

import io

import numpy as np

from tfc_sth import metrics

JPEG_QUALITIES = tuple(range(1, 96))


def jpeg(image, quality):
  """uint8 RGB image -> (bpp, decoded image) with Pillow JPEG 4:2:0."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="JPEG", quality=quality,
                              subsampling="4:2:0")
  decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
  return metrics.bits_per_pixel(len(buffer.getvalue()), *image.shape[:2]), decoded


def jpeg_curve(image, qualities=JPEG_QUALITIES):
  """[(bpp, PSNR)] of JPEG over `qualities`."""
  curve = []
  for quality in qualities:
    bpp, decoded = jpeg(image, quality)
    curve.append((bpp, metrics.psnr(image, decoded)))
  return curve
