"""Where one training iteration's time goes: a jax.profiler trace of the real pmapped step
(`wgan_gp.iteration.make_train_step`) at the CPU recipe's shape, its XLA thunks grouped
by kind and by the part of the step they belong to.

  python experiments/speed/profile_step.py                                  # widths 16,24,32,48
  python experiments/speed/profile_step.py --widths 16 --n-critic 2 --batch 32
  python experiments/speed/profile_step.py --out experiments/speed/results/profile_cpu_xeon

For each width the step is compiled and warmed up, timed without the profiler (median
s/iter), then traced for `--steps` iterations. Every thunk of the trace is an HLO
instruction of the compiled step; each is put in one kind from its HLO:
- convolutions: 'conv strided' (stride 2: the critic's forward layers), 'conv stride-1'
  (the phase and sub-pixel forms of the fast formulation: input gradients, transposed
  convolutions), 'conv weight gradient' (a window wider than any kernel, or dilated),
  'conv SLOW PATH' (base dilation, window reversal, grouped: must stay empty);
- 'matmul' (dense layers), 'layout copy' (fusions of only transposes, copies, pads,
  slices, reshapes: the formulation's space-to-depth, phase interleaving and XLA's
  layout changes feeding the convolutions), 'reduction' (norms, means, sums: LayerNorm,
  BatchNorm, the penalty's norms), 'elementwise' (the rest: activations, Adam, EMA,
  the random numbers);
and by part of the step, from the named scopes of `iteration.train_step` in the HLO
metadata: the critic's batch (the fakes' generator forward, augmentation), critic loss
(its forward, backward and the penalty's double backward), critic optimiser, generator
loss, generator optimiser, EMA; instructions that XLA makes itself carry no scope.
Times are wall-clock shares (`thunk_times`): they add up to the step's execution time.
Writes <out>.md and <out>.json.
"""

from __future__ import annotations

import argparse
import collections
import copy
import glob
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "experiments" / "speed"))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from wgan_gp import gan_state, iteration, parallel  # noqa: E402

