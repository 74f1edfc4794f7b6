"""Finding exported models: by name, by path, or by the id in a .tsth header.

Models are looked up in the shipped `models/` folder (installed with the
package as `tfc_sth.shipped_models`), then in the folders listed in the environment
variable `TFC_STH_MODELS` (separated by `os.pathsep`). Each model is a
SavedModel directory with a `model.json` beside `saved_model.pb`.
"""

import json
import os

DEFAULT_MODEL = "mean-scale-sth"
# Beside saved_model.pb: the model id, architecture, configuration and card.
INFO_FILE = "model.json"


class ModelNotFoundError(LookupError):
  """No model of that name, path or id."""


def shipped_models_dir():
  try:
    import tfc_sth.shipped_models  # pylint: disable=g-import-not-at-top
    return os.path.dirname(tfc_sth.shipped_models.__file__)
  except ImportError:  # Running from a source checkout, not installed.
    here = os.path.abspath(__file__)  # REPO/tfc_sth/runtime/pretrained.py
    return os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(here))), "models")


def search_path():
  dirs = [shipped_models_dir()]
  dirs += [d for d in os.environ.get("TFC_STH_MODELS", "").split(os.pathsep)
           if d]
  return dirs


def is_model_dir(path):
  return os.path.isfile(os.path.join(path, "saved_model.pb"))


def read_info(path):
  with open(os.path.join(path, INFO_FILE)) as f:
    return json.load(f)


def available():
  """{name: directory} of every model on the search path (first one wins)."""
  models = {}
  for directory in search_path():
    if not os.path.isdir(directory):
      continue
    for name in sorted(os.listdir(directory)):
      path = os.path.join(directory, name)
      if is_model_dir(path):
        models.setdefault(name, path)
  return models


def resolve(name_or_path=None):
  """A model directory from a name on the search path or a directory path."""
  name_or_path = name_or_path or DEFAULT_MODEL
  if is_model_dir(name_or_path):
    return name_or_path
  models = available()
  if name_or_path in models:
    return models[name_or_path]
  known = ", ".join(models) or "none installed"
  raise ModelNotFoundError(
      f"unknown model {name_or_path!r} (known models: {known})")


def find(model_id, extra=()):
  """The directory of the model whose id is `model_id`."""
  candidates = [p for p in extra if is_model_dir(p)]
  candidates += list(available().values())
  for path in candidates:
    if os.path.isfile(os.path.join(path, INFO_FILE)) and (
        read_info(path)["model_id"] == model_id):
      return path
  raise ModelNotFoundError(
      f"the file was written by model {model_id!r}, which is not installed "
      "(give its SavedModel with --model, or add its folder to TFC_STH_MODELS)")
