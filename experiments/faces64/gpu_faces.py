"""The Python steps of experiments/faces64/gpu_faces.sh, after training.

  python experiments/faces64/gpu_faces.py export WORKDIR DIR --config=... --command=...
      the run's EMA generator as a pretrained folder (wgan_gp.pretrained), with the row
      that `python -m wgan_gp.face_protocol --pretrained=DIR` completes with FID and KID
  python experiments/faces64/gpu_faces.py throughput WORKDIR OUT.json [--trials=4]
      images/s of the run's training step (its config.json: shapes, dtype, n_critic) on
      this machine, for one run and for K runs vmapped in one program, with the FLOPs
      and the share of the bf16 peak, as experiments/speed/benchmark.py counts them

The throughput JSON is rewritten after each part, so a part cut short by the caller's
deadline leaves the parts before it.
"""

import argparse
import functools
import json
import os
import statistics
import sys
import time

import numpy as np

EXPERIMENTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(EXPERIMENTS))
sys.path.insert(0, os.path.join(EXPERIMENTS, "speed"))  # benchmark: the FLOP count, the host

import jax  # noqa: E402
import ml_collections  # noqa: E402

from wgan_gp import gan_state, iteration, parallel, pretrained  # noqa: E402
from wgan_gp.checkpoint import Checkpointer  # noqa: E402
from wgan_gp.files import write_atomically  # noqa: E402
from wgan_gp.runs import load_run  # noqa: E402

# Dense bf16 tensor-core peak by the vendor's datasheet (SXM parts), FLOP/s.
NOMINAL_BF16_PEAK = {"H100": 989e12, "H200": 989e12}


def export(args) -> int:
  from wgan_gp.face_protocol import CELEBA_TERMS  # the terms every face generator ships under

  run = load_run(args.workdir)
  checkpoint = Checkpointer(os.path.join(args.workdir, "checkpoints"), keep=1_000_000)
  try:
    seconds = checkpoint.metadata(run.step).get("training_seconds")
  finally:
    checkpoint.close()
  # face_protocol's row, less what only the CPU measures afterwards (FID, KID, floor).
  row = {"name": args.name, "hardware": jax.devices()[0].device_kind, "config": args.config,
         "steps": run.step, "minutes": None if seconds is None else round(seconds / 60.0, 2),
         "images_seen": run.data_position, "run_config": run.config.to_dict(),
         "command": args.command, "terms": CELEBA_TERMS}
  pretrained.export(args.dir, run.config, run.state.ema_g_params, row)
  pretrained.load(args.dir)  # fails here, not on the CPU later, if it does not load
  print(json.dumps({k: v for k, v in row.items() if k not in ("terms", "run_config")}))
  return 0


def _median_step_seconds(step, state, batch, steps: int, rounds: int):
  """(median seconds per step over `rounds` runs of `steps` back-to-back steps, state)."""
  times = []
  for _ in range(rounds):
    start = time.perf_counter()
    for _ in range(steps):
      state, metrics = step(state, batch)
    jax.block_until_ready((state, metrics))
    times.append((time.perf_counter() - start) / steps)
  return statistics.median(times), state


def _first_call_seconds(step, state, batch):
  """(seconds of the first call, compilation included, state)."""
  start = time.perf_counter()
  state, metrics = step(state, batch)
  jax.block_until_ready((state, metrics))
  return time.perf_counter() - start, state


def iteration_gflop(config) -> float:
  """GFLOP of one iteration at `config`'s shapes, counted as experiments/speed/benchmark.py
  counts them, so the shares of peak compare with its tables."""
  from benchmark import config_iteration_gflop
  return config_iteration_gflop(config)


def _rates(seconds: float, images: int, gflop: float, peaks: dict) -> dict:
  rates = {"seconds_per_step": seconds, "images_per_s": images / seconds,
           "tflops": gflop / seconds / 1e3}
  for name, peak in peaks.items():
    rates[f"share_of_{name}"] = gflop * 1e9 / seconds / peak
  return rates


