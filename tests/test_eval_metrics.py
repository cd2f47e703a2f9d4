"""IS and precision/recall as evaluation metrics: the names `eval_metrics` takes, the
check before training, and the numbers a training evaluation records (with a stand-in
feature network, so no weights are needed)."""

import jax.numpy as jnp
import numpy as np
import pytest

from wgan_gp import evaluation
from wgan_gp.metrics import fid, inception
from wgan_gp.metrics.inception_score import inception_score
from wgan_gp.metrics.precision_recall import precision_recall


def test_eval_metrics_names():
  assert evaluation.parse_metrics("fid, kid,is,pr,swd") == ("fid", "kid", "is", "pr", "swd")
  with pytest.raises(ValueError, match="fid,kid,is,pr,swd"):
    evaluation.parse_metrics("fid,precision")


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
  evaluation.check_metrics_available(("fid", "is"))
  stand_in.has_logits = False
  evaluation.check_metrics_available(("fid", "kid", "pr"))  # these need no logits
  with pytest.raises(ValueError, match="logits layer"):
    evaluation.check_metrics_available(("is",))


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
  evaluator = evaluation.ImageEvaluator(_Source(), _GAN(), ("fid", "kid", "is", "pr"), 20)
  results = evaluator(jnp.float32(0.5))
  assert set(results) == {"fid", "kid", "kid_std", "is", "is_std", "precision", "recall"}
  # The same numbers from the library on the same features.
  real = stand_in(evaluator._real_images())
  fake_images = evaluation.generate_in_batches(evaluator._generate, jnp.float32(0.5), 20,
                                               _GAN.z_dim, 0)
  fake = stand_in(fake_images)
  assert results["fid"] == pytest.approx(fid.fid_from_features(real, fake), rel=1e-6)
  assert results["is"] == inception_score(stand_in.logits(fake))[0]
  assert {k: results[k] for k in ("precision", "recall")} == precision_recall(real, fake)
  assert 1.0 <= results["is"] <= 10  # between one class and all 10