_CONTROL_FLOW = {"while", "conditional", "call", "async-start", "async-done"}
_LAYOUT_OPS = {"transpose", "copy", "pad", "slice", "reshape", "bitcast", "concatenate",
               "parameter", "broadcast", "constant", "reverse", "dynamic-slice",
               "dynamic-update-slice", "tuple", "get-tuple-element", "opt-barrier"}
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%?([\w.\-]+) = [^=]*? ([a-z][\w\-]*)\(")
_COMPUTATION = re.compile(r"^\s*%?([\w.\-]+) [^{]*\{\s*$")
_MAX_KERNEL_TAPS = 6
SCOPES = ("critic_batch", "critic_loss", "critic_optimizer", "generator_loss",
          "generator_optimizer", "ema")
# Instructions that XLA makes (weight-gradient convolutions, layout changes) carry no
# source scope.
UNSCOPED = "(XLA-made, no scope: weight gradients, layouts)"


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--widths", default="16,24,32,48")
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--n-critic", type=int, default=1)
  parser.add_argument("--config", default="cpu",
                      help="configs/celeba64.py argument whose step is profiled "
                      "(its model width replaced by each of --widths)")
  parser.add_argument("--conv-fold", default="",
                      help="model.conv_fold to profile (default: the config's own)")
  parser.add_argument("--steps", type=int, default=5, help="traced iterations per width")
  parser.add_argument("--repeats", type=int, default=5, help="untraced timed iterations")
  parser.add_argument("--top", type=int, default=15, help="instructions listed per width")
  parser.add_argument("--out", default="runs/profile_step")
  return parser.parse_args(argv)


def recipe_config(config_arg: str, width: int, batch: int, n_critic: int):
  sys.path.insert(0, str(REPO_ROOT / "configs"))
  import celeba64  # noqa: PLC0415
  config = celeba64.get_config(config_arg)
  config.model.width, config.batch_size, config.n_critic = width, batch, n_critic
  config.data.image_size = 64
  return config


def compiled_step(config):
  """(the compiled pmapped step, a fresh replicated state, a fixed random uint8 batch)."""
  gan = gan_state.build_gan(config, parallel.AXIS_NAME)
  state = parallel.replicate(gan_state.create_train_state(config, gan))
  size = config.data.image_size
  batch = parallel.shard_batch(np.random.default_rng(0).integers(
      0, 256, (config.n_critic, config.batch_size, size, size, 3), dtype=np.uint8))
  return iteration.make_train_step(config, gan).lower(state, batch).compile(), state, batch


# ------------------------------------------------------------------ HLO kinds


def hlo_instructions(hlo_text: str) -> dict[str, dict]:
  """Instruction name -> {opcode, line, computation} over every computation."""
  instructions, computation = {}, None
  for line in hlo_text.splitlines():
    header = _COMPUTATION.match(line)
    if header and " = " not in line:
      computation = header.group(1)
      continue
    match = _INSTRUCTION.match(line)
    if match:
      instructions[match.group(1)] = {"opcode": match.group(2), "line": line,
                                      "computation": computation}
  return instructions


def _computation_ops(instructions, computation: str) -> list[dict]:
  return [i for i in instructions.values() if i["computation"] == computation]


def conv_kind(line: str) -> str:
  if any(mark in line for mark in ("lhs_dilate", "rhs_reversal", "feature_group_count",
                                   "batch_group_count")):
    return "conv SLOW PATH"
  # XLA:CPU canonicalises every convolution to NHWC/HWIO, so a weight gradient shows as
  # a convolution whose window is the output gradient: larger than any kernel (≤ 6
  # taps in the fast forms), or dilated by the stride.
  window = re.search(r"size=(\d+)x(\d+)", line)
  if "rhs_dilate" in line or (window and max(map(int, window.groups())) > _MAX_KERNEL_TAPS):
    return "conv weight gradient"
  stride = re.search(r"stride=(\d+)x(\d+)", line)
  if stride and stride.group(1) != "1":
    return "conv strided"
  return "conv stride-1"


def instruction_kind(instructions, name: str) -> str | None:
  """The kind of a thunk's instruction (None: control flow, counted by its children)."""
  if name == "(idle)":
    return "(no thunk running)"
  instruction = instructions.get(name)
  if instruction is None:
    return "other"
  opcode, line = instruction["opcode"], instruction["line"]
  if opcode in _CONTROL_FLOW:
    return None
  ops = [instruction]
  if opcode == "fusion":
    called = re.search(r"calls=%?([\w.\-]+)", line)
    ops = _computation_ops(instructions, called.group(1)) if called else []
  opcodes = {op["opcode"] for op in ops}
  convolutions = [op for op in ops if op["opcode"] == "convolution"]
  if convolutions:
    return conv_kind(convolutions[0]["line"])
  if "dot" in opcodes or "custom-call" in opcodes:
    return "matmul"
  if "reduce" in opcodes or "reduce-window" in opcodes:
    return "reduction"
  if opcodes <= _LAYOUT_OPS:
    return "layout copy"
  return "elementwise"


def instruction_scope(instructions, name: str) -> str:
  instruction = instructions.get(name)
  if instruction is None:
    return UNSCOPED
  lines = [instruction["line"]]
  if instruction["opcode"] == "fusion":
    called = re.search(r"calls=%?([\w.\-]+)", instruction["line"])
    if called:
      lines += [op["line"] for op in _computation_ops(instructions, called.group(1))]
  for line in lines:
    op_name = re.search(r'op_name="([^"]*)"', line)
    if op_name:
      for scope in SCOPES:
        if f"/{scope}/" in op_name.group(1) or op_name.group(1).endswith(f"/{scope}"):
          return scope
  return UNSCOPED


# ------------------------------------------------------------------ profiling


def thunk_times(trace_dir: str):
  """({instruction name: ns of wall time}, ns of executions) from a trace.

  XLA:CPU runs convolutions asynchronously: a thunk's event marks its launch, and an
  'end: <name>' event its completion, so each thunk occupies [launch, completion]. Thunks
  overlap (on two threads, or several launched at once), so the wall time of the
  executions is swept once and each moment shared equally among the thunks running
  then; moments with none running are '(idle)'. The shares add up to the wall time.
  """
  from jax.profiler import ProfileData
  path = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)[0]
  launches, ends, executions = collections.defaultdict(list), collections.defaultdict(list), []
  for plane in ProfileData.from_file(path).planes:
    for line in plane.lines:
      for event in line.events:
        if event.name == "ThunkExecutor::Execute (wait for completion)":
          executions.append((event.start_ns, event.end_ns))
        elif event.name.startswith("end: "):
          ends[event.name[5:]].append(event.start_ns)
        elif "hlo_op" in dict(event.stats):
          launches[event.name].append((event.start_ns, event.end_ns))
  intervals = []
  for name, starts in launches.items():
    starts.sort()
    completions = sorted(ends.get(name, []))
    for k, (start, end) in enumerate(starts):
      # The completion of this launch: the first end event after it (none: synchronous).
      later = [t for t in completions if t >= start]
      if later:
        end = max(end, later[0])
        completions.remove(later[0])
      intervals.append((start, end, name))
  return share_wall_time(executions, intervals), sum(b - a for a, b in executions)


