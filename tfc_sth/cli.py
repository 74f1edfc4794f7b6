"""The `tfc-sth` command line: compress, decompress, train, evaluate, models.

    tfc-sth compress IN.png... [-o OUT] [--model NAME|PATH] [--verbose] [--force]
    tfc-sth decompress IN.tsth... [-o OUT.png] [--model PATH] [--force]
    tfc-sth train --train_glob=... --train_dir=... [--export_dir=...] ...
    tfc-sth evaluate IMAGE.png... [--model NAME|PATH] [-o RESULTS.json]
    tfc-sth models

Each subcommand has its own absl flags (`tfc-sth COMMAND --help`). Bad input
is reported as one line on stderr with a non-zero exit code; no traceback.
"""

import dataclasses
import os
import sys
import time

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
  from tfc_sth import bitstream, image_io, pretrained, training  # pylint: disable=g-import-not-at-top,multiple-imports
  return (bitstream.BitstreamError, image_io.ImageError,
          pretrained.ModelNotFoundError, training.ConfigError, OSError)


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


def run_compress(fv, paths):
  from tfc_sth import bitstream, codec, image_io, metrics, pretrained  # pylint: disable=g-import-not-at-top,multiple-imports
  model = codec.Codec.load(fv.model or pretrained.DEFAULT_MODEL)

  def step(path):
    image, channels = image_io.read_png(path)
    start = time.perf_counter()
    data = model.compress(image, channels)
    seconds = time.perf_counter() - start
    out = _output_path(path, fv.output, len(paths), bitstream.SUFFIX)
    image_io.write_atomically(out, data, force=fv.force)
    if fv.verbose:
      decoded, _ = model.decompress(data)
      bpp = 8 * len(data) / (image.shape[0] * image.shape[1])
      print(f"{path} -> {out}: {image.shape[1]}x{image.shape[0]}, "
            f"{len(data)} bytes, {bpp:.4f} bpp, "
            f"PSNR {metrics.psnr(image, decoded):.2f} dB, "
            f"encoded in {seconds:.3f} s")

  return _for_each(paths, step, fv)


def define_decompress(fv):
  _define_coding(fv, "+ .png")
  flags.DEFINE_string("model", None, "SavedModel to decode with, if the one "
                      "named in the file is not installed.", flag_values=fv)


def run_decompress(fv, paths):
  from tfc_sth import bitstream, codec, image_io, pretrained  # pylint: disable=g-import-not-at-top,multiple-imports
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
    image, channels = loaded[header.model_id].decompress(data)
    seconds = time.perf_counter() - start
    out = _output_path(path, fv.output, len(paths), ".png")
    image_io.write_atomically(out, image_io.encode_png(image, channels),
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
    "lmbda": "λ: rate-distortion trade-off, loss = bpp + λ·MSE (8-bit scale).",
    "quantization": "Strategy: noise (AUN), ste, mixed, or sth (soft then "
                    "hard).",
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
    "init_from": "Start a new run from this checkpoint (a checkpoint folder "
                 "or path, e.g. RUN/checkpoints/phase_0_end): weights, "
                 "optimizer state and step, then this run's schedule.",
}


def define_train(fv):
  from tfc_sth import architectures, saun, schedule, training  # pylint: disable=g-import-not-at-top,multiple-imports
  enums = {"model": sorted(architectures.ARCHITECTURES),
           "delta": list(saun.DELTA_MODES),
           "kernel_parameter": ["rdft", "variable"],
           "quantization": list(schedule.STRATEGIES)}
  definers = {int: flags.DEFINE_integer, float: flags.DEFINE_float}
  for field in dataclasses.fields(training.TrainConfig):
    help_text = _TRAIN_HELP[field.name]
    if field.name in enums:
      flags.DEFINE_enum(field.name, field.default, enums[field.name],
                        help_text, flag_values=fv)
    else:
      define = definers.get(field.type, flags.DEFINE_string)
      define(field.name, field.default, help_text, flag_values=fv)
  flags.DEFINE_string("train_dir", None, "Checkpoints, TensorBoard logs and "
                      "sample reconstructions; rerun to resume.",
                      flag_values=fv)
  flags.DEFINE_string("export_dir", None, "Where to write the SavedModel "
                      "after training.", flag_values=fv)
  flags.mark_flag_as_required("train_dir", flag_values=fv)


