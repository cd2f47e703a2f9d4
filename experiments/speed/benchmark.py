"""Speed of one WGAN-GP iteration, JAX against PyTorch, side by side in one process.

One iteration = n_critic critic updates (each with the gradient penalty's double
backward) + one generator update, as `wgan_gp.iteration.train_step` runs it (ours: the
real pmapped step) and as `WGANGP` of experiments/references/torch_reference.py runs it
(PyTorch eager, and torch.compile where it works). For each architecture, batch size and n_critic
(`--n-critic 1,2,5`, the default; a table row per value) and width (`--width 16,32,64`)
every variant is compiled and warmed up, then timed in interleaved rounds, each round
starting at the next variant (A B C, B C A, C A B, ...), so that load from other
processes hits all variants alike and none always runs first; the table reports medians.

  python experiments/speed/benchmark.py                          # CPU defaults, ~45 min
  python experiments/speed/benchmark.py --n-critic 5             # one n_critic, ~15 min
  python experiments/speed/benchmark.py --archs dcgan --batch-sizes 16 --repeats 3   # quick
  python experiments/speed/benchmark.py --jax fast:float32,xla:float32 \\
      --torch eager:float32,compile:float32 --out runs/bench

Columns: median seconds per iteration; images/s (real images consumed, n_critic ×
batch, per second); GFLOP/s achieved on the iteration's FLOPs (counted once, from the
plain `xla` formulation's HLO, framework-neutral) and that as a fraction of the measured
matmul peak of this machine (CPU: fp32, or bf16 for bfloat16 variants; GPU: bf16); time relative to
PyTorch eager of the same dtype (<1: we are faster) and throughput relative to
torch.compile; compile time (JAX: lower + compile of the step; PyTorch: first call
minus a steady one); memory (CPU: rise of the process's peak RSS over one iteration;
GPU: XLA's buffers for the step, and torch.cuda.max_memory_allocated).

Writes <out>.md and <out>.json. Runs unchanged on CPU and GPU. On CPU,
`--xla-flags` is appended to XLA_FLAGS before JAX starts (the package itself already
picks XLA:CPU's Eigen convolutions with jaxlib 0.10, `wgan_gp/xla_setup.py`).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--archs", default="dcgan,resnet")
  parser.add_argument("--batch-sizes", default="64")
  parser.add_argument("--repeats", type=int, default=5, help="timed rounds per config")
  parser.add_argument("--jax", default="fast:float32",
                      help="comma-separated conv_impl:compute_dtype variants ('' for none)")
  parser.add_argument("--torch", default="eager:float32,compile:float32",
                      help="comma-separated mode:dtype, mode eager|compile ('' for none)")
  parser.add_argument("--jax-extra", default="",
                      help="JAX variants set up after all others, so the first skipped "
                      "when past --deadline-s")
  parser.add_argument("--n-critic", default="1,2,5",
                      help="comma-separated n_critic values, each timed on its own")
  parser.add_argument("--width", default="64",
                      help="comma-separated model widths, each timed on its own (16,24,32)")
  parser.add_argument("--torch-tf-padding", action="store_true",
                      help="time PyTorch with TF's asymmetric 'SAME' padding (F.pad per "
                      "strided layer) instead of its own symmetric padding")
  parser.add_argument("--xla-flags", default="", help="appended to XLA_FLAGS")
  parser.add_argument("--deadline-s", type=float, default=None,
                      help="set up no further variant after this many seconds (the "
                      "results so far are written after every config)")
  parser.add_argument("--out", default="runs/benchmark")
  return parser.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.xla_flags:
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + ARGS.xla_flags).strip()

import jax  # noqa: E402  (after XLA_FLAGS)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "experiments" / "references"))  # torch_reference
from wgan_gp import gan_state, iteration, losses, parallel  # noqa: E402
from wgan_gp.config import base_config  # noqa: E402
from wgan_gp.hardware import cpu_model  # noqa: E402

try:
  import torch  # noqa: E402
  import torch_reference  # noqa: E402
except ImportError:  # the PyTorch side is optional
  torch = None

IMAGE_SHAPE = (64, 64, 3)


# ------------------------------------------------------------------- helpers


def on_gpu() -> bool:
  return jax.default_backend() == "gpu"


def peak_rss_rise(fn):
  """(result of fn(), rise of the process's peak RSS while it ran, bytes); CPU only."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")  # resets VmHWM (peak RSS) to the current RSS
    before = _proc_status("VmRSS")
    result = fn()
    return result, _proc_status("VmHWM") - before
  except OSError:
    return fn(), None


def _proc_status(field: str) -> int:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) * 1024
  raise OSError(field)


