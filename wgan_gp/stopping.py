"""Stopping a run cleanly: SIGTERM/SIGINT become a request to checkpoint and stop, and
in a multi-process run every process stops at the same step."""

import logging
import signal
import threading

import jax
import numpy as np

from wgan_gp.parallel import AXIS_NAME, device_mesh

_stopped_by = None  # what made this process stop early, for its exit code


def stopped_by() -> str | None:
  """The signal (or 'a signal to another process') that stopped a run in this process."""
  return _stopped_by


class StopRequest:
  """Within the context, SIGTERM and SIGINT set `signal` (the signal's name) instead of
  killing the process; a second Ctrl-C stops at once."""

  def __init__(self, consequence: str = "saving a checkpoint after this step, then stopping"):
    self.signal = None
    self._consequence = consequence
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    global _stopped_by
    if self.signal is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.signal = _stopped_by = signal.Signals(signum).name
    logging.warning("%s received: %s", self.signal, self._consequence)

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


class StopAgreement:
  """Makes every process stop at the same step when any one of them is told to stop.

  Each step, the local stop flags are summed over all devices in a collective that runs
  behind the training step; its result is read one step later, so no step waits on
  it and all processes see the same answer at the same step.
  """

  def __init__(self, reason: str | None = None):
    self._reason = reason  # recorded for `stopped_by()` when another process stops this one
    self._multi_process = jax.process_count() > 1
    self._pending = None
    if self._multi_process:
      self._sum = jax.pmap(lambda flag: jax.lax.psum(flag, AXIS_NAME), axis_name=AXIS_NAME)
      self._sharding = jax.sharding.NamedSharding(device_mesh(),
                                                  jax.sharding.PartitionSpec(AXIS_NAME))

  def should_stop(self, local_stop: bool) -> bool:
    global _stopped_by
    if not self._multi_process:
      return local_stop
    decided = self._pending is not None and int(self._pending.addressable_data(0)[0]) > 0
    if decided and self._reason and _stopped_by is None:
      _stopped_by = self._reason
    flags = np.full((jax.local_device_count(),), int(local_stop), np.int32)
    self._pending = self._sum(jax.make_array_from_process_local_data(self._sharding, flags))
    return decided
