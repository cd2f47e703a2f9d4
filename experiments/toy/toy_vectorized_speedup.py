"""Speed of K toy trials in one vmapped program vs the same K trials one after another.

    python experiments/toy/toy_vectorized_speedup.py --trials=8 --steps=300

The K settings are λ ∈ {0.1, 1, 10, 100} × seeds (the toy λ sweep). "One after another"
is what `python -m wgan_gp.sweep` does without --vectorize: each trial builds its state
and compiles its own pmapped step (its λ is a different constant). Both sides are timed
in this process, compilation reported apart from the steps. Prints a Markdown table.
"""

import argparse
import itertools
import os
import sys
import time

import jax

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from wgan_gp import data, gan_state, iteration, parallel, vectorized  # noqa: E402
from wgan_gp.config import load_config  # noqa: E402

SETTINGS = {"model.width": 256, "model.mlp_depth": 3, "batch_size": 256, "n_critic": 5,
            "optim.generator.learning_rate": 1e-4, "optim.critic.learning_rate": 1e-4}


def trial_overrides(k):
  lambdas, seeds = (0.1, 1.0, 10.0, 100.0), itertools.count()
  grid = [{"loss.gp_weight": lam, "seed": seed}
          for seed, lam in itertools.product(itertools.islice(seeds, (k + 3) // 4), lambdas)]
  return grid[:k]


def time_sequential(config, trials, steps):
  compile_seconds = step_seconds = 0.0
  for trial in trials:
    trial_config = vectorized.with_overrides(config, trial)
    start = time.perf_counter()
    gan = gan_state.build_gan(trial_config, parallel.AXIS_NAME)
    source = data.create_source(trial_config.data, trial_config.seed)
    state = parallel.replicate(gan_state.create_train_state(trial_config, gan))
    step = iteration.make_train_step(trial_config, gan, source)
    state, metrics = step(state, None)
    jax.block_until_ready(metrics)
    compile_seconds += time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
      state, metrics = step(state, None)
    jax.block_until_ready(metrics)
    step_seconds += time.perf_counter() - start
  return compile_seconds, step_seconds


def time_vectorized(config, trials, steps):
  start = time.perf_counter()
  vec = vectorized.VectorizedTrials(config, trials)
  states = vec.init()
  states, metrics = vec.step(states)
  jax.block_until_ready(metrics)
  compile_seconds = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(steps):
    states, metrics = vec.step(states)
  jax.block_until_ready(metrics)
  return compile_seconds, time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--trials", type=int, default=8)
  parser.add_argument("--steps", type=int, default=300, help="timed steps per trial")
  parser.add_argument("--width", type=int, default=SETTINGS["model.width"])
  parser.add_argument("--config", default=os.path.join(REPO, "configs", "toy2d.py:8gaussians"))
  args = parser.parse_args()
  config = load_config(args.config, {**SETTINGS, "model.width": args.width})
  trials = trial_overrides(args.trials)
  device = jax.devices()[0].device_kind
  vec_compile, vec_steps = time_vectorized(config, trials, args.steps)
  seq_compile, seq_steps = time_sequential(config, trials, args.steps)
  k, n = len(trials), args.steps
  print(f"K={k} trials × {n} steps, width {config.model.width}, batch {config.batch_size}, "
        f"n_critic {config.n_critic}, on {device}\n")
  print("| | one after another | vectorised | speed-up |\n|---|---|---|---|")
  print(f"| training steps | {seq_steps:.1f} s ({k * n / seq_steps:.1f} trial-steps/s) | "
        f"{vec_steps:.1f} s ({k * n / vec_steps:.1f} trial-steps/s) | "
        f"{seq_steps / vec_steps:.2f}× |")
  print(f"| set-up and compilation | {seq_compile:.1f} s | {vec_compile:.1f} s | "
        f"{seq_compile / vec_compile:.2f}× |")
  total_seq, total_vec = seq_compile + seq_steps, vec_compile + vec_steps
  print(f"| total | {total_seq:.1f} s | {total_vec:.1f} s | {total_seq / total_vec:.2f}× |")


if __name__ == "__main__":
  main()