def matmul_peak_gflops(dtype_name: str) -> float:
  """Best measured matmul throughput, JAX and PyTorch, GFLOP/s."""
  n = 8192 if on_gpu() else 2048
  best = 0.0
  a = jnp.ones((n, n), dtype_name)
  dot = jax.jit(lambda a: a @ a)
  jax.block_until_ready(dot(a))
  for _ in range(5):
    start = time.perf_counter()
    jax.block_until_ready(dot(a))
    best = max(best, 2 * n ** 3 / (time.perf_counter() - start) / 1e9)
  if torch is not None:
    device = "cuda" if on_gpu() else "cpu"
    t = torch.ones(n, n, dtype=getattr(torch, dtype_name), device=device)
    for i in range(6):
      _sync()
      start = time.perf_counter()
      t @ t
      _sync()
      if i:
        best = max(best, 2 * n ** 3 / (time.perf_counter() - start) / 1e9)
  return best


def _sync():
  if torch is not None and on_gpu():
    torch.cuda.synchronize()


def make_config(arch, batch, n_critic, width, conv_impl="xla", compute_dtype="float32"):
  config = base_config()
  config.model.arch, config.model.width = arch, width
  config.model.conv_impl, config.model.compute_dtype = conv_impl, compute_dtype
  config.batch_size, config.n_critic = batch, n_critic
  config.data.image_size = IMAGE_SHAPE[0]
  return config


def _cost_flops(fn, *args) -> float:
  # Counted on the CPU lowering on every machine: GPU cost analyses leave out the
  # convolutions that run as library calls, and so undercount by ~200x.
  analysis = jax.jit(fn).trace(*args).lower(lowering_platforms=("cpu",)).cost_analysis()
  if not analysis:  # jax 0.11 with CUDA analyses no cross-platform lowering
    analysis = _cpu_compiled(fn, *args).cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return analysis["flops"]


def _cpu_compiled(fn, *args):
  """`fn` compiled for the host CPU, whatever the default backend."""
  cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
  on_cpu = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=cpu), args)
  return jax.jit(fn).lower(*on_cpu).compile()


def iteration_gflop(arch, batch, n_critic, width) -> float:
  """FLOPs of one iteration from the CPU HLO of the plain formulation."""
  return config_iteration_gflop(make_config(arch, batch, n_critic, width))


def config_iteration_gflop(config) -> float:
  """GFLOP of one iteration at `config`'s shapes (its model, batch, n_critic, image size),
  from the CPU HLO of the plain float32 formulation.

  The step keeps its critic updates in a scan, whose body HLO cost analysis counts
  once, so the two halves of an iteration are lowered on their own here.
  """
  config = copy.deepcopy(config)
  config.model.conv_impl, config.model.compute_dtype = "xla", "float32"
  gan = gan_state.build_gan(config)
  g_params, d_params = jax.eval_shape(lambda: gan.init(0))
  batch, size = config.batch_size, config.data.image_size
  images = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)
  z = jax.ShapeDtypeStruct((batch, config.model.z_dim), jnp.float32)
  eps = jax.ShapeDtypeStruct((batch,), jnp.float32)

  def critic_update(g_params, d_params, real, z, eps):
    fake = gan.generate(g_params, z)
    return jax.grad(lambda d: losses.wgan_gp_critic_loss(
        lambda x: gan.criticize(d, x), real, fake, eps, 1.0)[0])(d_params)

  def generator_update(g_params, d_params, z):
    return jax.grad(lambda g: -jnp.mean(gan.criticize(d_params, gan.generate(g, z))))(g_params)

  return (config.n_critic * _cost_flops(critic_update, g_params, d_params, images, z, eps)
          + _cost_flops(generator_update, g_params, d_params, z)) / 1e9


# ------------------------------------------------------------------ variants


