"""Trained generators shipped with the package, or exported from a run, for sampling.

A generator folder holds `generator.npz` (the EMA generator's parameters, one array
per '/'-joined parameter path), `norm_stats.npz` (its BatchNorm's standing statistics,
`wgan_gp.standing_stats`, one array per '/'-joined layer path and "mean"/"var", plus
`weights_sha256`: the `weights_hash` of the parameters they were computed for, checked on
load) and `info.json` (the run's model and data config, how the statistics were computed,
its training record and its FID, and the terms its weights come under). A folder is
written whole: built beside its name and renamed into place (`_write_folder`), so new
weights never sit beside old statistics. Named ones live in `wgan_gp/weights/<name>/`:

    python -m wgan_gp.sample --pretrained=celeba64-cpu      # no data, no training
"""

import dataclasses
import hashlib
import json
import logging
import os
import secrets
import shutil
import zipfile
import zlib
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import traverse_util

from wgan_gp import models, standing_stats
from wgan_gp.config import crop_setting
from wgan_gp.files import atomic_path, write_atomically

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
PARAMS_FILE, STATS_FILE, INFO_FILE = "generator.npz", "norm_stats.npz", "info.json"
# Exports from before standing statistics have no STATS_FILE: theirs are computed on
# load, at the run's batch size where info.json records its config ('run_config'), else
# at the paper's.
LEGACY_BATCH_SIZE = 64
HASH_KEY = "weights_sha256"  # STATS_FILE's entry: the weights_hash its statistics are for


@dataclasses.dataclass(frozen=True)
class Generator:
  gan: models.GAN  # the pair's pure functions; only `generate` has parameters here
  params: Any  # the EMA generator's parameters
  # For `gan.generate(params, z, norm_stats.stats)`; None if loaded with standing=False.
  norm_stats: standing_stats.StandingStats | None
  info: dict  # info.json

  def sample(self, z):
    """Images in [-1, 1] of latents z [N, z_dim], normalised by the standing statistics:
    a latent gives the same image whatever else is in z (up to rounding across N); without
    them (standing=False), by the statistics of z itself."""
    return self.gan.generate(self.params, z,
                             None if self.norm_stats is None else self.norm_stats.stats)


# Generators that left the package (git history keeps them; their records stay in
# experiments/faces64/): name -> (its folder at RETIRED_AT, the recipe that rebuilds it).
RETIRED_AT = "a7a55e9"
RETIRED = {
    "celeba64-cpu-round1": ("celeba64-cpu", "cpu_round1"),
    "celeba64-cpu2": ("celeba64-cpu2", "cpu_round2"),
    "celeba64-cpu3": ("celeba64-cpu3", "cpu_round3"),
    "celeba64-cpu3-140min": ("celeba64-cpu3-140min", "cpu_round3 --config.train_minutes=140"),
    "celeba64-cpu4": ("celeba64-cpu4", "cpu"),  # shipped as celeba64-cpu
    "celeba64-cpu4-140min": ("celeba64-cpu4-140min", "cpu --config.train_minutes=140"),
}


def _retired_hint(name: str) -> str:
  folder, recipe = RETIRED[name]
  return (f"{name!r} is no longer shipped: restore it from a git clone with `git archive "
          f"{RETIRED_AT} wgan_gp/weights/{folder} | tar -x -C /tmp` and pass "
          f"--pretrained=/tmp/wgan_gp/weights/{folder}, or rebuild it with "
          f"`python -m wgan_gp.main --config=configs/celeba64.py:{recipe} --workdir=RUN ...` "
          f"then `python -m wgan_gp.face_protocol --workdir=RUN --export=DIR`; shipped now: "
          f"{available()}")


def available() -> list[str]:
  """Names of the generators shipped in wgan_gp/weights/."""
  if not os.path.isdir(WEIGHTS_DIR):
    return []
  return sorted(n for n in os.listdir(WEIGHTS_DIR) if not n.startswith(".")  # half-written
                and os.path.isfile(os.path.join(WEIGHTS_DIR, n, PARAMS_FILE)))


def resolve(name_or_path: str) -> str:
  """The folder of a shipped generator's name, or a folder given as a path."""
  if os.path.isfile(os.path.join(name_or_path, PARAMS_FILE)):
    return name_or_path
  folder = os.path.join(WEIGHTS_DIR, name_or_path)
  if os.path.sep not in name_or_path and os.path.isfile(os.path.join(folder, PARAMS_FILE)):
    return folder
  if name_or_path in RETIRED:
    raise FileNotFoundError(_retired_hint(name_or_path))
  raise FileNotFoundError(
      f"no pretrained generator {name_or_path!r}: give one of {available()} or a folder "
      f"holding {PARAMS_FILE} and {INFO_FILE} (written by wgan_gp.pretrained.export)")


