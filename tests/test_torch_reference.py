"""Our losses, penalty and gradients agree with a PyTorch port (skipped without torch).

The port, its weight conversion and the report live in experiments/references/torch_reference.py;
`python experiments/references/torch_reference.py` prints the full-width comparison.
"""

import sys

import jax
import numpy as np
import pytest

from conftest import REPO_ROOT

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow  # PyTorch's side of each check is slow on a CPU
sys.path.insert(0, str(REPO_ROOT / "experiments" / "references"))
import torch_reference  # noqa: E402

from wgan_gp.config import base_config  # noqa: E402
from wgan_gp import models  # noqa: E402


@pytest.mark.parametrize("arch,conv_impl,conv_fold", [
    ("dcgan", "xla", "thin"), ("dcgan", "fast", "thin"), ("resnet", "fast", "thin"),
    # Width 16: layers of 16 and 32 channels, split by phase under 'thin', folded here
    # (the cpu2 recipe's setting) and split everywhere under 'none'.
    ("dcgan", "fast", "all"), ("dcgan", "fast", "none")])
def test_jax_matches_pytorch(arch, conv_impl, conv_fold):
  report = torch_reference.cross_check(arch, batch=4, width=16 if conv_fold != "thin" else 8,
                                       image_size=32, conv_impl=conv_impl,
                                       conv_fold=conv_fold)
  for name in ("critic loss", "gradient penalty", "generator loss"):
    assert report["jax_vs_torch"][name] < 1e-4, name
  # Gradients: float32 rounding, amplified where a quantity nearly cancels, is the same
  # order in both frameworks; a real disagreement would be orders larger.
  for name, error in report["jax_vs_f64"].items():
    assert error < max(1e-3, 20 * report["torch_vs_f64"][name]), name


def test_weights_round_trip():
  for arch in ("dcgan", "resnet"):
    config = base_config().model
    config.update(arch=arch, width=4, z_dim=8)
    gan = models.build(config, (32, 32, 3))
    for params, module in zip(gan.init(0), torch_reference.build_torch_gan(config, (32, 32, 3))):
      torch_reference.params_to_torch(params, module)
      back = torch_reference.params_from_torch(module)
      for path, value in torch_reference._flat(jax.tree.map(np.asarray, params)):
        np.testing.assert_array_equal(dict(torch_reference._flat(back))[path], value)
