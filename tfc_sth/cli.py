"""The `tfc-sth` command line: compress, decompress, train, ablate, evaluate,
bench, models.

    tfc-sth compress IN.png... [-o OUT] [--quality Q | --max_bpp B]
                     [--model NAME|PATH] [--verbose] [--force]
    tfc-sth decompress IN.tsth... [-o OUT.png] [--model PATH] [--force]
    tfc-sth train --train_glob=... --train_dir=... [--export_dir=...] ...
    tfc-sth evaluate IMAGES... [--model [LABEL=]NAME|PATH]... [-o OUT.json|csv]
                              [--plot RD.png] [--anchors jpeg,webp,avif,jxl]
    tfc-sth ablate --out_dir=... --train_glob=... --valid_glob=... [--lmbdas ...]
    tfc-sth bench [IMAGES...] [--model NAME|PATH] [--train_steps N] [-o OUT.json]
    tfc-sth models

Each subcommand has its own absl flags (`tfc-sth COMMAND --help`). Bad input
is reported as one line on stderr with a non-zero exit code; no traceback.
"""

import concurrent.futures
import dataclasses
import importlib.util
import os
import sys
import time
import typing

# Before TensorFlow is imported: its C++ start-up chatter is not for users.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import logging  # pylint: disable=wrong-import-position

PROG = "tfc-sth"
EXIT_ERROR = 1
EXIT_USAGE = 2


class UsageError(Exception):
  pass


# Errors that mean bad input, reported in one line; anything else is a bug
# and keeps its traceback.
def _input_errors():
  from tfc_sth.runtime import bitstream, codec, image_io, pretrained  # pylint: disable=g-import-not-at-top,multiple-imports
  from tfc_sth.training import trainer  # pylint: disable=g-import-not-at-top
  return (bitstream.BitstreamError, image_io.ImageError,
          pretrained.ModelNotFoundError, codec.PrecisionError,
          codec.RateError, codec.RefinementError, trainer.ConfigError,
          OSError)


def _output_path(path, output, count, suffix):
  """Where the output for input `path` goes, given -o and the input count."""
  if output and (count > 1 or os.path.isdir(output)):
    return os.path.join(output, os.path.basename(path) + suffix)
  return output or path + suffix


def _progress(count):
  if count < 2:
    return None
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.keras.utils.Progbar(count, unit_name="image")


def _progress_callback(count):
  """A `progress(done, total)` function showing a bar, or None for one image."""
  bar = _progress(count)
  return bar and (lambda done, _: bar.update(done))


def _for_each(paths, load, step, flag_values):
  """Runs `step(path, load(path))` on every input; reports failures and
  keeps going. The next input loads in a thread while this one codes, so
  reading and decoding files overlaps with the transforms."""
  failures = 0
  bar = _progress(len(paths))
  with concurrent.futures.ThreadPoolExecutor(1) as reader:
    loads = [reader.submit(load, path) for path in paths[:1]]
    for i, path in enumerate(paths):
      if i + 1 < len(paths):
        loads.append(reader.submit(load, paths[i + 1]))
      try:
        step(path, loads[i].result())
      except _input_errors() as e:
        failures += 1
        print(f"{PROG}: error: {path}: {_message(e)}", file=sys.stderr)
      loads[i] = None  # Its pixels are no longer needed.
      if bar is not None and not flag_values.verbose:
        bar.update(i + 1)
  return EXIT_ERROR if failures else 0


def _message(error):
  if isinstance(error, OSError) and error.strerror:
    return error.strerror + (f": {error.filename}" if error.filename else "")
  return str(error).splitlines()[0] if str(error) else type(error).__name__


def _define_coding(fv, suffix_help):
  flags.DEFINE_string("output", None, f"Output file, or folder for several "
                      f"inputs (default: input {suffix_help}).",
                      short_name="o", flag_values=fv)
  flags.DEFINE_bool("force", False, "Overwrite existing outputs.",
                    flag_values=fv)
  flags.DEFINE_bool("verbose", False, "Print bits per pixel, PSNR and times.",
                    short_name="v", flag_values=fv)


