"""FID and KID math against closed forms and a naive KID; the reference-stats cache;
and FID's ordering on real CelebA images (real ≪ blurred ≪ noise)."""

import itertools

import numpy as np
import pytest

from conftest import CELEBA_TAR, requires_celeba_tar
from wgan_gp.metrics import fid, inception


# ----------------------------------------------------------------------------------
# FID.


def test_frechet_distance_of_diagonal_gaussians_matches_closed_form():
  rng = np.random.default_rng(0)
  mu1, mu2 = rng.normal(size=16), rng.normal(size=16)
  var1, var2 = rng.uniform(0.1, 3.0, 16), rng.uniform(0.1, 3.0, 16)
  expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
  got = fid.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
  assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_matches_scipy_sqrtm_on_full_covariances():
  linalg = pytest.importorskip("scipy.linalg", reason="scipy is only a cross-check")
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=(200, 12)), rng.normal(size=(200, 12)) @ rng.normal(size=(12, 12))
  (mu1, s1), (mu2, s2) = fid.feature_statistics(a), fid.feature_statistics(b)
  expected = (np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2)
              - 2 * np.real(np.trace(linalg.sqrtm(s1 @ s2))))
  assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_identical_statistics_give_zero_even_when_covariance_is_singular():
  # 20 samples in 64-d: rank-19 covariance, as with few images and 2048-d features.
  features = np.random.default_rng(2).normal(size=(20, 64))
  mu, sigma = fid.feature_statistics(features)
  assert abs(fid.frechet_distance(mu, sigma, mu, sigma)) < 1e-9 * np.trace(sigma)


def test_low_rank_fid_from_features_equals_covariance_form():
  # N < D takes the nuclear-norm path; it must agree with the D×D eigh path.
  rng = np.random.default_rng(10)
  a = np.maximum(rng.normal(size=(30, 80)) @ rng.normal(size=(80, 80)), 0)
  b = np.maximum(rng.normal(0.2, 1.0, size=(25, 80)) @ rng.normal(size=(80, 80)), 0)
  covariance_form = fid.frechet_distance(*fid.feature_statistics(a), *fid.feature_statistics(b))
  assert fid.fid_from_features(a, b) == pytest.approx(covariance_form, rel=1e-9)
  assert abs(fid.fid_from_features(a, a)) < 1e-9 * fid.fid_from_features(a, b)


def test_frechet_distance_is_symmetric():
  rng = np.random.default_rng(3)
  a, b = rng.normal(size=(30, 40)), rng.normal(1.0, 2.0, size=(25, 40))
  assert fid.fid_from_features(a, b) == pytest.approx(fid.fid_from_features(b, a), rel=1e-9)


# ----------------------------------------------------------------------------------
# KID.


def _naive_unbiased_mmd2(x, y):
  d = x.shape[1]
  k = lambda u, v: (float(np.dot(u, v)) / d + 1.0) ** 3  # noqa: E731
  m = len(x)
  xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2))
  yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2))
  xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
  return (xx + yy) / (m * (m - 1)) - 2 * xy / m ** 2


def test_kid_on_whole_sets_matches_naive_double_sum():
  rng = np.random.default_rng(4)
  x, y = rng.normal(size=(15, 6)), rng.normal(0.3, 1.2, size=(15, 6))
  # Subset size 1000 is capped at 15: every subset is all of both sets.
  mean, std = fid.kernel_inception_distance(x, y, num_subsets=3)
  assert mean == pytest.approx(_naive_unbiased_mmd2(x, y), rel=1e-12)
  assert std == pytest.approx(0.0, abs=1e-12)


