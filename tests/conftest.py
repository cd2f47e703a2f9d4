import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "configs"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
CELEBA_TAR = SHARED_DATA / "celeba_align_10k_89x109.tar"

requires_celeba_tar = pytest.mark.skipif(
    not CELEBA_TAR.exists(),
    reason=f"{CELEBA_TAR} not found: the shared CelebA sample sits beside the checkout in CI "
    "and the dev workspace, not in a user's clone")


def subprocess_env(devices: int = 1, **extra) -> dict:
  """Environment for a child Python: `devices` CPU devices, the repo importable."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
  env.update(extra)
  return env


def gan_losses_and_grads(image_size: int, batch: int, **model_overrides):
  """One critic-loss and one generator-loss evaluation of a fresh GAN (seed 0) on fixed
  random inputs: (fake images, scalars, critic grads, generator grads), with the scalars
  the critic loss's metrics plus 'generator_loss'."""
  compute, params = gan_losses_and_grads_fn(image_size, batch, **model_overrides)
  return compute(*params)


def gan_losses_and_grads_fn(image_size: int, batch: int, **model_overrides):
  """The jitted computation behind `gan_losses_and_grads`, and its (generator, critic)
  parameters."""
  import functools

  import jax

  from wgan_gp import losses
  from wgan_gp.config import base_config
  from wgan_gp import models

  config = base_config().model
  config.update(**model_overrides)
  gan = models.build(config, (image_size, image_size, 3))
  g_params, d_params = gan.init(0)
  keys = jax.random.split(jax.random.PRNGKey(1), 3)
  real = jax.random.uniform(keys[0], (batch, image_size, image_size, 3), minval=-1, maxval=1)
  z = jax.random.normal(keys[1], (batch, config.z_dim))
  eps = jax.random.uniform(keys[2], (batch,))

  @jax.jit
  def compute(g_params, d_params):
    fake = gan.generate(g_params, z)
    critic_loss = lambda d: losses.wgan_gp_critic_loss(
        functools.partial(gan.criticize, d), real, fake, eps, 10.0)
    (loss, scalars), d_grads = jax.value_and_grad(critic_loss, has_aux=True)(d_params)
    g_loss, g_grads = jax.value_and_grad(lambda g: losses.wgan_generator_loss(
        gan.criticize(d_params, gan.generate(g, z))))(g_params)
    return fake, {**scalars, "critic_loss": loss, "generator_loss": g_loss}, d_grads, g_grads

  return compute, (g_params, d_params)
