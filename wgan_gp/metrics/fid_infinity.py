"""FID against the number of generated images N, extrapolated to N = ∞.

FID's estimate is biased, and the bias falls as 1/N (Chong & Forsyth 2020, "Effectively
Unbiased FID and Inception Score and where to find them"): FID_N ≈ FID_∞ + k/N, with a
slope k that depends on the generator, so two generators' FID@N can rank differently at
another N. `fid_vs_n` scores FID at several N from one set of generated features (for
each N below the full set, the mean over seeded random subsets; at the full set, the set
itself), fits that line in 1/N by least squares, and reports FID_∞ (the intercept) and k.

Only the generated side is extrapolated. The reference statistics come from a fixed,
finite real set (the face protocol's: the 5,000 images of half A), whose own estimation
error biases FID too; extrapolating N does not remove it, so FID_∞ here is "FID at
infinite N against these reference statistics": comparable between generators scored
against the same reference, not with an FID_∞ against another reference set.

numpy only, float64. Each FID is exactly `fid.frechet_distance(μ_r, Σ_r, μ, Σ)` of the
subset's statistics, computed through √Σ_r once: tr √(Σ_r Σ) is the nuclear norm of
A·√Σ_r / √(n−1), A the subset's centred features, a min(n, D)-sized SVD per subset.
"""

from __future__ import annotations

import numpy as np

from wgan_gp.metrics import fid

DEFAULT_FRACTIONS = (0.2, 0.4, 0.6, 0.8, 1.0)  # of N_max: 1000, ..., 5000 at N_max = 5000
DEFAULT_SUBSETS = 5  # random subsets averaged at each N below N_max


def default_sizes(num_features: int, fractions=DEFAULT_FRACTIONS) -> list[int]:
  """The N to score at: `fractions` of `num_features`, rounded, at least 2, distinct."""
  return sorted({max(2, round(f * num_features)) for f in fractions})


def fit_inverse_n(sizes, values) -> tuple[float, float]:
  """(FID_∞, k): the least-squares line FID_N = FID_∞ + k/N through (N, FID_N)."""
  sizes, values = np.asarray(sizes, np.float64), np.asarray(values, np.float64)
  if sizes.shape != values.shape or len(np.unique(sizes)) < 2:
    raise ValueError(f"need FID at 2 or more distinct N to fit a line in 1/N, got N = "
                     f"{sizes.tolist()}")
  design = np.stack([np.ones_like(sizes), 1.0 / sizes], axis=1)
  (intercept, slope), *_ = np.linalg.lstsq(design, values, rcond=None)
  return float(intercept), float(slope)


class _AgainstReference:
  """FID of feature sets against fixed (μ_r, Σ_r), with √Σ_r computed once."""

  def __init__(self, mu: np.ndarray, sigma: np.ndarray):
    self.mu = np.asarray(mu, np.float64)
    self.sigma = np.asarray(sigma, np.float64)
    self.trace = float(np.trace(self.sigma))
    self.root = fid._symmetric_sqrt(self.sigma)

  def __call__(self, features: np.ndarray) -> float:
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] < 2 or features.shape[1] != self.mu.shape[0]:
      raise ValueError(f"need features [N >= 2, {self.mu.shape[0]}], got {features.shape}")
    mean = features.mean(axis=0)
    centred = features - mean
    n = features.shape[0] - 1
    # Σ = AᵀA/n: tr √(√Σ_r Σ √Σ_r) is the sum of the singular values of A√Σ_r/√n.
    nuclear = np.linalg.svd(centred @ self.root, compute_uv=False).sum() / np.sqrt(n)
    return float(np.sum((mean - self.mu) ** 2) + self.trace + np.sum(centred ** 2) / n
                 - 2.0 * nuclear)


def fid_vs_n(reference: fid.ReferenceStats, features: np.ndarray, sizes=None, *,
             num_subsets: int = DEFAULT_SUBSETS, seed: int = 0) -> dict:
  """FID of `features` [N_max, D] against `reference` (its μ and Σ) at each N of `sizes`
  (default: `default_sizes(N_max)`), and the 1/N fit through them.

  Below N_max, FID_N is the mean over `num_subsets` subsets drawn without replacement
  (seeded by `seed`); at N_max, the full set's FID. Returns {"n": [...], "fid": [...],
  "fid_std": [...] (spread of the subsets, ddof=0; 0 at N_max), "subsets": num_subsets,
  "fid_infinity": FID_∞, "slope": k}, FID in the units of FID_N = FID_∞ + k/N.
  """
  features = np.asarray(features)
  n_max = features.shape[0]
  sizes = default_sizes(n_max) if sizes is None else sorted({int(n) for n in sizes})
  if not sizes or sizes[0] < 2 or sizes[-1] > n_max:
    raise ValueError(f"sizes {sizes} must lie in [2, {n_max}] (the features given)")
  if num_subsets < 1:
    raise ValueError(f"num_subsets={num_subsets}: need at least 1")
  score = _AgainstReference(reference.mu, reference.sigma)
  rng = np.random.default_rng(seed)
  means, stds = [], []
  for n in sizes:
    draws = 1 if n == n_max else num_subsets
    values = [score(features if n == n_max else features[rng.choice(n_max, n, replace=False)])
              for _ in range(draws)]
    means.append(float(np.mean(values)))
    stds.append(float(np.std(values)))
  fid_infinity, slope = fit_inverse_n(sizes, means)
  return {"n": sizes, "fid": means, "fid_std": stds, "subsets": num_subsets,
          "fid_infinity": fid_infinity, "slope": slope}
