"""The paper's 2-D toy distributions, sampled on the device.

Geometry as in the paper's `gan_toy.py`: 8 Gaussians on a circle of radius 2
(σ=0.02) scaled by 1/1.414; 25 Gaussians on the grid {−4, −2, 0, 2, 4}² (σ=0.05)
scaled by 1/2.828; a swiss roll (scikit-learn's, noise 0.25, x/z plane) scaled by 1/7.5.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

_DIAGONAL = 1.0 / math.sqrt(2.0)
_EIGHT_CENTERS = 2.0 * np.array(
    [(1, 0), (-1, 0), (0, 1), (0, -1), (_DIAGONAL, _DIAGONAL), (_DIAGONAL, -_DIAGONAL),
     (-_DIAGONAL, _DIAGONAL), (-_DIAGONAL, -_DIAGONAL)], np.float32)
_GRID_CENTERS = np.array([(2.0 * i, 2.0 * j) for i in range(-2, 3) for j in range(-2, 3)],
                         np.float32)

# name -> (mode centres before scaling, per-mode σ before scaling, scale)
_MIXTURES = {
    "8gaussians": (_EIGHT_CENTERS, 0.02, 1.414),
    "25gaussians": (_GRID_CENTERS, 0.05, 2.828),
}
_SWISSROLL_SCALE = 7.5
DISTRIBUTIONS = ("25gaussians", "8gaussians", "swissroll")


class ToySource:
  """A 2-D distribution sampled inside the jitted step (no host input)."""

  on_device = True
  data_shape = (2,)

  def __init__(self, name: str):
    if name not in DISTRIBUTIONS:
      raise ValueError(f"unknown toy distribution {name!r}")
    self.name = name

  @property
  def modes(self) -> np.ndarray | None:
    """Mode centres in data coordinates, or None (swiss roll)."""
    if self.name not in _MIXTURES:
      return None
    centers, _, scale = _MIXTURES[self.name]
    return centers / scale

  @property
  def mode_std(self) -> float | None:
    if self.name not in _MIXTURES:
      return None
    _, std, scale = _MIXTURES[self.name]
    return std / scale

  def sample(self, key):
    """One sample, shape [2]. Vectorise with vmap over keys."""
    if self.name == "swissroll":
      return _swissroll(key)
    centers, std, scale = _MIXTURES[self.name]
    center_key, noise_key = jax.random.split(key)
    center = jnp.asarray(centers)[jax.random.randint(center_key, (), 0, len(centers))]
    return (center + std * jax.random.normal(noise_key, (2,))) / scale

  def sample_batch(self, key, n: int):
    return jax.vmap(self.sample)(jax.random.split(key, n))


def _swissroll(key):
  t_key, noise_key = jax.random.split(key)
  t = 1.5 * math.pi * (1.0 + 2.0 * jax.random.uniform(t_key))
  # The roll's x and z coordinates (scikit-learn's make_swiss_roll), noise on each.
  point = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)])
  return (point + 0.25 * jax.random.normal(noise_key, (2,))) / _SWISSROLL_SCALE
