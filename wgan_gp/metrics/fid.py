"""FID and KID from Inception features, and a cache of dataset reference statistics.

FID (Heusel et al. 2017) is the Fréchet distance between Gaussians fitted to two
feature sets. KID (Bińkowski et al. 2018) is the unbiased MMD² under the cubic kernel
k(x, y) = (x·y/d + 1)³, averaged over random subsets; it is unbiased at small N,
where FID is not. numpy only: FID in float64; KID's dot products in the features' own
precision, its kernel values and sums in float64.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from wgan_gp.metrics import inception
from wgan_gp.user_cache import user_cache_dir


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean and (N−1)-normalised covariance, in float64, of features [N, D]."""
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or features.shape[0] < 2:
    raise ValueError(f"need features [N >= 2, D], got shape {features.shape}")
  return features.mean(axis=0), np.cov(features, rowvar=False)


def _drop_rounding_noise(eigenvalues: np.ndarray) -> np.ndarray:
  """Zeroes eigenvalues below numerical rank precision (numpy's matrix_rank cutoff).

  With N < D samples most covariance eigenvalues are 0 up to ±1e-15 of noise;
  their square roots (~1e-8 each, over thousands) would otherwise add up to an error.
  """
  cutoff = eigenvalues.size * np.finfo(np.float64).eps * max(eigenvalues.max(), 0.0)
  return np.where(eigenvalues > cutoff, eigenvalues, 0.0)