def weights_hash(params) -> str:
  """sha256 of a generator's parameters: their sorted '/'-joined names, shapes and float32
  bytes (what generator.npz holds, not its zip bytes, which carry timestamps)."""
  digest = hashlib.sha256()
  flat = traverse_util.flatten_dict(jax.device_get(params), sep="/")
  for name in sorted(flat):
    value = np.ascontiguousarray(np.asarray(flat[name], np.float32))
    digest.update(f"{name}\0{value.shape}\0".encode())
    digest.update(value.tobytes())
  return digest.hexdigest()


def _save_arrays(path: str, tree, weights_sha256: str | None = None) -> None:
  flat = {k: np.asarray(v, np.float32)
          for k, v in traverse_util.flatten_dict(jax.device_get(tree), sep="/").items()}
  if weights_sha256 is not None:  # a name no layer path has (those hold a '/')
    flat[HASH_KEY] = np.array(weights_sha256)
  with atomic_path(path) as tmp:  # ends in .npz, as savez wants
    np.savez_compressed(tmp, **flat)


def _load_arrays(path: str, expected, what: str) -> tuple[Any, str | None]:
  """(the tree saved at `path`, checked against the shapes of `expected`; its recorded
  weights hash, None if it has none)."""
  try:
    with np.load(path, allow_pickle=False) as arrays:
      flat = {k: arrays[k] for k in arrays.files}
  except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as error:
    raise ValueError(f"{path} is damaged or truncated ({error}): restore it, or re-export "
                     "the generator") from None
  recorded = flat.pop(HASH_KEY, None)
  recorded = None if recorded is None else str(recorded)
  expected = traverse_util.flatten_dict(expected, sep="/")
  if set(flat) != set(expected) or any(flat[k].shape != expected[k].shape for k in flat):
    raise ValueError(f"{path} does not hold the {what} of the model its {INFO_FILE} "
                     "describes: re-export it")
  return traverse_util.unflatten_dict(flat, sep="/"), recorded


def _write_info(path: str, info: dict) -> None:
  write_atomically(path, json.dumps(info, indent=2) + "\n")


def _write_folder(folder: str, writers: dict) -> None:
  """Writes a generator folder as one unit: a new folder beside it gets `folder`'s other
  files (copied) and each `writers[name](path)`'s file, then is renamed to `folder`; the
  old one is renamed aside first and deleted last. A failure leaves `folder` as it was
  and no half folder behind. A folder that exists must be a generator's (no other
  folder's files are copied, or replaced)."""
  folder = os.path.normpath(os.path.abspath(folder))
  parent, name = os.path.split(folder)
  exists = os.path.isdir(folder) and bool(os.listdir(folder))
  if exists and not os.path.isfile(os.path.join(folder, PARAMS_FILE)):
    raise ValueError(f"{folder} exists and holds no {PARAMS_FILE}: export into a new folder")
  os.makedirs(parent, exist_ok=True)
  token = secrets.token_hex(4)
  partial, old = (os.path.join(parent, f".{name}.{kind}-{token}") for kind in ("partial", "old"))
  try:
    os.mkdir(partial)
    if exists:
      for entry in os.listdir(folder):
        if entry not in writers:
          source = os.path.join(folder, entry)
          (shutil.copytree if os.path.isdir(source) else shutil.copy2)(
              source, os.path.join(partial, entry))
    for entry, write in writers.items():
      write(os.path.join(partial, entry))
    if os.path.isdir(folder):
      os.rename(folder, old)
    os.rename(partial, folder)
  except BaseException:
    if os.path.isdir(old) and not os.path.exists(folder):
      os.rename(old, folder)  # renamed aside, the new one not in place: put it back
    shutil.rmtree(partial, ignore_errors=True)
    raise
  shutil.rmtree(old, ignore_errors=True)


def export(folder: str, config, ema_g_params, info: dict) -> str:
  """Writes a run's EMA generator, its standing statistics (computed here, at the run's
  batch size, stamped with the weights' hash) and `info` (plus its model/data config) to
  `folder`, as one unit (`_write_folder`)."""
  size = config.data.image_size
  gan = models.build(config.model, (size, size, 3))
  stats = standing_stats.compute(gan, ema_g_params, config.batch_size)
  record = {"model": config.model.to_dict(),
            "data": _data_record(config.data),
            "standing_stats": _stats_record(stats), **info}
  _write_folder(folder, {
      PARAMS_FILE: lambda path: _save_arrays(path, ema_g_params),
      STATS_FILE: lambda path: _save_arrays(path, stats.stats, weights_hash(ema_g_params)),
      INFO_FILE: lambda path: _write_info(path, record)})
  return folder


def _data_record(data_config) -> dict:
  """The framing of the images the generator learned: the image size and the crop, in
  pixels or as a fraction of the short side (an export from before crop_fraction has
  crop_size alone, in pixels: `legacy_data_record`)."""
  crop_size, crop_fraction = crop_setting(data_config)
  return {"image_size": data_config.image_size, "crop_size": crop_size,
          "crop_fraction": crop_fraction}


