"""tools/reexport.py: an export's weights under this version's coding tables."""

import numpy as np
import pytest

from tfc_sth import export
from tfc_sth.model import entropy_models
from tfc_sth.runtime import codec, pretrained


def test_reexport_keeps_the_weights_and_takes_the_new_tables(
    tiny_ladder_dir, tmp_path, smooth_image, tool):
  # An export whose Gaussian tables are tfc's, as before they reached 8σ.
  old = tmp_path / "old"
  with pytest.MonkeyPatch.context() as monkeypatch:
    build = entropy_models.GaussianConditional.build_tables
    monkeypatch.setattr(entropy_models.GaussianConditional, "build_tables",
                        lambda self: build(self, reach=0.))
    export.export(export.exported_model(str(tiny_ladder_dir)), str(old))
  new = tmp_path / "new"
  tool("reexport").main(str(old), str(new))
  assert (pretrained.read_info(str(new))["model_id"]
          == pretrained.read_info(str(tiny_ladder_dir))["model_id"]
          != pretrained.read_info(str(old))["model_id"])
  for before, after in zip(export.exported_model(str(old)).weights,
                           export.exported_model(str(new)).weights,
                           strict=True):
    np.testing.assert_array_equal(before.numpy(), after.numpy())
  image = smooth_image(48, 64, seed=3)
  new_codec = codec.Codec(str(new), codec.FLOAT32)
  data = new_codec.compress(image, quality=3)
  assert codec.Codec(str(tiny_ladder_dir), codec.FLOAT32).decompress(
      data)[0].tobytes() == new_codec.decompress(data)[0].tobytes()
  with pytest.raises(SystemExit, match="exists"):
    tool("reexport").main(str(old), str(new))
