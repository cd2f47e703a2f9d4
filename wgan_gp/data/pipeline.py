"""From a decoded dataset to each process's host batches (`wgan_gp.parallel` puts them
on the devices).

The stream of examples is the concatenation of per-epoch permutations, each seeded by
(seed, epoch). A position in that stream (examples consumed so far, all processes
together) is all a resumed run needs to continue exactly: no example repeated or
skipped within an epoch. Each training step consumes `n_critic × global_batch`
examples; process p reads only its slice of every global batch.
"""

from typing import Iterator

import numpy as np


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
                 global_batch: int, process_index: int = 0, process_count: int = 1,
                 rows: np.ndarray | None = None) -> Iterator[np.ndarray]:
  """Yields this process's part of each step's input, [n_critic, local_batch, ...].

  `rows` (sorted rows of `examples`; None: all of them) are the examples the stream
  runs over: the training images of a run with a holdout (`wgan_gp.data.holdout`). They
  are chosen before the global batch is split among the processes: no process reads a
  row outside them.
  """
  if global_batch % process_count:
    raise ValueError(f"batch_size={global_batch} is not divisible by the {process_count} "
                     "processes: choose a multiple")
  local_batch = global_batch // process_count
  stream = ExampleStream(len(examples) if rows is None else len(rows), seed)
  per_step = n_critic * global_batch
  while True:
    indices = stream.indices(position, per_step).reshape(n_critic, global_batch)
    local = indices[:, process_index * local_batch:(process_index + 1) * local_batch]
    # Sorted gathers read a memory-mapped cache sequentially; order is restored after.
    flat = local.reshape(-1)
    if rows is not None:
      flat = rows[flat]  # sorted rows: the sorted gather below stays sequential
    order = np.argsort(flat, kind="stable")
    gathered = np.empty((flat.size,) + examples.shape[1:], examples.dtype)
    gathered[order] = examples[flat[order]]
    yield gathered.reshape(local.shape + examples.shape[1:])
    position += per_step
