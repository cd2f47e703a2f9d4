import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wgan_gp import models
from wgan_gp.config import base_config


def _model_config(arch, width=4, **overrides):
  config = base_config().model
  config.arch = arch
  config.width = width
  config.z_dim = 16
  config.update(overrides)
  return config


def _leaf_paths(tree):
  return ["/".join(str(getattr(k, "key", k)) for k in path)
          for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


@pytest.mark.parametrize("arch,size", [("dcgan", 64), ("dcgan", 32), ("resnet", 64)])
def test_image_models_shapes_and_ranges(arch, size):
  gan = models.build(_model_config(arch), (size, size, 3))
  g_params, d_params = gan.init(0)
  z = jax.random.normal(jax.random.PRNGKey(1), (3, 16))
  images = jax.jit(gan.generate)(g_params, z)
  assert images.shape == (3, size, size, 3)
  assert float(jnp.max(jnp.abs(images))) <= 1.0
  scores = jax.jit(gan.criticize)(d_params, images)
  assert scores.shape == (3,) and scores.dtype == jnp.float32
  assert not any("BatchNorm" in p for p in _leaf_paths(d_params))


def test_dcgan_64_follows_the_paper_layout():
  gan = models.build(_model_config("dcgan", width=64, z_dim=128), (64, 64, 3))
  shapes = jax.eval_shape(lambda: gan.init(0))
  g_shapes, d_shapes = (sorted(x.shape for x in jax.tree.leaves(t) if len(x.shape) == 4)
                        for t in shapes)
  # Critic: 3 -> 64 -> 128 -> 256 -> 512 with 5x5 kernels; generator: the mirror image.
  assert d_shapes == sorted([(5, 5, 3, 64), (5, 5, 64, 128), (5, 5, 128, 256), (5, 5, 256, 512)])
  assert g_shapes == sorted([(5, 5, 512, 256), (5, 5, 256, 128), (5, 5, 128, 64), (5, 5, 64, 3)])
  dense = [x.shape for x in jax.tree.leaves(shapes[0]) if len(x.shape) == 2]
  assert dense == [(128, 4 * 4 * 512)]


def test_critic_scores_each_sample_independently():
  # The per-sample penalty is only meaningful if no sample influences another's score.
  for arch in ("dcgan", "resnet"):
    gan = models.build(_model_config(arch), (32, 32, 3))
    _, d_params = gan.init(0)
    x = jax.random.normal(jax.random.PRNGKey(2), (4, 32, 32, 3))
    changed = x.at[1:].set(jax.random.normal(jax.random.PRNGKey(3), (3, 32, 32, 3)))
    criticize = jax.jit(gan.criticize)
    np.testing.assert_allclose(criticize(d_params, x)[0], criticize(d_params, changed)[0],
                               rtol=1e-5)


def test_mlp_pair():
  gan = models.build(_model_config("mlp", width=32, z_dim=2, mlp_depth=3), (2,))
  g_params, d_params = gan.init(0)
  assert gan.generate(g_params, jnp.zeros((5, 2))).shape == (5, 2)
  assert gan.criticize(d_params, jnp.zeros((5, 2))).shape == (5,)
  hidden = [x.shape for x in jax.tree.leaves(d_params) if x.ndim == 2]
  assert hidden == [(2, 32), (32, 32), (32, 32), (32, 1)]


@pytest.mark.parametrize("overrides,shape,message", [
    ({"critic_norm": "batchnorm"}, (64, 64, 3), "per-sample gradient penalty"),
    ({"arch": "vgg"}, (64, 64, 3), "unknown model.arch"),
    ({}, (48, 48, 3), "power of two"),
    ({"arch": "mlp"}, (64, 64, 3), "vector data"),
])
def test_bad_model_configs_fail_clearly(overrides, shape, message):
  config = _model_config("dcgan")
  config.update(overrides)
  with pytest.raises(ValueError, match=message):
    models.build(config, shape)
