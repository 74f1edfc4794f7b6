"""Fuzzing the decoder: mutated real files must decode or fail cleanly.

Seeds are real .tsth files, compressed from real images by each model. Each
case mutates one seed (bit flips, a truncation, an extension, a zeroed run,
a changed size or quality), then recomputes the header's CRC, so that the
garbage reaches the range decoder instead of being caught by the CRC. A case
passes if it

- is refused with a `BitstreamError` or `ImageError` (a one-line error), or
- decodes to an image of the declared size that is the seed's own image (a
  mutation the decoder never reads, such as bytes appended to a string).

It fails as *garbage* if it decodes to another image without error (only
possible for models without a symbol checksum), as a *crash* on any other
exception or a dead process, and as a *hang* if it takes longer than
`timeout_factor` times the seed's own decoding time plus `timeout_slack`
seconds. Cases run in a worker process, so that a hang or a crash costs a
restart of the worker, not the run; the worker's peak resident memory is
reported too.
"""

import dataclasses
import json
import os
import struct
import subprocess
import sys
import time
import zlib

import numpy as np

from tfc_sth.runtime import bitstream

MUTATIONS = ("flip", "truncate", "extend", "zero", "size", "quality")
OUTCOMES = ("refused", "same", "garbage", "crash", "hang")
FAILURES = ("garbage", "crash", "hang")


def _recrc(data):
  """The file with its CRC recomputed (it must hold a whole header)."""
  at = bitstream.crc_offset(data[4], data[5])
  payload = data[at + 4:]
  return data[:at] + struct.pack(">I", zlib.crc32(data[:at] + payload)) + (
      payload)


def mutate(data, kind, rng):
  """One mutation of a .tsth file (bytes), its CRC recomputed.

  Bits flip and runs are zeroed anywhere after the model id but in the CRC:
  in the size, quality and symbol checksum fields as in the payload.
  """
  data = bytearray(data)
  model_id_end = 6 + data[5]
  crc = bitstream.crc_offset(data[4], data[5])
  mutable = [i for i in range(model_id_end, len(data))
             if not crc <= i < crc + 4]
  if kind == "flip":
    for _ in range(rng.integers(1, 9)):
      data[rng.choice(mutable)] ^= 1 << rng.integers(8)
  elif kind == "truncate":
    data = data[:rng.integers(crc + 4, len(data))]
  elif kind == "extend":
    data += rng.integers(0, 256, rng.integers(1, 64), np.uint8).tobytes()
  elif kind == "zero":
    start = rng.choice(mutable)
    run_length = int(rng.integers(1, 33))
    data[start:start + run_length] = bytes(len(data[start:start + run_length]))
  elif kind == "size":
    height, width = struct.unpack_from(">II", data, model_id_end)
    scale = rng.choice([0.5, 0.9, 1.1, 2., 16.])
    height = int(np.clip(height * scale + rng.integers(-3, 4), 1, 1 << 15))
    width = int(np.clip(width * scale + rng.integers(-3, 4), 1, 1 << 15))
    struct.pack_into(">II", data, model_id_end, height, width)
  elif kind == "quality" and data[4] > 1:
    struct.pack_into(">H", data, model_id_end + 9, rng.integers(1, 1000))
  return _recrc(bytes(data))


@dataclasses.dataclass
class Case:
  model: str
  mutation: str
  outcome: str
  seconds: float
  message: str = ""


# The worker: decodes the files it is sent, one JSON line per file.

def _worker(model_paths, max_pixels):
  from tfc_sth.runtime import codec, image_io  # pylint: disable=g-import-not-at-top,multiple-imports
  codecs = {}
  for path in model_paths:
    loaded = codec.Codec(path)
    codecs[loaded.model_id] = loaded
  print(json.dumps({"ready": True}), flush=True)
  for line in sys.stdin:
    request = json.loads(line)
    with open(request["path"], "rb") as f:
      data = f.read()
    start = time.perf_counter()
    try:
      header, _ = bitstream.read_header(data)
      if header.model_id not in codecs:
        raise bitstream.BitstreamError("unknown model")
      image, _ = codecs[header.model_id].decompress(data, max_pixels)
      np.save(request["path"] + ".npy", image)
      result = {"outcome": "decoded"}
    except (bitstream.BitstreamError, image_io.ImageError) as e:
      result = {"outcome": "refused", "message": str(e).splitlines()[0]}
    except Exception as e:  # pylint: disable=broad-except
      result = {"outcome": "crash", "message": f"{type(e).__name__}: {e}"[:200]}
    result["seconds"] = time.perf_counter() - start
    print(json.dumps(result), flush=True)