def _define_precision(fv, default="auto"):
  # The choices of codec.PRECISIONS, here without importing TensorFlow.
  flags.DEFINE_enum("precision", default, ["auto", "float32", "bfloat16"],
                    "Precision of the analysis and synthesis transforms. "
                    "auto: bfloat16 on CPUs with bfloat16 dot products "
                    "(AVX512-BF16, AMX), about twice as fast, else float32. "
                    "Decoded latents are the same either way; pixels differ "
                    "slightly (see README).", flag_values=fv)


def define_compress(fv):
  _define_coding(fv, "+ .tsth")
  _define_precision(fv)
  flags.DEFINE_string("model", None, "Model name (see `tfc-sth models`) or "
                      "SavedModel path; default: the shipped default model.",
                      flag_values=fv)
  flags.DEFINE_float("quality", None, "Quality level, from 1 (fewest bits) "
                     "to the model's number of levels (`tfc-sth models`); "
                     "fractional levels lie between two levels. Default: "
                     "the model's middle level.", short_name="q",
                     flag_values=fv)
  flags.DEFINE_float("max_bpp", None, "Instead of --quality: the highest "
                     "quality (in steps of 0.01) whose file takes at most "
                     "this many bits per pixel, found per image by "
                     "bisection (about 10 codings of the latents).",
                     lower_bound=0, flag_values=fv)
  _define_refine_steps(fv)


def _define_refine_steps(fv):
  flags.DEFINE_integer("refine_steps", 0, "Refine the latents for each "
                       "image by this many steps of gradient descent on its "
                       "rate + λ·distortion before coding: smaller files at "
                       "the same quality, each step costing about three "
                       "syntheses of the image. Decoding is unchanged. 0: "
                       "off.", lower_bound=0, flag_values=fv)


def run_compress(fv, paths):
  from tfc_sth.runtime import bitstream, codec, image_io, pretrained  # pylint: disable=g-import-not-at-top,multiple-imports
  from tfc_sth.tools import metrics  # pylint: disable=g-import-not-at-top
  if fv.max_bpp is not None and fv.quality is not None:
    raise UsageError("--quality and --max_bpp: give one or the other")
  model = codec.Codec.load(fv.model or pretrained.DEFAULT_MODEL,
                           fv.precision)
  try:
    quality = model.check_quality(fv.quality)
  except codec.QualityError as e:
    raise UsageError(f"--quality: {e}") from None
  model.check_refine_steps(fv.refine_steps)

  def step(path, loaded):
    image, channels = loaded
    start = time.perf_counter()
    if fv.max_bpp is None:
      data = model.compress(image, channels, quality, fv.refine_steps)
      chosen = quality
    else:
      data, chosen = model.compress_to_rate(image, fv.max_bpp, channels,
                                            fv.refine_steps)
    seconds = time.perf_counter() - start
    out = _output_path(path, fv.output, len(paths), bitstream.SUFFIX)
    image_io.write_atomically(out, data, force=fv.force)
    if fv.verbose:  # A file of its own: no limit on its declared size.
      decoded, _ = model.decompress(data, max_pixels=bitstream.MAX_PIXELS)
      bpp = 8 * len(data) / (image.shape[0] * image.shape[1])
      print(f"{path} -> {out}: {image.shape[1]}x{image.shape[0]}, "
            f"quality {chosen:g}, {len(data)} bytes, {bpp:.4f} bpp, "
            f"PSNR {metrics.psnr(image, decoded):.2f} dB, "
            f"encoded in {seconds:.3f} s")

  return _for_each(paths, image_io.read_png, step, fv)


def define_decompress(fv):
  _define_coding(fv, "+ .png")
  _define_precision(fv)
  flags.DEFINE_string("model", None, "SavedModel to decode with, if the one "
                      "named in the file is not installed.", flag_values=fv)
  flags.DEFINE_integer("max_pixels", None, "Refuse files that declare more "
                       "pixels than this, a guard for untrusted files "
                       "(default: codec.DEFAULT_MAX_PIXELS, 2^25).",
                       lower_bound=1, flag_values=fv)


