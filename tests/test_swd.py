"""The Laplacian-pyramid sliced Wasserstein distance (ProGAN protocol)."""

import numpy as np
import pytest

from conftest import CELEBA_TAR, requires_celeba_tar
from wgan_gp.metrics import swd


def _smooth_images(n: int, seed: int) -> np.ndarray:
  """Random low-frequency colour fields: one 'distribution' of 64×64 images."""
  rng = np.random.default_rng(seed)
  coarse = rng.uniform(0, 255, (n, 4, 4, 3))
  return np.clip(coarse.repeat(16, axis=1).repeat(16, axis=2), 0, 255).astype(np.uint8)


def test_pyramid_levels_and_exact_reconstruction():
  images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3)).astype(np.uint8)
  levels = swd.laplacian_pyramid(images, 3)
  assert [level.shape[1] for level in levels] == [64, 32, 16] == swd.pyramid_resolutions(64)
  rebuilt = levels[-1]
  for level in levels[-2::-1]:
    rebuilt = swd._pyramid_up(rebuilt) + level
  np.testing.assert_allclose(rebuilt, images, atol=1e-3)


def test_constant_image_has_no_band_pass_content():
  levels = swd.laplacian_pyramid(np.full((1, 32, 32, 3), 100, np.uint8), 2)
  np.testing.assert_allclose(levels[0], 0.0, atol=1e-4)
  np.testing.assert_allclose(levels[1], 100.0, rtol=1e-6)


def test_blur_matches_scipy_mirror_convolution():
  ndimage = pytest.importorskip("scipy.ndimage", reason="scipy is only a cross-check")
  images = np.random.default_rng(1).normal(size=(2, 16, 16, 3)).astype(np.float32)
  kernel_1d = np.array([1, 4, 6, 4, 1], np.float32) / 16
  kernel = np.outer(kernel_1d, kernel_1d)[None, :, :, None]
  expected = ndimage.convolve(images, kernel, mode="mirror")
  np.testing.assert_allclose(swd._blur(images), expected, rtol=1e-5, atol=1e-6)


def test_sliced_wasserstein_of_a_shift_is_mean_projected_shift():
  rng = np.random.default_rng(2)
  a = rng.normal(size=(500, 10)).astype(np.float32)
  shift = rng.normal(size=10).astype(np.float32)
  got = swd.sliced_wasserstein(a, a + shift, dir_repeats=2, dirs_per_repeat=16,
                               rng=np.random.default_rng(3))
  # A shift moves every sorted projection onto direction d by shift·d.
  draws = np.random.default_rng(3)
  expected = []
  for _ in range(2):
    directions = draws.standard_normal((10, 16))
    directions /= np.linalg.norm(directions, axis=0, keepdims=True)
    expected.append(np.abs(shift @ directions).mean())
  assert got == pytest.approx(np.mean(expected), rel=1e-4)
  assert swd.sliced_wasserstein(a, a, dir_repeats=1, dirs_per_repeat=8,
                                rng=np.random.default_rng(0)) == 0.0


def test_swd_reports_each_level_and_orders_same_vs_different():
  same_a, same_b = _smooth_images(32, 4), _smooth_images(32, 5)
  noise = np.random.default_rng(6).integers(0, 256, same_a.shape).astype(np.uint8)
  near = swd.sliced_wasserstein_distance(same_a, same_b, seed=0)
  far = swd.sliced_wasserstein_distance(same_a, noise, seed=0)
  assert set(near) == {"swd_64", "swd_32", "swd_16", "swd_avg"}
  assert near["swd_avg"] == pytest.approx(np.mean([near[f"swd_{r}"] for r in (64, 32, 16)]))
  for key in near:
    assert near[key] < far[key], key


def test_float_images_need_value_range_and_match_uint8():
  images = _smooth_images(8, 7)
  other = _smooth_images(8, 8)
  as_float = images.astype(np.float32) / 127.5 - 1
  with pytest.raises(ValueError, match="value_range"):
    swd.sliced_wasserstein_distance(as_float, other)
  assert (swd.sliced_wasserstein_distance(as_float, other, value_range=(-1, 1), seed=1)
          == swd.sliced_wasserstein_distance(images, other, seed=1))


@requires_celeba_tar
def test_swd_orders_real_blurred_and_noise():
  from PIL import Image, ImageFilter

  from wgan_gp.data import images as image_data
  names = image_data.list_images(str(CELEBA_TAR))[:128]
  real = np.stack([image_data.decode_image(data, 54, 64)
                   for _, data in image_data.iterate_image_bytes(str(CELEBA_TAR), names)])
  first, second = real[:64], real[64:]
  blurred = np.stack([np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(2.0)))
                      for im in second])
  noise = np.random.default_rng(10).integers(0, 256, second.shape).astype(np.uint8)
  distance = {name: swd.sliced_wasserstein_distance(first, other, seed=0)["swd_avg"]
              for name, other in (("real", second), ("blurred", blurred), ("noise", noise))}
  assert 1.5 * distance["real"] < distance["blurred"] < distance["noise"] / 1.5, distance
