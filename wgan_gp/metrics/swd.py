"""Sliced Wasserstein distance on Laplacian-pyramid patches: a weight-free quick metric.

The protocol of Karras et al. 2018 (Progressive GANs, appendix D), in numpy:

1. Each image (uint8 RGB, values 0..255) is split into a Laplacian pyramid, using the
   5-tap binomial filter [1, 4, 6, 4, 1]/16 with mirror borders (cv2.pyrDown/pyrUp),
   from full resolution down to 16×16; the last level is the 16×16 Gaussian image.
   A 64×64 image gives levels 64, 32 and 16.
2. From every level of every image, `nhoods_per_image` = 128 random 7×7×3 patches
   are taken (centres at least 3 px from the top/left and 4 px from the
   bottom/right, as in the reference code) and flattened to 147-d descriptors.
3. Each set's descriptors are normalised per level: every colour channel has its
   mean subtracted and is divided by its std, both over all of that set's patches
   at that level.
4. Per level, the distance is the sliced Wasserstein-1 distance between the two
   descriptor sets: 512 random unit directions in 4 repeats of 128, the sorted
   projections compared pointwise, the absolute differences averaged.

Results are reported ×10³ per level, plus their mean, as in the paper. The two sets
must hold the same number of images. Lower is better; unlike FID it only sees local
colour and texture statistics, so use it to compare runs, not against published FIDs.
"""

from __future__ import annotations

import numpy as np

_BINOMIAL_5 = np.array([1.0, 4.0, 6.0, 4.0, 1.0], np.float32) / 16.0


def _blur(images: np.ndarray, gain: float = 1.0) -> np.ndarray:
  """Separable 5×5 binomial filter over H and W of NHWC, mirror ('reflect') borders."""
  taps = _BINOMIAL_5 * gain
  padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
  height, width = images.shape[1:3]
  rows = sum(taps[i] * padded[:, i:i + height] for i in range(5))
  return sum(taps[i] * rows[:, :, i:i + width] for i in range(5))


def _pyramid_down(images: np.ndarray) -> np.ndarray:
  return _blur(images)[:, ::2, ::2]


def _pyramid_up(images: np.ndarray) -> np.ndarray:
  n, height, width, channels = images.shape
  upsampled = np.zeros((n, 2 * height, 2 * width, channels), images.dtype)
  upsampled[:, ::2, ::2] = images
  # Gain 2 per axis restores the brightness lost to the inserted zeros.
  return _blur(upsampled, gain=2.0)


def laplacian_pyramid(images: np.ndarray, num_levels: int) -> list[np.ndarray]:
  """Band-pass levels, finest first; the last entry is the coarsest Gaussian level."""
  levels = [np.asarray(images, np.float32)]
  for _ in range(1, num_levels):
    levels.append(_pyramid_down(levels[-1]))
    levels[-2] = levels[-2] - _pyramid_up(levels[-1])
  return levels


def pyramid_resolutions(size: int, min_resolution: int = 16) -> list[int]:
  resolutions = []
  while size >= min_resolution:
    resolutions.append(size)
    size //= 2
  return resolutions


def _patch_descriptors(level: np.ndarray, nhood_size: int, nhoods_per_image: int,
                       rng: np.random.Generator) -> np.ndarray:
  """[N·nhoods, C, k, k] random patches of NHWC `level`."""
  n, height, width, _ = level.shape
  half = nhood_size // 2
  count = n * nhoods_per_image
  image = np.repeat(np.arange(n), nhoods_per_image)[:, None, None]
  # Centres in [half, size − half), as the reference draws them.
  y = rng.integers(half, height - half, size=count)[:, None, None]
  x = rng.integers(half, width - half, size=count)[:, None, None]
  offsets = np.arange(-half, half + 1)
  patches = level[image, y + offsets[None, :, None], x + offsets[None, None, :]]
  return patches.transpose(0, 3, 1, 2)  # [count, k, k, C] -> [count, C, k, k]


def _normalise(descriptors: np.ndarray) -> np.ndarray:
  mean = descriptors.mean(axis=(0, 2, 3), keepdims=True)
  std = descriptors.std(axis=(0, 2, 3), keepdims=True)
  return ((descriptors - mean) / std).reshape(descriptors.shape[0], -1)


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, *, dir_repeats: int,
                       dirs_per_repeat: int, rng: np.random.Generator) -> float:
  """Mean |sorted(a·d) − sorted(b·d)| over random unit directions d."""
  if a.shape != b.shape:
    raise ValueError(f"descriptor sets differ in shape: {a.shape} vs {b.shape}")
  results = []
  for _ in range(dir_repeats):
    directions = rng.standard_normal((a.shape[1], dirs_per_repeat))
    directions /= np.linalg.norm(directions, axis=0, keepdims=True)
    directions = directions.astype(np.float32)
    # [direction, descriptor] so each sort runs along contiguous memory.
    projected_a = np.sort(directions.T @ a.T, axis=1)
    projected_b = np.sort(directions.T @ b.T, axis=1)
    results.append(np.abs(projected_a - projected_b).mean())
  return float(np.mean(results))


def _as_uint8_range(images: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"expected NHWC RGB images, got shape {images.shape}")
  if images.dtype == np.uint8:
    return images
  if value_range is None:
    raise ValueError("float images need value_range, e.g. (-1, 1)")
  low, high = value_range
  scaled = np.clip((images.astype(np.float32) - low) / (high - low), 0.0, 1.0) * 255.0
  return np.round(scaled).astype(np.uint8)  # the reference measures 8-bit images


def sliced_wasserstein_distance(images_a: np.ndarray, images_b: np.ndarray, *,
                                value_range: tuple[float, float] | None = None,
                                nhood_size: int = 7, nhoods_per_image: int = 128,
                                dir_repeats: int = 4, dirs_per_repeat: int = 128,
                                min_resolution: int = 16,
                                seed: int = 0) -> dict[str, float]:
  """SWD×10³ between two equal-size NHWC image sets, per pyramid level and averaged.

  Returns {"swd_64": …, "swd_32": …, "swd_16": …, "swd_avg": …} for 64×64 images.
  Images are uint8, or floats with `value_range` (quantised to 8 bits first).
  """
  images_a = _as_uint8_range(images_a, value_range)
  images_b = _as_uint8_range(images_b, value_range)
  if images_a.shape != images_b.shape:
    raise ValueError(f"image sets differ in shape: {images_a.shape} vs {images_b.shape}")
  if images_a.shape[1] != images_a.shape[2]:
    raise ValueError("SWD's pyramid expects square images")
  resolutions = pyramid_resolutions(images_a.shape[1], min_resolution)
  if not resolutions:
    raise ValueError(f"images smaller than min_resolution={min_resolution}")
  rng = np.random.default_rng(seed)
  pyramid_a = laplacian_pyramid(images_a, len(resolutions))
  pyramid_b = laplacian_pyramid(images_b, len(resolutions))
  result = {}
  for resolution, level_a, level_b in zip(resolutions, pyramid_a, pyramid_b):
    descriptors_a = _normalise(_patch_descriptors(level_a, nhood_size, nhoods_per_image, rng))
    descriptors_b = _normalise(_patch_descriptors(level_b, nhood_size, nhoods_per_image, rng))
    distance = sliced_wasserstein(descriptors_a, descriptors_b, dir_repeats=dir_repeats,
                                  dirs_per_repeat=dirs_per_repeat, rng=rng)
    result[f"swd_{resolution}"] = 1e3 * distance
  result["swd_avg"] = float(np.mean(list(result.values())))
  return result