def run_decompress(fv, paths):
  from tfc_sth.runtime import bitstream, codec, image_io, pretrained  # pylint: disable=g-import-not-at-top,multiple-imports
  loaded = {}

  def load(path):
    with open(path, "rb") as f:
      return f.read()

  def step(path, data):
    header, _ = bitstream.read_header(data)
    extra = [pretrained.resolve(fv.model)] if fv.model else []
    if header.model_id not in loaded:
      loaded[header.model_id] = codec.Codec(
          pretrained.find(header.model_id, extra), fv.precision)
    start = time.perf_counter()
    header, bands = loaded[header.model_id].decode(
        data, max_pixels=fv.max_pixels or codec.DEFAULT_MAX_PIXELS)
    out = _output_path(path, fv.output, len(paths), ".png")
    # Each band of pixels is written as it is decoded: memory stays bounded
    # whatever the declared size, and a failure leaves no output.
    image_io.write_atomically(
        out, image_io.png_chunks(bands, header.height, header.width,
                                 header.channels), force=fv.force)
    seconds = time.perf_counter() - start
    if fv.verbose:
      bpp = 8 * len(data) / (header.height * header.width)
      print(f"{path} -> {out}: {header.width}x{header.height}, "
            f"{bpp:.4f} bpp, decoded and written in {seconds:.3f} s")

  return _for_each(paths, load, step, fv)


def _field_flags(field):
  """(name, default, help, type, choices) of each flag of a `TrainConfig`
  field: its own, or one per architecture option that it holds."""
  if "options" in field.metadata:
    return [(name, option.default, option.help, type(option.default), None)
            for name, option in field.metadata["options"].items()]
  kind = field.type
  if typing.get_origin(kind) is typing.Union:  # Optional[...]
    kind, = (t for t in typing.get_args(kind) if t is not type(None))
  return [(field.name, field.default, field.metadata["help"], kind,
           field.metadata.get("choices"))]


def _define_flag(fv, name, default, help_text, kind, choices):
  if choices:
    flags.DEFINE_enum(name, default, list(choices), help_text, flag_values=fv)
    return
  define = {int: flags.DEFINE_integer, float: flags.DEFINE_float,
            bool: flags.DEFINE_boolean}.get(kind, flags.DEFINE_string)
  define(name, default, help_text, flag_values=fv)


def _define_train_config(fv, exclude=()):
  """The flags of every `TrainConfig` field but those in `exclude`."""
  from tfc_sth.training import trainer  # pylint: disable=g-import-not-at-top
  for field in dataclasses.fields(trainer.TrainConfig):
    if field.name not in exclude:
      for flag in _field_flags(field):
        _define_flag(fv, *flag)


def _train_config(fv):
  """The `TrainConfig` that the flags of `_define_train_config` give."""
  from tfc_sth.training import trainer  # pylint: disable=g-import-not-at-top
  values = {}
  for field in dataclasses.fields(trainer.TrainConfig):
    if "options" in field.metadata:
      values[field.name] = {name: fv[name].value
                            for name in field.metadata["options"]
                            if name in fv}
    elif field.name in fv:
      values[field.name] = fv[field.name].value
  config = trainer.TrainConfig(**values)
  try:
    config.check_data()
  except trainer.ConfigError as e:  # Found before anything is built.
    raise UsageError(str(e)) from None
  return config


def define_train(fv):
  _define_train_config(fv)
  flags.DEFINE_string("train_dir", None, "Checkpoints, TensorBoard logs and "
                      "sample reconstructions; rerun to resume.",
                      flag_values=fv)
  flags.DEFINE_string("export_dir", None, "Where to write the SavedModel "
                      "after training.", flag_values=fv)
  flags.mark_flag_as_required("train_dir", flag_values=fv)


def run_train(fv, args):
  from tfc_sth.training import trainer  # pylint: disable=g-import-not-at-top
  config = _train_config(fv)
  logging.set_verbosity(logging.INFO)
  trainer.train(config, fv.train_dir, fv.export_dir,
                 verbose=1 if sys.stdout.isatty() else 2)
  return 0