class Worker:
  """A decoding worker process, restarted after a hang or a crash."""

  def __init__(self, model_paths, max_pixels):
    self.command = [sys.executable, "-m", "tfc_sth.tools.fuzz", "--worker",
                    str(max_pixels), *model_paths]
    self.process = None
    self.peak_mb = 0.

  def _start(self):
    # The worker imports this package from where this process did.
    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    self.process = subprocess.Popen(
        self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, bufsize=1,
        env=dict(os.environ, PYTHONPATH=path))
    if self._read(600) is None:
      raise RuntimeError("the fuzzing worker did not start")

  def _read(self, timeout):
    import select  # pylint: disable=g-import-not-at-top
    ready, _, _ = select.select([self.process.stdout], [], [], timeout)
    line = self.process.stdout.readline() if ready else ""
    return json.loads(line) if line else None

  def _peak(self):
    try:
      with open(f"/proc/{self.process.pid}/status") as f:
        for line in f:
          if line.startswith("VmHWM:"):
            self.peak_mb = max(self.peak_mb, int(line.split()[1]) / 1024)
    except OSError:
      pass

  def decode(self, path, timeout):
    """{"outcome": ..., "seconds": ...}; "hang" or "crash" kills the worker."""
    if self.process is None or self.process.poll() is not None:
      self._start()
    self.process.stdin.write(json.dumps({"path": path}) + "\n")
    self.process.stdin.flush()
    result = self._read(timeout)
    self._peak()
    if result is None:
      outcome = "hang" if self.process.poll() is None else "crash"
      self.close()
      return {"outcome": outcome, "seconds": timeout,
              "message": "no answer in time" if outcome == "hang"
                         else "the worker died"}
    return result

  def close(self):
    if self.process is not None:
      self.process.kill()
      self.process.wait()
      self.process = None


def make_seeds(model_paths, image_paths):
  """The seeds of `run`: every PNG image of `image_paths` compressed by
  every SavedModel of `model_paths`, at its lowest and highest quality."""
  from tfc_sth.runtime import codec, image_io  # pylint: disable=g-import-not-at-top,multiple-imports
  seeds = []
  for path in model_paths:
    model = codec.Codec(path)
    for image_path in image_paths:
      image, channels = image_io.read_png(image_path)
      for quality in sorted({1, model.qualities}):
        data = model.compress(image, channels, quality)
        model.decompress(data)  # Sets up oneDNN for the size.
        start = time.perf_counter()
        decoded, _ = model.decompress(data)
        seeds.append((path, data, decoded, time.perf_counter() - start))
  return seeds


def run(seeds, cases, directory, seed=0, timeout_factor=5., timeout_slack=5.,
        max_pixels=None, progress=None):
  """Fuzzes the decoder; returns the list of `Case`s.

  `seeds` is a list of (model path, .tsth bytes, decoded uint8 image,
  seconds the seed took to decode); `directory` holds the mutated files.
  """
  from tfc_sth.runtime import codec  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  worker = Worker(sorted({s[0] for s in seeds}),
                  max_pixels or codec.DEFAULT_MAX_PIXELS)
  results = []
  try:
    for i in range(cases):
      model, data, image, seconds = seeds[i % len(seeds)]
      kind = MUTATIONS[rng.integers(len(MUTATIONS))]
      path = os.path.join(directory, f"case{i}.tsth")
      with open(path, "wb") as f:
        f.write(mutate(data, kind, rng))
      answer = worker.decode(path, timeout_factor * seconds + timeout_slack)
      outcome = answer["outcome"]
      if outcome == "decoded":
        decoded = np.load(path + ".npy")
        os.remove(path + ".npy")
        outcome = "same" if np.array_equal(decoded, image) else "garbage"
      os.remove(path)
      results.append(Case(os.path.basename(model), kind, outcome,
                          answer["seconds"], answer.get("message", "")))
      if progress:
        progress(i + 1, cases)
  finally:
    worker.close()
  return results, worker.peak_mb


def summary(results):
  """{model: {outcome: count}} and the slowest case's seconds per model."""
  table = {}
  for case in results:
    row = table.setdefault(case.model, dict.fromkeys(OUTCOMES, 0))
    row[case.outcome] += 1
    row["slowest_seconds"] = max(row.get("slowest_seconds", 0.),
                                 case.seconds)
  return table


def failures(results):
  return [c for c in results if c.outcome in FAILURES]


def print_report(results, seeds, peak_mb):
  """`summary` of `run`'s results from `seeds` seeds, and the first
  failures."""
  print(f"{len(results)} mutated files of {seeds} seeds; worker peak "
        f"memory {peak_mb:.0f} MB")
  print(f"{'model':24s}" + "".join(f" {o:>8s}" for o in OUTCOMES) +
        "  slowest s")
  for model, row in summary(results).items():
    print(f"{model:24s}" + "".join(f" {row[o]:8d}" for o in OUTCOMES) +
          f"  {row['slowest_seconds']:9.2f}")
  for case in failures(results)[:20]:
    print(f"  {case.outcome}: {case.model} {case.mutation} {case.message}")


def to_json(results, peak_mb):
  from tfc_sth.tools import evaluate  # pylint: disable=g-import-not-at-top
  return evaluate.json_bytes(dict(
      peak_mb=peak_mb, cases=[dataclasses.asdict(c) for c in results]))


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
  _worker(sys.argv[3:], int(sys.argv[2]))
