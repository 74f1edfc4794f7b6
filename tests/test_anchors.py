"""Classical anchors: real files, decoded images, rates that rise with quality."""

import numpy as np
import pytest

from tfc_sth.tools import anchors
from tfc_sth.tools import metrics


@pytest.mark.parametrize("name", list(anchors.ANCHORS))
def test_anchor_sweep_rises_in_rate_and_quality(name, smooth_image):
  anchor = anchors.ANCHORS[name]
  if not anchor.available():
    pytest.skip(f"{anchor.requirements()} not installed (Debian packages "
                "webp, libavif-bin, libjxl-tools)")
  image = smooth_image(64, 96, seed=5)
  low, high = anchor.settings[0], anchor.settings[-1]
  coded = [anchor.code(image, setting) for setting in (low, high)]
  for c in coded:
    assert c.decoded.shape == image.shape and c.decoded.dtype == np.uint8
    assert c.encode_seconds > 0 and c.decode_seconds > 0
  assert len(coded[0].data) < len(coded[1].data)
  assert (metrics.psnr(image, coded[0].decoded)
          < metrics.psnr(image, coded[1].decoded))
  assert anchor.label(low).endswith(f"={low}")
