"""Trained generators shipped with the package, or exported from a run, for sampling.

A generator folder holds `generator.npz` (the EMA generator's parameters, one array
per '/'-joined parameter path) and `info.json` (the run's model and data config, its
training record and its FID, and the terms its weights come under). Named ones live
in `wgan_gp/weights/<name>/`:

    python -m wgan_gp.sample --pretrained=celeba64-cpu      # no data, no training
"""

import dataclasses
import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import traverse_util

from wgan_gp import models
from wgan_gp.files import atomic_path, write_atomically

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
PARAMS_FILE, INFO_FILE = "generator.npz", "info.json"


@dataclasses.dataclass(frozen=True)
class Generator:
  gan: models.GAN  # the pair's pure functions; only `generate` has parameters here
  params: Any  # the EMA generator's parameters
  info: dict  # info.json


def available() -> list[str]:
  """Names of the generators shipped in wgan_gp/weights/."""
  if not os.path.isdir(WEIGHTS_DIR):
    return []
  return sorted(n for n in os.listdir(WEIGHTS_DIR)
                if os.path.isfile(os.path.join(WEIGHTS_DIR, n, PARAMS_FILE)))


def resolve(name_or_path: str) -> str:
  """The folder of a shipped generator's name, or a folder given as a path."""
  if os.path.isfile(os.path.join(name_or_path, PARAMS_FILE)):
    return name_or_path
  folder = os.path.join(WEIGHTS_DIR, name_or_path)
  if os.path.sep not in name_or_path and os.path.isfile(os.path.join(folder, PARAMS_FILE)):
    return folder
  raise FileNotFoundError(
      f"no pretrained generator {name_or_path!r}: give one of {available()} or a folder "
      f"holding {PARAMS_FILE} and {INFO_FILE} (written by wgan_gp.pretrained.export)")


def export(folder: str, config, ema_g_params, info: dict) -> str:
  """Writes a run's EMA generator and `info` (plus its model/data config) to `folder`."""
  os.makedirs(folder, exist_ok=True)
  flat = traverse_util.flatten_dict(jax.device_get(ema_g_params), sep="/")
  with atomic_path(os.path.join(folder, PARAMS_FILE)) as tmp:  # ends in .npz, as savez wants
    np.savez_compressed(tmp, **{k: np.asarray(v, np.float32) for k, v in flat.items()})
  record = {"model": config.model.to_dict(),
            "data": {k: config.data[k] for k in ("image_size", "crop_size")}, **info}
  write_atomically(os.path.join(folder, INFO_FILE), json.dumps(record, indent=2) + "\n")
  return folder


def load(name_or_path: str) -> Generator:
  """A shipped or exported generator; its parameters are checked against its model."""
  folder = resolve(name_or_path)
  with open(os.path.join(folder, INFO_FILE)) as f:
    info = json.load(f)
  model_config = ml_collections.ConfigDict(info["model"])
  size = info["data"]["image_size"]
  gan = models.build(model_config, (size, size, 3))
  expected = traverse_util.flatten_dict(
      jax.eval_shape(lambda: gan.init(0))[0], sep="/")
  with np.load(os.path.join(folder, PARAMS_FILE), allow_pickle=False) as arrays:
    flat = {k: arrays[k] for k in arrays.files}
  if set(flat) != set(expected) or any(flat[k].shape != expected[k].shape for k in flat):
    raise ValueError(f"{folder}/{PARAMS_FILE} does not hold the parameters of the model "
                     f"its {INFO_FILE} describes: re-export it")
  params = traverse_util.unflatten_dict(flat, sep="/")
  return Generator(gan, params, info)
