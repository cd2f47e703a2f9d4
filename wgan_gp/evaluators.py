"""Evaluating a generator: image metrics (FID, KID, IS, precision/recall, SWD) or toy
mode coverage.

The same evaluation runs inside training (every `eval_every` steps and at the end)
and from `python -m wgan_gp.evaluate`. Samples come from fixed noise (seeded), so two
evaluations of the same parameters give the same numbers.
"""

import functools

import jax
import numpy as np

from wgan_gp import standing_stats, visualize
from wgan_gp.iteration import _to_unit_range  # the step's conversion of real images
from wgan_gp.metrics import fid, inception
from wgan_gp.metrics.inception_score import inception_score
from wgan_gp.metrics.precision_recall import precision_recall
from wgan_gp.metrics.swd import sliced_wasserstein_distance
from wgan_gp.metrics.toy import mode_coverage

# 'is': Inception Score (and is_std); 'pr': k-NN precision and recall. All but 'swd' run
# on the Inception network's outputs.
IMAGE_METRICS = ("fid", "kid", "is", "pr", "swd")
INCEPTION_METRICS = ("fid", "kid", "is", "pr")


def parse_metrics(text: str) -> tuple[str, ...]:
  metrics = tuple(m.strip() for m in text.split(",") if m.strip())
  unknown = [m for m in metrics if m not in IMAGE_METRICS]
  if unknown:
    raise ValueError(f"unknown eval_metrics {unknown}; expected a comma-separated subset of "
                     f"{','.join(IMAGE_METRICS)}")
  return metrics


def check_metrics_available(metrics: tuple[str, ...],
                            flag: str = "--config.eval_metrics") -> None:
  """Fails before training if Inception metrics are asked for but their weights are
  missing, or the Inception Score without the logits layer. `flag` is the option the
  message suggests for choosing other metrics."""
  if set(INCEPTION_METRICS) & set(metrics):
    try:
      inception.find_weights()
    except FileNotFoundError as error:
      raise ValueError(f"{error}; or evaluate with {flag}=swd, which needs no weights"
                       ) from None
  if "is" in metrics:
    # Loads (converting once) the weights the evaluation needs anyway.
    if not inception.default_extractor().has_logits:
      raise ValueError(inception.NO_LOGITS_MESSAGE)


def inception_metrics(metrics: tuple[str, ...], real, fake, extractor,
                      kid_subset_size: int = 1000) -> dict[str, float]:
  """The `INCEPTION_METRICS` named in `metrics` of `fake` against `real` (both
  `fid.ReferenceStats`; IS is `fake`'s own). KID and precision/recall need features on
  both sides, IS the extractor's logits."""
  results = {}
  if "fid" in metrics:
    results["fid"] = fid.frechet_distance(real.mu, real.sigma, fake.mu, fake.sigma)
  if ("kid" in metrics or "pr" in metrics) and (real.features is None or fake.features is None):
    raise ValueError("KID and precision/recall need the features of both sides, which "
                     "statistics with only mu and sigma do not have")
  if "kid" in metrics:
    results["kid"], results["kid_std"] = fid.kernel_inception_distance(
        real.features, fake.features, subset_size=kid_subset_size)
  if "pr" in metrics:
    results.update(precision_recall(real.features, fake.features))
  if "is" in metrics:
    results["is"], results["is_std"] = inception_score(extractor.logits(fake.features))
  return results


GENERATION_BATCH = 256  # samples per generator call in evaluations


def generate_from_noise(generate, g_params, z, batch_size: int = GENERATION_BATCH,
                        fill_key=None, norm_stats=None) -> np.ndarray:
  """`generate(g_params, ·)` over the rows of `z` in batches of `batch_size`, as numpy.

  With `norm_stats` (standing statistics: `generate(g_params, z, norm_stats)`) samples
  do not interact, and the last batch is padded with zeros: every call has one shape, so
  a sample's pixels do not depend on how many are drawn (XLA's rounding may differ
  between shapes).

  Without, the generator's BatchNorm normalises by the statistics of its batch, so a
  batch must hold genuine noise only (zero rows shift every sample beside them). With
  `fill_key` the last batch is filled up with extra noise drawn from it, whose outputs
  are dropped: one compiled shape for every batch. Without, the last batch runs at its
  own size.
  """
  outputs = []
  for start in range(0, len(z), batch_size):
    batch = z[start:start + batch_size]
    count = batch.shape[0]
    if count < batch_size and norm_stats is not None:
      batch = np.concatenate([batch, np.zeros((batch_size - count, *batch.shape[1:]),
                                              batch.dtype)])
    elif count < batch_size and fill_key is not None:
      fill = jax.random.normal(fill_key, (batch_size - count, *batch.shape[1:]), batch.dtype)
      batch = np.concatenate([batch, np.asarray(fill)])
    images = generate(g_params, batch) if norm_stats is None else generate(
        g_params, batch, norm_stats)
    outputs.append(np.asarray(images)[:count])
  return np.concatenate(outputs)


def generate_in_batches(generate, g_params, num_samples: int, z_dim: int, seed: int,
                        batch_size: int = GENERATION_BATCH, norm_stats=None) -> np.ndarray:
  """`num_samples` generator outputs for the noise of `seed`, as float32 in [-1, 1].
  Sample i's noise depends on (seed, i) only (JAX's partitionable Threefry)."""
  key = jax.random.PRNGKey(seed)
  noise = np.asarray(jax.random.normal(key, (num_samples, z_dim)))
  return generate_from_noise(generate, g_params, noise, batch_size,
                             fill_key=jax.random.fold_in(key, 1), norm_stats=norm_stats)


