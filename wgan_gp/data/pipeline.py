"""From a decoded dataset to batches on the devices.

The stream of examples is the concatenation of per-epoch permutations, each seeded by
(seed, epoch). A position in that stream (examples consumed so far, all processes
together) is all a resumed run needs to continue exactly: no example repeated or
skipped within an epoch. Each training step consumes `n_critic × global_batch`
examples; process p reads only its slice of every global batch.
"""

import queue
import threading
from typing import Iterator

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS_NAME = "batch"  # the pmap axis; also the mesh axis of every device-sharded array


def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


class ExampleStream:
  """Maps positions in the endless shuffled stream to example indices."""

  def __init__(self, num_examples: int, seed: int):
    self.num_examples = num_examples
    self.seed = seed
    self._epoch = -1
    self._permutation = None

  def _permutation_of(self, epoch):
    if epoch != self._epoch:
      self._epoch, self._permutation = epoch, epoch_permutation(self.seed, epoch,
                                                                self.num_examples)
    return self._permutation

  def indices(self, position: int, count: int) -> np.ndarray:
    """Example indices at stream positions [position, position + count)."""
    out = np.empty(count, np.int64)
    filled = 0
    while filled < count:
      epoch, offset = divmod(position + filled, self.num_examples)
      take = min(count - filled, self.num_examples - offset)
      out[filled:filled + take] = self._permutation_of(epoch)[offset:offset + take]
      filled += take
    return out


def host_batches(examples: np.ndarray, seed: int, position: int, n_critic: int,
                 global_batch: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[np.ndarray]:
  """Yields this process's part of each step's input, [n_critic, local_batch, ...]."""
  if global_batch % process_count:
    raise ValueError(f"batch_size={global_batch} is not divisible by the {process_count} "
                     "processes: choose a multiple")
  local_batch = global_batch // process_count
  stream = ExampleStream(len(examples), seed)
  per_step = n_critic * global_batch
  while True:
    indices = stream.indices(position, per_step).reshape(n_critic, global_batch)
    local = indices[:, process_index * local_batch:(process_index + 1) * local_batch]
    # Sorted gathers read a memory-mapped cache sequentially; order is restored after.
    flat = local.reshape(-1)
    order = np.argsort(flat, kind="stable")
    gathered = np.empty((flat.size,) + examples.shape[1:], examples.dtype)
    gathered[order] = examples[flat[order]]
    yield gathered.reshape(local.shape + examples.shape[1:])
    position += per_step


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
