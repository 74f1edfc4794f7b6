"""Speed and memory: coding seconds per image, and training throughput.

Every time is the median of several runs after warm-up runs, reported with
its minimum and maximum, because one-off costs (graph tracing, oneDNN
kernel set-up for a new image size, page faults) would otherwise dominate.
Peak memory is the process's peak resident set while coding (Linux
VmHWM, reset before the runs), beside its resident set with the model
loaded.
"""

import itertools
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

from tfc_sth.runtime import image_io
from tfc_sth.training import schedule


def _spread(seconds, megapixels):
  median = float(np.median(seconds))
  return {"median_seconds": median, "min_seconds": float(np.min(seconds)),
          "max_seconds": float(np.max(seconds)), "runs": len(seconds),
          "megapixels_per_second": megapixels / median}


def _memory_mb(field):
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith(field + ":"):
          return int(line.split()[1]) / 1024
  except OSError:
    pass
  return float("nan")


def _reset_peak_memory():
  try:  # Linux: "5" resets VmHWM to the current resident set.
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
  except OSError:
    pass


def coding(codec, image, runs=7, warm_up=2, quality=None, refine_steps=0):
  """Encode and decode times of a loaded `codec.Codec` on one uint8 image,
  at a quality level (default: the model's), encoding with `refine_steps`
  of latent refinement."""
  for _ in range(warm_up):
    data = codec.compress(image, quality=quality, refine_steps=refine_steps)
    codec.decompress(data)
  resident = _memory_mb("VmRSS")
  _reset_peak_memory()
  encode, decode = [], []
  for _ in range(runs):
    start = time.perf_counter()
    data = codec.compress(image, quality=quality, refine_steps=refine_steps)
    encode.append(time.perf_counter() - start)
    start = time.perf_counter()
    codec.decompress(data)
    decode.append(time.perf_counter() - start)
  height, width = image.shape[:2]
  megapixels = height * width / 1e6
  return {"width": width, "height": height,
          "quality": codec.check_quality(quality),
          "refine_steps": refine_steps, "num_bytes": len(data),
          "bpp": 8 * len(data) / (height * width),
          "encode": _spread(encode, megapixels),
          "decode": _spread(decode, megapixels),
          "resident_mb": resident,
          # The kernel updates VmHWM lazily: it can trail a resident set read.
          "peak_mb": max(_memory_mb("VmHWM"), resident)}


class _StepTimes(tf.keras.callbacks.Callback):

  def __init__(self):
    super().__init__()
    self.seconds = []

  def on_train_batch_begin(self, batch, logs=None):
    self._start = time.perf_counter()

  def on_train_batch_end(self, batch, logs=None):
    self.seconds.append(time.perf_counter() - self._start)


def random_patches(batch_size, patch_size, seed=0, maxval=1.):
  """One batch of uniform random patches, repeated: timing needs no data."""
  return tf.data.Dataset.from_tensors(tf.random.stateless_uniform(
      (batch_size, patch_size, patch_size, 3), (seed, 0), 0, maxval)).repeat()


def fit_times(model, patches, steps, callbacks=()):
  """Seconds of each of `steps` training steps of Keras `fit`."""
  times = _StepTimes()
  model.fit(patches, epochs=1, steps_per_epoch=steps, verbose=0,
            callbacks=[*callbacks, times])
  return times.seconds


def training(config, steps=10, warm_up=3):
  """Seconds per training step of `config` (a `TrainConfig`), per phase kind.

  Runs Keras `fit` on random patches of the configured batch and patch size
  through the soft-then-hard schedule: the soft phase (noise, everything
  trained), then the hard phase (rounding, encoder frozen). Returns
  {"soft": spread, "hard": spread} with megapixels per second of training
  images.
  """
  from tfc_sth.training import trainer  # pylint: disable=g-import-not-at-top
  model, _ = trainer.build(config)
  patches = random_patches(config.batch_size, config.patch_size, config.seed)
  per_phase = warm_up + steps
  seconds = fit_times(model, patches, 2 * per_phase, [
      schedule.PhaseSchedule(schedule.phases_for(
          "sth", per_phase, per_phase, config.mixed_precision))])
  megapixels = config.batch_size * config.patch_size ** 2 / 1e6
  return {"soft": _spread(seconds[warm_up:per_phase], megapixels),
          "hard": _spread(seconds[per_phase + warm_up:], megapixels)}


