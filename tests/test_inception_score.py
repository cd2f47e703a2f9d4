"""The Inception Score against closed forms and OpenAI's reference formula; the logits
layer read from a pytorch-fid-format file and pinned to the torch reference features."""

import numpy as np
import pytest

from test_inception import DATA, requires_weights
from wgan_gp.metrics import inception
from wgan_gp.metrics.inception_score import inception_score

CONFIDENT = 60.0  # a logit margin that makes softmax one-hot to float64 precision


def _one_hot_logits(labels, classes):
  return CONFIDENT * np.eye(classes)[labels]


def test_confident_and_balanced_predictions_score_the_number_of_classes():
  # p(y|x) one-hot, p(y) uniform over K: KL = log K for every sample, so IS = K.
  logits = _one_hot_logits(np.tile(np.arange(7), 5), classes=7)
  assert inception_score(logits, splits=1) == pytest.approx((7.0, 0.0), rel=1e-9, abs=1e-12)


def test_identical_predictions_score_one():
  logits = np.tile(np.random.default_rng(0).normal(size=(1, 12)), (40, 1))
  mean, std = inception_score(logits, splits=4)
  assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_two_mirrored_classes_match_the_closed_form():
  # Half the samples p = (a, 1 − a), half (1 − a, a): p(y) uniform, so
  # KL = log 2 + a log a + (1 − a) log(1 − a) for every sample.
  a = 0.8
  logits = np.log(np.array([[a, 1 - a]] * 10 + [[1 - a, a]] * 10))
  expected = np.exp(np.log(2) + a * np.log(a) + (1 - a) * np.log(1 - a))
  assert inception_score(logits, splits=1)[0] == pytest.approx(expected, rel=1e-12)


def test_mean_and_spread_are_over_the_splits():
  # Split 1: 2 balanced confident classes (IS 2); split 2: one class throughout (IS 1).
  logits = np.concatenate([_one_hot_logits([0, 1] * 5, 2), _one_hot_logits([0] * 10, 2)])
  assert inception_score(logits, splits=2) == pytest.approx((1.5, 0.5), rel=1e-9)


def _openai_inception_score(logits, splits):
  """OpenAI's `inception_score.py` after the network: softmax, parts at i·N//splits."""
  preds = np.exp(logits - logits.max(axis=1, keepdims=True))
  preds /= preds.sum(axis=1, keepdims=True)
  scores = []
  for i in range(splits):
    part = preds[(i * preds.shape[0] // splits):((i + 1) * preds.shape[0] // splits), :]
    kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
    scores.append(np.exp(np.mean(np.sum(kl, 1))))
  return np.mean(scores), np.std(scores)


def test_matches_the_reference_formula_with_uneven_splits():
  logits = np.random.default_rng(1).normal(0.0, 3.0, size=(103, 1008))  # 103 = 10·10 + 3
  np.testing.assert_allclose(inception_score(logits, splits=10),
                             _openai_inception_score(logits, 10), rtol=1e-10)


def test_needs_a_sample_per_split():
  with pytest.raises(ValueError, match="splits=10"):
    inception_score(np.zeros((9, 5)))


# ----------------------------------------------------------------------------------
# The logits layer.


def test_fid_helper_weights_have_no_logits_and_say_which_do(monkeypatch):
  extractor = object.__new__(inception.InceptionFeatureExtractor)
  extractor._logits_kernel = None
  assert not extractor.has_logits
  with pytest.raises(ValueError, match="pt_inception-2015-12-05-6726825d.pth"):
    extractor.logits(np.zeros((2, inception.FEATURE_DIM)))


def test_logits_layer_of_the_wrong_shape_is_refused():
  with pytest.raises(ValueError, match="fc has shapes"):
    inception._logits_layer({"fc.weight": np.zeros((1000, 2048)), "fc.bias": np.zeros(1000)},
                            "x.pth")


@pytest.mark.slow
@requires_weights
def test_pytorch_fid_file_gives_logits_of_the_reference_features(tmp_path):
  torch = pytest.importorskip("torch", reason="writing a .pth file needs torch")
  # pytorch-fid's layout (torchvision names, batch norm's gamma, `fc`), built from the
  # fid-helper weights with a random fc; written by torch itself, then read without it.
  tree = inception.read_torch_file(inception.find_weights())
  rng = np.random.default_rng(2)
  fc_weight = rng.normal(0, 0.05, (inception.LOGITS_DIM, inception.FEATURE_DIM)).astype(
      np.float32)
  state_dict = {"fc.weight": fc_weight,
                "fc.bias": rng.normal(size=inception.LOGITS_DIM).astype(np.float32)}
  for path, raw in inception._fid_helper_layers(tree).items():
    stem = ".".join(path)
    state_dict.update({f"{stem}.conv.weight": raw.weight, f"{stem}.bn.bias": raw.beta,
                       f"{stem}.bn.weight": np.ones_like(raw.beta),
                       f"{stem}.bn.running_mean": raw.mean, f"{stem}.bn.running_var": raw.var})
  weights = tmp_path / "pt_inception-like.pth"
  torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state_dict.items()},
             weights)
  extractor = inception.InceptionFeatureExtractor(weights, cache_dir=tmp_path, batch_size=8)
  assert extractor.has_logits
  recorded = np.load(DATA / "inception_reference_features.npz")
  features = extractor(recorded["images"])
  np.testing.assert_allclose(features, recorded["features"], rtol=1e-4, atol=1e-5)
  # Unbiased, as the reference IS code: pool_3 times the logits weights alone.
  np.testing.assert_allclose(extractor.logits(recorded["features"]),
                             recorded["features"].astype(np.float64) @ fc_weight.T.astype(
                                 np.float64), rtol=1e-10)
