"""Orbax checkpoints of the GAN state and the data position.

Orbax writes each checkpoint into a temporary folder and renames it when complete, so
an interrupted save never leaves a checkpoint that looks valid but is not.
"""

import json
import logging
import os
from typing import Any, NamedTuple

import jax
import ml_collections
import orbax.checkpoint as ocp


class Checkpointer:
  """Keeps the last `keep` checkpoints of (state, data position) under `directory`."""

  def __init__(self, directory: str, keep: int):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
        item_names=("state", "data"),
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state, data_position: int, **metadata) -> None:
    """Starts an asynchronous save of a host (unreplicated) state.

    `metadata` (JSON values, e.g. the FID of a best checkpoint) is stored beside the
    data position and comes back from `metadata()`.
    """
    if step in self._manager.all_steps():
      return
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=ocp.args.JsonSave({"position": int(data_position), **metadata})))
    logging.info("Saving checkpoint at step %d to %s", step, self.directory)

  def metadata(self, step: int | None = None) -> dict:
    """The JSON saved with `step` (default: the latest): the data position and metadata."""
    step = self.latest_step() if step is None else step
    return self._manager.restore(step, args=ocp.args.Composite(data=ocp.args.JsonRestore()))[
        "data"]

  def restore(self, abstract_state, step: int | None = None):
    """Returns (state, data position) of `step` (default: the latest), shaped as `abstract_state`."""
    step = self.latest_step() if step is None else step
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=ocp.args.JsonRestore()))
    return restored["state"], restored["data"]["position"]

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def abstract_like(tree):
  """ShapeDtypeStructs on the default device: the target that restore fills in."""
  sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


class Run(NamedTuple):
  """A trained run as read back from its workdir."""
  config: ml_collections.ConfigDict
  gan: Any  # wgan_gp.models.GAN, outside pmap
  state: Any  # wgan_gp.train.GANState, host arrays
  step: int
  data_position: int


def load_run(workdir: str, step: int | None = None, best: bool = False) -> Run:
  """The config and a checkpoint (default: the latest; `best`: the best-FID one) of a run."""
  from wgan_gp import train  # the state's structure; train imports this module lazily
  config_path = os.path.join(workdir, "config.json")
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"{workdir} holds no config.json: is it a wgan_gp workdir?")
  with open(config_path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  directory = os.path.join(workdir, "best" if best else "checkpoints")
  checkpointer = Checkpointer(directory, keep=1_000_000)  # reading only: never deletes
  try:
    step = checkpointer.latest_step() if step is None else step
    if step is None or step not in checkpointer.all_steps():
      raise FileNotFoundError(f"no checkpoint {'' if step is None else step} in {directory}; "
                              f"steps there: {checkpointer.all_steps()}")
    gan = train.build_gan(config)
    abstract = abstract_like(jax.eval_shape(lambda: train.create_train_state(config, gan)))
    try:
      state, position = checkpointer.restore(abstract, step)
    except (ValueError, KeyError) as error:
      first_line = str(error).strip().splitlines()[0]
      raise ValueError(f"checkpoint {step} in {directory} does not match the run's config.json "
                       f"({first_line})") from None
  finally:
    checkpointer.close()
  return Run(config, gan, state, step, position)
