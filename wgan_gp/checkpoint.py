"""Orbax checkpoints of the GAN state and the data position.

Orbax writes each checkpoint into a temporary folder and renames it when complete, so
an interrupted save never leaves a checkpoint that looks valid but is not. The rest is
ours:
* a state with a NaN or inf is never saved (`NonFiniteStateError`), so every
  checkpoint is one a run can continue from;
* old checkpoints are renamed into `.deleting/` (atomic) before they are deleted, so a
  kill during clean-up never leaves half a checkpoint under a step's name;
* a save that fails (a full disk) removes its temporary folder before the error goes on;
* a resume takes the newest checkpoint that restores (`restore_latest`). One that does
  not (files missing or truncated, non-finite values) is named in a warning and moved
  to `damaged/`, never deleted, so that the run can write that step again.
"""

import logging
import os
import shutil
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

DELETING_DIR = ".deleting"  # old steps wait here (renamed whole) while being deleted
DAMAGED_DIR = "damaged"  # steps that failed to restore, kept for a look
TMP_MARKER = ".orbax-checkpoint-tmp"  # in the name of a save in progress


class NonFiniteStateError(FloatingPointError):
  """A state to be saved holds NaN or inf; nothing was written."""


class DamagedCheckpointError(ValueError):
  """No checkpoint (or not the one asked for) restores; the message says why."""


class CheckpointMismatchError(ValueError):
  """An intact checkpoint whose arrays do not match the state of this config."""


def nonfinite_fields(state) -> list[str]:
  """The top-level fields of `state` (e.g. 'g_params') that hold a NaN or inf."""
  bad = set()
  for path, leaf in jax.tree_util.tree_leaves_with_path(state):
    leaf = np.asarray(leaf)
    if np.issubdtype(leaf.dtype, np.inexact) or leaf.dtype.name == "bfloat16":
      if not np.isfinite(leaf.astype(np.float32, copy=False)).all():
        key = path[0]
        bad.add(str(getattr(key, "name", getattr(key, "key", getattr(key, "idx", key)))))
  return sorted(bad)


