"""Trained runs read back from their workdirs: the config, the GAN and a checkpoint."""

import json
import os
from typing import NamedTuple

import jax
import ml_collections

from wgan_gp import gan_state
from wgan_gp.checkpoint import (CheckpointMismatchError, Checkpointer, DamagedCheckpointError,
                                abstract_like)
from wgan_gp.models import GAN
from wgan_gp.gan_state import GANState


class Run(NamedTuple):
  """A trained run as read back from its workdir."""
  config: ml_collections.ConfigDict
  gan: GAN  # outside pmap
  state: GANState  # host arrays
  step: int
  data_position: int


def load_run(workdir: str, step: int | None = None, best: bool = False) -> Run:
  """The config and a checkpoint (default: the latest; `best`: the best-FID one) of a run."""
  config_path = os.path.join(workdir, "config.json")
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"{workdir} holds no config.json: is it a wgan_gp workdir?")
  with open(config_path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  directory = os.path.join(workdir, "best" if best else "checkpoints")
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"no checkpoint in {directory}: the run saved none yet")
  checkpointer = Checkpointer(directory, keep=1, read_only=True)  # never deletes
  try:
    gan = gan_state.build_gan(config)
    abstract = abstract_like(jax.eval_shape(lambda: gan_state.create_train_state(config, gan)))
    try:
      if step is None:
        latest = checkpointer.restore_latest(abstract)
        if latest is None:
          raise FileNotFoundError(f"no checkpoint in {directory}: the run saved none yet")
        step, state, data = latest
      elif step not in checkpointer.all_steps():
        raise FileNotFoundError(f"no checkpoint {step} in {directory}; steps there: "
                                f"{sorted(checkpointer.all_steps())}")
      else:
        try:
          state, data = checkpointer.restore_checked(abstract, step)
        except DamagedCheckpointError as error:
          raise DamagedCheckpointError(
              f"checkpoint {step} in {directory} does not restore ({error}): pick another "
              f"--step of {sorted(checkpointer.all_steps())}, or omit it for the newest "
              "that restores") from None
    except CheckpointMismatchError as error:
      raise ValueError(f"{error}: the run's config.json does not match its checkpoints") from None
  finally:
    checkpointer.close()
  return Run(config, gan, state, step, data["position"])
