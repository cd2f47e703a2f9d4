"""wgan_gp/metrics/fid_infinity.py: FID against N and its 1/N extrapolation, on small
random features."""

import numpy as np
import pytest

from wgan_gp.metrics import fid, fid_infinity


def test_the_fit_recovers_the_intercept_and_slope_of_exact_inverse_n_data():
  sizes = [1000, 2000, 3000, 4000, 5000]
  values = [12.5 + 3.0e4 / n for n in sizes]
  fid_inf, slope = fid_infinity.fit_inverse_n(sizes, values)
  assert fid_inf == pytest.approx(12.5, rel=1e-9)
  assert slope == pytest.approx(3.0e4, rel=1e-9)
  # Noise that is symmetric about the line leaves a least-squares fit through it alone.
  noisy = np.array(values) + np.array([0.1, -0.1, 0.0, 0.1, -0.1])
  assert fid_infinity.fit_inverse_n(sizes, noisy)[0] == pytest.approx(12.5, abs=0.2)
  with pytest.raises(ValueError, match="2 or more distinct N"):
    fid_infinity.fit_inverse_n([5000, 5000], [20.0, 21.0])


def test_default_sizes_are_fifths_of_the_samples():
  assert fid_infinity.default_sizes(5000) == [1000, 2000, 3000, 4000, 5000]
  assert fid_infinity.default_sizes(15) == [3, 6, 9, 12, 15]
  assert fid_infinity.default_sizes(4) == [2, 3, 4]  # at least 2, no repeats


def test_fid_at_each_n_is_the_fid_of_the_seeded_subsets_against_the_reference():
  """Every per-N value is the mean FID (`fid.frechet_distance` of the subset's statistics)
  of the subsets that the documented draw picks; at N_max, the full set's; below and
  above the feature dimension (rank-deficient and full covariances)."""
  rng = np.random.default_rng(0)
  reference = fid.ReferenceStats.from_features(rng.normal(size=(300, 8)).astype(np.float32))
  features = rng.normal(0.2, 1.3, size=(60, 8)).astype(np.float32)
  curve = fid_infinity.fid_vs_n(reference, features, [5, 20, 60], num_subsets=3, seed=4)
  draw = np.random.default_rng(4)
  want, spread = [], []
  for n in (5, 20, 60):
    subsets = ([features] if n == 60 else
               [features[draw.choice(60, n, replace=False)] for _ in range(3)])
    values = [fid.frechet_distance(reference.mu, reference.sigma,
                                   *fid.feature_statistics(s)) for s in subsets]
    want.append(np.mean(values))
    spread.append(np.std(values))
  assert curve["n"] == [5, 20, 60] and curve["subsets"] == 3
  np.testing.assert_allclose(curve["fid"], want, rtol=1e-9)
  np.testing.assert_allclose(curve["fid_std"], spread, rtol=1e-6, atol=1e-12)
  assert curve["fid_std"][0] > 0 and curve["fid_std"][-1] == 0.0
  # The low-rank FID of the two feature sets, another implementation, agrees at N_max.
  assert curve["fid"][-1] == pytest.approx(
      fid.fid_from_features(reference.features, features), rel=1e-9)
  assert (curve["fid_infinity"], curve["slope"]) == pytest.approx(
      fid_infinity.fit_inverse_n(curve["n"], curve["fid"]), rel=1e-12)


def test_samples_of_the_reference_distribution_extrapolate_to_about_zero():
  """Features drawn from the reference's own Gaussian N(0, I) in D dimensions: FID_N is
  all bias, D/N from the mean and about D(D+1)/(4N) from the covariance
  (Σ(√λ − 1)² ≈ ‖S − I‖²/4), so the fit should find FID_∞ ≈ 0 and k ≈ D + D(D+1)/4."""
  rng = np.random.default_rng(1)
  d = 16
  reference = fid.ReferenceStats(np.zeros(d), np.eye(d), None)
  features = rng.normal(size=(4000, d))
  curve = fid_infinity.fid_vs_n(reference, features, num_subsets=20)
  assert curve["n"] == [800, 1600, 2400, 3200, 4000]
  assert curve["fid"][0] > 4 * curve["fid"][-1] > 0  # falls as 1/N
  assert abs(curve["fid_infinity"]) < 0.05 * curve["fid"][0]
  assert curve["slope"] == pytest.approx(d + d * (d + 1) / 4, rel=0.1)


def test_sizes_outside_the_features_are_refused():
  reference = fid.ReferenceStats(np.zeros(3), np.eye(3), None)
  features = np.zeros((10, 3))
  with pytest.raises(ValueError, match=r"must lie in \[2, 10\]"):
    fid_infinity.fid_vs_n(reference, features, [5, 11])
  with pytest.raises(ValueError, match=r"must lie in \[2, 10\]"):
    fid_infinity.fid_vs_n(reference, features, [1, 10])