class ImageEvaluator:
  """FID, KID, IS, precision/recall (InceptionV3) and SWD of generated images against
  the run's dataset.

  The real side is a fixed, seeded subset of the dataset of the same size as the
  generated side; its Inception statistics are cached (keyed by the dataset's decoded
  cache, the subset and the feature network), so later evaluations cost only the
  generated side.
  """

  def __init__(self, source, gan, metrics: tuple[str, ...], num_samples: int, seed: int = 0):
    self.metrics = metrics
    self.num_samples = min(num_samples, len(source))
    self.seed = seed
    self.gan = gan
    self._source = source
    self._generate = jax.jit(gan.generate)

  @functools.cached_property
  def _real_indices(self) -> np.ndarray:
    rng = np.random.default_rng([self.seed, 2024])
    return np.sort(rng.permutation(len(self._source))[:self.num_samples])

  def _real_images(self) -> np.ndarray:
    return np.asarray(self._source.images[self._real_indices])

  def __call__(self, g_params, norm_stats=None) -> dict[str, float]:
    """The metrics of `g_params`'s samples, normalised by `norm_stats` (standing
    statistics) or, without, by batches of `GENERATION_BATCH`."""
    fake = generate_in_batches(self._generate, g_params, self.num_samples, self.gan.z_dim,
                               self.seed, norm_stats=norm_stats)
    results = {}
    if set(INCEPTION_METRICS) & set(self.metrics):
      extractor = inception.default_extractor()
      reference = fid.reference_stats(
          f"{self._source.identity}_n{self.num_samples}_seed{self.seed}", self._real_images,
          extractor=extractor, progress_label="Inception: real (once)")
      features = extractor(fake, value_range=(-1.0, 1.0),
                           progress_label="Inception: generated")
      results.update(inception_metrics(self.metrics, reference,
                                       fid.ReferenceStats.from_features(features), extractor))
    if "swd" in self.metrics:
      swd = sliced_wasserstein_distance(self._real_images(), fake, value_range=(-1.0, 1.0))
      results["swd"] = swd["swd_avg"]
    return results


def mean_critic_score(criticize, d_params, images: np.ndarray, batch_size: int) -> float:
  """The mean of `criticize(d_params, batch)` over the (non-empty) `images`, in batches of
  `batch_size`: one compiled shape, the last batch filled up with the set's first images,
  whose scores are dropped. Real images only in every batch, so that a critic that reads
  a batch statistic (`model.minibatch_stddev`) sees batches like the step's."""
  scores = []
  for start in range(0, len(images), batch_size):
    batch = np.asarray(images[start:start + batch_size])
    count = batch.shape[0]
    if count < batch_size:
      fill = np.asarray(images[np.arange(batch_size - count) % len(images)])
      batch = np.concatenate([batch, fill])
    scores.append(np.asarray(criticize(d_params, batch), np.float64).reshape(-1)[:count])
  return float(np.mean(np.concatenate(scores)))


class CriticScores:
  """The critic's mean score on the held-out images (`data.holdout`) and on as many fixed
  training images, and the gap between them (issue #35): a gap that grows over the run is
  the critic memorising its training images.

  The images go in as the step reads real ones (`iteration._to_unit_range`, no flip, no
  augmentation), in batches of `batch_size`: the run's, which a critic that reads a batch
  statistic was trained on.
  """

  def __init__(self, source, gan, batch_size: int):
    self._holdout = source.holdout_images()
    self._train = source.comparison_images()
    self._batch_size = batch_size
    self._criticize = jax.jit(lambda d_params, images: gan.criticize(
        d_params, _to_unit_range(images)))

  def __call__(self, d_params) -> dict[str, float]:
    train = mean_critic_score(self._criticize, d_params, self._train, self._batch_size)
    holdout = mean_critic_score(self._criticize, d_params, self._holdout, self._batch_size)
    return {"critic_score_train": train, "critic_score_holdout": holdout,
            "critic_score_gap": train - holdout}


class ToyEvaluator:
  """Mode coverage of the 2-D mixtures and the paper's Figure-1 view."""

  def __init__(self, source, gan, num_samples: int, seed: int = 0):
    self.source, self.gan, self.num_samples, self.seed = source, gan, num_samples, seed
    self._generate = jax.jit(gan.generate)
    self._criticize = jax.jit(gan.criticize)

  def _samples(self, g_params) -> np.ndarray:
    return generate_in_batches(self._generate, g_params, self.num_samples, self.gan.z_dim,
                               self.seed, batch_size=self.num_samples)

  def __call__(self, g_params) -> dict:
    """Modes captured and % high-quality samples (empty for the swiss roll)."""
    if self.source.modes is None:
      return {}
    return mode_coverage(self._samples(g_params), self.source.modes, self.source.mode_std)

  def describe_norm_stats(self, g_params) -> str:
    """The `eval/norm_stats` of its records: all samples are drawn in one batch."""
    return standing_stats.describe(self.gan, g_params, None, self.num_samples)

  def figure(self, g_params, d_params, path: str, title: str) -> np.ndarray:
    """Writes samples and real data over the critic's contours to `path`; returns RGB."""
    real = np.asarray(jax.jit(self.source.sample_batch, static_argnums=1)(
        jax.random.PRNGKey(self.seed + 1), 1000))
    return visualize.plot_toy(path, real, self._samples(g_params)[:1000],
                              lambda x: self._criticize(d_params, x), title=title)