def run_train(fv, args):
  from tfc_sth import training  # pylint: disable=g-import-not-at-top
  if args:
    raise UsageError(f"unexpected arguments: {' '.join(args)}")
  if not (fv.train_glob or fv.dataset):
    raise UsageError("give --train_glob or --dataset")
  logging.set_verbosity(logging.INFO)
  config = training.TrainConfig(**{
      f.name: fv[f.name].value
      for f in dataclasses.fields(training.TrainConfig)})
  training.train(config, fv.train_dir, fv.export_dir,
                 verbose=1 if sys.stdout.isatty() else 2)
  return 0


def define_evaluate(fv):
  flags.DEFINE_string("model", None, "Model name or SavedModel path; "
                      "default: the shipped default model.", flag_values=fv)
  flags.DEFINE_string("output", None, "Write per-image results and means "
                      "as JSON here.", short_name="o", flag_values=fv)
  flags.DEFINE_bool("jpeg", True, "Compare with JPEG 4:2:0 (Pillow) at the "
                    "same bits per pixel.", flag_values=fv)
  flags.DEFINE_bool("force", False, "Overwrite an existing --output.",
                    flag_values=fv)


def run_evaluate(fv, paths):
  import json  # pylint: disable=g-import-not-at-top
  from tfc_sth import codec, evaluate, image_io, pretrained  # pylint: disable=g-import-not-at-top,multiple-imports
  if fv.output and os.path.exists(fv.output) and not fv.force:
    raise FileExistsError(f"{fv.output} exists (use --force to overwrite)")
  model = codec.Codec.load(fv.model or pretrained.DEFAULT_MODEL)
  evaluate.warm_up(model)
  results = []
  bar = _progress(len(paths))
  for i, path in enumerate(paths):
    results.append(evaluate.evaluate_image(model, path, with_jpeg=fv.jpeg))
    if bar is not None:
      bar.update(i + 1)
  means = evaluate.summarize(results)
  print(f"model {model.model_id} on {len(results)} images (means):")
  for key in ("bpp", "estimated_bpp", "psnr", "jpeg_psnr_at_bpp",
              "encode_seconds", "decode_seconds"):
    print(f"  {key:18s} {means[key]:.4f}")
  if fv.output:
    report = dict(model=model.model_id, model_path=model.path, means=means,
                  images=[r.__dict__ for r in results])
    image_io.write_atomically(
        fv.output, json.dumps(report, indent=2).encode(), force=fv.force)
  return 0


def define_models(fv):
  del fv


def run_models(fv, args):
  del fv, args
  from tfc_sth import pretrained  # pylint: disable=g-import-not-at-top
  for name, path in pretrained.available().items():
    info = pretrained.read_info(path)
    default = " (default)" if name == pretrained.DEFAULT_MODEL else ""
    print(f"{name}{default}\t{info['model_id']}\t{path}")
  return 0


COMMANDS = {
    "compress": (define_compress, run_compress, "IN.png..."),
    "decompress": (define_decompress, run_decompress, "IN.tsth..."),
    "train": (define_train, run_train, ""),
    "evaluate": (define_evaluate, run_evaluate, "IMAGE.png..."),
    "models": (define_models, run_models, ""),
}

_SUMMARIES = {
    "compress": "PNG images to .tsth files",
    "decompress": ".tsth files to PNG images",
    "train": "train a model (soft then hard, or a baseline) and export it",
    "evaluate": "bpp, PSNR and times through the bitstream, against JPEG",
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
    if args_help and not args:
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