def share_wall_time(executions, intervals) -> collections.Counter:
  """{name: ns}: the time inside `executions` ([start, end] pairs), each moment shared
  equally among the `intervals` ([start, end, name]) covering it; '(idle)' where none does."""
  changes = sorted([(a, 1, None) for a, _ in executions] + [(b, -1, None) for _, b in executions]
                   + [(a, 1, name) for a, _, name in intervals]
                   + [(b, -1, name) for _, b, name in intervals], key=lambda c: (c[0], c[1]))
  wall, running, executing, previous = collections.Counter(), collections.Counter(), 0, None
  for time_ns, change, name in changes:
    if previous is not None and executing and time_ns > previous:
      names = [n for n, count in running.items() if count > 0] or ["(idle)"]
      for n in names:
        wall[n] += (time_ns - previous) / len(names)
    previous = time_ns
    if name is None:
      executing += change
    else:
      running[name] += change
  return wall


def profile_width(args, width: int) -> dict:
  config = recipe_config(args.config, width, args.batch, args.n_critic)
  if args.conv_fold:
    config.model.conv_fold = args.conv_fold
  compiled, state, batch = compiled_step(config)
  instructions = hlo_instructions(compiled.as_text())

  def run(state):
    state, metrics = compiled(state, batch, *iteration.NO_BUDGET)
    jax.block_until_ready((state, metrics))
    return state

  state = run(run(state))  # warm-up: allocations
  times = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    state = run(state)
    times.append(time.perf_counter() - start)
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      for _ in range(args.steps):
        state = run(state)
    thunks, executions_ns = thunk_times(trace_dir)

  by_kind, by_scope, top = collections.Counter(), collections.Counter(), []
  for name, ns in thunks.items():
    kind = instruction_kind(instructions, name)
    if kind is None:
      continue
    ms = ns / 1e6 / args.steps
    by_kind[kind] += ms
    by_scope[instruction_scope(instructions, name)] += ms
    top.append((ms, name, kind))
  top.sort(reverse=True)
  return {
      "width": width, "batch": args.batch, "n_critic": args.n_critic,
      "conv_fold": config.model.conv_fold,
      "median_s": statistics.median(times), "times_s": times,
      "thunk_ms_per_iteration": sum(by_kind.values()),
      "execution_ms_per_iteration": executions_ns / 1e6 / args.steps,
      "by_kind_ms": dict(by_kind.most_common()),
      "by_scope_ms": dict(by_scope.most_common()),
      "top_instructions": [{"ms": ms, "name": name, "kind": kind,
                            "hlo": instructions.get(name, {}).get("line", "").strip()[:300]}
                           for ms, name, kind in top[:args.top]],
      "slow_path_convolutions": sum(1 for i in instructions.values()
                                    if i["opcode"] == "convolution"
                                    and conv_kind(i["line"]) == "conv SLOW PATH"),
  }


