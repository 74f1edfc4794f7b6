"""Evaluating models through the real bitstream, against JPEG at equal rate.

Rates are the sizes of the .tsth files (header included), never the
estimated rate; the estimate is reported beside them to show the coder's
overhead. JPEG's PSNR at the model's rate is interpolated, per image, on a
sweep of JPEG qualities of that image.
"""

import dataclasses
import time

import numpy as np

from tfc_sth import anchors
from tfc_sth import image_io
from tfc_sth import metrics


@dataclasses.dataclass
class ImageResult:
  image: str
  width: int
  height: int
  num_bytes: int
  bpp: float
  estimated_bpp: float
  psnr: float
  encode_seconds: float
  decode_seconds: float
  jpeg_psnr_at_bpp: float


def evaluate_image(codec, path, with_jpeg=True):
  """Compresses and decompresses one PNG with `codec`; returns its figures."""
  image, channels = image_io.read_png(path)
  height, width = image.shape[:2]
  start = time.perf_counter()
  data = codec.compress(image, channels)
  encoded = time.perf_counter()
  decoded, _ = codec.decompress(data)
  decode_seconds = time.perf_counter() - encoded
  estimated_bits = float(codec.module.signatures["reconstruct"](
      image=image)["bits"])
  bpp = metrics.bits_per_pixel(len(data), height, width)
  jpeg_psnr = (metrics.interpolate_at_rate(anchors.jpeg_curve(image), bpp)
               if with_jpeg else float("nan"))
  return ImageResult(
      image=path, width=width, height=height, num_bytes=len(data), bpp=bpp,
      estimated_bpp=estimated_bits / (height * width),
      psnr=metrics.psnr(image, decoded), encode_seconds=encoded - start,
      decode_seconds=decode_seconds, jpeg_psnr_at_bpp=jpeg_psnr)


def warm_up(codec):
  """One small round trip, so that timings exclude one-time graph set-up."""
  image = np.zeros((64, 64, 3), np.uint8)
  codec.decompress(codec.compress(image))


def summarize(results):
  """Means over images of every numeric field."""
  fields = [f.name for f in dataclasses.fields(ImageResult)
            if f.type in (int, float, "int", "float")]
  return {f: float(np.mean([getattr(r, f) for r in results]))
          for f in fields}
