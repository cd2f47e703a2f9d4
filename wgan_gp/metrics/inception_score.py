"""The Inception Score (Salimans et al. 2016), the WGAN-GP paper's Table 3 metric.

IS = exp(E_x KL(p(y|x) ‖ p(y))): high when each image is confidently one class and the
classes are spread. As the reference code (OpenAI's `inception_score.py`, followed by
torch-fidelity): softmax over the graph's 1008 logits without their bias, the samples
cut in `splits` consecutive parts (10, at i·N // splits), and the mean and spread
(ddof=0) of the score over the parts. numpy only, in float64 and in log space, so
confident predictions (p ≈ 0 for most classes) give no log(0).
"""

import numpy as np


def _log_softmax(logits: np.ndarray) -> np.ndarray:
  shifted = logits - logits.max(axis=1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
  """(mean, std) of the Inception Score over `splits` parts of `logits` [N, classes]."""
  logits = np.asarray(logits, np.float64)
  if logits.ndim != 2 or logits.shape[0] < splits or splits < 1:
    raise ValueError(f"need logits [N >= splits={splits}, classes], got {logits.shape}")
  n = logits.shape[0]
  scores = []
  for i in range(splits):
    log_p_yx = _log_softmax(logits[i * n // splits:(i + 1) * n // splits])  # OpenAI's cuts
    # log p(y) = log mean_x p(y|x), computed as a log-sum-exp over the part.
    peak = log_p_yx.max(axis=0)
    log_p_y = peak + np.log(np.exp(log_p_yx - peak).mean(axis=0))
    kl = np.sum(np.exp(log_p_yx) * (log_p_yx - log_p_y), axis=1)
    scores.append(np.exp(kl.mean()))
  return float(np.mean(scores)), float(np.std(scores))
