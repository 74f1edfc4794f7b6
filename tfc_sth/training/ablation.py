"""The quantization ablation: AUN, STE, mixed, annealing, STH, STH + SAUN,
at several λ.

Every variant trains the same architecture from the same seed and data for
the same total number of steps, under the same learning-rate schedule:

    aun                noise for soft + hard steps
    ste                straight-through rounding for soft + hard steps
    mixed              noise for the rate, rounding for the decoder
    anneal             soft rounding, its temperature raised over the run
    sth                noise for soft steps, then hard with the encoder frozen
    sth_saun_channel   sth, with a learned Δ per channel
    sth_saun_hyper     sth, with Δ predicted by the hyperprior

`aun` is not trained from scratch: it branches from the checkpoint at the
end of `sth`'s soft phase (the two are identical up to there), so AUN and
STH differ only in what the last steps do.

Layout of `out_dir` (rerunning resumes and skips what is done):

    lmbda_<λ>/<variant>/            a `tfc-sth train` run (config, checkpoints)
    lmbda_<λ>/<variant>/export/     its SavedModel
    lmbda_<λ>/<variant>/timing.json wall time of its training
    results.json                    evaluation, BD-rates against `aun`
"""

import dataclasses
import json
import math
import os
import time

from absl import logging

from tfc_sth import export
from tfc_sth.training import trainer

BASELINE = "aun"
PER_RUN_FIELDS = ("lmbda", "strategy", "delta_mode", "init_from")


@dataclasses.dataclass(frozen=True)
class Variant:
  strategy: str
  delta_mode: str = "none"
  branch_of: str = None  # Starts from the end of this variant's soft phase.


VARIANTS = {
    "sth": Variant("sth"),
    "aun": Variant("noise", branch_of="sth"),
    "ste": Variant("ste"),
    "mixed": Variant("mixed"),
    "anneal": Variant("anneal"),
    "sth_saun_channel": Variant("sth", delta_mode="channel"),
    "sth_saun_hyper": Variant("sth", delta_mode="hyper"),
}


def run_dir(out_dir, lmbda, variant):
  return os.path.join(out_dir, f"lmbda_{lmbda:g}", variant)


def export_dir(out_dir, lmbda, variant):
  return os.path.join(run_dir(out_dir, lmbda, variant), "export")


def train_all(out_dir, lmbdas, base, variants=tuple(VARIANTS), verbose=2):
  """Trains and exports every (λ, variant) not yet exported.

  `base` is a `TrainConfig` holding everything the variants share.
  Returns {(λ, variant): training seconds}, including earlier runs'.
  """
  # A branch needs its source trained first: VARIANTS lists sources first.
  ordered = [v for v in VARIANTS if v in variants]
  seconds = {}
  for lmbda in lmbdas:
    for name in ordered:
      variant = VARIANTS[name]
      directory = run_dir(out_dir, lmbda, name)
      timing = os.path.join(directory, "timing.json")
      if not os.path.exists(os.path.join(export_dir(out_dir, lmbda, name),
                                         "saved_model.pb")):
        init_from = None
        if variant.branch_of:
          init_from = os.path.join(run_dir(out_dir, lmbda, variant.branch_of),
                                   "checkpoints", "phase_0_end")
        config = dataclasses.replace(
            base, lmbda=lmbda, strategy=variant.strategy,
            delta_mode=variant.delta_mode, init_from=init_from)
        logging.info("Ablation: λ=%g, %s.", lmbda, name)
        start = time.perf_counter()
        model = trainer.train(config, directory, verbose=verbose)
        train_seconds = time.perf_counter() - start
        export.export(model, export_dir(out_dir, lmbda, name))
        with open(timing, "w") as f:
          json.dump({"train_seconds": train_seconds}, f)
      # Missing if a run was stopped between its export and this record.
      seconds[(lmbda, name)] = math.nan
      if os.path.exists(timing):
        with open(timing) as f:
          seconds[(lmbda, name)] = json.load(f)["train_seconds"]
  return seconds


def evaluate_all(out_dir, lmbdas, paths, variants=tuple(VARIANTS),
                 progress=None):
  """Measures every exported variant (one curve each, over λ) and JPEG."""
  from tfc_sth.tools import anchors, evaluate  # pylint: disable=g-import-not-at-top,multiple-imports
  from tfc_sth.runtime import codec  # pylint: disable=g-import-not-at-top
  # float32 transforms: figures that do not depend on the CPU.
  models = [(name, codec.Codec(export_dir(out_dir, lmbda, name),
                               codec.FLOAT32))
            for name in variants for lmbda in lmbdas]
  return evaluate.run(paths, models, [anchors.ANCHORS["jpeg"]], progress)


def report(out_dir, measurements, seconds, base, lmbdas,
           variants=tuple(VARIANTS)):
  """What the ablation found: curves, BD-rates against AUN, wall times."""
  from tfc_sth.tools import evaluate  # pylint: disable=g-import-not-at-top
  from tfc_sth.runtime import pretrained  # pylint: disable=g-import-not-at-top
  curves = evaluate.curves(measurements)
  return {
      "models": {name: {f"{lmbda:g}": pretrained.read_info(
          export_dir(out_dir, lmbda, name))["model_id"] for lmbda in lmbdas}
                 for name in variants},
      # What the variants share; λ, strategy and Δ mode are per run.
      "config": {k: v for k, v in dataclasses.asdict(base).items()
                 if k not in PER_RUN_FIELDS},
      "lmbdas": list(lmbdas),
      "variants": {name: dataclasses.asdict(VARIANTS[name])
                   for name in variants},
      "images": sorted({m.image for m in measurements}),
      "train_seconds": {name: {f"{lmbda:g}": seconds[(lmbda, name)]
                               for lmbda in lmbdas} for name in variants},
      "curves": curves,
      "bd_rate": dict(reference=BASELINE,
                      **evaluate.bd_rates(curves, BASELINE)),
      "bd_rate_vs_jpeg": evaluate.bd_rates(curves, "jpeg"),
  }


def write_report(out_dir, measurements, seconds, base, lmbdas,
                 variants=tuple(VARIANTS)):
  """Prints the comparison and writes it to `out_dir`: `report` as
  results.json and the curves as rd.png."""
  from tfc_sth.tools import evaluate  # pylint: disable=g-import-not-at-top
  from tfc_sth.runtime import image_io  # pylint: disable=g-import-not-at-top
  results = report(out_dir, measurements, seconds, base, lmbdas, variants)
  evaluate.print_table(measurements, results["curves"],
                       {k: v for k, v in results["bd_rate"].items()
                        if k != "reference"}, BASELINE)
  image_io.write_atomically(os.path.join(out_dir, "results.json"),
                            evaluate.json_bytes(results), force=True)
  image_io.write_atomically(
      os.path.join(out_dir, "rd.png"),
      evaluate.plot(results["curves"], f"Quantization ablation, "
                    f"{base.soft_steps}+{base.hard_steps} steps, "
                    f"{len(results['images'])} images",
                    {"jpeg": "JPEG 4:2:0 (Pillow)"}),
      force=True)
