"""Sample-quality metrics.

- `inception`: the FID InceptionV3 in Flax (2048-d features, reference preprocessing, and
  the class logits where the weights have them), loading the TF `inception-2015-12-05`
  weights from a PyTorch port without torch.
- `fid`: FID and KID from features, and cached dataset reference statistics.
- `fid_infinity`: FID at several N from one feature set, extrapolated to N = ∞ in 1/N.
- `inception_score`: the Inception Score from the class logits.
- `precision_recall`: k-NN precision and recall on the same features (the paper's are
  on VGG16 features: compare only with Inception-feature values).
- `swd`: sliced Wasserstein distance on Laplacian-pyramid patches; needs no weights.
- `toy`: mode coverage for the 2-D mixtures.
"""

from wgan_gp.metrics.fid import (ReferenceStats, evaluate_against, fid_from_features,
                                 frechet_distance, kernel_inception_distance,
                                 reference_stats)
from wgan_gp.metrics.inception import InceptionFeatureExtractor, extract_features
from wgan_gp.metrics.inception_score import inception_score
from wgan_gp.metrics.precision_recall import precision_recall
from wgan_gp.metrics.swd import sliced_wasserstein_distance

__all__ = [
    "InceptionFeatureExtractor", "ReferenceStats", "evaluate_against", "extract_features",
    "fid_from_features", "frechet_distance", "inception_score", "kernel_inception_distance",
    "precision_recall", "reference_stats", "sliced_wasserstein_distance",
]