def peer_training(peers_dir, batch_size, patch_size, steps=10, warm_up=3):
  """Seconds per training step of tfc's reference scale hyperprior (N=M=128,
  its own float32 `train_step`) on random patches of the same batch."""
  sys.path.insert(0, os.path.abspath(peers_dir))
  try:
    import tfc_bmshj2018  # pylint: disable=g-import-not-at-top
  finally:
    del sys.path[0]
  model = tfc_bmshj2018.BMSHJ2018Model(0.01, 128, 64, .11, 256.)
  model.compile(optimizer=tf.keras.optimizers.Adam(1e-4))
  patches = random_patches(batch_size, patch_size, maxval=255.)
  seconds = fit_times(model, patches, warm_up + steps)
  return _spread(seconds[warm_up:], batch_size * patch_size ** 2 / 1e6)


def _range(spread):
  return (f"{spread['median_seconds']:.3f} s ({spread['min_seconds']:.3f}-"
          f"{spread['max_seconds']:.3f}) {spread['megapixels_per_second']:6.2f}"
          " Mpx/s")


def coding_report(codec, paths, qualities, runs=7, refine_steps=0):
  """`coding` of every PNG image in `paths` at every quality level (or at
  the model's own if `qualities` is empty), printed as it goes; returns the
  figures of each, with its path."""
  refining = f", {refine_steps} refine steps" if refine_steps else ""
  print(f"coding with {codec.model_id} ({codec.precision} transforms"
        f"{refining}), median of {runs} runs (min-max):")
  results = []
  for path, quality in itertools.product(paths, qualities or [None]):
    image, _ = image_io.read_png(path)
    figures = dict(image=path, **coding(codec, image, runs, quality=quality,
                                        refine_steps=refine_steps))
    results.append(figures)
    print(f"  {os.path.basename(path)} {figures['width']}x"
          f"{figures['height']}, quality {figures['quality']:g}, "
          f"{figures['bpp']:.4f} bpp\n"
          f"    encode {_range(figures['encode'])}\n"
          f"    decode {_range(figures['decode'])}\n"
          f"    memory: {figures['peak_mb']:.0f} MB peak while coding, "
          f"{figures['resident_mb']:.0f} MB with the model loaded")
  return results


def training_report(config, steps=10, peers_dir=None):
  """`training` of `config`, printed; returns its figures. With `peers_dir`,
  also tfc's reference training step, and each phase's speed as a ratio to
  it."""
  figures = training(config, steps)
  print(f"training {config.model} N={config.num_filters} "
        f"M={config.latent_channels} delta_mode={config.delta_mode} "
        f"{config.kernel_parameter}"
        f"{', mixed bfloat16' if config.mixed_precision else ''}, batch "
        f"{config.batch_size} of {config.patch_size}x{config.patch_size}, "
        f"median of {steps} steps per phase (min-max):")
  for phase in ("soft", "hard"):
    print(f"  {phase}: {_range(figures[phase])}")
  if peers_dir:
    reference = peer_training(peers_dir, config.batch_size,
                              config.patch_size, steps)
    figures["peer"] = reference
    print(f"  tfc-reference bmshj2018 N=M=128 (float32), in this run on "
          f"{cpu_model()}: {_range(reference)}")
    for phase in ("soft", "hard"):
      ratio = reference["median_seconds"] / figures[phase]["median_seconds"]
      figures[phase]["peer_ratio"] = ratio
      print(f"    {phase}: {ratio:.2f}x its steps per second")
  return figures


def _command(*args):
  """Runs `tfc-sth ARGS` in a process of its own; its wall-clock seconds."""
  start = time.perf_counter()
  result = subprocess.run([sys.executable, "-c", "from tfc_sth import cli; "
                           "cli.entry_point()", *args], capture_output=True,
                          text=True, timeout=3600, check=False)
  if result.returncode:
    raise RuntimeError(f"tfc-sth {args[0]} failed: "
                       f"{result.stderr.strip().splitlines()[-1:]}")
  return time.perf_counter() - start