class Checkpointer:
  """Keeps the last `keep` checkpoints of (state, data position) under `directory`.

  `read_only` (evaluation, sampling) never deletes, moves or cleans up anything: a
  training run may be writing there at the same time.
  """

  def __init__(self, directory: str, keep: int, read_only: bool = False):
    self.directory = os.path.abspath(directory)
    self.keep = keep
    self.read_only = read_only
    self._is_primary = jax.process_index() == 0 and not read_only
    self._remove_partial_saves()  # of a run that was killed
    self._empty_deleting()
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=None if read_only else keep, create=not read_only,
            read_only=read_only, todelete_subdir=None if read_only else DELETING_DIR),
        item_names=("state", "data"),
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "data": ocp.JsonCheckpointHandler()},
    )

  def _remove_partial_saves(self) -> None:
    """Deletes the temporary folders of saves that were killed or failed."""
    if self._is_primary and os.path.isdir(self.directory):
      for name in os.listdir(self.directory):
        if TMP_MARKER in name:
          shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

  def _wait_for_save(self) -> None:
    """Waits for the save in flight. One that failed (a full disk, ...) raises here, after
    its partial folder is removed: the checkpoints before it stay as they were."""
    try:
      self._manager.wait_until_finished()
    except Exception:
      self._remove_partial_saves()
      raise

  def _empty_deleting(self) -> None:
    """Finishes the deletions that were under way (or killed) in `.deleting/`."""
    path = os.path.join(self.directory, DELETING_DIR)
    if self._is_primary and os.path.isdir(path):
      for name in os.listdir(path):
        shutil.rmtree(os.path.join(path, name), ignore_errors=True)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state, data_position: int, **metadata) -> None:
    """Starts an asynchronous save of a host (unreplicated) state.

    `metadata` (JSON values, e.g. the FID of a best checkpoint) is stored beside the
    data position and comes back from `metadata()`. Raises `NonFiniteStateError`, and
    writes nothing, if the state holds a NaN or inf.
    """
    if step in self._manager.all_steps():
      return
    bad = nonfinite_fields(state)
    if bad:
      raise NonFiniteStateError(
          f"non-finite values in {', '.join(bad)} at step {step}: training stopped and "
          f"this state was not checkpointed; {self.describe_latest()}: lower the learning "
          "rates, then rerun to resume from it")
    # The previous save, and the deletions it started, are complete once this returns.
    self._wait_for_save()
    self._empty_deleting()
    try:
      self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state),
          data=ocp.args.JsonSave({"position": int(data_position), **metadata})))
    except Exception:  # failed before its writes went to the background
      self._remove_partial_saves()
      raise
    logging.info("Saving checkpoint at step %d to %s", step, self.directory)

  def describe_latest(self) -> str:
    step = self.latest_step()
    return ("no checkpoint was saved" if step is None else
            f"the last good checkpoint is step {step} in {self.directory}")

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

  def check_fits(self, abstract_state, step: int) -> None:
    """Raises `CheckpointMismatchError` if `step` holds other arrays than `abstract_state`
    (another model or optimiser), `DamagedCheckpointError` if its metadata is unreadable."""
    try:
      saved = self._manager.item_metadata(step).state
      saved = ocp.tree.to_flat_dict(saved.tree if hasattr(saved, "tree") else saved, sep=".")
    except Exception as error:  # missing or garbled metadata: anything orbax raises
      raise DamagedCheckpointError(_describe(error)) from None
    if not saved:  # orbax reads a missing state/_METADATA as an empty tree
      raise DamagedCheckpointError("the state's metadata (state/_METADATA) is missing")
    wanted = ocp.tree.to_flat_dict(abstract_state, sep=".")
    differences = [f"{k}: {_shape(saved.get(k))} -> {_shape(wanted.get(k))}"
                   for k in sorted(set(saved) | set(wanted))
                   if _shape(saved.get(k)) != _shape(wanted.get(k))]
    if differences:
      raise CheckpointMismatchError(
          f"checkpoint {step} in {self.directory} holds other arrays than this config's "
          f"state ({'; '.join(differences[:3])}{' ...' if len(differences) > 3 else ''})")

  def restore_checked(self, abstract_state, step: int):
    """(state, data) of `step`, or `DamagedCheckpointError` naming why it does not restore:
    files missing or truncated, or non-finite values. `CheckpointMismatchError` for an
    intact checkpoint of another config."""
    self.check_fits(abstract_state, step)
    # Before the restore: TensorStore's threads can call back into orbax's closed event
    # loop while a failed read is still on its way to the except clause below.
    _ignore_late_reads_of_failed_restores()
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
      state, data = restored["state"], dict(restored["data"])
      data["position"]  # noqa: B018  (a data item without it is damaged)
    except Exception as error:  # truncated or missing files: whatever TensorStore raises
      raise DamagedCheckpointError(_describe(error)) from None
    bad = nonfinite_fields(state)
    if bad:
      raise DamagedCheckpointError(f"non-finite values in {', '.join(bad)}")
    return state, data

  def restore_latest(self, abstract_state, move_damaged: bool = False):
    """(step, state, data) of the newest checkpoint that restores; None if there is none.

    Each newer one that does not restore is named in a one-line warning; with
    `move_damaged` (a run that will write those steps again) it is moved to `damaged/`,
    and older steps beyond `keep` (an interrupted clean-up) are deleted. Raises
    `DamagedCheckpointError` if checkpoints exist but none restores, touching nothing.
    """
    damaged = []
    for step in sorted(self.all_steps(), reverse=True):
      try:
        state, data = self.restore_checked(abstract_state, step)
      except DamagedCheckpointError as error:
        damaged.append((step, str(error)))
        continue
      for bad_step, reason in damaged:
        if move_damaged:
          logging.warning("checkpoint %d in %s does not restore (%s): moved it to %s; "
                          "resuming from step %d", bad_step, self.directory, reason,
                          self._move_damaged(bad_step), step)
        else:
          logging.warning("checkpoint %d in %s does not restore (%s): using step %d",
                          bad_step, self.directory, reason, step)
      if move_damaged:
        if damaged:
          self._synchronize_and_reload()
        self._finish_clean_up()
      return step, state, data
    if damaged:
      raise DamagedCheckpointError(
          f"no checkpoint in {self.directory} restores ("
          + "; ".join(f"step {s}: {r}" for s, r in damaged)
          + "): move them out of the folder to start afresh, or use a new --workdir")
    return None

  def _move_damaged(self, step: int) -> str:
    target = os.path.join(self.directory, DAMAGED_DIR,
                          f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
    if self._is_primary:
      os.makedirs(os.path.dirname(target), exist_ok=True)
      os.rename(os.path.join(self.directory, str(step)), target)
    return target

  def _synchronize_and_reload(self) -> None:
    if jax.process_count() > 1:  # every process sees the folders process 0 moved
      ocp.multihost.sync_global_processes("wgan_gp_moved_damaged_checkpoints")
    self._manager.reload()

  def _finish_clean_up(self) -> None:
    """Deletes the steps older than the newest `keep`: those a killed clean-up left."""
    for step in sorted(self.all_steps())[:-self.keep]:
      logging.info("Deleting checkpoint %d in %s (beyond keep_checkpoints=%d)", step,
                   self.directory, self.keep)
      self._manager.delete(step)
    self._empty_deleting()

  def wait(self) -> None:
    self._wait_for_save()

  def close(self) -> None:
    self._wait_for_save()
    self._manager.close()
    self._empty_deleting()


def _from_orbax(error: BaseException | None) -> bool:
  """Whether `error`, or an error it was raised from, passed through orbax's code."""
  while error is not None:
    frame = error.__traceback__
    while frame is not None:
      if "orbax" in frame.tb_frame.f_code.co_filename:
        return True
      frame = frame.tb_next
    error = error.__cause__ or error.__context__
  return False


def _closed_loop_called_back_from_native_thread(error, traceback) -> bool:
  """'Event loop is closed' from a call_soon_threadsafe that no Python code made."""
  return (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"
          and traceback is not None
          and traceback.tb_frame.f_code.co_name == "call_soon_threadsafe"
          and traceback.tb_frame.f_code.co_filename.endswith("base_events.py"))


def _ignore_late_reads_of_failed_restores() -> None:
  """A failed restore leaves TensorStore reads in flight. Each ends later, in orbax's
  event loop, as an 'exception was never retrieved' log record, an unraisable exception
  of a collected coroutine, or 'Event loop is closed' (raised when TensorStore's threads
  call back into the closed loop, and printed through sys.excepthook, sometimes before
  the failed restore has raised): tracebacks on stderr about an error already reported
  in one line. Keep just those off the console; installed once, before any restore."""
  previous = sys.unraisablehook
  if getattr(previous, "wgan_gp_filter", False):
    return
  previous_excepthook = sys.excepthook

  def late_read(error) -> bool:
    # A read that fails inside TensorStore reaches asyncio with no orbax frame in its
    # traceback; TensorStore's errors name their spec.
    return (_from_orbax(error) or "tensorstore_spec" in str(error)
            or (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"))

  def hook(unraisable):
    if not late_read(unraisable.exc_value):
      previous(unraisable)

  def excepthook(kind, error, traceback):
    if not _closed_loop_called_back_from_native_thread(error, traceback):
      previous_excepthook(kind, error, traceback)

  def keep_record(record: logging.LogRecord) -> bool:
    error = record.exc_info[1] if record.exc_info else None
    return not (error is not None and late_read(error)
                and "never retrieved" in record.getMessage())

  hook.wgan_gp_filter = True
  sys.unraisablehook = hook
  sys.excepthook = excepthook
  logging.getLogger("asyncio").addFilter(keep_record)


def _shape(leaf):
  return None if leaf is None else (tuple(leaf.shape), np.dtype(leaf.dtype).name)


def _describe(error: BaseException) -> str:
  """The first line of an error, short enough for a one-line message."""
  lines = str(error).strip().splitlines()
  text = lines[0].split(". See full TensorStore details")[0] if lines else ""
  return f"{type(error).__name__}: {text[:200]}{'...' if len(text) > 200 else ''}"


def abstract_like(tree):
  """ShapeDtypeStructs on the default device: the target that restore fills in."""
  sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
