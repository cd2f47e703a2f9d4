"""Several processes, one training run: JAX's multi-controller runtime.

Each process runs the same program on its local devices; `jax.distributed` connects
them, pmap spans all their devices, and each process feeds its slice of every global
batch. Process 0 writes logs, samples and config; all take part in checkpoint saves.
"""

import logging
import os
import socket
import sys
import threading
import time

import jax

from wgan_gp import exit_codes


class DistributedError(RuntimeError):
  """The processes of a multi-process run could not be connected."""


def _wait_for_coordinator(address: str, timeout_s: float) -> None:
  """Fails with a clear message if nothing listens at `address` within `timeout_s`.

  Without this, a process whose coordinator is unreachable is aborted by the runtime
  with a C++ stack trace.
  """
  host, _, port = address.rpartition(":")
  if not host or not port.isdigit():
    raise DistributedError(f"--coordinator_address={address!r} is not host:port")
  deadline = time.time() + timeout_s
  while True:
    try:
      with socket.create_connection((host, int(port)), timeout=2):
        return
    except OSError as error:
      if time.time() >= deadline:
        raise DistributedError(
            f"coordinator {address} unreachable after {timeout_s:.0f} s ({error}): start "
            "process 0 first and check --coordinator_address") from None
      time.sleep(0.5)


def _give_up(coordinator_address, num_processes, timeout_s) -> None:
  sys.stderr.write(
      f"error: not all {num_processes or 'the'} processes joined the run at "
      f"{coordinator_address or 'the detected coordinator'} within {timeout_s:.0f} s: start "
      "every process with the same --coordinator_address and --num_processes, or raise "
      "--distributed_timeout\n")
  sys.stderr.flush()
  os._exit(exit_codes.BAD_INPUT)  # the runtime is stuck in C++: no clean way out


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, timeout_s: int = 300) -> None:
  """Connects this process to the others.

  With no arguments, JAX detects the cluster (SLURM, Open MPI, TPU pods, ...). On CPU the
  processes exchange collectives through gloo.
  """
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if coordinator_address and process_id not in (None, 0):
    _wait_for_coordinator(coordinator_address, timeout_s)
  if coordinator_address and process_id == 0:
    logging.info("Coordinating %s processes at %s (waiting up to %d s for all)",
                 num_processes, coordinator_address, timeout_s)
  # The runtime's own timeout aborts the process from C++ ("another task died", exit 134);
  # ours fires first and says what to do.
  watchdog = threading.Timer(timeout_s, _give_up, (coordinator_address, num_processes,
                                                   timeout_s))
  watchdog.daemon = True
  watchdog.start()
  try:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id,
                               initialization_timeout=timeout_s + 30)
  except (RuntimeError, ValueError) as error:
    raise DistributedError(f"jax.distributed.initialize failed: {error}") from None
  finally:
    watchdog.cancel()
  logging.info("Process %d of %d, %d local devices, %d in all", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
