"""Trained generators shipped with the package, or exported from a run, for sampling.

A generator folder holds `generator.npz` (the EMA generator's parameters, one array
per '/'-joined parameter path), `norm_stats.npz` (its BatchNorm's standing statistics,
`wgan_gp.standing_stats`, one array per '/'-joined layer path and "mean"/"var") and
`info.json` (the run's model and data config, how the statistics were computed, its
training record and its FID, and the terms its weights come under). Named ones live in
`wgan_gp/weights/<name>/`:

    python -m wgan_gp.sample --pretrained=celeba64-cpu3     # no data, no training
"""

import dataclasses
import json
import os
import zipfile
import zlib
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import traverse_util

from wgan_gp import models, standing_stats
from wgan_gp.files import atomic_path, write_atomically

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
PARAMS_FILE, STATS_FILE, INFO_FILE = "generator.npz", "norm_stats.npz", "info.json"
# Exports from before standing statistics have no STATS_FILE: theirs are computed on
# load, at the paper's batch size (their info.json does not record the run's).
LEGACY_BATCH_SIZE = 64


@dataclasses.dataclass(frozen=True)
class Generator:
  gan: models.GAN  # the pair's pure functions; only `generate` has parameters here
  params: Any  # the EMA generator's parameters
  norm_stats: standing_stats.StandingStats  # for `gan.generate(params, z, norm_stats.stats)`
  info: dict  # info.json

  def sample(self, z):
    """Images in [-1, 1] of latents z [N, z_dim], normalised by the standing statistics:
    a latent gives the same image whatever else is in z (up to rounding across N)."""
    return self.gan.generate(self.params, z, self.norm_stats.stats)


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


def _save_arrays(path: str, tree) -> None:
  flat = traverse_util.flatten_dict(jax.device_get(tree), sep="/")
  with atomic_path(path) as tmp:  # ends in .npz, as savez wants
    np.savez_compressed(tmp, **{k: np.asarray(v, np.float32) for k, v in flat.items()})


def _load_arrays(path: str, expected, what: str) -> Any:
  """The tree saved at `path`, checked against the shapes of `expected`."""
  try:
    with np.load(path, allow_pickle=False) as arrays:
      flat = {k: arrays[k] for k in arrays.files}
  except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as error:
    raise ValueError(f"{path} is damaged or truncated ({error}): restore it, or re-export "
                     "the generator") from None
  expected = traverse_util.flatten_dict(expected, sep="/")
  if set(flat) != set(expected) or any(flat[k].shape != expected[k].shape for k in flat):
    raise ValueError(f"{path} does not hold the {what} of the model its {INFO_FILE} "
                     "describes: re-export it")
  return traverse_util.unflatten_dict(flat, sep="/")


def export(folder: str, config, ema_g_params, info: dict) -> str:
  """Writes a run's EMA generator, its standing statistics (computed here, at the run's
  batch size) and `info` (plus its model/data config) to `folder`."""
  os.makedirs(folder, exist_ok=True)
  size = config.data.image_size
  gan = models.build(config.model, (size, size, 3))
  stats = standing_stats.compute(gan, ema_g_params, config.batch_size)
  _save_arrays(os.path.join(folder, PARAMS_FILE), ema_g_params)
  _save_arrays(os.path.join(folder, STATS_FILE), stats.stats)
  record = {"model": config.model.to_dict(),
            "data": {k: config.data[k] for k in ("image_size", "crop_size")},
            "standing_stats": _stats_record(stats), **info}
  write_atomically(os.path.join(folder, INFO_FILE), json.dumps(record, indent=2) + "\n")
  return folder


def _stats_record(stats: standing_stats.StandingStats) -> dict:
  return {"file": STATS_FILE, "batch_size": stats.batch_size,
          "num_batches": stats.num_batches, "seed": stats.seed}


def load(name_or_path: str) -> Generator:
  """A shipped or exported generator; its files are checked against its model."""
  folder = resolve(name_or_path)
  try:
    with open(os.path.join(folder, INFO_FILE)) as f:
      info = json.load(f)
  except json.JSONDecodeError as error:
    raise ValueError(f"{os.path.join(folder, INFO_FILE)} is damaged or truncated ({error}): "
                     "restore it, or re-export the generator") from None
  model_config = ml_collections.ConfigDict(info["model"])
  size = info["data"]["image_size"]
  gan = models.build(model_config, (size, size, 3))
  params = _load_arrays(os.path.join(folder, PARAMS_FILE),
                        jax.eval_shape(lambda: gan.init(0))[0], "parameters")
  record = info.get("standing_stats")
  if record is None:  # an export from before standing statistics
    norm_stats = standing_stats.compute(gan, params, LEGACY_BATCH_SIZE)
  else:
    path = os.path.join(folder, record["file"])
    if not os.path.isfile(path):
      raise FileNotFoundError(f"{path} is missing ({INFO_FILE} names it): restore it, or "
                              "re-export the generator")
    z = jax.ShapeDtypeStruct((2, gan.z_dim), np.float32)
    stats = _load_arrays(path, jax.eval_shape(gan.norm_batch_stats, params, z),
                         "BatchNorm statistics")
    norm_stats = standing_stats.StandingStats(stats, record["batch_size"],
                                              record["num_batches"], record["seed"])
  return Generator(gan, params, norm_stats, info)


def add_standing_stats(name_or_path: str, batch_size: int) -> dict:
  """Computes and stores the standing statistics of a generator folder that has none
  (an export from before them), at its run's `batch_size`; returns its new info.json."""
  generator = load(name_or_path)
  if "standing_stats" in generator.info:
    raise ValueError(f"{name_or_path} already has standing statistics: remove its "
                     f"{STATS_FILE} and their {INFO_FILE} entry to compute them again")
  folder = resolve(name_or_path)
  stats = standing_stats.compute(generator.gan, generator.params, batch_size)
  _save_arrays(os.path.join(folder, STATS_FILE), stats.stats)
  info = dict(generator.info)
  info["standing_stats"] = _stats_record(stats)
  write_atomically(os.path.join(folder, INFO_FILE), json.dumps(info, indent=2) + "\n")
  return info
