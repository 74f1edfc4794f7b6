"""Evaluating codecs through their real files: learned models and anchors.

Every measurement codes one image at one setting and measures the file that
a user would store: rates are the sizes of whole .tsth files (header
included), never the estimated rate, which is reported beside them to show
the coder's overhead. Anchors (`anchors.py`) are measured the same way.

A *curve* is one codec over its settings: an anchor over its quality sweep,
a model with quality levels over its levels, or single-rate models given the
same label (typically one per λ). A curve's points are means over the images
at each setting. Curves are compared by Bjøntegaard delta rate
(`metrics.bd_rate`); a single model, which has no curve, by its PSNR gain
over an anchor at the same rate, per image.
"""

import csv
import dataclasses
import io
import json
import math
import time

import numpy as np

from tfc_sth.runtime import image_io
from tfc_sth.tools import metrics

QUALITIES = ("psnr", "ms_ssim_db")


@dataclasses.dataclass
class Measurement:
  codec: str  # A model label or an anchor name.
  setting: str  # The model id (and level), or the anchor's setting.
  image: str
  width: int
  height: int
  num_bytes: int
  bpp: float
  psnr: float
  ms_ssim: float
  ms_ssim_db: float
  encode_seconds: float
  decode_seconds: float
  estimated_bpp: float = math.nan  # Learned models only.


NUMERIC = [f.name for f in dataclasses.fields(Measurement)
           if f.type in (int, float, "int", "float")]


def _measurement(codec, setting, path, image, num_bytes, decoded,
                 encode_seconds, decode_seconds, **extra):
  height, width = image.shape[:2]
  ms_ssim = metrics.ms_ssim(image, decoded)
  return Measurement(
      codec=codec, setting=str(setting), image=path, width=width,
      height=height, num_bytes=num_bytes,
      bpp=metrics.bits_per_pixel(num_bytes, height, width),
      psnr=metrics.psnr(image, decoded), ms_ssim=ms_ssim,
      ms_ssim_db=metrics.ms_ssim_db(ms_ssim), encode_seconds=encode_seconds,
      decode_seconds=decode_seconds, **extra)


def model_setting(codec, quality, refine_steps=0):
  """The setting a measurement records: the model id, the level of a model
  with several, and the refinement steps if any."""
  return codec.model_id + (f" q{quality:g}" if codec.qualities > 1 else "") + (
      f" refine {refine_steps}" if refine_steps else "")


def measure_model(codec, label, path, image, channels=3, quality=None,
                  refine_steps=0):
  """Compresses and decompresses `image` with a loaded `codec.Codec`.

  Times are of a second round trip: the first with a new image size also
  sets up oneDNN's kernels for it (unrefined: the first refined encode of a
  run also traces the search, a few seconds, which the warm-up would
  double). The estimated rate is the model's
  for g_a's latents, so only without refinement.
  """
  codec.decompress(codec.compress(image, channels, quality))
  start = time.perf_counter()
  data = codec.compress(image, channels, quality, refine_steps)
  encoded = time.perf_counter()
  decoded, _ = codec.decompress(data)
  decode_seconds = time.perf_counter() - encoded
  estimated_bpp = math.nan
  if not refine_steps:
    _, estimated_bits = codec.reconstruct(image, quality)
    estimated_bpp = estimated_bits / (image.shape[0] * image.shape[1])
  return _measurement(
      label, model_setting(codec, codec.check_quality(quality), refine_steps),
      path, image, len(data), decoded, encoded - start, decode_seconds,
      estimated_bpp=estimated_bpp)


def measure_anchor(anchor, setting, path, image):
  coded = anchor.code(image, setting)
  return _measurement(anchor.name, anchor.label(setting), path, image,
                      len(coded.data), coded.decoded, coded.encode_seconds,
                      coded.decode_seconds)


def run(paths, models, anchors, progress=None, refine_steps=0):
  """Measures every image with every model and every anchor setting.

  `models` is a list of (label, loaded `codec.Codec`); `anchors` a list of
  `anchors.Anchor`. `progress(done, total)` is called after each image.
  The models encode with `refine_steps` of latent refinement.
  """
  measurements = []
  for done, path in enumerate(paths, 1):
    image, channels = image_io.read_png(path)
    for label, codec in models:
      for quality in range(1, codec.qualities + 1):
        measurements.append(measure_model(codec, label, path, image,
                                          channels, quality, refine_steps))
    for anchor in anchors:
      for setting in anchor.settings:
        measurements.append(measure_anchor(anchor, setting, path, image))
    if progress:
      progress(done, len(paths))
  return measurements


def curves(measurements):
  """{codec: [point]}: per setting, the means over images, sorted by bpp."""
  groups = {}
  for m in measurements:
    groups.setdefault(m.codec, {}).setdefault(m.setting, []).append(m)
  result = {}
  for codec, settings in groups.items():
    points = []
    for setting, group in settings.items():
      point = {f: float(np.mean([getattr(m, f) for m in group]))
               for f in NUMERIC}
      point.update(setting=setting, images=len(group))
      points.append(point)
    result[codec] = sorted(points, key=lambda p: p["bpp"])
  return result


