"""What a run checks before it starts: its config, and the workdir it would resume."""

import json
import logging
import os

import jax

from wgan_gp import augment, losses, periodic
from wgan_gp.config import (canonical_config, check_ranges, crop_setting, get_dotted, to_json,
                            with_later_fields)
from wgan_gp.data import TOY_SOURCES, DataError, check_source, source_image_size
from wgan_gp.evaluators import check_metrics_available, parse_metrics
from wgan_gp.files import write_atomically
from wgan_gp.gan_state import build_gan, make_optimizers


class ConfigError(ValueError):
  """A config that cannot run; the message names the field and the fix."""


class IncompatibleCheckpointError(ValueError):
  """The workdir holds a checkpoint written under a different model/data config."""


def validate_config(config) -> None:
  """Fails fast, before any data is read or anything compiled."""
  try:
    check_values(config)
  except ValueError as error:
    raise ConfigError(str(error)) from None
  devices = jax.device_count()
  if config.batch_size % devices:
    raise ConfigError(f"config.batch_size={config.batch_size} is not divisible by the "
                      f"{devices} devices: set --config.batch_size to a multiple of {devices}")
  if config.loss.name not in losses.LOSSES:
    raise ConfigError(f"unknown loss.name {config.loss.name!r}; expected one of "
                      f"{', '.join(losses.LOSSES)}")
  try:
    build_gan(config)
    make_optimizers(config)
    if config.data.source not in TOY_SOURCES:
      check_metrics_available(parse_metrics(config.eval_metrics))
  except ValueError as error:
    raise ConfigError(str(error)) from None


def check_values(config) -> None:
  """Raises ValueError for an unknown data source (before a model or a loader blames
  something else), then for the first field outside its meaningful range."""
  check_source(config.data.source)
  check_ranges(config)
  crop_setting(config.data)  # one crop: pixels or a fraction
  if config.train_clock not in periodic.CLOCKS:
    raise ValueError(f"config.train_clock={config.train_clock!r}: expected one of "
                     f"{', '.join(periodic.CLOCKS)}")
  if augment.parse_policy(config.augment) and config.data.source in TOY_SOURCES:
    raise ValueError(f"config.augment={config.augment!r} augments images, and "
                     f"{config.data.source} is 2-D toy data: set --config.augment=''")
  if config.loss.drift_weight and config.loss.name != "wgan-gp":
    raise ValueError(f"config.loss.drift_weight applies to the wgan-gp loss, not "
                     f"{config.loss.name!r}: set --config.loss.drift_weight=0")
  consistency = {name: config.loss.get(f"consistency_{name}_weight", 0.0)
                 for name in ("real", "fake")}
  for name, weight in consistency.items():
    if weight < 0:
      raise ValueError(f"config.loss.consistency_{name}_weight={weight:g} is negative: set "
                       f"it to 0 (off) or more (e.g. 1)")
  if any(consistency.values()):
    if config.loss.name != "wgan-gp":
      raise ValueError(f"config.loss.consistency_*_weight applies to the wgan-gp loss, not "
                       f"{config.loss.name!r}: set both to 0")
    if config.data.source in TOY_SOURCES:
      raise ValueError(f"config.loss.consistency_*_weight transforms images, and "
                       f"{config.data.source} is 2-D toy data: set both to 0")
    if not augment.parse_policy(config.loss.consistency_augment,
                              "config.loss.consistency_augment"):
      raise ValueError("config.loss.consistency_augment is empty, so the consistency terms "
                       "would compare each image with itself: name transforms, e.g. "
                       "--config.loss.consistency_augment=flip,translation")
  consistency_every = config.loss.get("consistency_every", 1)
  if consistency_every != 1 and not any(consistency.values()):
    raise ValueError(f"config.loss.consistency_every={consistency_every} spaces the consistency "
                     f"terms, and both weights are 0: set --config.loss.consistency_every=1, "
                     f"or a consistency_real_weight or consistency_fake_weight above 0")
  if config.n_critic % consistency_every:
    raise ValueError(f"config.loss.consistency_every={consistency_every} must divide "
                     f"config.n_critic={config.n_critic}, so the updates with bCR are fixed at "
                     f"compile time: set --config.loss.consistency_every to a divisor of n_critic")
  gp_every = config.loss.get("gp_every", 1)
  if gp_every != 1 and config.loss.name != "wgan-gp":
    raise ValueError(f"config.loss.gp_every applies to the wgan-gp loss, not "
                     f"{config.loss.name!r}: set --config.loss.gp_every=1")
  if config.n_critic % gp_every:
    raise ValueError(f"config.loss.gp_every={gp_every} must divide config.n_critic="
                     f"{config.n_critic}, so the penalised critic updates are fixed at compile "
                     f"time: set --config.loss.gp_every to a divisor of n_critic")
  if config.get("ema_halflife_images", 0) and config.ema_start:
    raise ValueError(f"config.ema_halflife_images={config.ema_halflife_images:g} starts the EMA "
                     f"at the first step, and config.ema_start={config.ema_start:g} delays it: "
                     f"set --config.ema_start=0")


def check_workdir_path(workdir: str) -> None:
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f"--workdir={workdir} is a file: pass a folder (a new one, or a run's)")


