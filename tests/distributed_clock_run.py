"""Trains the toy smoke config on a 3-second budget with a late EMA, one process of a
multi-process run whose clocks disagree, and saves its final state.

Usage: python tests/distributed_clock_run.py OUT.npz WORKDIR COORDINATOR NUM_PROCESSES PROCESS_ID LATE_SECONDS
Each process reads a fake clock that advances 0.05 s per reading; this one's falls
LATE_SECONDS behind once it reaches 1 s (a stall, as of a process whose CPU clock lost
time elsewhere), so that the processes' own fractions straddle ema_start (1.5 s).
"""

import sys

import jax
import numpy as np

from conftest import CONFIGS
from wgan_gp import distributed, periodic, train
from wgan_gp.config import load_config


def main(out_path, workdir, coordinator, num_processes, process_id, late_seconds):
  distributed.initialize(coordinator, int(num_processes), int(process_id), timeout_s=120)
  clock = {"t": 0.0, "late": float(late_seconds)}

  def fake_now():
    clock["t"] += 0.05
    if clock["t"] >= 1.0 and clock["late"]:
      clock["t"] -= clock["late"]
      clock["late"] = 0.0
    return clock["t"]

  periodic.now = fake_now
  config = load_config(str(CONFIGS / "toy2d.py:smoke"), {
      "train_minutes": 0.05, "ema_start": 0.5, "n_critic": 1, "num_train_steps": 10**6,
      "log_every": 10**6, "sample_every": 10**6, "checkpoint_every": 10**6, "eval_every": 0,
      "toy_eval_samples": 100, "optim.generator.schedule": "budget-linear",
      "optim.critic.schedule": "budget-cosine", "optim.critic.decay_start": 0.5})
  state = train.train_and_evaluate(config, workdir)
  leaves = jax.tree.leaves((state.g_params, state.d_params, state.ema_g_params))
  np.savez(out_path, step=int(state.step), **{f"leaf{i}": leaf for i, leaf in enumerate(leaves)})


if __name__ == "__main__":
  main(*sys.argv[1:])
