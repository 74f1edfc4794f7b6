"""The runtime (bitstream, codec, image I/O, model lookup) needs the
SavedModel, tensorflow and tensorflow_compression, nothing of the model."""

import os
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(REPO_ROOT, "samples", "avenches.png")
PACKAGE = os.path.join(REPO_ROOT, "tfc_sth")
# Everything but the runtime: importing any of it raises ImportError.
BLOCKED = ("tfc_sth.model", "tfc_sth.training", "tfc_sth.tools",
           "tfc_sth.export", "tfc_sth.cli")

_BLOCKED_PROCESS = f"""
import sys
for name in {BLOCKED!r}:
  sys.modules[name] = None
from tfc_sth.runtime import codec, image_io
image, _ = image_io.read_png({SAMPLE!r})
coder = codec.Codec.load()
decoded, _ = coder.decompress(coder.compress(image[:128, :192], quality=2))
assert decoded.shape == (128, 192, 3)
print("decoded", sorted(m for m, v in sys.modules.items()
                         if m.startswith("tfc_sth.") and v is not None))
"""


def _runtime_modules():
  return sorted(f"tfc_sth.runtime.{f[:-3]}"
                for f in os.listdir(os.path.join(PACKAGE, "runtime"))
                if f.endswith(".py") and f != "__init__.py")


def test_the_blocked_names_and_the_runtime_cover_the_package():
  sides = {f[:-3] if f.endswith(".py") else f for f in os.listdir(PACKAGE)
           if f != "__init__.py" and not f.startswith("__")
           and (f.endswith(".py") or os.path.isdir(os.path.join(PACKAGE, f)))}
  assert {f"tfc_sth.{side}" for side in sides} == set(BLOCKED) | {
      "tfc_sth.runtime"}


def test_the_runtime_decodes_with_the_model_code_blocked():
  result = subprocess.run(
      [sys.executable, "-c", _BLOCKED_PROCESS], capture_output=True,
      text=True, timeout=600, check=False,
      env=dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3"))
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.split("\n")[-2] == "decoded " + str(
      ["tfc_sth.runtime"] + _runtime_modules())
