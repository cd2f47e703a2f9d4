"""Images held out of training, to measure whether the critic memorises (issue #35).

`config.data.holdout` images of an image dataset are never trained on; each evaluation
records the critic's mean score on them and on as many fixed training images
(`wgan_gp.evaluators.CriticScores`). A gap (train minus held-out) that grows over the run
is the critic telling its training images from others of the same distribution.

Which images: the first `count` of one permutation of the decoded dataset's rows (its
files in sorted listing order, those that decode), drawn from the fixed `HOLDOUT_SEED`,
never from `config.seed`. Every arm and every seed of an experiment on the same data
holds out the same images, and a larger holdout contains a smaller one. The training
images the held-out ones are compared with are the next `count` of the same permutation.
The split is made after decoding, so the decoded cache is the same (and shared) with or
without a holdout; every process of a multi-process run makes the same split and reads
its shard of the training images only (`wgan_gp.data.pipeline.host_batches`).
"""

import numpy as np

from wgan_gp.data.errors import DataError

# The seed of the holdout permutation: a constant, so that the held-out images depend on
# the dataset alone (its number of decoded images), never on config.seed. Changing it
# changes which images every holdout run holds out.
HOLDOUT_SEED = 35


def _permutation(num_images: int) -> np.ndarray:
  return np.random.default_rng(HOLDOUT_SEED).permutation(num_images)


def check_holdout(num_images: int, count: int, batch_size: int = 1) -> None:
  """Raises DataError (one line, with the fix) unless holding out `count` of `num_images`
  leaves at least a batch of `batch_size` to train on."""
  if count < 0:
    raise DataError(f"--config.data.holdout={count} must be >= 0 (0: no holdout)")
  left = num_images - count
  if left < max(batch_size, 1):
    most = num_images - max(batch_size, 1)
    fix = (f"set --config.data.holdout to at most {most}" if most > 0 else
           "set --config.data.holdout=0")
    raise DataError(f"--config.data.holdout={count} leaves {max(left, 0)} of the {num_images} "
                    f"images to train on, fewer than a batch of {batch_size}: {fix} "
                    "(0: no holdout)")


def split_holdout(num_images: int, count: int,
                  batch_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """(train_indices, holdout_indices): disjoint, sorted int64 rows of a dataset of
  `num_images`, `count` of them held out by the fixed rule above. Raises DataError when
  fewer than `batch_size` images would be left to train on."""
  check_holdout(num_images, count, batch_size)
  permutation = _permutation(num_images)
  return np.sort(permutation[count:]), np.sort(permutation[:count])


def comparison_indices(num_images: int, count: int) -> np.ndarray:
  """The fixed training images the held-out ones are scored against: `count` of them (all
  the training images, if fewer), sorted; the same for every seed and arm."""
  return np.sort(_permutation(num_images)[count:2 * count])
