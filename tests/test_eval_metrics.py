"""IS and precision/recall as evaluation metrics: the names `eval_metrics` takes, the
check before training, and the numbers a training evaluation records (with a stand-in
feature network, so no weights are needed); the toy runs' mode coverage."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wgan_gp import evaluators
from wgan_gp.metrics import fid, inception
from wgan_gp.metrics.inception_score import inception_score
from wgan_gp.metrics.precision_recall import precision_recall
from wgan_gp.metrics.toy import mode_coverage


def test_eval_metrics_names():
  assert evaluators.parse_metrics("fid, kid,is,pr,swd") == ("fid", "kid", "is", "pr", "swd")
  with pytest.raises(ValueError, match="fid,kid,is,pr,swd"):
    evaluators.parse_metrics("fid,precision")


class _StandInExtractor:
  """Deterministic 'features' from pixels and a fixed logits matrix."""
  cache_key = "stand-in"
  has_logits = True

  def __init__(self):
    self.kernel = np.random.default_rng(0).normal(size=(16, 10))

  def __call__(self, images, value_range=None, progress_label=None):
    flat = np.asarray(images, np.float32).reshape(len(images), -1)
    return np.concatenate([flat[:, :8], flat[:, :8] ** 2], axis=1)

  def logits(self, features):
    return np.asarray(features, np.float64) @ self.kernel


def test_is_needs_weights_with_the_logits_layer(monkeypatch):
  monkeypatch.setattr(inception, "find_weights", lambda: "weights.pt")
  stand_in = _StandInExtractor()
  monkeypatch.setattr(inception, "default_extractor", lambda: stand_in)
  evaluators.check_metrics_available(("fid", "is"))
  stand_in.has_logits = False
  evaluators.check_metrics_available(("fid", "kid", "pr"))  # these need no logits
  with pytest.raises(ValueError, match="logits layer"):
    evaluators.check_metrics_available(("is",))


class _Source:
  identity = "stand-in-source"

  def __init__(self):
    self.images = np.random.default_rng(1).integers(0, 256, (24, 4, 4, 3), dtype=np.uint8)

  def __len__(self):
    return len(self.images)


class _GAN:
  z_dim = 48

  def generate(self, params, z):
    return jnp.tanh(params * z.reshape(-1, 4, 4, 3))


def test_training_evaluation_records_is_and_precision_recall(monkeypatch, tmp_path):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # the reference statistics' cache
  stand_in = _StandInExtractor()
  monkeypatch.setattr(inception, "default_extractor", lambda: stand_in)
  evaluator = evaluators.ImageEvaluator(_Source(), _GAN(), ("fid", "kid", "is", "pr"), 20)
  results = evaluator(jnp.float32(0.5))
  assert set(results) == {"fid", "kid", "kid_std", "is", "is_std", "precision", "recall"}
  # The same numbers from the library on the same features.
  real = stand_in(evaluator._real_images())
  fake_images = evaluators.generate_in_batches(evaluator._generate, jnp.float32(0.5), 20,
                                               _GAN.z_dim, 0)
  fake = stand_in(fake_images)
  assert results["fid"] == pytest.approx(fid.fid_from_features(real, fake), rel=1e-6)
  assert results["is"] == inception_score(stand_in.logits(fake))[0]
  assert {k: results[k] for k in ("precision", "recall")} == precision_recall(real, fake)
  assert 1.0 <= results["is"] <= 10  # between one class and all 10


def test_batched_generation_never_mixes_zero_noise_into_a_batch():
  """The generator's BatchNorm uses its batch's statistics: a last batch padded with
  zeros would change every genuine sample in it (the mean |Δ| of the shipped CelebA
  generator's images was 0.26 in [-1, 1])."""
  calls = []

  def batch_statistics(params, z):  # each row: its batch's per-feature std, like BatchNorm
    calls.append(z.shape)
    return jnp.broadcast_to(jnp.std(z, axis=0), z.shape)

  out = evaluators.generate_in_batches(batch_statistics, None, 300, 64, seed=3, batch_size=128)
  assert out.shape == (300, 64) and calls == [(128, 64)] * 3  # one compiled shape
  assert abs(out[256:].mean() - 1.0) < 0.1  # zero rows would have given ~0.6
  noise = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (300, 64)))
  np.testing.assert_allclose(out[:256], np.concatenate(
      [np.broadcast_to(noise[i:i + 128].std(0), (128, 64)) for i in (0, 128)]), rtol=1e-5)
  calls.clear()
  alone = evaluators.generate_from_noise(batch_statistics, None, noise, batch_size=128)
  assert calls == [(128, 64), (128, 64), (44, 64)]  # no fill key: the tail at its own size
  np.testing.assert_allclose(alone[256:], np.broadcast_to(noise[256:].std(0), (44, 64)),
                             rtol=1e-5)


def test_mode_coverage_counts_only_modes_with_a_high_quality_sample():
  angles = np.arange(8) * np.pi / 4
  modes = 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)  # 8 Gaussians
  std = 0.02
  rng = np.random.default_rng(0)
  near = modes[[0, 0, 1, 2, 3]] + rng.normal(0, std / 2, (5, 2))  # within 3 std: 4 modes
  off = modes[[5, 6]] + np.array([[0.0, 10 * std], [10 * std, 0.0]])  # nearest 5, 6; too far
  result = mode_coverage(np.concatenate([near, off]), modes, std)
  assert result == {"modes_captured": 4, "num_modes": 8,
                    "high_quality_pct": pytest.approx(100 * 5 / 7)}
  nowhere = mode_coverage(np.zeros((10, 2)), modes, std)  # the centre: 2 away from all
  assert (nowhere["modes_captured"], nowhere["high_quality_pct"]) == (0, 0.0)
  for distance, captured in ((2.9, 1), (3.1, 0)):  # the threshold: 3 std
    sample = modes[[7]] + np.array([[distance * std, 0.0]])
    assert mode_coverage(sample, modes, std)["modes_captured"] == captured, distance
