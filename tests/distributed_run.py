"""Trains the image smoke config in this process and saves its final params.

Usage: python tests/distributed_run.py OUT.npz WORKDIR IMAGES CACHE [COORDINATOR NUM_PROCESSES PROCESS_ID]
With a coordinator, the process joins a multi-process run (CPU collectives over gloo).
"""

import sys

import jax
import numpy as np

from conftest import CONFIGS
from wgan_gp import distributed, train
from wgan_gp.config import load_config


def main(out_path, workdir, images, cache_dir, coordinator=None, num_processes=None,
         process_id=None):
  if coordinator:
    distributed.initialize(coordinator, int(num_processes), int(process_id), timeout_s=120)
  config = load_config(str(CONFIGS / "celeba64.py:smoke"), {
      "data.source": "images", "data.path": images, "data.crop_size": 40, "data.crop_fraction": 0.0,
      "data.cache_dir": cache_dir,
      "num_train_steps": 4, "log_every": 2, "sample_every": 4, "checkpoint_every": 2})
  state = train.train_and_evaluate(config, workdir)
  leaves = jax.tree.leaves((state.g_params, state.d_params, state.ema_g_params))
  np.savez(out_path, devices=jax.device_count(), processes=jax.process_count(),
           **{f"leaf{i}": leaf for i, leaf in enumerate(leaves)})


if __name__ == "__main__":
  main(*sys.argv[1:])
