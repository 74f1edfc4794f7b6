"""The runtime (bitstream, codec, image I/O, model lookup) needs the
SavedModel, tensorflow and tensorflow_compression, nothing of the model."""

import os
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(REPO_ROOT, "samples", "avenches.png")
RUNTIME = ("bitstream", "codec", "image_io", "pretrained")
NOT_RUNTIME = ("ablation", "anchors", "architectures", "bench", "cli",
               "context_models", "data", "entropy_models", "evaluate",
               "exact", "export", "fuzz", "latent_codecs", "metrics",
               "quantization", "saun", "schedule", "training", "transforms")

_BLOCKED_PROCESS = f"""
import sys
for name in {NOT_RUNTIME!r}:
  sys.modules["tfc_sth." + name] = None  # Importing it raises ImportError.
from tfc_sth import {", ".join(RUNTIME)}
image, _ = image_io.read_png({SAMPLE!r})
coder = codec.Codec.load()
decoded, _ = coder.decompress(coder.compress(image[:128, :192], quality=2))
assert decoded.shape == (128, 192, 3)
print("decoded", sorted(m for m, v in sys.modules.items()
                         if m.startswith("tfc_sth.") and v is not None))
"""


def test_the_modules_listed_cover_the_package():
  package = os.path.join(REPO_ROOT, "tfc_sth")
  modules = {f[:-3] for f in os.listdir(package)
             if f.endswith(".py") and f != "__init__.py"}
  assert modules == set(RUNTIME) | set(NOT_RUNTIME)


def test_the_runtime_decodes_with_the_model_code_blocked():
  result = subprocess.run(
      [sys.executable, "-c", _BLOCKED_PROCESS], capture_output=True,
      text=True, timeout=600, check=False,
      env=dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3"))
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.split("\n")[-2] == "decoded " + str(
      sorted(f"tfc_sth.{m}" for m in RUNTIME))
