"""Mode coverage on the 2-D mixtures (VEEGAN / PacGAN protocol).

A sample is high quality if it lies within `threshold` standard deviations of its
nearest mode; a mode is captured if at least one high-quality sample is nearest to it.
"""

import numpy as np


def mode_coverage(samples: np.ndarray, modes: np.ndarray, mode_std: float,
                  threshold: float = 3.0) -> dict:
  samples = np.asarray(samples, np.float64)
  distances = np.linalg.norm(samples[:, None, :] - modes[None, :, :], axis=-1)
  nearest = distances.argmin(axis=1)
  high_quality = distances[np.arange(len(samples)), nearest] <= threshold * mode_std
  captured = np.unique(nearest[high_quality])
  return {
      "modes_captured": int(captured.size),
      "num_modes": int(len(modes)),
      "high_quality_pct": 100.0 * float(high_quality.mean()),
  }