def test_kid_subsets_average_the_naive_estimate_over_the_same_draws():
  rng = np.random.default_rng(5)
  x, y = rng.normal(size=(40, 5)), rng.normal(size=(50, 5))
  mean, std = fid.kernel_inception_distance(x, y, num_subsets=4, subset_size=10, seed=7)
  draws = np.random.default_rng(7)
  naive = [_naive_unbiased_mmd2(x[draws.choice(40, 10, replace=False)],
                                y[draws.choice(50, 10, replace=False)]) for _ in range(4)]
  assert mean == pytest.approx(np.mean(naive), rel=1e-10)
  assert std == pytest.approx(np.std(naive), rel=1e-8)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
  rng = np.random.default_rng(6)
  kid = lambda x, y: fid.kernel_inception_distance(x, y, num_subsets=10, subset_size=200)  # noqa: E731
  same, _ = kid(rng.normal(size=(300, 8)), rng.normal(size=(300, 8)))
  different, _ = kid(rng.normal(size=(300, 8)), rng.normal(0.5, 1.0, size=(300, 8)))
  assert abs(same) < 0.01 < different


# ----------------------------------------------------------------------------------
# Reference statistics cache.


class _FakeExtractor:
  """Deterministic 'features' (pixel means and squares), so the cache test needs no weights."""
  cache_key = "fake-extractor"

  def __call__(self, images, value_range=None):
    flat = np.asarray(images, np.float32).reshape(len(images), -1)[:, :8]
    return np.concatenate([flat, flat ** 2], axis=1)


def test_reference_stats_computed_once_then_loaded(tmp_path):
  calls = []

  def images_fn():
    calls.append(1)
    rng = np.random.default_rng(8)
    return (rng.integers(0, 256, (10, 4, 4, 3), dtype=np.uint8) for _ in range(3))

  first = fid.reference_stats("toy/set:1", images_fn, tmp_path, extractor=_FakeExtractor())
  second = fid.reference_stats("toy/set:1", images_fn, tmp_path, extractor=_FakeExtractor())
  assert len(calls) == 1
  assert first.num_images == 30 and first.features.dtype == np.float32
  for a, b in ((first.mu, second.mu), (first.sigma, second.sigma),
               (first.features, second.features)):
    np.testing.assert_array_equal(a, b)
  [cached] = list(tmp_path.iterdir())  # one file, no temp files left behind
  assert cached.name == "refstats_toy_set_1__fake-extractor.npz"

  features = _FakeExtractor()(np.zeros((12, 4, 4, 3), np.uint8) + 7)
  scores = fid.evaluate_against(first, features + np.arange(16), kid_subset_size=10)
  assert set(scores) == {"fid", "kid", "kid_std"} and scores["fid"] > 0


# ----------------------------------------------------------------------------------
# Real images through the real network.


def _celeba(first: int, count: int) -> np.ndarray:
  from wgan_gp.data import images as image_data
  names = image_data.list_images(str(CELEBA_TAR))[first:first + count]
  return np.stack([image_data.decode_image(data, 54, 64)
                   for _, data in image_data.iterate_image_bytes(str(CELEBA_TAR), names)])


def _blur(images: np.ndarray) -> np.ndarray:
  from PIL import Image, ImageFilter
  return np.stack([np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(2.5)))
                   for im in images])


@pytest.mark.slow
@requires_celeba_tar
def test_fid_orders_real_blurred_and_noise(tmp_path):
  try:
    inception.find_weights()
  except FileNotFoundError:
    pytest.skip(f"FID weights not installed: {inception.PIP_INSTALL_WEIGHTS}")
  # 16 per side (two batches of 8) keeps this near 15 s on 2 CPU cores. FID's small-N
  # bias is shared by all three pairs, so only the ordering is asserted; measured
  # here: real 91, blurred 223, noise 487.
  n = 16
  extractor = inception.InceptionFeatureExtractor(cache_dir=tmp_path, batch_size=8)
  real = _celeba(0, 2 * n)
  first, second = real[:n], real[n:]
  noise = np.random.default_rng(9).integers(0, 256, second.shape, dtype=np.uint8)
  features = {name: extractor(images) for name, images in
              (("first", first), ("second", second), ("blurred", _blur(second)),
               ("noise", noise))}
  real_vs_real = fid.fid_from_features(features["first"], features["second"])
  real_vs_blurred = fid.fid_from_features(features["first"], features["blurred"])
  real_vs_noise = fid.fid_from_features(features["first"], features["noise"])
  assert 1.5 * real_vs_real < real_vs_blurred, (real_vs_real, real_vs_blurred)
  assert 1.5 * real_vs_blurred < real_vs_noise, (real_vs_blurred, real_vs_noise)
