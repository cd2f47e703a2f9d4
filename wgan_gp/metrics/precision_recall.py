"""k-NN precision and recall (Kynkäänniemi et al. 2019), on Inception features.

The paper and stylegan2-ada measure them on VGG16 features (fc2, 4096-d); here they run
on the FID network's 2048-d InceptionV3 pool3 features, which FID and KID already
computed. The numbers are comparable only with other Inception-feature values;
`wgan_gp.fid` and `wgan_gp.evaluate` print and record this beside them (`pr_features`).

Each set's manifold is the union of balls around its points, each ball reaching the
point's k-th nearest neighbour in the same set (k = 3, the paper's choice). Precision:
the fraction of generated points inside the real manifold (are samples realistic?).
Recall: the fraction of real points inside the generated manifold (is the data covered?).
As stylegan2-ada's `precision_recall.py`: Euclidean distances, a probe on a ball's
boundary counts as inside, the k-th neighbour leaves the point itself out.

Distances come from one matrix product per block of rows, in float32 (the reference's
precision); blocks keep memory at `block` × N, whatever N.
"""

import numpy as np

# What the printed and recorded figures say they ran on.
PR_FEATURES = "InceptionV3 pool3, not the paper's VGG16"


def _squared_distances(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
  """‖r − c‖² for every pair, [len(rows), len(cols)], as ‖r‖² + ‖c‖² − 2 r·c."""
  squared = ((rows * rows).sum(axis=1)[:, None] + (cols * cols).sum(axis=1)[None, :]
             - 2.0 * (rows @ cols.T))
  return np.maximum(squared, 0.0)  # rounding can take a point's distance to itself below 0


def knn_radii(features: np.ndarray, k: int = 3, block: int = 1000) -> np.ndarray:
  """Squared distance from each point [N, D] to its k-th nearest other point."""
  radii = []
  for start in range(0, len(features), block):
    distances = _squared_distances(features[start:start + block], features)
    radii.append(np.partition(distances, k, axis=1)[:, k])  # sorted index 0: the point itself
  return np.concatenate(radii)


def manifold_coverage(manifold: np.ndarray, radii: np.ndarray, probes: np.ndarray,
                      block: int = 1000) -> float:
  """Fraction of `probes` within `radii` (squared) of at least one `manifold` point."""
  inside = [(_squared_distances(probes[start:start + block], manifold) <= radii).any(axis=1)
            for start in range(0, len(probes), block)]
  return float(np.concatenate(inside).mean())


def precision_recall(real_features: np.ndarray, fake_features: np.ndarray, k: int = 3,
                     block: int = 1000) -> dict[str, float]:
  """{'precision', 'recall'} of generated features [M, D] against real ones [N, D] (in
  this package: Inception features, not the paper's VGG16)."""
  real = np.asarray(real_features, np.float32)
  fake = np.asarray(fake_features, np.float32)
  if real.ndim != 2 or real.shape[1:] != fake.shape[1:] or min(len(real), len(fake)) <= k:
    raise ValueError(f"need features [N > k={k}, D] of equal D, got {real.shape} and "
                     f"{fake.shape}")
  return {"precision": manifold_coverage(real, knn_radii(real, k, block), fake, block),
          "recall": manifold_coverage(fake, knn_radii(fake, k, block), real, block)}