def markdown(results) -> str:
  m = results["machine"]
  lines = [f"# Where a training iteration's time goes ({m['device']}; host: {m['cpu']})", "",
           f"{m['jax']}; configs/celeba64.py:{results['args']['config']} with the width "
           f"replaced, model.conv_fold={results['widths'][0]['conv_fold']!r}, batch "
           f"{results['args']['batch']}, n_critic "
           f"{results['args']['n_critic']}, 64×64. Wall-clock ms per iteration while the step "
           "executes, from a jax.profiler trace, each moment shared among the XLA thunks "
           "running then (experiments/speed/profile_step.py); s/iter: untraced median.", ""]
  kinds = sorted({k for r in results["widths"] for k in r["by_kind_ms"]},
                 key=lambda k: -max(r["by_kind_ms"].get(k, 0) for r in results["widths"]))
  header = "| kind | " + " | ".join(f"width {r['width']}" for r in results["widths"]) + " |"
  lines += [header, "|---|" + "---|" * len(results["widths"])]
  for kind in kinds:
    cells = []
    for r in results["widths"]:
      ms = r["by_kind_ms"].get(kind, 0.0)
      cells.append(f"{ms:.1f} ({100 * ms / r['thunk_ms_per_iteration']:.0f}%)")
    lines.append(f"| {kind} | " + " | ".join(cells) + " |")
  lines.append("| **executing the step (traced)** | " + " | ".join(
      f"**{r['thunk_ms_per_iteration']:.1f}**" for r in results["widths"]) + " |")
  lines.append("| wall s/iter (untraced) | " + " | ".join(
      f"{r['median_s']:.3f}" for r in results["widths"]) + " |")
  lines += ["", "By part of the step (ms per iteration):", "",
            header, "|---|" + "---|" * len(results["widths"])]
  scopes = sorted({k for r in results["widths"] for k in r["by_scope_ms"]},
                  key=lambda k: -max(r["by_scope_ms"].get(k, 0) for r in results["widths"]))
  for scope in scopes:
    lines.append(f"| {scope} | " + " | ".join(
        f"{r['by_scope_ms'].get(scope, 0.0):.1f}" for r in results["widths"]) + " |")
  for r in results["widths"]:
    lines += ["", f"Top instructions, width {r['width']} (slow-path convolutions in the "
              f"HLO: {r['slow_path_convolutions']}):", "",
              "| ms | instruction | kind |", "|---|---|---|"]
    lines += [f"| {t['ms']:.2f} | `{t['name']}` | {t['kind']} |"
              for t in r["top_instructions"][:15]]
  return "\n".join(lines) + "\n"


def main(args):
  import benchmark  # noqa: PLC0415  (its machine description)
  results = {"machine": benchmark.machine_info(), "args": vars(copy.copy(args)), "widths": []}
  for width in [int(w) for w in args.widths.split(",")]:
    entry = profile_width(args, width)
    results["widths"].append(entry)
    print(f"width {width}: {entry['median_s']:.3f} s/iter, thunks "
          f"{entry['thunk_ms_per_iteration']:.0f} ms: "
          + ", ".join(f"{k} {v:.0f}" for k, v in entry["by_kind_ms"].items()), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    out.with_suffix(".md").write_text(markdown(results))
  return results


if __name__ == "__main__":
  main(parse_args())