def folder_report(model, paths, precision="auto"):
  """Images per second of `tfc-sth compress` and `decompress` given every
  image in one command, against one command per image (what a shell loop
  does), each a fresh process timed from start to exit; printed, and
  returned."""
  common = [f"--model={model}", f"--precision={precision}", "--force"]
  results = {}
  print(f"{len(paths)} images, {precision} transforms, whole commands "
        "(start-up and model loading included):")
  with tempfile.TemporaryDirectory() as directory:
    together, each = (os.path.join(directory, d) for d in ("together", "each"))
    os.makedirs(together)
    os.makedirs(each)
    coded = [os.path.join(together, os.path.basename(p) + ".tsth")
             for p in paths]
    for command, inputs, suffix in (("compress", paths, ".tsth"),
                                    ("decompress", coded, ".png")):
      seconds = {
          "one command": _command(command, *common, "-o", together, *inputs),
          "a command per image": sum(
              _command(command, *common, "-o", os.path.join(
                  each, os.path.basename(i) + suffix), i) for i in inputs)}
      ratio = seconds["a command per image"] / seconds["one command"]
      results[command] = {way: {"seconds": t, "images_per_second":
                                len(paths) / t} for way, t in seconds.items()}
      results[command]["speed-up"] = ratio
      print(f"  {command}: " + ", ".join(
          f"{way} {len(paths) / t:.2f} images/s" for way, t in
          seconds.items()) + f"; {ratio:.2f}x")
  return results


# The peers' timing script and the models it times (../shared/peers): tfc's
# reference scale hyperprior with this environment, CompressAI's mean-scale
# hyperprior (this project's default architecture, N=128, M=192) with its own.
PEER_SCRIPT = "peer_speed.py"
TFC_REFERENCE = ("tfcref", "128")
COMPRESSAI = ("compressai", "mbt2018_mean", "3")


def cpu_model():
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return "unknown CPU"


def _peer(python, script, args, image):
  """(label, encode seconds, decode seconds) of one peer on one image."""
  result = subprocess.run([python, script, *args, image], capture_output=True,
                          text=True, timeout=1800, check=False)
  line = result.stdout.strip().split("\n")[-1]
  label, _, times = line.rpartition(" enc ")
  if result.returncode or not label:
    raise RuntimeError(f"{os.path.basename(script)} {' '.join(args)} failed: "
                       f"{(result.stderr or line).strip().splitlines()[-1:]}")
  encode, _, decode = times.partition(" dec ")
  return label, float(encode), float(decode)


def peers_report(peers_dir, paths, coding_results, compressai_python=None):
  """Times the peers on each image in this run and prints every coding
  figure of `coding_results` as a ratio to the fastest peer (above 1: this
  codec is faster). CompressAI is skipped, with the reason, when its Python
  is not given or missing."""
  script = os.path.join(peers_dir, PEER_SCRIPT)
  if not os.path.isfile(script):
    raise FileNotFoundError(f"No {PEER_SCRIPT} in {peers_dir!r}.")
  runs = [(sys.executable, TFC_REFERENCE)]
  if compressai_python and os.path.isfile(compressai_python):
    runs.append((compressai_python, COMPRESSAI))
  else:
    print(f"  skipping CompressAI: no Python at {compressai_python!r} "
          f"(make one with {os.path.join(peers_dir, 'setup.sh')})")
  print(f"peers, in this run on {cpu_model()} (median of 5 runs):")
  results = []
  for path in paths:
    timed = [_peer(python, script, args, path) for python, args in runs]
    fastest = {"encode": min(t[1] for t in timed),
               "decode": min(t[2] for t in timed)}
    print(f"  {os.path.basename(path)}")
    for label, encode, decode in timed:
      print(f"    {label}: encode {encode:.3f} s, decode {decode:.3f} s")
    ratios = []
    for figures in coding_results:
      if figures["image"] != path:
        continue
      ratio = {side: fastest[side] / figures[side]["median_seconds"]
               for side in ("encode", "decode")}
      ratios.append(dict(quality=figures["quality"], **ratio))
      print(f"    this codec, quality {figures['quality']:g}: encode "
            f"{ratio['encode']:.2f}x, decode {ratio['decode']:.2f}x the "
            "fastest peer's speed")
    results.append(dict(image=path, cpu=cpu_model(), ratios=ratios,
                        peers=[dict(label=label, encode_seconds=encode,
                                    decode_seconds=decode)
                               for label, encode, decode in timed]))
  return results