def define_evaluate(fv):
  flags.DEFINE_multi_string(
      "model", None, "[LABEL=]NAME_OR_PATH of a model to evaluate; repeat "
      "for several. Models with the same LABEL form one curve (e.g. one per "
      "λ). Default: the shipped default model.", flag_values=fv)
  # Figures that do not depend on the CPU, unless asked.
  _define_precision(fv, default="float32")
  flags.DEFINE_list("anchors", "jpeg,webp,avif,jxl", "Classical codecs to "
                    "sweep (those whose tools are missing are skipped).",
                    flag_values=fv)
  flags.DEFINE_string("reference", "jpeg", "Curve that BD-rates are "
                      "measured against.", flag_values=fv)
  flags.DEFINE_string("output", None, "Write every measurement here: .csv, "
                      "or .json with curves and BD-rates too.",
                      short_name="o", flag_values=fv)
  flags.DEFINE_string("plot", None, "Write a rate-distortion plot (PNG) "
                      "here; needs matplotlib (the `evaluate` extra).",
                      flag_values=fv)
  flags.DEFINE_bool("force", False, "Overwrite existing outputs.",
                    flag_values=fv)
  _define_refine_steps(fv)


def _images(args):
  """PNG paths from files, folders (their *.png) and glob patterns."""
  import glob  # pylint: disable=g-import-not-at-top
  paths = []
  for arg in args:
    if os.path.isdir(arg):
      found = sorted(glob.glob(os.path.join(arg, "*.png")))
    elif os.path.exists(arg) or not glob.has_magic(arg):
      found = [arg]
    else:
      found = sorted(glob.glob(arg))
    if not found:
      raise UsageError(f"no PNG images in {arg!r}")
    paths += found
  return paths


def _models(specs):
  """[(label, name or path)] from [LABEL=]NAME_OR_PATH values."""
  from tfc_sth.runtime import pretrained  # pylint: disable=g-import-not-at-top
  models = []
  for spec in specs or [pretrained.DEFAULT_MODEL]:
    label, _, model = spec.rpartition("=")
    models.append((label or os.path.basename(os.path.normpath(model)), model))
  return models


def _check_outputs(fv, names):
  for name in names:
    path = fv[name].value
    if path and os.path.exists(path) and not fv.force:
      raise FileExistsError(f"{path} exists (use --force to overwrite)")


def run_evaluate(fv, args):
  from tfc_sth.tools import anchors, evaluate  # pylint: disable=g-import-not-at-top,multiple-imports
  from tfc_sth.runtime import codec  # pylint: disable=g-import-not-at-top
  paths = _images(args)
  if fv.output and not fv.output.endswith((".json", ".csv")):
    raise UsageError("--output must end in .json or .csv")
  unknown = set(fv.anchors) - set(anchors.ANCHORS)
  if unknown:
    raise UsageError(f"unknown anchors {sorted(unknown)} (known: "
                     f"{', '.join(anchors.ANCHORS)})")
  if fv.plot and not importlib.util.find_spec("matplotlib"):
    raise UsageError("--plot needs matplotlib: pip install "
                     "'tfc-sth[evaluate]'")
  _check_outputs(fv, ("output", "plot"))
  used = []
  for name in fv.anchors:
    if anchors.ANCHORS[name].available():
      used.append(anchors.ANCHORS[name])
    else:
      print(f"{PROG} evaluate: note: skipping {name}: "
            f"{anchors.ANCHORS[name].requirements()} not installed",
            file=sys.stderr)
  models = [(label, codec.Codec.load(m, fv.precision))
            for label, m in _models(fv.model)]
  for _, model in models:
    model.check_refine_steps(fv.refine_steps)
  measurements = evaluate.run(paths, models, used,
                              progress=_progress_callback(len(paths)),
                              refine_steps=fv.refine_steps)
  evaluate.write_report(paths, models, used, measurements, fv.reference,
                        fv.output, fv.plot, fv.force)
  return 0


