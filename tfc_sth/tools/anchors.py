"""Classical codecs as anchors: what a learned codec has to beat.

Each anchor codes a uint8 RGB image at one setting of its quality sweep and
returns the file's bytes and the decoded RGB image, so that it is measured
exactly like the learned codec (bits of the whole file per pixel, PSNR and
MS-SSIM of the decoded image).

- `jpeg`: Pillow's libjpeg, baseline, 4:2:0 (`pip install tfc-sth[evaluate]`).
- `webp`: `cwebp` / `dwebp` (Debian package `webp`); lossy WebP is 4:2:0.
- `avif`: `avifenc` / `avifdec` (Debian `libavif-bin`), 4:4:4, speed 6,
  one quantizer for the whole image.
- `jxl`: `cjxl` / `djxl` (Debian `libjxl-tools`), effort 7, by distance.

An anchor is skipped when what it needs is not installed.
Their times include starting the process.
"""

import dataclasses
import importlib.util
import io
import os
import shutil
import subprocess
import tempfile
import time
from typing import Callable, Tuple

import numpy as np

from tfc_sth.runtime import image_io


@dataclasses.dataclass(frozen=True)
class Coded:
  data: bytes
  decoded: np.ndarray
  encode_seconds: float
  decode_seconds: float


def _jpeg(image, quality):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  start = time.perf_counter()
  Image.fromarray(image).save(buffer, format="JPEG", quality=quality,
                              subsampling="4:2:0")
  encoded = time.perf_counter()
  decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
  return Coded(buffer.getvalue(), decoded, encoded - start,
               time.perf_counter() - encoded)


def _command_line(encode, decode, suffix):
  """An anchor from an encoder and a decoder command taking (in, out) paths."""

  def code(image, setting):
    with tempfile.TemporaryDirectory() as directory:
      source = os.path.join(directory, "in.png")
      coded = os.path.join(directory, "coded" + suffix)
      decoded = os.path.join(directory, "decoded.png")
      with open(source, "wb") as f:
        f.write(image_io.encode_png(image))
      start = time.perf_counter()
      subprocess.run(encode(setting, source, coded), check=True,
                     capture_output=True)
      encoded = time.perf_counter()
      subprocess.run(decode(coded, decoded), check=True, capture_output=True)
      decode_seconds = time.perf_counter() - encoded
      with open(coded, "rb") as f:
        data = f.read()
      with open(decoded, "rb") as f:
        pixels, _ = image_io.decode_png(f.read())
    return Coded(data, pixels, encoded - start, decode_seconds)

  return code


@dataclasses.dataclass(frozen=True)
class Anchor:
  name: str
  description: str
  settings: Tuple  # The quality sweep, from low to high rate.
  setting_name: str
  code: Callable  # (uint8 image, setting) -> Coded
  tools: Tuple = ()  # Commands that must be on PATH.
  modules: Tuple = ()  # Python modules that must be installed.

  def available(self):
    return (all(shutil.which(tool) for tool in self.tools) and
            all(importlib.util.find_spec(m) for m in self.modules))

  def requirements(self):
    return " and ".join(self.tools + self.modules)

  def label(self, setting):
    return f"{self.setting_name}={setting}"


ANCHORS = {a.name: a for a in (
    Anchor("jpeg", "JPEG 4:2:0 (Pillow)",
           (3, 5, 8, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80), "quality",
           lambda image, q: _jpeg(image, q), modules=("PIL",)),
    Anchor("webp", "WebP (cwebp)", (2, 5, 10, 20, 30, 40, 50, 60, 70, 80),
           "quality",
           _command_line(
               lambda q, src, dst: ["cwebp", "-quiet", "-q", str(q), src,
                                    "-o", dst],
               lambda src, dst: ["dwebp", "-quiet", src, "-o", dst], ".webp"),
           ("cwebp", "dwebp")),
    Anchor("avif", "AVIF 4:4:4 (avifenc, speed 6)",
           (60, 56, 52, 48, 44, 40, 36, 32, 28, 24), "quantizer",
           _command_line(
               lambda q, src, dst: ["avifenc", "-y", "444", "-s", "6",
                                    "-j", "2", "--min", str(q), "--max",
                                    str(q), src, dst],
               lambda src, dst: ["avifdec", src, dst], ".avif"),
           ("avifenc", "avifdec")),
    Anchor("jxl", "JPEG XL (cjxl, effort 7)",
           (15., 11., 8., 6., 4.5, 3.5, 2.5, 2., 1.5, 1.), "distance",
           _command_line(
               lambda d, src, dst: ["cjxl", "-d", str(d), "-e", "7", src,
                                    dst],
               lambda src, dst: ["djxl", src, dst], ".jxl"),
           ("cjxl", "djxl")),
)}