def throughput(args) -> int:
  from benchmark import machine_info, matmul_peak_gflops

  with open(os.path.join(args.workdir, "config.json")) as f:
    config = ml_collections.ConfigDict(json.load(f))
  on_gpu = jax.default_backend() == "gpu"
  kind = jax.devices()[0].device_kind
  # Real images consumed per iteration: n_critic batches (experiments/speed/benchmark.py's count).
  images = config.n_critic * config.batch_size
  result = {"machine": machine_info(), "config": args.config,
            "arch": config.model.arch, "width": config.model.width,
            "image_size": config.data.image_size, "batch": config.batch_size,
            "n_critic": config.n_critic, "compute_dtype": config.model.compute_dtype,
            "augment": config.get("augment", ""),
            "steps_per_round": args.steps, "rounds": args.rounds}
  save = lambda: write_atomically(args.out, json.dumps(result, indent=2) + "\n")

  start = time.perf_counter()
  result["gflop_per_iteration"] = gflop = iteration_gflop(config)
  result["flop_count_seconds"] = round(time.perf_counter() - start, 1)
  peaks = {}
  nominal = next((v for k, v in NOMINAL_BF16_PEAK.items() if k in kind), None)
  if nominal:
    peaks["nominal_bf16_peak"] = nominal
  if on_gpu:  # a share of the CPU's matmul peak says little about a GPU recipe
    peaks["measured_bf16_matmul_peak"] = matmul_peak_gflops("bfloat16") * 1e9
  result["peaks_flops"] = peaks
  save()

  # One run: the pmapped step the training loop runs, on a fixed random uint8 batch
  # (the input pipeline is left out: the training log's steps/s includes it).
  gan = gan_state.build_gan(config, parallel.AXIS_NAME)
  rng = np.random.default_rng(0)
  size = config.data.image_size
  host_batch = rng.integers(0, 256, (config.n_critic, config.batch_size, size, size, 3),
                            dtype=np.uint8)
  step = iteration.make_train_step(config, gan)
  state = parallel.replicate(gan_state.create_train_state(config, gan))
  batch = parallel.shard_batch(host_batch)
  first, state = _first_call_seconds(step, state, batch)
  seconds, state = _median_step_seconds(step, state, batch, args.steps, args.rounds)
  result["one_run"] = {"first_call_seconds": first, **_rates(seconds, images, gflop, peaks)}
  del state
  save()
  print(json.dumps(result["one_run"]), flush=True)

  # K runs in one program: the step vmapped over K states (own seeds), as
  # wgan_gp.vectorized does for the toy data; all K read the same real batch.
  if args.trials > 1:
    from wgan_gp.vectorized import stack

    def one_trial(state, real):
      per_device = functools.partial(iteration.train_step, gan=gan, config=config,
                                     axis_name=parallel.AXIS_NAME)
      # An axis of size 1 stands for the device axis: its collectives are identities.
      new_state, metrics = jax.vmap(per_device, axis_name=parallel.AXIS_NAME)(
          jax.tree.map(lambda x: x[None], state), real[None])
      return jax.tree.map(lambda x: x[0], (new_state, metrics))

    k_step = jax.jit(jax.vmap(one_trial, in_axes=(0, None)), donate_argnums=(0,))
    states = stack([gan_state.create_train_state(config, gan, seed=k)
                    for k in range(args.trials)])
    k_batch = jax.device_put(host_batch)
    first, states = _first_call_seconds(k_step, states, k_batch)
    seconds, states = _median_step_seconds(k_step, states, k_batch, args.steps, args.rounds)
    result["k_runs"] = {"trials": args.trials, "first_call_seconds": first,
                        **_rates(seconds, args.trials * images, args.trials * gflop, peaks)}
    save()
    print(json.dumps(result["k_runs"]), flush=True)
  return 0


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  commands = parser.add_subparsers(dest="command_name", required=True)
  p = commands.add_parser("export", help="the EMA generator as a pretrained folder")
  p.add_argument("workdir")
  p.add_argument("dir")
  p.add_argument("--name", default="gpu-recipe", help="the row's name in the table")
  p.add_argument("--config", default="", help="the config the run used, for the table")
  p.add_argument("--command", default="", help="the command that reproduces the run")
  p.set_defaults(fn=export)
  p = commands.add_parser("throughput", help="images/s of the run's step on this machine")
  p.add_argument("workdir")
  p.add_argument("out")
  p.add_argument("--config", default="", help="the config the run used, for the record")
  p.add_argument("--trials", type=int, default=4, help="K runs in one program (1: none)")
  p.add_argument("--steps", type=int, default=20, help="back-to-back steps per timed round")
  p.add_argument("--rounds", type=int, default=5, help="timed rounds (the median is kept)")
  p.set_defaults(fn=throughput)
  args = parser.parse_args(argv)
  return args.fn(args)


if __name__ == "__main__":
  sys.exit(main())