def _symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
  eigenvalues, eigenvectors = np.linalg.eigh(matrix)
  roots = np.sqrt(_drop_rounding_noise(eigenvalues))
  return (eigenvectors * roots) @ eigenvectors.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
  """tr(sqrtm(Σ1 Σ2)) through the symmetric form sqrt(Σ1) Σ2 sqrt(Σ1).

  Σ1 Σ2 is similar to that PSD matrix, so both have the same (real, non-negative)
  eigenvalues; `eigh` on the symmetric form avoids the complex parts and failures
  that a general sqrtm meets with the singular covariances of N < D samples.
  """
  root1 = _symmetric_sqrt(sigma1)
  product = root1 @ sigma2 @ root1
  eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)
  return float(np.sqrt(_drop_rounding_noise(eigenvalues)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  """‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 sqrtm(Σ1 Σ2)), in float64."""
  mu1, mu2, sigma1, sigma2 = (np.asarray(a, np.float64) for a in (mu1, mu2, sigma1, sigma2))
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
    raise ValueError("statistics have different dimensions")
  mean_term = float(np.sum((mu1 - mu2) ** 2))
  return mean_term + float(np.trace(sigma1) + np.trace(sigma2)) - 2.0 * trace_sqrt_product(
      sigma1, sigma2)


def fid_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
  """FID of two feature sets [N1, D], [N2, D]; exact low-rank form when N < D.

  With centred features A1, A2, Σi = AiᵀAi/(Ni−1), and the eigenvalues of Σ1Σ2 are
  the squared singular values of A1A2ᵀ/√((N1−1)(N2−1)); so tr sqrtm(Σ1Σ2) is that
  matrix's nuclear norm, an N1×N2 SVD instead of two D×D eigendecompositions.
  """
  a1 = np.asarray(features1, np.float64)
  a2 = np.asarray(features2, np.float64)
  if a1.ndim != 2 or a1.shape[0] < 2 or a2.shape[0] < 2 or a1.shape[1:] != a2.shape[1:]:
    raise ValueError(f"need features [N >= 2, D] of equal D, got {a1.shape} and {a2.shape}")
  if min(a1.shape[0], a2.shape[0]) >= a1.shape[1]:
    return frechet_distance(*feature_statistics(a1), *feature_statistics(a2))
  mu1, mu2 = a1.mean(axis=0), a2.mean(axis=0)
  a1, a2 = a1 - mu1, a2 - mu2
  n1, n2 = a1.shape[0] - 1, a2.shape[0] - 1
  nuclear_norm = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum()
  return float(np.sum((mu1 - mu2) ** 2) + np.sum(a1 ** 2) / n1 + np.sum(a2 ** 2) / n2
               - 2.0 * nuclear_norm / np.sqrt(n1 * n2))


def _cubic_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  # Dot products in the features' own precision (float32 features: as the reference,
  # at half the cost of float64); the cube and the sums in float64.
  base = np.asarray(x @ y.T, np.float64) / x.shape[1] + 1.0
  return base * base * base  # several times faster than ** 3 (a generic pow)


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
  """MMD² U-statistic: diagonal (self-similarity) terms left out of the within-set means."""
  m = x.shape[0]
  k_xx, k_yy, k_xy = _cubic_kernel(x, x), _cubic_kernel(y, y), _cubic_kernel(x, y)
  within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
  return float(within - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(features1: np.ndarray, features2: np.ndarray, *,
                              num_subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
  """KID as (mean, std) of the unbiased MMD² over random subsets.

  As the reference implementations: `num_subsets` draws of `subset_size` features
  from each side without replacement, the size capped at the smaller set; std is the
  spread of the subset estimates (ddof=0), not a standard error.
  """
  dtype = np.result_type(features1, features2, np.float32)
  x = np.asarray(features1, dtype)
  y = np.asarray(features2, dtype)
  m = min(subset_size, x.shape[0], y.shape[0])
  if m < 2:
    raise ValueError("KID needs at least 2 features on each side")
  rng = np.random.default_rng(seed)
  estimates = np.array([
      _unbiased_mmd2(x[rng.choice(x.shape[0], m, replace=False)],
                     y[rng.choice(y.shape[0], m, replace=False)])
      for _ in range(num_subsets)])
  return float(estimates.mean()), float(estimates.std())


# ----------------------------------------------------------------------------------
# Reference statistics of a dataset, cached on disk.


@dataclasses.dataclass(frozen=True)
class ReferenceStats:
  """What FID and KID need from one side: mean, covariance, and the features."""
  mu: np.ndarray          # [D] float64
  sigma: np.ndarray       # [D, D] float64
  features: np.ndarray | None  # [N, D] float32, for KID and precision/recall; None when
                               # read from statistics that have only mu and sigma

  @classmethod
  def from_features(cls, features: np.ndarray) -> "ReferenceStats":
    mu, sigma = feature_statistics(features)
    return cls(mu, sigma, np.asarray(features, np.float32))

  @property
  def num_images(self) -> int | None:
    return None if self.features is None else self.features.shape[0]


def save_stats(path: str | Path, stats: ReferenceStats) -> None:
  """Writes `mu` and `sigma` as pytorch-fid and TTUR do, plus `features` when known.

  Both read `mu` and `sigma` by name and ignore other arrays, so the file serves them
  as it is; `features` lets KID and precision/recall be computed from it too.
  """
  arrays = {"mu": stats.mu, "sigma": stats.sigma}
  if stats.features is not None:
    arrays["features"] = stats.features
  inception.save_npz_atomic(Path(path), arrays)


def load_stats(path: str | Path) -> ReferenceStats:
  """Statistics from an .npz with `mu` [D] and `sigma` [D, D] (pytorch-fid's, TTUR's or
  `save_stats`'), and `features` [N, D] where present."""
  with np.load(path, allow_pickle=False) as data:
    if "mu" not in data.files or "sigma" not in data.files:
      raise ValueError(f"{path} has no 'mu' and 'sigma' arrays (it holds {data.files}): "
                       "not a statistics file")
    mu, sigma = np.asarray(data["mu"], np.float64), np.asarray(data["sigma"], np.float64)
    features = np.asarray(data["features"], np.float32) if "features" in data.files else None
  d = mu.shape[0] if mu.ndim == 1 else -1
  if sigma.shape != (d, d) or (features is not None and features.shape[1:] != (d,)):
    raise ValueError(f"{path}: mu {mu.shape} and sigma {sigma.shape} do not fit together")
  return ReferenceStats(mu, sigma, features)


def _safe_file_name(text: str) -> str:
  return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def reference_stats(key: str,
                    images_fn: Callable[[], np.ndarray | Iterable[np.ndarray]],
                    cache_dir: str | Path | None = None, *,
                    extractor: "inception.InceptionFeatureExtractor | None" = None,
                    value_range: tuple[float, float] | None = None,
                    progress_label: str | None = None) -> ReferenceStats:
  """Loads the statistics for dataset `key`, or computes and saves them once.

  `key` names the dataset and its preprocessing (e.g. "celeba_crop108_64px_n10000");
  the cache file also carries the feature network's key, so changing weights or
  resize invalidates it. `images_fn()` is called only on a cache miss and returns
  NHWC images, as one array (then under a progress bar, with `progress_label`) or an
  iterable of batches.
  """
  extractor = extractor or inception.default_extractor()
  cache_dir = Path(cache_dir) if cache_dir is not None else user_cache_dir()
  path = cache_dir / f"refstats_{_safe_file_name(key)}__{extractor.cache_key}.npz"
  if path.is_file():
    with np.load(path, allow_pickle=False) as data:
      return ReferenceStats(data["mu"], data["sigma"], data["features"])
  images = images_fn()
  if hasattr(images, "shape"):  # one array
    features = extractor(images, value_range=value_range, progress_label=progress_label)
  else:
    features = np.concatenate([extractor(batch, value_range=value_range) for batch in images])
  stats = ReferenceStats.from_features(features)
  inception.save_npz_atomic(path, {"mu": stats.mu, "sigma": stats.sigma,
                                   "features": stats.features})
  return stats


def evaluate_against(reference: ReferenceStats, features: np.ndarray, *,
                     kid_subsets: int = 100, kid_subset_size: int = 1000,
                     seed: int = 0) -> dict[str, float]:
  """FID and KID of generated `features` against cached `reference` statistics."""
  mu, sigma = feature_statistics(features)
  kid, kid_std = kernel_inception_distance(reference.features, features,
                                           num_subsets=kid_subsets,
                                           subset_size=kid_subset_size, seed=seed)
  return {"fid": frechet_distance(reference.mu, reference.sigma, mu, sigma),
          "kid": kid, "kid_std": kid_std}
