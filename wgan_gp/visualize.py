"""Sample grids and the toy-data figure (samples, real data and critic contours)."""

import os

import numpy as np
from PIL import Image

from wgan_gp.files import atomic_path


def to_uint8(images) -> np.ndarray:
  """[-1, 1] floats -> uint8 [0, 255]."""
  return np.clip(np.rint((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def image_grid(images, columns: int | None = None, padding: int = 2) -> np.ndarray:
  """Tiles [N, H, W, C] images in [-1, 1] into one uint8 [rows·H, columns·W, C] image."""
  images = to_uint8(images)
  n, h, w, c = images.shape
  columns = columns or int(np.ceil(np.sqrt(n)))
  rows = int(np.ceil(n / columns))
  grid = np.full((rows * (h + padding) + padding, columns * (w + padding) + padding, c), 255,
                 np.uint8)
  for i, image in enumerate(images):
    top, left = padding + (i // columns) * (h + padding), padding + (i % columns) * (w + padding)
    grid[top:top + h, left:left + w] = image
  return grid


def save_png(image: np.ndarray, path: str) -> None:
  """Writes atomically: a half-written PNG never carries the final name."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with atomic_path(path) as tmp:
    Image.fromarray(image).save(tmp, format="PNG")


def save_gif(frames: list[np.ndarray], path: str, frame_ms: int = 120) -> None:
  """An endlessly looping animated GIF of uint8 RGB frames, written atomically."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  first, *rest = [Image.fromarray(frame) for frame in frames]
  with atomic_path(path) as tmp:
    first.save(tmp, format="GIF", save_all=True, append_images=rest, duration=frame_ms,
               loop=0)


def plot_toy(path: str, real: np.ndarray, fake: np.ndarray, critic_fn, extent: float = 3.0,
             title: str = "", resolution: int = 128) -> np.ndarray:
  """The paper's Figure 1 view: real (orange) and generated (green) points over the
  critic's contour lines. `critic_fn` maps points [M, 2] to scores [M]. Returns the
  figure as uint8 RGB and writes it to `path`."""
  import matplotlib  # plotting only where a figure is made
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  axis = np.linspace(-extent, extent, resolution, dtype=np.float32)
  grid_x, grid_y = np.meshgrid(axis, axis)
  scores = np.asarray(critic_fn(np.stack([grid_x.ravel(), grid_y.ravel()], 1)))
  figure, ax = plt.subplots(figsize=(6, 6), dpi=100)
  contours = ax.contour(grid_x, grid_y, scores.reshape(grid_x.shape), levels=15, cmap="viridis",
                        linewidths=0.8)
  ax.clabel(contours, fontsize=6)
  ax.scatter(real[:, 0], real[:, 1], c="orange", marker="+", s=12, label="real")
  ax.scatter(fake[:, 0], fake[:, 1], c="green", marker="+", s=12, label="generated")
  ax.set_xlim(-extent, extent)
  ax.set_ylim(-extent, extent)
  ax.set_aspect("equal")
  ax.legend(loc="upper right", fontsize=8)
  if title:
    ax.set_title(title, fontsize=9)
  figure.tight_layout()
  figure.canvas.draw()
  rgb = np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
  plt.close(figure)
  save_png(rgb, path)
  return rgb