def bd_rates(all_curves, reference):
  """{codec: {quality: BD-rate % against `reference`}} for the other curves."""
  if reference not in all_curves:
    return {}
  ref = all_curves[reference]
  return {codec: {q: metrics.bd_rate([(p["bpp"], p[q]) for p in ref],
                                     [(p["bpp"], p[q]) for p in points])
                  for q in QUALITIES}
          for codec, points in all_curves.items() if codec != reference}


def gains_at_rate(measurements, model_label, anchor_name, quality="psnr"):
  """{model id: mean over images of quality - anchor's quality at its bpp}.

  The anchor's quality at a rate is interpolated on its sweep of that
  image; images whose rate lies outside the sweep are left out (NaN if all).
  """
  sweeps = {}
  for m in measurements:
    if m.codec == anchor_name:
      sweeps.setdefault(m.image, []).append((m.bpp, getattr(m, quality)))
  gains = {}
  for m in measurements:
    if m.codec == model_label and m.image in sweeps:
      anchor = metrics.interpolate_at_rate(sweeps[m.image], m.bpp)
      gains.setdefault(m.setting, []).append(getattr(m, quality) - anchor)
  return {setting: float(np.nanmean(g)) if not np.isnan(g).all()
          else math.nan for setting, g in gains.items()}


def to_csv(measurements):
  buffer = io.StringIO()
  writer = csv.DictWriter(
      buffer, [f.name for f in dataclasses.fields(Measurement)])
  writer.writeheader()
  for m in measurements:
    writer.writerow(dataclasses.asdict(m))
  return buffer.getvalue().encode()


def json_bytes(report):
  """A report as indented JSON, NaN and infinities as null: JSON has none."""

  def clean(value):
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


def print_table(measurements, all_curves, rates, reference):
  """Prints every point of the models' curves with its PSNR gain over each
  anchor at the same rate, then `rates`, the BD-rates against `reference`."""
  from tfc_sth.tools import anchors  # pylint: disable=g-import-not-at-top
  anchor_names = [c for c in all_curves if c in anchors.ANCHORS]
  models = [c for c in all_curves if c not in anchor_names]
  print(f"{'model':20s} {'id':36s} {'bpp':>7s} {'PSNR':>6s} {'MS-SSIM':>7s} "
        f"{'enc s':>6s} {'dec s':>6s}" + "".join(
            f" {'ΔPSNR ' + a:>10s}" for a in anchor_names))
  for label in models:
    gains = {a: gains_at_rate(measurements, label, a) for a in anchor_names}
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
            f"{_signed(rate['psnr'], '%'):>8s} "
            f"{_signed(rate['ms_ssim_db'], '%'):>8s}")


def write_report(paths, models, anchors, measurements, reference,
                 output=None, plot_path=None, force=False):
  """What `tfc-sth evaluate` reports of `run`'s measurements: a table of the
  means over `paths` and, where asked, every measurement in `output` (.csv,
  or .json with curves and BD-rates too) and an RD plot in `plot_path`."""
  all_curves = curves(measurements)
  rates = bd_rates(all_curves, reference)
  descriptions = {a.name: a.description for a in anchors}
  print(f"{len(paths)} images; means over images:")
  print_table(measurements, all_curves, rates, reference)
  if output:
    if output.endswith(".csv"):
      data = to_csv(measurements)
    else:
      data = json_bytes(dict(
          images=paths, models={label: c.model_id for label, c in models},
          anchors=descriptions, curves=all_curves,
          bd_rate=dict(reference=reference, **rates),
          measurements=[dataclasses.asdict(m) for m in measurements]))
    image_io.write_atomically(output, data, force=force)
  if plot_path:
    image_io.write_atomically(
        plot_path, plot(all_curves, f"{len(paths)} images", descriptions),
        force=force)


def plot(all_curves, title=None, descriptions=None):
  """PSNR and MS-SSIM (dB) against bpp, one line per curve, as PNG bytes.

  Curves named in `descriptions` (the anchors) are dashed and labelled by
  their description; the others (learned models) are solid.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top
  descriptions = descriptions or {}
  figure, axes = pyplot.subplots(1, 2, figsize=(12, 5), dpi=120)
  for axis, quality, name in zip(axes, QUALITIES,
                                 ("PSNR (dB)", "MS-SSIM (dB)")):
    for codec, points in all_curves.items():
      anchor = codec in descriptions
      axis.plot([p["bpp"] for p in points], [p[quality] for p in points],
                marker="o", markersize=3 if anchor else 6,
                linestyle="--" if anchor else "-",
                linewidth=1 if anchor else 2,
                label=descriptions.get(codec, codec))
    axis.set_xlabel("bits per pixel")
    axis.set_ylabel(name)
    axis.grid(alpha=.3)
  axes[0].legend(fontsize=8)
  if title:
    figure.suptitle(title)
  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png")
  pyplot.close(figure)
  return buffer.getvalue()