def check_workdir(config, workdir: str, checkpointer,
                  change_budget: bool = False) -> dict | None:
  """Refuses to resume a checkpoint under settings it cannot continue with; returns the
  saved config.json (None for a fresh start).

  Refused: another model, data or optimiser (the state does not fit), another seed (the
  checkpoint carries its seed's random streams), another `data.holdout` (the critic would
  have trained on images now held out, and the data position would index another set),
  another `train_minutes` unless `change_budget` (it re-maps the budget schedules and a
  late EMA), and any change to a finished run (nothing would train under it, yet
  config.json would claim it). Other changes, e.g. a learning rate, apply from the
  resumed step on, and are logged.
  """
  path = os.path.join(workdir, "config.json")
  latest = checkpointer.latest_step()
  if latest is None or not os.path.exists(path):
    return None
  saved = _read_saved_config(path)
  differences = state_incompatibilities(saved, config)
  if saved.get("seed", config.seed) != config.seed:
    differences.append(f"seed: {saved['seed']!r} -> {config.seed!r}")
  old_holdout = get_dotted(saved, "data.holdout") or 0  # a run from before the field: none
  if old_holdout != config.data.holdout:
    differences.append(f"data.holdout: {old_holdout!r} -> {config.data.holdout!r}")
  if differences:
    raise IncompatibleCheckpointError(
        f"workdir {workdir} holds a checkpoint from an incompatible config "
        f"({'; '.join(differences)}): use a new --workdir or the original settings")
  old_minutes = saved.get("train_minutes", config.train_minutes)
  if old_minutes != config.train_minutes and not change_budget:
    budget = f"a {old_minutes:g}-minute budget" if old_minutes else "no time budget"
    raise IncompatibleCheckpointError(
        f"workdir {workdir} holds a run on {budget} and this command gives "
        f"--config.train_minutes={config.train_minutes:g}: the budget schedules and "
        "ema_start would read the fraction of the new budget; pass --change_budget to "
        f"resume under it (one line then says what changes), or --config.train_minutes="
        f"{old_minutes:g}")
  changes = setting_changes(saved, config, lambda: source_image_size(config.data))
  if changes and latest >= config.num_train_steps:
    raise IncompatibleCheckpointError(
        f"workdir {workdir} holds a finished run (step {latest}) and this command changes "
        f"its settings ({'; '.join(changes)}): nothing would train, and its config.json "
        "stays as it is; use a new --workdir, or a larger --config.num_train_steps to "
        "continue it with these settings")
  if changes:
    logging.warning("Resuming %s with changed settings, from the resumed step on: %s",
                    workdir, "; ".join(changes))
  return saved


def _read_saved_config(path: str) -> dict:
  """The config.json of the run to resume; one line if it is damaged."""
  try:
    with open(path, "rb") as f:
      saved = json.loads(f.read())
    if not isinstance(saved, dict):
      raise ValueError(f"a JSON {type(saved).__name__}, not an object")
  except ValueError as error:  # not JSON, not UTF-8, or no object
    raise IncompatibleCheckpointError(
        f"{path} is damaged ({error}): put the run's config back, or delete it to resume "
        "the checkpoint under this command's config") from None
  return saved


def save_config(config, workdir: str) -> None:
  """Writes config.json (process 0), atomically."""
  path = os.path.join(workdir, "config.json")
  if jax.process_index() == 0:
    write_atomically(path, to_json(config))


# Fields that determine the shapes in the training state: a checkpoint written under
# one value cannot be restored under another.
STATE_DEFINING_FIELDS = (
    "model.arch", "model.z_dim", "model.width", "model.mlp_depth", "model.critic_norm",
    "model.generator_norm", "data.image_size", "loss.name", "optim.generator.name",
    "optim.critic.name",
)


def state_incompatibilities(saved: dict, config) -> list[str]:
  """The state-defining fields where a saved config differs from `config`."""
  current = config.to_dict()
  differences = []
  for key in STATE_DEFINING_FIELDS:
    old, new = get_dotted(saved, key), get_dotted(current, key)
    if old != new:
      differences.append(f"{key}: {old!r} -> {new!r}")
  # It adds a channel to the critic's last block; a config from before the field: off.
  old, new = (bool(get_dotted(c, "model.minibatch_stddev")) for c in (saved, current))
  if old != new:
    differences.append(f"model.minibatch_stddev: {old!r} -> {new!r}")
  if _data_kind(saved) != _data_kind(current):
    differences.append(
        f"data.source: {get_dotted(saved, 'data.source')!r} -> {current['data']['source']!r}")
  return differences


def _data_kind(config_dict):
  source = get_dotted(config_dict, "data.source")
  return "toy" if source in TOY_SOURCES else "images"


def setting_changes(saved: dict, config, source_size=None) -> list[str]:
  """Every field where `config` differs from a saved config, as 'key: old -> new'.

  A field the saved config lacks (added to the code since) reads as the value that does
  what the code did before it (`config.LATER_FIELD_DEFAULTS`); other absent fields are
  not changes. Where the
  crop is written differently (pixels in one, a fraction of the short side in the other,
  as in runs from before data.crop_fraction), both go through `canonical_config` with the
  source's image size (`source_size()`, width and height, read only then): the same
  pixels of the same images are no change, and a real one shows in pixels.
  """
  saved = with_later_fields(saved)  # a field added since ran with its old behaviour
  current = config.to_dict()
  framing = ("crop_size", "crop_fraction")
  if any(get_dotted(saved, f"data.{k}") not in (None, current["data"][k]) for k in framing) \
      or get_dotted(saved, "data.crop_fraction") is None:
    size = None
    if source_size is not None and current["data"]["source"] not in TOY_SOURCES:
      try:
        size = source_size()
      except DataError:  # the data is missing: reading it says so, with the fix
        pass
    if size is not None or current["data"]["source"] in TOY_SOURCES:
      saved, current = canonical_config(saved, size), canonical_config(current, size)
  def flatten(d, prefix=""):
    for key, value in d.items():
      if isinstance(value, dict):
        yield from flatten(value, f"{prefix}{key}.")
      else:
        yield prefix + key, value
  old = dict(flatten(saved))
  return [f"{key}: {old[key]!r} -> {value!r}" for key, value in flatten(current)
          if key in old and old[key] != value]
