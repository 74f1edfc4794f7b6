#!/usr/bin/env python3
"""The weights of an export, exported again by this version: its signatures
and its range coding tables, under a new model id when the tables changed.

    tools/reexport.py SOURCE TARGET

How the shipped model got the tables that reach 8σ without retraining.
Files written by SOURCE still decode with SOURCE only.
"""

import os
import sys

from tfc_sth import export
from tfc_sth.runtime import pretrained


def main(source_dir, target_dir):
  if os.path.exists(target_dir):
    sys.exit(f"{target_dir} exists: not replaced")
  card = pretrained.read_info(source_dir).get("card") or {}
  model_id = export.export(export.exported_model(source_dir), target_dir,
                           card=card)
  print(f"{target_dir}: {model_id}")


if __name__ == "__main__":
  main(*sys.argv[1:])