class JaxVariant:

  def __init__(self, arch, batch, args, conv_impl, compute_dtype):
    self.name = f"jax {conv_impl} {compute_dtype}"
    self.framework, self.dtype = "jax", compute_dtype
    config = make_config(arch, batch, args.n_critic, args.width, conv_impl, compute_dtype)
    gan = gan_state.build_gan(config, parallel.AXIS_NAME)
    self.state = parallel.replicate(gan_state.create_train_state(config, gan))
    rng = np.random.default_rng(0)
    self.batch = parallel.shard_batch(
        rng.integers(0, 256, (args.n_critic, batch, *IMAGE_SHAPE), dtype=np.uint8))
    start = time.perf_counter()
    self.step = iteration.make_train_step(config, gan).lower(self.state, self.batch).compile()
    self.compile_s = time.perf_counter() - start
    stats = self.step.memory_analysis()
    self.xla_buffer_bytes = None if stats is None else (
        stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
        - stats.alias_size_in_bytes)
    self.run()  # the first run pays for allocations, not for compilation

  def run(self):
    self.state, metrics = self.step(self.state, self.batch, *iteration.NO_BUDGET)
    jax.block_until_ready((self.state, metrics))

  def memory_bytes(self):
    if on_gpu():
      return self.xla_buffer_bytes
    return peak_rss_rise(self.run)[1]


class TorchVariant:

  def __init__(self, arch, batch, args, mode, dtype):
    self.name = f"torch {mode} {dtype}"
    self.framework, self.dtype, self.mode = "torch", dtype, mode
    self.device = "cuda" if on_gpu() else "cpu"
    config = make_config(arch, batch, args.n_critic, args.width)
    g_params, d_params = gan_state.build_gan(config).init(config.seed)
    generator, critic = torch_reference.build_torch_gan(
        config.model, IMAGE_SHAPE, tf_padding=args.torch_tf_padding)
    torch_reference.params_to_torch(g_params, generator)
    torch_reference.params_to_torch(d_params, critic)
    self.wgan = torch_reference.WGANGP(
        generator, critic, config, self.device,
        autocast_dtype=torch.bfloat16 if dtype == "bfloat16" else None,
        compile_mode="default" if mode == "compile" else None)
    rng = np.random.default_rng(0)
    self.batch = torch.from_numpy(
        rng.integers(0, 256, (args.n_critic, batch, *IMAGE_SHAPE), dtype=np.uint8)).to(self.device)
    first = self._timed()
    steady = self._timed()
    self.compile_s = max(first - steady, 0.0)

  def _timed(self):
    start = time.perf_counter()
    self.run()
    return time.perf_counter() - start

  def run(self):
    self.wgan.step(self.batch)
    _sync()

  def memory_bytes(self):
    if on_gpu():
      torch.cuda.synchronize()
      torch.cuda.reset_peak_memory_stats()
      self.run()
      return torch.cuda.max_memory_allocated()
    return peak_rss_rise(self.run)[1]


def torch_flop_count(arch, batch, args) -> float | None:
  """GFLOP of one eager PyTorch iteration by torch's FLOP formulas, as a cross-check.

  FlopCounterMode itself cannot watch autograd.grad(create_graph=True) (its module
  hooks raise), so its per-op formulas are applied from a plain dispatch mode.
  """
  if torch is None:
    return None
  from torch.utils._python_dispatch import TorchDispatchMode
  from torch.utils.flop_counter import flop_registry

  class Counter(TorchDispatchMode):
    flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
      kwargs = kwargs or {}
      out = func(*args, **kwargs)
      if func._overloadpacket in flop_registry:
        Counter.flops += flop_registry[func._overloadpacket](*args, **kwargs, out_val=out)
      return out

  config = make_config(arch, batch, args.n_critic, args.width)
  generator, critic = torch_reference.build_torch_gan(config.model, IMAGE_SHAPE)
  for p in list(generator.parameters()) + list(critic.parameters()):
    torch.nn.init.normal_(p, std=0.02)
  wgan = torch_reference.WGANGP(generator, critic, config, "cpu")
  real = torch.zeros((args.n_critic, batch, *IMAGE_SHAPE), dtype=torch.uint8)
  with Counter():
    wgan.step(real)
  return Counter.flops / 1e9


# --------------------------------------------------------------------- main


