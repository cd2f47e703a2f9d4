"""Latent codes by seed, and paths through the latent space, for looking at what a
generator has learned."""

import numpy as np


def noise(seed: int, num: int, z_dim: int) -> np.ndarray:
  """[num, z_dim] standard-normal latents; row i depends on (seed, i) only, not on num
  (numpy's generator fills the rows in order), so sample i is the same whatever the
  number drawn."""
  return np.random.default_rng(seed).standard_normal((num, z_dim), np.float32)


def endpoint_pairs(seed: int, num: int, z_dim: int) -> tuple[np.ndarray, np.ndarray]:
  """(z0, z1), each [num, z_dim]: pair i depends on (seed, i) only."""
  pairs = noise(seed, num, 2 * z_dim).reshape(num, 2, z_dim)
  return pairs[:, 0], pairs[:, 1]


def slerp(z0, z1, t):
  """Spherical interpolation (White 2016): keeps latents at a typical Gaussian radius."""
  unit0 = z0 / np.linalg.norm(z0, axis=-1, keepdims=True)
  unit1 = z1 / np.linalg.norm(z1, axis=-1, keepdims=True)
  omega = np.arccos(np.clip(np.sum(unit0 * unit1, -1, keepdims=True), -1.0, 1.0))
  sin_omega = np.sin(omega)
  safe = sin_omega > 1e-6  # (anti)parallel endpoints: fall back to a straight line
  weight0 = np.where(safe, np.sin((1.0 - t) * omega) / np.where(safe, sin_omega, 1.0), 1.0 - t)
  weight1 = np.where(safe, np.sin(t * omega) / np.where(safe, sin_omega, 1.0), t)
  return weight0 * z0 + weight1 * z1


def interpolation_latents(z0, z1, steps: int, method: str) -> np.ndarray:
  """[pairs, steps, z_dim] latents from z0 to z1 (both [pairs, z_dim]), endpoints included."""
  t = np.linspace(0.0, 1.0, steps)[None, :, None]
  z0, z1 = z0[:, None, :], z1[:, None, :]
  if method == "linear":
    return (1.0 - t) * z0 + t * z1
  return slerp(z0, z1, t)
