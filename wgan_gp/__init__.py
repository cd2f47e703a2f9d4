"""WGAN-GP in JAX/Flax.

The pieces a notebook needs, without the command line:

    config = wgan_gp.load_config("configs/toy2d.py:8gaussians")
    gan = wgan_gp.build_gan(config, wgan_gp.AXIS_NAME)
    source = wgan_gp.create_source(config.data, config.seed)
    state = wgan_gp.replicate(wgan_gp.create_train_state(config, gan))
    step = wgan_gp.make_train_step(config, gan, source)
    state, metrics = step(state, None)   # toy data is sampled on the device
    wgan_gp.host_metrics(metrics)        # {'critic_loss': ..., 'wasserstein': ...}
"""

from wgan_gp import xla_setup

# Importing the package (the CLIs, a notebook, the benchmark) sets XLA's flags before
# JAX starts its backend: the faster CPU convolutions for every entry point.
xla_setup.prefer_eigen_convolutions()
xla_setup.quiet_missing_libtpu_notice()

from wgan_gp.config import base_config, load_config  # noqa: E402  (after the flags)
from wgan_gp.data import create_source
from wgan_gp.models import GAN
from wgan_gp.parallel import (AXIS_NAME, prefetch_to_devices, replicate, shard_batch,
                              unreplicate)
from wgan_gp.gan_state import GANState, build_gan, create_train_state
from wgan_gp.iteration import host_metrics, make_train_step, train_step
from wgan_gp.train import train_and_evaluate

__all__ = [
    "AXIS_NAME", "GAN", "GANState", "base_config", "build_gan", "create_source",
    "create_train_state", "host_metrics", "load_config", "make_train_step",
    "prefetch_to_devices", "replicate", "shard_batch", "train_and_evaluate", "train_step",
    "unreplicate",
]