def benchmark(args):
  started = time.perf_counter()
  results = {"machine": machine_info(), "args": vars(args), "configs": []}
  peaks = {"float32": matmul_peak_gflops("float32")}
  if "bfloat16" in args.jax + args.torch + args.jax_extra or on_gpu():
    peaks["bfloat16"] = matmul_peak_gflops("bfloat16")
  results["matmul_peak_gflops"] = peaks
  print(f"measured matmul peak (GFLOP/s): {peaks}", flush=True)

  configs = [(arch, batch, width, n_critic) for arch in args.archs.split(",")
             for batch in [int(b) for b in args.batch_sizes.split(",")]
             for width in width_values(args)
             for n_critic in n_critic_values(args)]
  for arch, batch, width, n_critic in configs:
    entry_args = argparse.Namespace(**{**vars(args), "n_critic": n_critic, "width": width})
    gflop = iteration_gflop(arch, batch, n_critic, width)
    entry = {"arch": arch, "batch": batch, "width": width, "n_critic": n_critic,
             "gflop_per_iteration": gflop, "torch_counter_gflop": None, "variants": {}}
    results["configs"].append(entry)
    print(f"\n== {arch} batch {batch} width {width} n_critic {n_critic}: {gflop:.0f} GFLOP "
          "per iteration", flush=True)
    variants = []
    for spec in filter(None, args.jax.split(",")):
      impl, dtype = spec.split(":")
      variants.append((JaxVariant, (arch, batch, entry_args, impl, dtype),
                       f"jax {impl} {dtype}"))
    if torch is not None:
      for spec in filter(None, args.torch.split(",")):
        mode, dtype = spec.split(":")
        variants.append((TorchVariant, (arch, batch, entry_args, mode, dtype),
                         f"torch {mode} {dtype}"))
    for spec in filter(None, args.jax_extra.split(",")):
      impl, dtype = spec.split(":")
      variants.append((JaxVariant, (arch, batch, entry_args, impl, dtype),
                       f"jax {impl} {dtype}"))
    ready = []
    for cls, init_args, name in variants:
      if args.deadline_s is not None and time.perf_counter() - started > args.deadline_s:
        entry["variants"][name] = {"error": "skipped: past --deadline-s"}
        print(f"  {name}: skipped, past the deadline", flush=True)
        continue
      try:
        variant = cls(*init_args)
        ready.append(variant)
        entry["variants"][name] = {"compile_s": variant.compile_s, "times_s": []}
        print(f"  {name}: compiled in {variant.compile_s:.1f} s", flush=True)
      except Exception as e:  # e.g. torch.compile without double backward
        entry["variants"][name] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        print(f"  {name}: FAILED {type(e).__name__}: {str(e)[:300]}", flush=True)
        traceback.print_exc(limit=3)
    for variant in ready:
      entry["variants"][variant.name]["memory_bytes"] = variant.memory_bytes()
    for round_index in range(args.repeats):
      # Each round starts at the next variant, so that none always runs first.
      shift = round_index % max(len(ready), 1)
      for variant in ready[shift:] + ready[:shift]:
        start = time.perf_counter()
        variant.run()
        elapsed = time.perf_counter() - start
        entry["variants"][variant.name]["times_s"].append(elapsed)
      print(f"  round {round_index + 1}: " + ", ".join(
          f"{v.name} {entry['variants'][v.name]['times_s'][-1]:.2f}s" for v in ready),
          flush=True)
    del ready
    if torch is not None and not on_gpu():
      entry["torch_counter_gflop"] = torch_flop_count(arch, batch, entry_args)
    summarize(entry, entry_args, peaks)
    write_outputs(results, args)
  return results


def width_values(args) -> list[int]:
  """--width as a list of ints ('16,32' -> [16, 32]; an int is one value)."""
  if isinstance(args.width, int):
    return [args.width]
  return [int(w) for w in str(args.width).split(",") if w.strip()]


def n_critic_values(args) -> list[int]:
  """--n-critic as a list of ints ('1,2,5' -> [1, 2, 5]; an int is one value)."""
  if isinstance(args.n_critic, int):
    return [args.n_critic]
  return [int(n) for n in str(args.n_critic).split(",") if n.strip()]


