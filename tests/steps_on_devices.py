"""Runs a few training steps on however many devices XLA_FLAGS gives, saves the params.

Used by test_train.py to compare 1 device with several on the same global batches.
Usage: python tests/steps_on_devices.py OUT.npz
"""

import sys

import jax
import numpy as np

from conftest import CONFIGS
from wgan_gp import data, gan_state, iteration, parallel
from wgan_gp.config import load_config


def run(config_path, steps, batches=None):
  config = load_config(str(CONFIGS / config_path))
  gan = gan_state.build_gan(config, parallel.AXIS_NAME)
  source = data.ToySource(config.data.source) if batches is None else None
  state = parallel.replicate(gan_state.create_train_state(config, gan))
  step = iteration.make_train_step(config, gan, source)
  for i in range(steps):
    state, _ = step(state, None if batches is None else parallel.shard_batch(batches[i]))
  host = parallel.unreplicate(state)
  return {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(
              (host.g_params, host.d_params, host.ema_g_params))[0]}


def main(out_path):
  results = {f"toy/{k}": v for k, v in run("toy2d.py:smoke", 3).items()}
  config = load_config(str(CONFIGS / "celeba64.py:smoke"))
  rng = np.random.default_rng(0)
  shape = (config.n_critic, config.batch_size, config.data.image_size, config.data.image_size, 3)
  batches = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(2)]
  results.update({f"images/{k}": v for k, v in run("celeba64.py:smoke", 2, batches).items()})
  np.savez(out_path, devices=jax.device_count(), **results)


if __name__ == "__main__":
  main(sys.argv[1])