def legacy_data_record(data: dict) -> dict:
  """An info.json "data" record with both crop fields: one from before crop_fraction
  cropped crop_size pixels, so it gets crop_fraction 0."""
  return {**data, "crop_fraction": data.get("crop_fraction", 0.0)}


def _stats_record(stats: standing_stats.StandingStats) -> dict:
  return {"file": STATS_FILE, "batch_size": stats.batch_size,
          "num_batches": stats.num_batches, "seed": stats.seed}


def legacy_batch_size(info: dict) -> int:
  """The batch size an export without standing statistics gets them at: its run's, where
  its info.json records the run's config, else the paper's."""
  return (info.get("run_config") or {}).get("batch_size") or LEGACY_BATCH_SIZE


def load(name_or_path: str, standing: bool = True) -> Generator:
  """A shipped or exported generator; its files are checked against its model, and its
  standing statistics against the hash of its weights (a statistics file from before the
  hash is used with a warning). `standing=False` leaves them out (norm_stats None: each
  batch is normalised by its own statistics), unread and uncomputed."""
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
  params, _ = _load_arrays(os.path.join(folder, PARAMS_FILE),
                           jax.eval_shape(lambda: gan.init(0))[0], "parameters")
  record = info.get("standing_stats")
  if not standing:
    norm_stats = None
  elif record is None:  # an export from before standing statistics
    norm_stats = standing_stats.compute(gan, params, legacy_batch_size(info))
  else:
    path = os.path.join(folder, record["file"])
    if not os.path.isfile(path):
      raise FileNotFoundError(f"{path} is missing ({INFO_FILE} names it): restore it, or "
                              "re-export the generator")
    z = jax.ShapeDtypeStruct((2, gan.z_dim), np.float32)
    stats, recorded = _load_arrays(path, jax.eval_shape(gan.norm_batch_stats, params, z),
                                   "BatchNorm statistics")
    _check_weights_hash(path, recorded, params)
    norm_stats = standing_stats.StandingStats(stats, record["batch_size"],
                                              record["num_batches"], record["seed"])
  return Generator(gan, params, norm_stats, info)


def _check_weights_hash(path: str, recorded: str | None, params) -> None:
  """Refuses statistics stamped for other weights; warns of unstamped (older) ones."""
  actual = weights_hash(params)
  if recorded is None:
    logging.warning("%s records no weights hash (written before it was): it is used as "
                    "it is, unchecked against the %s beside it; re-export the generator, or "
                    "stamp it with wgan_gp.pretrained.stamp_weights_hash", path, PARAMS_FILE)
  elif recorded != actual:
    raise ValueError(f"{path} holds the statistics of other weights than the {PARAMS_FILE} "
                     f"beside it (made for weights {recorded[:12]}, these are {actual[:12]}): "
                     "re-export the generator, or sample with --norm_stats=batch")


def add_standing_stats(name_or_path: str, batch_size: int | None = None) -> dict:
  """Computes and stores the standing statistics of a generator folder that has none
  (an export from before them), at its run's batch size (`batch_size`, by default its
  `legacy_batch_size`), the folder rewritten whole; returns its new info.json."""
  generator = load(name_or_path, standing=False)
  if "standing_stats" in generator.info:
    raise ValueError(f"{name_or_path} already has standing statistics: remove its "
                     f"{STATS_FILE} and their {INFO_FILE} entry to compute them again")
  batch_size = batch_size or legacy_batch_size(generator.info)
  stats = standing_stats.compute(generator.gan, generator.params, batch_size)
  info = {**generator.info, "standing_stats": _stats_record(stats)}
  _write_folder(resolve(name_or_path), {
      STATS_FILE: lambda path: _save_arrays(path, stats.stats, weights_hash(generator.params)),
      INFO_FILE: lambda path: _write_info(path, info)})
  return info


def stamp_weights_hash(name_or_path: str) -> str:
  """Adds the weights hash to a statistics file from before it (its values unchanged, the
  folder rewritten whole), for statistics known to be those of the weights beside them:
  how the shipped generators got theirs. Returns the hash."""
  generator = load(name_or_path)
  record = generator.info.get("standing_stats")
  if record is None:
    raise ValueError(f"{name_or_path} has no standing statistics to stamp: add them with "
                     "wgan_gp.pretrained.add_standing_stats")
  folder = resolve(name_or_path)
  path = os.path.join(folder, record["file"])
  with np.load(path, allow_pickle=False) as arrays:
    if HASH_KEY in arrays.files:
      raise ValueError(f"{path} already records its weights hash")
  digest = weights_hash(generator.params)
  _write_folder(folder, {record["file"]: lambda new: _save_arrays(
      new, generator.norm_stats.stats, digest)})
  return digest
