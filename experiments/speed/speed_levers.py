"""Candidate speed levers for the training step, each timed against the unchanged step in
interleaved rounds on the same host.

  python experiments/speed/speed_levers.py                                    # the CPU recipe's shape
  python experiments/speed/speed_levers.py --width 32 --n-critic 2 --batch 32 --rounds 7
  python experiments/speed/speed_levers.py --levers baseline,fold_all --out runs/levers

Every lever runs in a process of its own (XLA flags take effect only before JAX starts),
which compiles the real pmapped step (`wgan_gp.iteration.make_train_step`) of
configs/celeba64.py:cpu_round1 (`--config`) with the given width, batch and n_critic, the
lever's change applied, then waits. 'baseline' is that config as it is. The
parent asks each process in turn to time `--per-round` iterations (round r starts
at lever r and goes round them all, then round r + 1), so that drifting load from elsewhere hits every lever alike;
the others sit idle meanwhile. Each round of a lever is compared with the baseline's
round beside it, and with a second, identical baseline process ('baseline_again'): one
process can run a few % slower than another for its whole life, so a lever counts as
faster only if it beats the faster of the two controls in every round, by a median
ratio below 0.99. `--from-json` re-scores a saved run.
Writes <out>.json and <out>.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
_EIGEN = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"

# name -> (description, extra XLA flags, Python-level change in the child)
LEVERS = {
    "baseline": ("the step as it is (fast formulation, Eigen convolutions)", "", ""),
    "baseline_again": ("the same step in a second process: the noise floor", "", ""),
    "fold_thin": ("model.conv_fold='thin': strided layers folded only where a side has "
                  "fewer than 16 channels, split by phase otherwise", "",
                  "config:model.conv_fold=thin"),
    "fold_all": ("model.conv_fold='all': every strided layer's input gradient and "
                 "transposed convolution folded (space-to-depth, one convolution)", "",
                 "config:model.conv_fold=all"),
    "fold_below_32": ("folded where a layer has fewer than 32 channels on one side, "
                      "split by phase otherwise", "", "fold_below_32"),
    "fold_below_64": ("folded where a layer has fewer than 64 channels on one side, "
                      "split by phase otherwise", "", "fold_below_64"),
    "split_all": ("model.conv_fold='none': every one split by phase (stride-1 "
                  "convolutions per phase)", "", "config:model.conv_fold=none"),
    "merged_critic_batch": ("D(real) and D(fake) as one critic call on the 2N batch", "",
                            "merged_critic_batch"),
    # The critic's step (#35): its penalty off, lazy, 1:1; capacity bought with the time.
    "no_penalty": ("the penalty left out of every critic update (what it costs; not a "
                   "recipe)", "", "no_penalty"),
    "lazy_penalty": ("loss.gp_every=2: the penalty (at 2λ) on every other critic update, "
                     "the others without its double backward", "", "config:loss.gp_every=2"),
    "one_to_one": ("n_critic=1: one critic update per generator update", "",
                   "config:n_critic=1"),
    "width_32": ("model.width=32", "", "config:model.width=32"),
    "width_48": ("model.width=48", "", "config:model.width=48"),
    "lazy_width_32": ("loss.gp_every=2 and model.width=32", "",
                      "config:loss.gp_every=2;config:model.width=32"),
    "one_to_one_width_32": ("n_critic=1 and model.width=32", "",
                            "config:n_critic=1;config:model.width=32"),
    # bCR on the lazy penalty (#35): its cost every update, every other one, reals only.
    "lazy_bcr": ("loss.gp_every=2 with bCR, loss.consistency_{real,fake}_weight=1: two "
                 "more critic passes on every critic update", "",
                 "config:loss.gp_every=2;config:loss.consistency_real_weight=1;"
                 "config:loss.consistency_fake_weight=1"),
    "lazy_bcr_every_2": ("lazy_bcr with loss.consistency_every=2: bCR (at 2λ) on the "
                         "updates without the penalty only", "",
                         "config:loss.gp_every=2;config:loss.consistency_real_weight=1;"
                         "config:loss.consistency_fake_weight=1;config:loss.consistency_every=2"),
    "lazy_bcr_real": ("lazy_bcr on the reals only (consistency_fake_weight=0): one more "
                      "critic pass per update", "",
                      "config:loss.gp_every=2;config:loss.consistency_real_weight=1"),
    "ynnpack_convolutions": ("XLA:CPU's YNNPACK convolutions instead of Eigen's",
                             "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution",
                             ""),
    "xnnpack": ("--xla_cpu_use_xnnpack=true", "--xla_cpu_use_xnnpack=true", ""),
    "onednn": ("--xla_cpu_use_onednn=true", "--xla_cpu_use_onednn=true", ""),
    "sequential_scheduler": ("--xla_cpu_enable_concurrency_optimized_scheduler=false",
                             "--xla_cpu_enable_concurrency_optimized_scheduler=false", ""),
    "single_thread_eigen": ("--xla_cpu_multi_thread_eigen=false (thunks still run "
                            "concurrently)", "--xla_cpu_multi_thread_eigen=false", ""),
    "two_host_devices": ("the batch split over 2 CPU devices by pmap, one core each",
                         "--xla_force_host_platform_device_count=2 "
                         "--xla_cpu_multi_thread_eigen=false", ""),
    "fast_math": ("--xla_cpu_enable_fast_math=true", "--xla_cpu_enable_fast_math=true", ""),
    "vector_width_512": ("--xla_cpu_prefer_vector_width=512",
                         "--xla_cpu_prefer_vector_width=512", ""),
}


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--levers", default=",".join(LEVERS))
  parser.add_argument("--config", default="cpu",
                      help="configs/celeba64.py argument whose step is timed, with the width, "
                      "batch and n_critic below")
  parser.add_argument("--width", type=int, default=16)
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--n-critic", type=int, default=1)
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--per-round", type=int, default=4, help="iterations timed per round")
  parser.add_argument("--out", default="runs/speed_levers")
  parser.add_argument("--from-json", default="",
                      help="re-score the rounds of a saved run (its .json) and rewrite it")
  parser.add_argument("--child", default="", help=argparse.SUPPRESS)
  return parser.parse_args(argv)


# ------------------------------------------------------------------ child


def _apply_lever(change: str, config) -> None:
  """Applies a lever's change: 'config:<dotted name>=<value>' to `config`, the others
  to the code (in this process only)."""
  from wgan_gp import conv, losses  # noqa: PLC0415
  if ";" in change:
    for part in change.split(";"):
      _apply_lever(part, config)
  elif change.startswith("config:"):
    name, value = change.removeprefix("config:").split("=")
    section, _, key = name.rpartition(".")
    node = config[section] if section else config
    node[key] = type(node[key])(value)
  elif change == "no_penalty":
    plain = losses.wgan_gp_critic_loss
    losses.wgan_gp_critic_loss = (
        lambda critic_fn, real, fake, eps, gp_weight, *args: plain(critic_fn, real, fake, eps,
                                                                   None, *args))
  elif change.startswith("fold_below_"):
    config.model.conv_fold = "thin"
    conv._THIN_CHANNELS = int(change.removeprefix("fold_below_"))
  elif change == "merged_critic_batch":
    plain = losses.wgan_gp_critic_loss

    # The plain loss, with its two critic calls on the real and the fake batch answered
    # from one call on both; the penalty's calls go through unchanged.
    def merged(critic_fn, real, fake, eps, *args, **kwargs):
      import jax.numpy as jnp  # noqa: PLC0415
      scores = critic_fn(jnp.concatenate([real, fake]))
      split = {id(real): scores[:real.shape[0]], id(fake): scores[real.shape[0]:]}
      return plain(lambda x: split[id(x)] if id(x) in split else critic_fn(x),
                   real, fake, eps, *args, **kwargs)

    losses.wgan_gp_critic_loss = merged
  elif change:
    raise ValueError(f"unknown lever change {change!r}")


def child(args):
  """Compiles the step, prints 'ready', then times --per-round iterations per line read."""
  import jax  # noqa: PLC0415
  sys.path.insert(0, str(REPO_ROOT / "experiments" / "speed"))
  import profile_step  # noqa: PLC0415
  from wgan_gp import iteration  # noqa: PLC0415
  config = profile_step.recipe_config(args.config, args.width, args.batch, args.n_critic)
  _apply_lever(LEVERS[args.child][2], config)
  compiled, state, batch = profile_step.compiled_step(config)

  def run(state):
    state, metrics = compiled(state, batch, *iteration.NO_BUDGET)
    jax.block_until_ready((state, metrics))
    return state

  for _ in range(1 + args.per_round):  # allocations, then one untimed round
    state = run(state)
  print(json.dumps({"ready": True, "devices": jax.device_count()}), flush=True)
  for _ in sys.stdin:
    times = []
    for _ in range(args.per_round):
      start = time.perf_counter()
      state = run(state)
      times.append(time.perf_counter() - start)
    print(json.dumps({"median_s": statistics.median(times)}), flush=True)


# ------------------------------------------------------------------ parent


def _start(name: str, args) -> subprocess.Popen:
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {_EIGEN} {LEVERS[name][1]}".strip()
  if "ynn_fusion_type=+" in LEVERS[name][1]:
    env["XLA_FLAGS"] = env["XLA_FLAGS"].replace(_EIGEN, "")
  command = [sys.executable, __file__, f"--child={name}", f"--config={args.config}",
             f"--width={args.width}",
             f"--batch={args.batch}", f"--n-critic={args.n_critic}",
             f"--per-round={args.per_round}"]
  return subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True, cwd=REPO_ROOT)


def _reply(process: subprocess.Popen) -> dict:
  for line in process.stdout:
    if line.startswith("{"):
      return json.loads(line)
  raise RuntimeError(f"lever process exited with {process.wait()}")


def main(args):
  sys.path.insert(0, str(REPO_ROOT / "experiments" / "speed"))
  names = [n for n in args.levers.split(",") if n]
  unknown = sorted(set(names) - set(LEVERS))
  if unknown:
    raise SystemExit(f"unknown levers {unknown}; choose from {sorted(LEVERS)}")
  for control in ("baseline_again", "baseline"):
    if control not in names:
      names.insert(0, control)
  processes = {}
  for name in names:  # one at a time: compilations do not overlap the others
    processes[name] = _start(name, args)
    _reply(processes[name])
    print(f"{name}: compiled", flush=True)
  rounds = {name: [] for name in names}
  try:
    for r in range(args.rounds):
      # Each round starts at the next lever: no lever always runs first or after another.
      for name in names[r % len(names):] + names[:r % len(names)]:
        processes[name].stdin.write("run\n")
        processes[name].stdin.flush()
        rounds[name].append(_reply(processes[name])["median_s"])
      print(f"round {r + 1}: " + ", ".join(f"{n} {rounds[n][-1]:.3f}" for n in names),
            flush=True)
  finally:
    for process in processes.values():
      process.stdin.close()
      process.wait()
  return write_outputs(rounds, args)


def write_outputs(rounds: dict, args, machine: dict | None = None) -> dict:
  import benchmark  # noqa: PLC0415  (the host description)
  base = rounds["baseline"]
  base_median = statistics.median(base)
  spread = (max(base) - min(base)) / base_median
  # Per round, the faster of the two identical control processes: a lever must beat
  # both, since one process can run a few % slower than another for its whole life.
  reference = [min(pair) for pair in zip(base, rounds.get("baseline_again", base))]
  levers = {}
  for name, times in rounds.items():
    ratios = [t / b for t, b in zip(times, base)]
    against_controls = [t / r for t, r in zip(times, reference)]
    wins = sum(r < 1 for r in against_controls)
    levers[name] = {"description": LEVERS[name][0], "xla_flags": LEVERS[name][1],
                    "times_s": times, "median_s": statistics.median(times),
                    "time_vs_baseline": statistics.median(ratios),
                    "time_vs_faster_control": statistics.median(against_controls),
                    "rounds_faster_than_both_controls": wins,
                    "faster": (name not in ("baseline", "baseline_again")
                               and wins == len(times)
                               and statistics.median(against_controls) < 0.99)}
  results = {"machine": machine or benchmark.machine_info(), "args": vars(args),
             "baseline_spread": spread, "levers": levers}
  out = Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.with_suffix(".json").write_text(json.dumps(results, indent=2))
  m = results["machine"]
  lines = [f"# Speed levers for the training step ({m['cpu']})", "",
           f"{m['jax']}; configs/celeba64.py:{getattr(args, 'config', 'cpu')} at width "
           f"{args.width}, batch {args.batch}, "
           f"n_critic {args.n_critic}; medians of {args.rounds} interleaved rounds of "
           f"{args.per_round} iterations after one untimed round, each lever in its own "
           f"process (experiments/speed/speed_levers.py). The baseline's own rounds spread "
           f"(max − min) / median: {100 * spread:.1f}%. Ratios are medians over rounds of "
           f"the lever's time over the baseline's, and over the faster control's (baseline "
           f"or baseline_again) of the same round. Faster: faster than both controls in "
           f"every round, by a median ratio below 0.99.", "",
           "| lever | s/iter | vs baseline | vs the faster control | rounds faster than "
           "both controls | faster |",
           "|---|---|---|---|---|---|"]
  for name, v in levers.items():
    lines.append(f"| {name}: {v['description']} | {v['median_s']:.4f} | "
                 f"{v['time_vs_baseline']:.3f} | {v['time_vs_faster_control']:.3f} | "
                 f"{v['rounds_faster_than_both_controls']}/{len(v['times_s'])} | "
                 f"{'yes' if v['faster'] else 'no'} |")
  out.with_suffix(".md").write_text("\n".join(lines) + "\n")
  print("\n".join(lines))
  return results


if __name__ == "__main__":
  ARGS = parse_args()
  if ARGS.child:
    child(ARGS)
  elif ARGS.from_json:
    saved = json.loads(Path(ARGS.from_json).read_text())
    write_outputs({name: v["times_s"] for name, v in saved["levers"].items()},
                  argparse.Namespace(**{**saved["args"], "out": ARGS.from_json[:-len(".json")]}),
                  machine=saved["machine"])
  else:
    main(ARGS)
