"""Standing statistics for the generator's BatchNorm (Brock et al. 2019, BigGAN).

The paper's generator normalises each layer by the statistics of its current batch, in
training and, by default, at sampling: a sample's pixels then depend on its batch-mates
and on the batch size. Standing statistics fix them once after training: each layer's
batch mean and variance, averaged over `NUM_BATCHES` batches of noise at the training
batch size (seeded, so the same generator always gets the same statistics). Sampling
with them gives every sample the normalisation training saw on average, as a function
of its own latent only. Training itself is unchanged.
"""

import dataclasses
from typing import Any

import jax
import numpy as np

NUM_BATCHES = 100  # × the training batch: 6,400 samples at the paper's 64
SEED = 0


@dataclasses.dataclass(frozen=True)
class StandingStats:
  """Fixed BatchNorm statistics for `GAN.generate(g_params, z, norm_stats=stats)`."""
  stats: Any  # {layer: {"mean", "var"}}, nested as the generator's modules; {} if no BatchNorm
  batch_size: int
  num_batches: int
  seed: int

  def describe(self) -> str:
    return f"standing ({self.num_batches} batches of {self.batch_size}, seed {self.seed})"


def describe(gan, g_params, stats: StandingStats | None, batch_size: int) -> str:
  """How the generator's samples are normalised, for records and logs: by `stats`, or
  (None) by the statistics of batches of `batch_size`."""
  if not has_batchnorm(gan, g_params):
    return "none (the generator has no BatchNorm)"
  return stats.describe() if stats is not None else f"batch ({batch_size} per batch)"


def has_batchnorm(gan, g_params) -> bool:
  """Whether the generator normalises by batch statistics at all (traced, not run)."""
  z = jax.ShapeDtypeStruct((2, gan.z_dim), np.float32)
  return bool(jax.tree.leaves(jax.eval_shape(gan.norm_batch_stats, g_params, z)))


def compute(gan, g_params, batch_size: int, num_batches: int = NUM_BATCHES,
            seed: int = SEED) -> StandingStats:
  """Each BatchNorm layer's batch mean and variance, averaged over `num_batches` batches
  of `batch_size` latents (batch b's noise: normal(fold_in(PRNGKey(seed), b)))."""
  if batch_size < 2 or num_batches < 1:
    raise ValueError(f"standing statistics need batches of at least 2 samples and at least "
                     f"one batch, got {num_batches} batches of {batch_size}")
  if not has_batchnorm(gan, g_params):
    return StandingStats({}, batch_size, num_batches, seed)
  key = jax.random.PRNGKey(seed)

  @jax.jit
  def batch_stats(params, index):
    z = jax.random.normal(jax.random.fold_in(key, index), (batch_size, gan.z_dim))
    return gan.norm_batch_stats(params, z)

  # One batch per call, summed on the host in float64 in a fixed order: a loop inside
  # XLA would keep XLA:CPU's convolutions on slow paths, and the sum is deterministic.
  total = None
  for index in range(num_batches):
    stats = jax.tree.map(lambda a: np.asarray(a, np.float64), batch_stats(g_params, index))
    total = stats if total is None else jax.tree.map(np.add, total, stats)
  mean = jax.tree.map(lambda t: (t / num_batches).astype(np.float32), total)
  return StandingStats(mean, batch_size, num_batches, seed)
