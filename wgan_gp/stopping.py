"""Stopping a run cleanly: SIGTERM/SIGINT become a request to checkpoint and stop, and
in a multi-process run every process stops at the same step, and reads the same budget
fraction."""

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


class StepAgreement:
  """What every process must see alike after each step, in one collective per step:
  whether any process was told to stop (a signal), whether any process's clock says the
  budget is spent, and the budget fraction that the next step reads: process 0's.

  Each process measures the fraction on its own clock, and a replica that read another
  fraction near a schedule's knee, or at `ema_start`, would scale its update differently
  or start its EMA a step earlier, and the replicas would drift apart. So every process
  feeds the step process 0's fraction. The collective (a sum over all devices, to which
  only process 0's first device adds the fraction) runs behind the training step and its
  result is read one step later, so no step waits on it: in a multi-process run step t+1
  reads the fraction that process 0 measured after dispatching step t, and the first step
  after a start reads `fraction`, which the checkpoint gives every process alike. In one
  process nothing is exchanged and the step reads this process's clock as it starts.
  """

  def __init__(self, fraction: float = 0.0):
    self._multi_process = jax.process_count() > 1
    self._fraction = fraction  # the agreed fraction for the next step
    self._pending = None
    if self._multi_process:
      self._sum = jax.pmap(lambda values: jax.lax.psum(values, AXIS_NAME), axis_name=AXIS_NAME)
      self._sharding = jax.sharding.NamedSharding(device_mesh(),
                                                  jax.sharding.PartitionSpec(AXIS_NAME))

  def fraction(self, local_fraction: float) -> float:
    """The fraction that the next step reads: `local_fraction` (this process's clock) in
    a single-process run, process 0's from the last exchange in a multi-process one."""
    return self._fraction if self._multi_process else local_fraction

  def exchange(self, signalled: bool, budget_spent: bool,
               fraction: float) -> tuple[bool, bool]:
    """Sends this process's state after a step; returns (stop for a signal, stop for the
    budget), the same in every process at the same step."""
    global _stopped_by
    if not self._multi_process:
      return signalled, budget_spent
    signal_decided = budget_decided = False
    if self._pending is not None:
      total = np.asarray(self._pending.addressable_data(0))[0]
      signal_decided, budget_decided = bool(total[0] > 0), bool(total[1] > 0)
      self._fraction = float(total[2])
    if signal_decided and _stopped_by is None:
      _stopped_by = "a signal to another process"
    values = np.zeros((jax.local_device_count(), 3), np.float32)
    values[:, 0], values[:, 1] = float(signalled), float(budget_spent)
    if jax.process_index() == 0:
      values[0, 2] = fraction  # x + 0 + ... + 0 == x: every process gets it bit for bit
    self._pending = self._sum(jax.make_array_from_process_local_data(self._sharding, values))
    return signal_decided, budget_decided
