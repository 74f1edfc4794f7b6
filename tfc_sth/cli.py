"""The `tfc-sth` command line: compress, decompress, train, ablate, evaluate,
bench, models.

    tfc-sth compress IN.png... [-o OUT] [--quality Q] [--model NAME|PATH]
                     [--verbose] [--force]
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

import dataclasses
import importlib.util
import itertools
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
  from tfc_sth.runtime import bitstream, image_io, pretrained  # pylint: disable=g-import-not-at-top,multiple-imports
  from tfc_sth.training import trainer  # pylint: disable=g-import-not-at-top
  return (bitstream.BitstreamError, image_io.ImageError,
          pretrained.ModelNotFoundError, trainer.ConfigError, OSError)


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


def _for_each(paths, step, flag_values):
  """Runs `step(path)` on every input; reports failures and keeps going."""
  failures = 0
  bar = _progress(len(paths))
  for i, path in enumerate(paths):
    try:
      step(path)
    except _input_errors() as e:
      failures += 1
      print(f"{PROG}: error: {path}: {_message(e)}", file=sys.stderr)
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


def define_compress(fv):
  _define_coding(fv, "+ .tsth")
  flags.DEFINE_string("model", None, "Model name (see `tfc-sth models`) or "
                      "SavedModel path; default: the shipped default model.",
                      flag_values=fv)
  flags.DEFINE_float("quality", None, "Quality level, from 1 (fewest bits) "
                     "to the model's number of levels (`tfc-sth models`); "
                     "fractional levels lie between two levels. Default: "
                     "the model's middle level.", short_name="q",
                     flag_values=fv)


def run_compress(fv, paths):
  from tfc_sth.runtime import bitstream, codec, image_io, pretrained  # pylint: disable=g-import-not-at-top,multiple-imports
  from tfc_sth.tools import metrics  # pylint: disable=g-import-not-at-top
  model = codec.Codec.load(fv.model or pretrained.DEFAULT_MODEL)
  try:
    quality = model.check_quality(fv.quality)
  except codec.QualityError as e:
    raise UsageError(f"--quality: {e}") from None

  def step(path):
    image, channels = image_io.read_png(path)
    start = time.perf_counter()
    data = model.compress(image, channels, quality)
    seconds = time.perf_counter() - start
    out = _output_path(path, fv.output, len(paths), bitstream.SUFFIX)
    image_io.write_atomically(out, data, force=fv.force)
    if fv.verbose:  # A file of its own: no limit on its declared size.
      decoded, _ = model.decompress(data, max_pixels=bitstream.MAX_PIXELS)
      bpp = 8 * len(data) / (image.shape[0] * image.shape[1])
      print(f"{path} -> {out}: {image.shape[1]}x{image.shape[0]}, "
            f"quality {quality:g}, {len(data)} bytes, {bpp:.4f} bpp, "
            f"PSNR {metrics.psnr(image, decoded):.2f} dB, "
            f"encoded in {seconds:.3f} s")

  return _for_each(paths, step, fv)


def define_decompress(fv):
  _define_coding(fv, "+ .png")
  flags.DEFINE_string("model", None, "SavedModel to decode with, if the one "
                      "named in the file is not installed.", flag_values=fv)
  flags.DEFINE_integer("max_pixels", None, "Refuse files that declare more "
                       "pixels than this, a guard for untrusted files "
                       "(default: codec.DEFAULT_MAX_PIXELS, 2^25).",
                       lower_bound=1, flag_values=fv)


def run_decompress(fv, paths):
  from tfc_sth.runtime import bitstream, codec, image_io, pretrained  # pylint: disable=g-import-not-at-top,multiple-imports
  loaded = {}

  def step(path):
    with open(path, "rb") as f:
      data = f.read()
    header, _ = bitstream.read_header(data)
    extra = [pretrained.resolve(fv.model)] if fv.model else []
    if header.model_id not in loaded:
      loaded[header.model_id] = codec.Codec(
          pretrained.find(header.model_id, extra))
    start = time.perf_counter()
    image, channels = loaded[header.model_id].decompress(
        data, max_pixels=fv.max_pixels or codec.DEFAULT_MAX_PIXELS)
    seconds = time.perf_counter() - start
    out = _output_path(path, fv.output, len(paths), ".png")
    image_io.write_atomically(out, image_io.png_chunks(image, channels),
                              force=fv.force)
    if fv.verbose:
      bpp = 8 * len(data) / (header.height * header.width)
      print(f"{path} -> {out}: {header.width}x{header.height}, "
            f"{bpp:.4f} bpp, decoded in {seconds:.3f} s")

  return _for_each(paths, step, fv)


_TRAIN_HELP = {
    "model": "Architecture.",
    "num_filters": "Channels of the hidden layers (N).",
    "latent_channels": "Channels of the latent y (M).",
    "delta": "SAUN step Δ: none, per channel, or predicted by the hyperprior.",
    "kernel_parameter": "Convolution kernel parameterisation (tfc).",
    "num_slices": "Channel slices of channelwise_autoregressive.",
    "attention": "Attention modules in cheng2020's transforms.",
    "lmbda": "λ: rate-distortion trade-off, loss = bpp + λ·MSE (8-bit "
             "scale); of the highest quality level for a ladder.",
    "qualities": "Quality levels: more than 1 trains one model for a rate "
                 "ladder, with a per-channel Δ per level (needs "
                 "--delta=channel) and λ from --lmbda_min to --lmbda.",
    "lmbda_min": "λ of the lowest quality level (with --qualities > 1); "
                 "the levels' λ are spaced geometrically.",
    "mixed_precision": "Transforms in bfloat16 (mixed precision) in every "
                       "phase but the hard one.",
    "warmup_steps": "Linear learning-rate warm-up steps (default: 0, or "
                    "500 when --init_from is an exported model).",
    "quantization": "Strategy: noise (AUN), ste, mixed, anneal (soft "
                    "rounding, temperature raised over the run), or sth "
                    "(soft then hard).",
    "soft_steps": "Steps of the first (soft) phase.",
    "hard_steps": "Steps of the hard phase (other strategies train "
                  "soft_steps + hard_steps steps in one phase).",
    "batch_size": "Patches per step.",
    "patch_size": "Side of the square training patches.",
    "learning_rate": "Adam learning rate (divided by 10 for the last 20%).",
    "clip_norm": "Global gradient norm clip (0: none).",
    "steps_per_epoch": "Steps between checkpoints and validations.",
    "seed": "Random seed.",
    "dataset": "TFDS dataset name (its data must be present; no download).",
    "data_dir": "TFDS data directory.",
    "train_glob": "Glob of training images (instead of --dataset).",
    "valid_glob": "Glob of validation images.",
    "valid_crop": "Side of the central validation crops.",
    "init_from": "Start a new run from a checkpoint (a checkpoint folder "
                 "or path, e.g. RUN/checkpoints/phase_0_end: weights, "
                 "optimizer state and step, then this run's schedule) or "
                 "from an exported model (its weights only, a fresh "
                 "optimizer and step 0).",
}


def _define_train_config(fv, exclude=()):
  """A flag for each `TrainConfig` field but those in `exclude`."""
  from tfc_sth.model import architectures, saun  # pylint: disable=g-import-not-at-top,multiple-imports
  from tfc_sth.training import schedule, trainer  # pylint: disable=g-import-not-at-top,multiple-imports
  enums = {"model": sorted(architectures.ARCHITECTURES),
           "delta": list(saun.DELTA_MODES),
           "kernel_parameter": ["rdft", "variable"],
           "quantization": list(schedule.STRATEGIES)}
  definers = {int: flags.DEFINE_integer, float: flags.DEFINE_float,
              bool: flags.DEFINE_boolean}
  for field in dataclasses.fields(trainer.TrainConfig):
    if field.name in exclude:
      continue
    help_text = _TRAIN_HELP[field.name]
    if field.name in enums:
      flags.DEFINE_enum(field.name, field.default, enums[field.name],
                        help_text, flag_values=fv)
    else:
      kind = field.type
      if typing.get_origin(kind) is typing.Union:  # Optional[...]
        kind, = (t for t in typing.get_args(kind) if t is not type(None))
      define = definers.get(kind, flags.DEFINE_string)
      define(field.name, field.default, help_text, flag_values=fv)


def _train_config(fv):
  from tfc_sth.training import trainer  # pylint: disable=g-import-not-at-top
  if not (fv.train_glob or fv.dataset):
    raise UsageError("give --train_glob or --dataset")
  values = {f.name: fv[f.name].value
            for f in dataclasses.fields(trainer.TrainConfig) if f.name in fv}
  return trainer.TrainConfig(**values)


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


def _json_bytes(report):
  import json  # pylint: disable=g-import-not-at-top
  import math  # pylint: disable=g-import-not-at-top

  def clean(value):  # JSON has no NaN or infinity.
    if isinstance(value, float) and not math.isfinite(value):
      return None
    if isinstance(value, dict):
      return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
      return [clean(v) for v in value]
    return value

  return json.dumps(clean(report), indent=2).encode()


def _signed(value, unit=""):
  return "n/a" if value != value else f"{value:+.2f}{unit}"


def print_evaluation(measurements, all_curves, rates, reference):
  from tfc_sth.tools import evaluate  # pylint: disable=g-import-not-at-top
  anchor_names = [c for c in all_curves if c in _anchor_names()]
  models = [c for c in all_curves if c not in anchor_names]
  print(f"{'model':20s} {'id':36s} {'bpp':>7s} {'PSNR':>6s} {'MS-SSIM':>7s} "
        f"{'enc s':>6s} {'dec s':>6s}" + "".join(
            f" {'ΔPSNR ' + a:>10s}" for a in anchor_names))
  for label in models:
    gains = {a: evaluate.gains_at_rate(measurements, label, a)
             for a in anchor_names}
    for p in all_curves[label]:
      print(f"{label:20s} {p['setting']:36s} {p['bpp']:7.4f} "
            f"{p['psnr']:6.2f} {p['ms_ssim_db']:7.2f} "
            f"{p['encode_seconds']:6.3f} {p['decode_seconds']:6.3f}" +
            "".join(f" {_signed(gains[a][p['setting']]):>10s}"
                    for a in anchor_names))
  if rates:
    print(f"\nΔPSNR: dB over the anchor at the same bpp, per image (n/a: "
          "outside its sweep).")
    print(f"BD-rate against {reference} (negative: fewer bits for the same "
          "quality; n/a: fewer than 2 points or no common qualities):")
    print(f"  {'curve':20s} {'points':>6s} {'PSNR':>8s} {'MS-SSIM':>8s}")
    for codec, rate in rates.items():
      print(f"  {codec:20s} {len(all_curves[codec]):6d} "
            f"{_signed(rate['psnr'], '%'):>8s} {_signed(rate['ms_ssim_db'], '%'):>8s}")


def _anchor_names():
  from tfc_sth.tools import anchors  # pylint: disable=g-import-not-at-top
  return set(anchors.ANCHORS)


def run_evaluate(fv, args):
  from tfc_sth.tools import anchors, evaluate  # pylint: disable=g-import-not-at-top,multiple-imports
  from tfc_sth.runtime import codec, image_io  # pylint: disable=g-import-not-at-top,multiple-imports
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
  models = [(label, codec.Codec.load(m)) for label, m in _models(fv.model)]
  measurements = evaluate.run(paths, models, used,
                              progress=_progress_callback(len(paths)))
  all_curves = evaluate.curves(measurements)
  rates = evaluate.bd_rates(all_curves, fv.reference)
  print(f"{len(paths)} images; means over images:")
  print_evaluation(measurements, all_curves, rates, fv.reference)
  if fv.output:
    if fv.output.endswith(".csv"):
      data = evaluate.to_csv(measurements)
    else:
      data = _json_bytes(dict(
          images=paths, models={label: c.model_id for label, c in models},
          anchors={a.name: a.description for a in used}, curves=all_curves,
          bd_rate=dict(reference=fv.reference, **rates),
          measurements=[dataclasses.asdict(m) for m in measurements]))
    image_io.write_atomically(fv.output, data, force=fv.force)
  if fv.plot:
    descriptions = {a.name: a.description for a in used}
    image_io.write_atomically(
        fv.plot, evaluate.plot(all_curves, f"{len(paths)} images",
                               descriptions), force=fv.force)
  return 0


def define_bench(fv):
  flags.DEFINE_string("model", None, "Model name or SavedModel path to time "
                      "coding with; default: the shipped default model.",
                      flag_values=fv)
  flags.DEFINE_list("quality", [], "Quality levels to time, or `all` for "
                    "every level of the model (default: its default level).",
                    flag_values=fv)
  flags.DEFINE_integer("runs", 7, "Timed runs per image (after 2 warm-up "
                       "runs); the median is reported.", lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_integer("threads", 0, "TensorFlow intra- and inter-op threads "
                       "(0: TensorFlow's default, all cores).", lower_bound=0,
                       flag_values=fv)
  flags.DEFINE_integer("train_steps", 10, "Timed training steps per phase "
                       "(0: do not time training).", lower_bound=0,
                       flag_values=fv)
  for field in _BENCH_TRAIN_FIELDS:
    default = getattr(_train_config_class(), field)
    define = {int: flags.DEFINE_integer, bool: flags.DEFINE_bool}.get(
        type(default), flags.DEFINE_string)
    define(f"train_{field}", default, f"Training benchmark: {_TRAIN_HELP[field]}",
           flag_values=fv)
  flags.DEFINE_string("output", None, "Write the figures here as JSON.",
                      short_name="o", flag_values=fv)
  flags.DEFINE_bool("force", False, "Overwrite an existing --output.",
                    flag_values=fv)


_BENCH_TRAIN_FIELDS = ("model", "num_filters", "latent_channels", "delta",
                       "kernel_parameter", "mixed_precision", "batch_size",
                       "patch_size")


def _train_config_class():
  from tfc_sth.training import trainer  # pylint: disable=g-import-not-at-top
  return trainer.TrainConfig


def _range(spread):
  return (f"{spread['median_seconds']:.3f} s ({spread['min_seconds']:.3f}-"
          f"{spread['max_seconds']:.3f}) {spread['megapixels_per_second']:6.2f}"
          " Mpx/s")


def run_bench(fv, args):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if fv.threads:
    tf.config.threading.set_intra_op_parallelism_threads(fv.threads)
    tf.config.threading.set_inter_op_parallelism_threads(fv.threads)
  from tfc_sth.tools import bench  # pylint: disable=g-import-not-at-top
  from tfc_sth.runtime import codec, image_io, pretrained  # pylint: disable=g-import-not-at-top,multiple-imports
  paths = _images(args) if args else []
  if not paths and not fv.train_steps:
    raise UsageError("nothing to time: give images or --train_steps > 0")
  _check_outputs(fv, ("output",))
  report = {"threads": fv.threads or None, "coding": [], "training": None}
  if paths:
    model = codec.Codec.load(fv.model or pretrained.DEFAULT_MODEL)
    report["model"] = model.model_id
    if fv.quality == ["all"]:
      qualities = list(range(1, model.qualities + 1))
    else:
      try:
        qualities = [model.check_quality(float(q)) for q in fv.quality]
      except ValueError as e:  # Not a number, or a level it lacks.
        raise UsageError(f"--quality: {e}") from None
    print(f"coding with {model.model_id}, median of {fv.runs} runs "
          "(min-max):")
    for path, quality in itertools.product(paths, qualities or [None]):
      image, _ = image_io.read_png(path)
      figures = dict(image=path, **bench.coding(model, image, fv.runs,
                                                quality=quality))
      report["coding"].append(figures)
      print(f"  {os.path.basename(path)} {figures['width']}x"
            f"{figures['height']}, quality {figures['quality']:g}, "
            f"{figures['bpp']:.4f} bpp\n"
            f"    encode {_range(figures['encode'])}\n"
            f"    decode {_range(figures['decode'])}\n"
            f"    memory: {figures['peak_mb']:.0f} MB peak while coding, "
            f"{figures['resident_mb']:.0f} MB with the model loaded")
  if fv.train_steps:
    settings = {f: fv[f"train_{f}"].value for f in _BENCH_TRAIN_FIELDS}
    config = _train_config_class()(**settings)
    report["training"] = dict(
        config=settings,
        **bench.training(config, fv.train_steps))
    print(f"training {config.model} N={config.num_filters} "
          f"M={config.latent_channels} delta={config.delta} "
          f"{config.kernel_parameter}, batch {config.batch_size} of "
          f"{config.patch_size}x{config.patch_size}, median of "
          f"{fv.train_steps} steps per phase (min-max):")
    for phase in ("soft", "hard"):
      print(f"  {phase}: {_range(report['training'][phase])}")
  if fv.output:
    image_io.write_atomically(fv.output, _json_bytes(report), force=fv.force)
  return 0


def define_ablate(fv):
  from tfc_sth.training import ablation  # pylint: disable=g-import-not-at-top
  _define_train_config(fv, exclude=ablation.PER_RUN_FIELDS)
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
  from tfc_sth.tools import evaluate  # pylint: disable=g-import-not-at-top
  from tfc_sth.runtime import image_io  # pylint: disable=g-import-not-at-top
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
  report = ablation.report(fv.out_dir, measurements, seconds, base, lmbdas,
                           fv.variants)
  print_evaluation(measurements, report["curves"],
                   {k: v for k, v in report["bd_rate"].items()
                    if k != "reference"}, ablation.BASELINE)
  image_io.write_atomically(os.path.join(fv.out_dir, "results.json"),
                            _json_bytes(report), force=True)
  image_io.write_atomically(
      os.path.join(fv.out_dir, "rd.png"),
      evaluate.plot(report["curves"], f"Quantization ablation, "
                    f"{base.soft_steps}+{base.hard_steps} steps, "
                    f"{len(paths)} images", {"jpeg": "JPEG 4:2:0 (Pillow)"}),
      force=True)
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
  from tfc_sth.runtime import codec, image_io, pretrained  # pylint: disable=g-import-not-at-top,multiple-imports
  from tfc_sth.tools import fuzz  # pylint: disable=g-import-not-at-top
  _check_outputs(fv, ("output",))
  seeds = []
  for name in fv.model or [pretrained.DEFAULT_MODEL]:
    path = pretrained.resolve(name)
    model = codec.Codec(path)
    for image_path in _images(args):
      image, channels = image_io.read_png(image_path)
      for quality in sorted({1, model.qualities}):
        data = model.compress(image, channels, quality)
        model.decompress(data)  # Sets up oneDNN for the size.
        start = time.perf_counter()
        decoded, _ = model.decompress(data)
        seeds.append((path, data, decoded, time.perf_counter() - start))
  with tempfile.TemporaryDirectory() as directory:
    results, peak_mb = fuzz.run(
        seeds, fv.cases, directory, fv.seed, fv.timeout_factor,
        fv.timeout_slack, progress=_progress_callback(fv.cases))
  print(f"{fv.cases} mutated files of {len(seeds)} seeds; worker peak "
        f"memory {peak_mb:.0f} MB")
  print(f"{'model':24s}" + "".join(f" {o:>8s}" for o in fuzz.OUTCOMES) +
        "  slowest s")
  for model, row in fuzz.summary(results).items():
    print(f"{model:24s}" + "".join(f" {row[o]:8d}" for o in fuzz.OUTCOMES) +
          f"  {row['slowest_seconds']:9.2f}")
  failures = [c for c in results if c.outcome in ("garbage", "crash", "hang")]
  for case in failures[:20]:
    print(f"  {case.outcome}: {case.model} {case.mutation} {case.message}")
  if fv.output:
    image_io.write_atomically(fv.output, _json_bytes(dict(
        peak_mb=peak_mb, cases=[dataclasses.asdict(c) for c in results])),
                              force=fv.force)
  return EXIT_ERROR if failures else 0


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
