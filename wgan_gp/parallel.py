"""Where arrays live: the pmap axis (`AXIS_NAME`) and the moves between host and devices.

The state is replicated (a copy per device, stacked on a leading axis: pmap's layout),
each step's batch is sharded over the devices, and `prefetch_to_devices` stages the
next batches ahead of the step in a thread.
"""

import queue
import threading
from typing import Iterator

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS_NAME = "batch"  # the pmap axis; also the mesh axis of every device-sharded array


def device_mesh() -> Mesh:
  """A 1-D mesh over all devices of all processes, in pmap's order."""
  return Mesh(np.array(jax.devices()), (AXIS_NAME,))


def _device_sharding():
  return NamedSharding(device_mesh(), PartitionSpec(AXIS_NAME))


def shard_batch(batch):
  """Host batch [n_critic, local_batch, ...] -> device array [devices, n_critic, per_device, ...].

  Device d gets examples [d·per_device, (d+1)·per_device) of every critic batch, so
  the global batch is the same however many devices share it. `None` (data sampled
  on the device) passes through.
  """
  if batch is None:
    return None
  devices = jax.local_device_count()
  n_critic, local_batch = batch.shape[:2]
  if local_batch % devices:
    raise ValueError(f"the per-process batch of {local_batch} is not divisible by the "
                     f"{devices} local devices: set --config.batch_size to a multiple of "
                     f"{devices * jax.process_count()}")
  per_device = local_batch // devices
  x = batch.reshape(n_critic, devices, per_device, *batch.shape[2:]).swapaxes(0, 1)
  return jax.make_array_from_process_local_data(_device_sharding(), np.ascontiguousarray(x))


def replicate(tree):
  """A copy of every leaf on every device, stacked on a leading device axis (pmap's layout)."""
  sharding = _device_sharding()
  devices = jax.local_device_count()

  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_process_local_data(
        sharding, np.broadcast_to(x[None], (devices,) + x.shape).copy())

  return jax.tree.map(put, tree)


def unreplicate(tree):
  """The first local device's copy of a replicated tree, as host numpy arrays."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0))[0], tree)


def prefetch_to_devices(batches: Iterator, size: int = 2) -> Iterator:
  """Shards and stages up to `size` batches on the devices ahead of use, in a thread."""
  if size <= 0:
    yield from (shard_batch(b) for b in batches)
    return
  buffer: queue.Queue = queue.Queue(maxsize=size)
  stop = threading.Event()
  finished = object()

  def produce():
    try:
      for batch in batches:
        item = shard_batch(batch)
        while not stop.is_set():
          try:
            buffer.put(item, timeout=0.1)
            break
          except queue.Full:
            continue
        if stop.is_set():
          return
      buffer.put(finished)
    except BaseException as error:  # surfaced in the consumer
      buffer.put(error)

  thread = threading.Thread(target=produce, daemon=True, name="prefetch")
  thread.start()
  try:
    while True:
      item = buffer.get()
      if item is finished:
        return
      if isinstance(item, BaseException):
        raise item
      yield item
  finally:
    # Join rather than leave a daemon thread inside JAX at interpreter exit, which aborts.
    stop.set()
    thread.join()
