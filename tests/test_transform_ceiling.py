"""tools/transform_ceiling.py: a level's files against ŷ = y."""

import os

from tfc_sth.runtime import image_io
from tfc_sth.runtime import pretrained

SAMPLE = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "samples", "avenches.png")


def test_unquantized_latents_beat_every_level_most_the_coarsest(
    tmp_path, png_bytes, tool, capsys):
  path = tmp_path / "crop.png"
  path.write_bytes(png_bytes(image_io.read_png(SAMPLE)[0][:128, :192]))
  model = pretrained.resolve()
  ceiling = tool("transform_ceiling")
  (_, coarsest, unquantized), = ceiling.ceiling(model, [str(path)], 1)
  (_, top, top_unquantized), = ceiling.ceiling(model, [str(path)])
  # Level 1's steps are far coarser than what the transforms lose alone;
  # the top level's are not, but rounding still costs something.
  assert unquantized > coarsest + 1.
  assert top_unquantized > top > coarsest
  ceiling.main([model, str(path), "--quality=1"])
  lines = capsys.readouterr().out.splitlines()
  assert lines == [
      f"{path}: file {coarsest:.2f} dB, ŷ = y {unquantized:.2f} dB",
      f"mean of 1: file {coarsest:.2f} dB, ŷ = y {unquantized:.2f} dB "
      f"({unquantized - coarsest:+.2f})"]
