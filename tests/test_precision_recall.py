"""k-NN precision and recall against hand-worked cases and a naive double loop."""

import numpy as np
import pytest

from wgan_gp import fid as fid_cli
from wgan_gp.metrics import fid
from wgan_gp.metrics.precision_recall import knn_radii, precision_recall


def _on_a_line(positions, dim=4):
  points = np.zeros((len(positions), dim), np.float32)
  points[:, 0] = positions
  return points


def test_points_on_a_line_match_hand_worked_radii_and_balls():
  real = _on_a_line(range(10))  # 0, 1, ..., 9
  # k = 3 (the point itself left out): the ends reach 3, the others 2.
  np.testing.assert_array_equal(knn_radii(real), np.array([3, 2, 2, 2, 2, 2, 2, 2, 2, 3]) ** 2)
  # 11.5 is in 9's ball (to 12), −3 on 0's boundary (inside), 5 inside; 12.5 and −3.5 out.
  fake = _on_a_line([12.5, 11.5, -3.0, -3.5, 5.0])
  result = precision_recall(real, fake)
  assert result["precision"] == pytest.approx(3 / 5)
  # Fake radii: 5's third neighbour is 8 away, so its ball [−3, 13] covers every real point.
  assert result["recall"] == 1.0


def test_a_dropped_mode_halves_recall_and_keeps_precision():
  rng = np.random.default_rng(0)
  mode_a, mode_b = rng.normal(size=(20, 8)), rng.normal(size=(20, 8)) + 100.0
  real = np.concatenate([mode_a, mode_b])
  fake = mode_a + rng.normal(scale=0.01, size=mode_a.shape)  # only mode A, faithfully
  assert precision_recall(real, fake) == {"precision": 1.0, "recall": 0.5}


def test_identical_sets_score_one():
  features = np.random.default_rng(1).normal(size=(30, 16))
  assert precision_recall(features, features) == {"precision": 1.0, "recall": 1.0}


def _naive(real, fake, k):
  def radius(points, i):
    return sorted(np.linalg.norm(points[i] - points[j]) for j in range(len(points)) if j != i)[k - 1]

  def coverage(manifold, probes):
    radii = [radius(manifold, i) for i in range(len(manifold))]
    return np.mean([any(np.linalg.norm(p - m) <= r for m, r in zip(manifold, radii))
                    for p in probes])

  return {"precision": coverage(real, fake), "recall": coverage(fake, real)}


@pytest.mark.parametrize("k", [1, 3, 5])
def test_matches_naive_double_loop_across_blocks(k):
  rng = np.random.default_rng(2)
  real = rng.normal(size=(40, 6))
  fake = rng.normal(0.8, 0.7, size=(33, 6))  # shifted and narrower: both below 1
  naive = _naive(real.astype(np.float64), fake.astype(np.float64), k)
  assert 0 < naive["precision"] < 1 and 0 < naive["recall"] < 1  # a case that can fail
  assert precision_recall(real, fake, k=k, block=7) == pytest.approx(naive, abs=1e-12)


def test_needs_more_points_than_neighbours():
  with pytest.raises(ValueError, match="N > k=3"):
    precision_recall(np.zeros((3, 2)), np.zeros((10, 2)))


def test_printed_and_recorded_figures_say_they_ran_on_inception_features(tmp_path):
  """Kynkäänniemi et al. and stylegan2-ada measure on VGG16: ours must not pass for theirs."""
  rng = np.random.default_rng(0)
  paths = []
  for name, shift in (("real", 0.0), ("fake", 0.5)):
    features = rng.normal(shift, 1.0, (40, 8)).astype(np.float32)
    paths.append(str(tmp_path / f"{name}.npz"))
    fid.save_stats(paths[-1], fid.ReferenceStats.from_features(features))
  results = fid_cli.compare(paths, metrics="fid,pr")
  assert "VGG16" in results["pr_features"] and "Inception" in results["pr_features"]
  printed = fid_cli.format_results(results).splitlines()
  assert any(line.startswith("pr_features") and "VGG16" in line for line in printed)