def summarize(entry, args, peaks):
  """Medians and rates of one config; `args.n_critic` is that config's own n_critic."""
  images = args.n_critic * entry["batch"]
  for name, v in entry["variants"].items():
    if "times_s" not in v or not v["times_s"]:
      continue
    v["median_s"] = statistics.median(v["times_s"])
    v["images_per_s"] = images / v["median_s"]
    v["gflops"] = entry["gflop_per_iteration"] / v["median_s"]
    v["peak_fraction"] = v["gflops"] / peak_for(name.split()[-1], peaks)
  for name, v in entry["variants"].items():
    if "median_s" not in v:
      continue
    dtype = name.split()[-1]
    for mode in ("eager", "compile"):
      ref = entry["variants"].get(f"torch {mode} {dtype}", {})
      if "median_s" in ref:
        v[f"time_vs_torch_{mode}"] = v["median_s"] / ref["median_s"]
        v[f"speedup_vs_torch_{mode}"] = ref["median_s"] / v["median_s"]


def peak_for(dtype: str, peaks) -> float:
  """The peak a variant is measured against: on GPU the bf16 tensor-core peak for all
  (the chip's headline), on CPU that of the variant's own dtype."""
  if on_gpu() and "bfloat16" in peaks:
    return peaks["bfloat16"]
  return peaks.get(dtype, peaks["float32"])


def write_outputs(results, args):
  out = Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.with_suffix(".json").write_text(json.dumps(results, indent=2))
  out.with_suffix(".md").write_text(markdown(results))


def markdown(results) -> str:
  m = results["machine"]
  lines = [f"# WGAN-GP iteration benchmark ({m['device']}; host: {m.get('cpu', 'unknown CPU')})",
           "",
           f"{m['jax']}, {m['torch']}; width and n_critic per row, 64×64; medians of {results['args']['repeats']} "
           f"interleaved rounds. Measured matmul peak: "
           + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in results["matmul_peak_gflops"].items())
           + ".", "",
           "| arch | batch | width | n_critic | variant | s/iter | images/s | GFLOP/s | % peak "
           "| time vs torch eager | speedup vs torch.compile | compile s | memory MB |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  fmt = lambda x, f: "–" if x is None else format(x, f)
  # JSON written before n_critic was per config has it only in its args.
  n_critic_of = lambda entry: entry.get("n_critic", results["args"]["n_critic"])
  width_of = lambda entry: entry.get("width", results["args"]["width"])
  for entry in results["configs"]:
    for name, v in entry["variants"].items():
      if "error" in v:
        lines.append(f"| {entry['arch']} | {entry['batch']} | {width_of(entry)} | "
                     f"{n_critic_of(entry)} | {name} | failed: {v['error'][:80]} | | | | | | | |")
        continue
      if "median_s" not in v:
        continue
      memory = v.get("memory_bytes")
      lines.append(
          f"| {entry['arch']} | {entry['batch']} | {width_of(entry)} | {n_critic_of(entry)} | "
          f"{name} | {v['median_s']:.3f} | "
          f"{v['images_per_s']:.0f} | {v['gflops']:.0f} | {100 * v['peak_fraction']:.0f}% | "
          f"{fmt(v.get('time_vs_torch_eager'), '.2f')} | "
          f"{fmt(v.get('speedup_vs_torch_compile'), '.2f')} | {v['compile_s']:.1f} | "
          f"{fmt(None if memory is None else memory / 2**20, '.0f')} |")
  lines.append("")
  for entry in results["configs"]:
    counter = entry.get("torch_counter_gflop")
    lines.append(f"{entry['arch']} batch {entry['batch']} width {width_of(entry)} "
                 f"n_critic {n_critic_of(entry)}: "
                 f"{entry['gflop_per_iteration']:.0f} "
                 "GFLOP per iteration (XLA HLO count of the plain formulation)"
                 + (f"; torch's FLOP counter: {counter:.0f}" if counter else "") + ".")
  return "\n".join(lines) + "\n"


def machine_info():
  device = jax.devices()[0]
  return {
      "device": f"{device.device_kind} ({jax.default_backend()}, {os.cpu_count()} CPUs)",
      "cpu": cpu_model(),
      "platform": platform.platform(),
      "jax": f"jax {jax.__version__}",
      "torch": f"torch {torch.__version__}" if torch is not None else "no torch",
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }


if __name__ == "__main__":
  benchmark(ARGS)