def define_bench(fv):
  flags.DEFINE_string("model", None, "Model name or SavedModel path to time "
                      "coding with; default: the shipped default model.",
                      flag_values=fv)
  flags.DEFINE_list("quality", [], "Quality levels to time, or `all` for "
                    "every level of the model (default: its default level).",
                    flag_values=fv)
  _define_precision(fv)
  flags.DEFINE_integer("runs", 7, "Timed runs per image (after 2 warm-up "
                       "runs); the median is reported.", lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_integer("threads", 0, "TensorFlow intra- and inter-op threads "
                       "(0: TensorFlow's default, all cores).", lower_bound=0,
                       flag_values=fv)
  flags.DEFINE_integer("train_steps", 10, "Timed training steps per phase "
                       "(0: do not time training).", lower_bound=0,
                       flag_values=fv)
  for field in dataclasses.fields(_train_config_class()):
    if field.name in _BENCH_TRAIN_FIELDS:
      (name, default, help_text, kind, choices), = _field_flags(field)
      _define_flag(fv, f"train_{name}", default,
                   f"Training benchmark: {help_text}", kind, choices)
  flags.DEFINE_bool("folder", False, "Also time `compress` and "
                    "`decompress` of all the images in one command against "
                    "one command per image, in images per second.",
                    flag_values=fv)
  flags.DEFINE_string("peers", None, "Folder of the peers' timing script "
                      "(e.g. ../shared/peers): time tfc's reference model "
                      "(and CompressAI's) on the same images in this run and "
                      "report this codec's speed as a ratio to the fastest; "
                      "with --train_steps, also tfc's reference training "
                      "step.",
                      flag_values=fv)
  flags.DEFINE_string("compressai_python", "/tmp/peers/venv-cai/bin/python",
                      "Python with CompressAI, for --peers.", flag_values=fv)
  flags.DEFINE_string("output", None, "Write the figures here as JSON.",
                      short_name="o", flag_values=fv)
  flags.DEFINE_bool("force", False, "Overwrite an existing --output.",
                    flag_values=fv)
  _define_refine_steps(fv)


_BENCH_TRAIN_FIELDS = ("model", "num_filters", "latent_channels",
                       "delta_mode", "kernel_parameter", "mixed_precision",
                       "batch_size", "patch_size")


def _train_config_class():
  from tfc_sth.training import trainer  # pylint: disable=g-import-not-at-top
  return trainer.TrainConfig


def run_bench(fv, args):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if fv.threads:
    tf.config.threading.set_intra_op_parallelism_threads(fv.threads)
    tf.config.threading.set_inter_op_parallelism_threads(fv.threads)
  from tfc_sth.tools import bench, evaluate  # pylint: disable=g-import-not-at-top,multiple-imports
  from tfc_sth.runtime import codec, image_io, pretrained  # pylint: disable=g-import-not-at-top,multiple-imports
  paths = _images(args) if args else []
  if not paths and not fv.train_steps:
    raise UsageError("nothing to time: give images or --train_steps > 0")
  if fv.peers and fv.threads:
    raise UsageError("--peers times the peers on all cores: drop --threads")
  _check_outputs(fv, ("output",))
  report = {"threads": fv.threads or None, "coding": [], "training": None}
  if paths:
    model = codec.Codec.load(fv.model or pretrained.DEFAULT_MODEL,
                             fv.precision)
    report["model"] = model.model_id
    if fv.quality == ["all"]:
      qualities = list(range(1, model.qualities + 1))
    else:
      try:
        qualities = [model.check_quality(float(q)) for q in fv.quality]
      except ValueError as e:  # Not a number, or a level it lacks.
        raise UsageError(f"--quality: {e}") from None
    model.check_refine_steps(fv.refine_steps)
    report["coding"] = bench.coding_report(model, paths, qualities, fv.runs,
                                           fv.refine_steps)
    if fv.folder:
      report["folder"] = bench.folder_report(model.path, paths, fv.precision)
    if fv.peers:
      report["peers"] = bench.peers_report(fv.peers, paths, report["coding"],
                                           fv.compressai_python)
  if fv.train_steps:
    settings = {f: fv[f"train_{f}"].value for f in _BENCH_TRAIN_FIELDS}
    config = _train_config_class()(**settings)
    report["training"] = dict(
        config=settings,
        **bench.training_report(config, fv.train_steps, fv.peers))
  if fv.output:
    image_io.write_atomically(fv.output, evaluate.json_bytes(report),
                              force=fv.force)
  return 0


def define_ablate(fv):
  from tfc_sth.training import ablation  # pylint: disable=g-import-not-at-top
  # Its runs train one after another in one process: not distributed.
  _define_train_config(fv, exclude=(*ablation.PER_RUN_FIELDS, "distribute"))
  flags.DEFINE_string("out_dir", None, "Runs, exports, results.json and "
                      "rd.png go here; rerun to resume.", flag_values=fv)
  flags.DEFINE_list("lmbdas", ["0.0025", "0.005", "0.01"], "λ values.",
                    flag_values=fv)
  flags.DEFINE_list("variants", list(ablation.VARIANTS), "Variants to train "
                    f"and compare ({', '.join(ablation.VARIANTS)}).",
                    flag_values=fv)
  flags.DEFINE_string("eval_glob", None, "Images to evaluate on (default: "
                      "--valid_glob).", flag_values=fv)
  flags.mark_flag_as_required("out_dir", flag_values=fv)


def run_ablate(fv, args):
  from tfc_sth.training import ablation  # pylint: disable=g-import-not-at-top
  unknown = set(fv.variants) - set(ablation.VARIANTS)
  if unknown:
    raise UsageError(f"unknown variants {sorted(unknown)}")
  for name in fv.variants:
    source = ablation.VARIANTS[name].branch_of
    if source and source not in fv.variants:
      raise UsageError(f"variant {name} branches from {source}: add it")
  try:
    lmbdas = [float(x) for x in fv.lmbdas]
  except ValueError:
    raise UsageError(f"--lmbdas: not numbers: {fv.lmbdas}") from None
  eval_glob = fv.eval_glob or fv.valid_glob
  if not eval_glob:
    raise UsageError("give --eval_glob or --valid_glob")
  paths = _images([eval_glob])
  base = _train_config(fv)
  logging.set_verbosity(logging.INFO)
  seconds = ablation.train_all(fv.out_dir, lmbdas, base, fv.variants,
                               verbose=1 if sys.stdout.isatty() else 2)
  measurements = ablation.evaluate_all(
      fv.out_dir, lmbdas, paths, fv.variants,
      progress=_progress_callback(len(paths)))
  ablation.write_report(fv.out_dir, measurements, seconds, base, lmbdas,
                        fv.variants)
  return 0


def define_fuzz(fv):
  flags.DEFINE_multi_string("model", None, "Model name or SavedModel path "
                            "whose files to mutate; repeat for several "
                            "(default: the shipped default model).",
                            flag_values=fv)
  flags.DEFINE_integer("cases", 1000, "Mutated files to decode.",
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_integer("seed", 0, "Random seed of the mutations.",
                       flag_values=fv)
  flags.DEFINE_float("timeout_factor", 5., "A case hangs past this many "
                     "times its seed's decoding time ...", flag_values=fv)
  flags.DEFINE_float("timeout_slack", 5., "... plus these seconds.",
                     flag_values=fv)
  flags.DEFINE_string("output", None, "Write every case as JSON here.",
                      short_name="o", flag_values=fv)
  flags.DEFINE_bool("force", False, "Overwrite an existing --output.",
                    flag_values=fv)


def run_fuzz(fv, args):
  import tempfile  # pylint: disable=g-import-not-at-top
  from tfc_sth.runtime import image_io, pretrained  # pylint: disable=g-import-not-at-top,multiple-imports
  from tfc_sth.tools import fuzz  # pylint: disable=g-import-not-at-top
  _check_outputs(fv, ("output",))
  seeds = fuzz.make_seeds(
      [pretrained.resolve(name)
       for name in fv.model or [pretrained.DEFAULT_MODEL]], _images(args))
  with tempfile.TemporaryDirectory() as directory:
    results, peak_mb = fuzz.run(
        seeds, fv.cases, directory, fv.seed, fv.timeout_factor,
        fv.timeout_slack, progress=_progress_callback(fv.cases))
  fuzz.print_report(results, len(seeds), peak_mb)
  if fv.output:
    image_io.write_atomically(fv.output, fuzz.to_json(results, peak_mb),
                              force=fv.force)
  return EXIT_ERROR if fuzz.failures(results) else 0


def define_models(fv):
  del fv


def run_models(fv, args):
  del fv, args
  from tfc_sth.runtime import pretrained  # pylint: disable=g-import-not-at-top
  for name, path in pretrained.available().items():
    info = pretrained.read_info(path)
    default = " (default)" if name == pretrained.DEFAULT_MODEL else ""
    qualities = len(info["config"].get("lmbdas", [None]))
    print(f"{name}{default}\t{info['model_id']}\t"
          f"qualities 1-{qualities}\t{path}")
  return 0


COMMANDS = {
    "compress": (define_compress, run_compress, "IN.png..."),
    "decompress": (define_decompress, run_decompress, "IN.tsth..."),
    "train": (define_train, run_train, ""),
    "evaluate": (define_evaluate, run_evaluate, "IMAGES..."),
    "ablate": (define_ablate, run_ablate, ""),
    "bench": (define_bench, run_bench, "[IMAGES...]"),
    "fuzz": (define_fuzz, run_fuzz, "IMAGES..."),
    "models": (define_models, run_models, ""),
}

_SUMMARIES = {
    "compress": "PNG images to .tsth files",
    "decompress": ".tsth files to PNG images",
    "train": "train a model (soft then hard, or a baseline) and export it",
    "evaluate": "rate, PSNR, MS-SSIM, times and BD-rates against anchors",
    "ablate": "train and compare quantization strategies over λ",
    "bench": "encode/decode seconds, memory and training throughput",
    "fuzz": "decode mutated files: each must decode or fail cleanly",
    "models": "list the installed models",
}


def _usage():
  lines = [f"usage: {PROG} COMMAND [flags] [args]", "", "commands:"]
  lines += [f"  {f'{name} {args}'.rstrip():24s} {_SUMMARIES[name]}"
            for name, (_, _, args) in COMMANDS.items()]
  lines += ["", f"`{PROG} COMMAND --help` lists a command's flags."]
  return "\n".join(lines)


def main(argv=None):
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(_usage(), file=sys.stdout if len(argv) >= 2 else sys.stderr)
    return 0 if len(argv) >= 2 else EXIT_USAGE
  command = argv[1]
  if command not in COMMANDS:
    print(f"{PROG}: error: unknown command {command!r} (commands: "
          f"{', '.join(COMMANDS)}; see `{PROG} --help`)", file=sys.stderr)
    return EXIT_USAGE
  define, run, args_help = COMMANDS[command]
  fv = flags.FlagValues()
  define(fv)
  if any(a in ("-h", "--help", "-help") for a in argv[2:]):
    print(f"usage: {PROG} {command} [flags] {args_help}\n\n"
          f"{fv.get_help()}")
    return 0
  try:
    args = fv([f"{PROG} {command}"] + argv[2:])[1:]
    if not args_help and args:
      raise UsageError(f"unexpected arguments: {' '.join(args)}")
    if args_help and not args_help.startswith("[") and not args:
      raise UsageError(f"no input files (usage: {PROG} {command} [flags] "
                       f"{args_help})")
    return run(fv, args)
  except (flags.Error, UsageError) as e:
    print(f"{PROG} {command}: error: {e}", file=sys.stderr)
    return EXIT_USAGE
  except _input_errors() as e:
    print(f"{PROG} {command}: error: {_message(e)}", file=sys.stderr)
    return EXIT_ERROR
  except KeyboardInterrupt:
    return 130


def entry_point():
  try:
    sys.exit(main())
  except BrokenPipeError:  # Output piped into e.g. `head`: not an error.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(0)
