"""Mixed precision (`model.compute_dtype='bfloat16'`) stays close to float32.

bfloat16 carries activations and convolution/matmul inputs; parameters, optimizer
state, normalisation statistics, the scores, and the penalty's gradient norm stay
float32. With the same parameters and inputs, the losses and the penalty must agree
with float32 within TOLERANCE (relative), and the gradients must point the same way
(cosine above GRADIENT_COSINE).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wgan_gp import losses
from wgan_gp.config import base_config
from wgan_gp.models import build_gan

# bfloat16 keeps 8 significant bits (relative rounding 2^-9 ≈ 0.2%). Through the
# layers, the losses and the penalty drift by up to ~2% (seen: 2.1%, the ResNet's
# Wasserstein estimate), generated pixels by up to ~0.07 of their [-1, 1] range, and
# the gradients' direction by a cosine of ~0.987; the bounds leave room above that.
TOLERANCE = 0.05
IMAGE_TOLERANCE = 0.1
GRADIENT_COSINE = 0.97


def _losses_and_grads(arch, compute_dtype, conv_impl):
  config = base_config().model
  config.update(arch=arch, width=8, z_dim=16, compute_dtype=compute_dtype, conv_impl=conv_impl)
  gan = build_gan(config, (32, 32, 3))
  g_params, d_params = gan.init(0)
  keys = jax.random.split(jax.random.PRNGKey(1), 3)
  real = jax.random.uniform(keys[0], (8, 32, 32, 3), minval=-1, maxval=1)
  z = jax.random.normal(keys[1], (8, 16))
  eps = jax.random.uniform(keys[2], (8,))

  @jax.jit
  def compute(g_params, d_params):
    fake = gan.generate(g_params, z)
    critic_loss = lambda d: losses.wgan_gp_critic_loss(
        functools.partial(gan.criticize, d), real, fake, eps, 10.0)
    (loss, metrics), d_grads = jax.value_and_grad(critic_loss, has_aux=True)(d_params)
    g_loss, g_grads = jax.value_and_grad(lambda g: losses.wgan_generator_loss(
        gan.criticize(d_params, gan.generate(g, z))))(g_params)
    scalars = {"critic_loss": loss, "wasserstein": metrics["wasserstein"],
               "gradient_penalty": metrics["gradient_penalty"],
               "interp_grad_norm_mean": metrics["interp_grad_norm_mean"], "generator_loss": g_loss}
    return fake, scalars, d_grads, g_grads

  return compute(g_params, d_params)


def _cosine(a, b):
  a = np.concatenate([np.ravel(x) for x in jax.tree.leaves(a)]).astype(np.float64)
  b = np.concatenate([np.ravel(x) for x in jax.tree.leaves(b)]).astype(np.float64)
  return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))


@pytest.mark.parametrize("arch,conv_impl", [("dcgan", "fast"), ("resnet", "fast"),
                                            ("dcgan", "xla")])
def test_bfloat16_matches_float32(arch, conv_impl):
  fake32, scalars32, d_grads32, g_grads32 = _losses_and_grads(arch, "float32", conv_impl)
  fake16, scalars16, d_grads16, g_grads16 = _losses_and_grads(arch, "bfloat16", conv_impl)
  assert fake16.dtype == jnp.float32
  for grads in (d_grads16, g_grads16):  # gradients of float32 parameters
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))
  assert float(jnp.max(jnp.abs(fake16 - fake32))) < IMAGE_TOLERANCE
  for name, value in scalars32.items():
    error = abs(float(scalars16[name]) - float(value)) / max(abs(float(value)), 1e-3)
    assert error < TOLERANCE, f"{name}: {float(scalars16[name])} vs {float(value)}"
  assert _cosine(d_grads16, d_grads32) > GRADIENT_COSINE
  assert _cosine(g_grads16, g_grads32) > GRADIENT_COSINE
