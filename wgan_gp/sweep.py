"""Hyperparameter sweeps: a workdir per trial, resumable, and a table of the results.

A sweep file (see experiments/*/sweeps/) is a Python file that names a base config and the
overrides to try:

    BASE_CONFIG = "configs/toy2d.py:8gaussians"
    FIXED = {"model.width": 256, "num_train_steps": 5000}        # every trial
    TRIALS = product({"loss.gp_weight": [0.1, 1, 10, 100]},      # 4 × 2 × 3 trials
                     {"n_critic": [1, 5]}, {"seed": [0, 1, 2]})
    SORT_BY = "-eval/high_quality_pct"   # optional: the table's order ('-': descending)
    NAME_KEYS = ["loss.gp_weight", "seed"]  # optional: the overrides that name a trial
    COLUMNS = ["eval/modes_captured"]    # optional: metrics shown in the Markdown table
    def evaluate(trial_workdir): ...     # optional: more final metrics, {name: float}

Run it (from the repository root):

    python -m wgan_gp.sweep experiments/toy/sweeps/toy_lambda.py --workdir=runs/toy_lambda

Each trial is `python -m wgan_gp.main` in `<workdir>/<trial name>`, whose `command.sh`
reproduces it and `log.txt` holds its output. A trial is finished once its final
checkpoint exists; the runner then writes `done.json` (its final metrics), and a rerun
skips it, so a killed sweep resumes where it stopped (an unfinished trial resumes from
its last checkpoint). `<workdir>/results.md` and `results.csv` list every finished
trial's final metrics: the last lines of its `metrics.jsonl` and `eval.jsonl`.

`--devices=0,1,2,3` runs trials side by side, one accelerator each (CUDA_VISIBLE_DEVICES);
`--cpus=0,1` does the same on a CPU host, each trial pinned to its own core;
`--vectorize` trains the trials of a toy sweep that differ only in array-valued
hyperparameters (seed, λ, c, learning rates) in one compiled program
(`wgan_gp.vectorized`).
"""

import argparse
import csv
import ctypes
import dataclasses
import importlib.util
import io
import itertools
import json
import logging
import math
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Iterable, Sequence

from wgan_gp import exit_codes, validation, vectorized
from wgan_gp.config import load_config
from wgan_gp.files import write_atomically
from wgan_gp.stopping import StopRequest

DONE_FILE = "done.json"
TRIAL_FILE = "trial.json"
# Final metrics shown in the Markdown table unless the sweep file names its own
# (the CSV always has all of them).
DEFAULT_COLUMNS = ("eval/modes_captured", "eval/high_quality_pct", "wasserstein",
                   "critic_loss", "generator_loss", "interp_grad_norm_mean", "steps_per_sec")


class SweepError(ValueError):
  """A sweep that cannot run as asked; the message says why and what to change."""


class SweepStopped(Exception):
  """SIGTERM/SIGINT stopped the sweep; its running trials checkpointed first."""


class SweepDiskFull(Exception):
  """A trial ran out of disk space (exit_codes.DISK_FULL); no further trial was started."""


# --------------------------------------------------------------- Describing trials


def product(*factors: dict | Sequence[dict]) -> list[dict]:
  """Every combination of the factors, as override dicts.

  A factor is either {key: [values]} (itself a product over its keys) or a list of
  override dicts (alternatives, e.g. one per loss with its own optimiser):
      product({"loss.gp_weight": [1, 10]}, {"seed": [0, 1]})            # 4 trials
      product([{"loss.name": "wgan-gp"}, {"loss.name": "gan"}], {"seed": [0, 1]})
  """
  expanded = []
  for factor in factors:
    if isinstance(factor, dict):
      keys = list(factor)
      expanded.append([dict(zip(keys, values))
                       for values in itertools.product(*(_as_list(factor[k]) for k in keys))])
    else:
      expanded.append([dict(alternative) for alternative in factor])
  trials = []
  for combination in itertools.product(*expanded):
    merged = {}
    for part in combination:
      merged.update(part)
    trials.append(merged)
  return trials


def _as_list(values):
  return list(values) if isinstance(values, (list, tuple, range)) else [values]


@dataclasses.dataclass(frozen=True)
class Trial:
  name: str
  overrides: dict  # the full overrides of the base config: the sweep's FIXED, then its own
  workdir: str
  command: tuple[str, ...]  # `python -m wgan_gp.main ...`, run from the sweep's cwd


@dataclasses.dataclass(frozen=True)
class Sweep:
  path: str
  base_config: str
  trials: tuple[Trial, ...]
  sort_by: str | None
  columns: tuple[str, ...]
  evaluate: Any  # callable(trial_workdir) -> dict, or None


def load_sweep(path: str, workdir: str, python: str = sys.executable) -> Sweep:
  """Reads a sweep file and lays out its trials under `workdir` (nothing is run).

  Every trial's config is built here, so a misspelt key or a wrongly typed value fails
  before any trial starts.
  """
  module = _import_file(path)
  for required in ("BASE_CONFIG", "TRIALS"):
    if not hasattr(module, required):
      raise SweepError(f"sweep file {path} defines no {required}")
  base_config = module.BASE_CONFIG
  fixed = dict(getattr(module, "FIXED", {}))
  own_overrides = [dict(t) for t in module.TRIALS] or [{}]
  names = trial_names(own_overrides, getattr(module, "NAME_KEYS", None))
  if len(set(names)) != len(names):
    duplicates = sorted({n for n in names if names.count(n) > 1})
    raise SweepError(f"sweep file {path} gives several trials the same name {duplicates}: "
                     "list each trial once, and let NAME_KEYS (if set) tell them apart")
  trials = []
  for name, own in zip(names, own_overrides):
    overrides = {**fixed, **own}
    try:
      validation.check_values(load_config(base_config, overrides))  # no trial could run it
    except (KeyError, AttributeError, TypeError, ValueError, SyntaxError, OSError) as error:
      raise SweepError(f"trial {name} of {path}: {_one_line(error)}") from None
    trial_workdir = os.path.join(workdir, name)
    trials.append(Trial(name, overrides, trial_workdir,
                        main_command(base_config, trial_workdir, overrides, python)))
  return Sweep(path, base_config, tuple(trials), getattr(module, "SORT_BY", None),
               tuple(getattr(module, "COLUMNS", DEFAULT_COLUMNS)),
               getattr(module, "evaluate", None))


def _one_line(error: BaseException) -> str:
  if isinstance(error, SyntaxError):
    return f"{error.msg} in {error.filename}, line {error.lineno}"
  text = " ".join(str(error).split())  # KeyError's "did you mean" comes on a second line
  return f"{type(error).__name__}: {text}" if isinstance(error, (KeyError, AttributeError,
                                                                 NameError)) else text


def _import_file(path):
  if not os.path.exists(path):
    raise SweepError(f"sweep file {path!r} not found")
  spec = importlib.util.spec_from_file_location(
      "_wgan_gp_sweep_" + os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as error:  # whatever a broken sweep file raises: SyntaxError, NameError...
    raise SweepError(f"sweep file {path} does not load: {_one_line(error)}") from None
  return module


def trial_names(trials: Sequence[dict], name_keys: Sequence[str] | None = None) -> list[str]:
  """Names made of the overrides that vary (or of `name_keys`), e.g. 'gp_weight=10,seed=1'.

  A name depends only on the trial's own overrides, never on its position, so adding
  values to a sweep keeps the workdirs of the trials already run. Keys are shortened to
  their last part where that stays unambiguous.
  """
  keys = list(dict.fromkeys(k for t in trials for k in t))
  varying = [k for k in keys if len({_format_value(t.get(k)) for t in trials}) > 1]
  shown = list(name_keys) if name_keys else (varying or keys)
  leaves = [k.rsplit(".", 1)[-1] for k in keys]
  labels = {k: (leaf if leaves.count(leaf) == 1 else k) for k, leaf in zip(keys, leaves)}
  names = []
  for trial in trials:
    parts = [f"{labels[k]}={_format_value(trial[k])}" for k in shown if k in trial]
    names.append(",".join(parts).replace(os.sep, "_") or "base")
  return names


def _format_value(value) -> str:
  if isinstance(value, float):
    return f"{value:g}"
  return str(value)


def main_command(base_config: str, workdir: str, overrides: dict,
                 python: str = sys.executable) -> tuple[str, ...]:
  """The `python -m wgan_gp.main` command line of one trial."""
  return (python, "-m", "wgan_gp.main", f"--config={base_config}", f"--workdir={workdir}",
          *(f"--config.{k}={_format_flag(v)}" for k, v in overrides.items()))


def _format_flag(value) -> str:
  if isinstance(value, float):
    return repr(value)  # round-trips exactly
  return str(value)


# ----------------------------------------------------------------- Trial state


def is_finished(trial: Trial) -> bool:
  return os.path.exists(os.path.join(trial.workdir, DONE_FILE))


def final_checkpoint_exists(trial: Trial) -> bool:
  """The run reached num_train_steps, or spent its train_minutes."""
  config = load_config(_base_of(trial), trial.overrides)
  checkpoints = os.path.join(trial.workdir, "checkpoints")
  if os.path.isdir(os.path.join(checkpoints, str(config.num_train_steps))):
    return True
  steps = [int(n) for n in os.listdir(checkpoints) if n.isdigit()] if os.path.isdir(
      checkpoints) else []
  if not config.train_minutes or not steps:
    return False
  # The data item's JSON (Orbax JsonSave), read without JAX.
  record = _read_json(os.path.join(checkpoints, str(max(steps)), "data", "metadata"))
  return (record or {}).get("training_seconds", 0.0) >= 60.0 * config.train_minutes


def _read_json(path: str) -> dict | None:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _base_of(trial: Trial) -> str:
  return next(a for a in trial.command if a.startswith("--config="))[len("--config="):]


def claim_workdir(trial: Trial, base_config: str) -> None:
  """Records the trial's settings in its workdir; refuses one run with other settings.

  Without this, editing FIXED and rerunning into the same --workdir would report old
  results under the new settings.
  """
  os.makedirs(trial.workdir, exist_ok=True)
  record = {"base_config": base_config, "overrides": trial.overrides}
  path = os.path.join(trial.workdir, TRIAL_FILE)
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    if saved != json.loads(json.dumps(record)):
      raise SweepError(
          f"{trial.workdir} holds a trial run with other settings ({saved}, now {record}): "
          "use a new --workdir, or remove that trial's folder to rerun it")
    return
  write_atomically(path, json.dumps(record, indent=2, sort_keys=True))
  cd = f"cd {shlex.quote(os.getcwd())}"
  write_atomically(os.path.join(trial.workdir, "command.sh"),
                   f"#!/bin/sh\n# Reproduces trial {trial.name}.\n{cd} && \\\n"
                   f"  {shlex.join(trial.command)}\n")


def final_metrics(workdir: str) -> dict[str, Any]:
  """The last record of metrics.jsonl and of eval.jsonl, merged (step from the former)."""
  metrics = {}
  for name in ("eval.jsonl", "metrics.jsonl"):
    record = _last_jsonl_record(os.path.join(workdir, name))
    if record:
      metrics.update(record)
  return metrics


def _last_jsonl_record(path):
  if not os.path.exists(path):
    return None
  last = None
  with open(path) as f:
    for line in f:
      line = line.strip()
      if line:
        try:
          last = json.loads(line)
        except json.JSONDecodeError:
          pass  # a line cut short by a kill; the one before it stands
  return last


def mark_finished(trial: Trial, evaluate, seconds: float | None,
                  vectorized_command: str | None = None) -> dict:
  """Writes done.json: the trial's final metrics (plus the sweep's `evaluate`).

  `command` reproduces the trial on its own; a trial trained in a vectorised group
  also records that group's command (the two agree up to float rounding).
  """
  metrics = final_metrics(trial.workdir)
  if evaluate is not None:
    metrics.update(evaluate(trial.workdir))
  record = {"name": trial.name, "overrides": trial.overrides, "metrics": metrics,
            "command": shlex.join(trial.command), "run_seconds": seconds}
  if vectorized_command:
    record["vectorized_command"] = vectorized_command
  write_atomically(os.path.join(trial.workdir, DONE_FILE),
                   json.dumps(record, indent=2, sort_keys=True))
  return record


# ------------------------------------------------------------------ Running


@dataclasses.dataclass
class _Job:
  """One child process: a trial, or a vectorised group of trials."""
  trials: list[Trial]
  command: tuple[str, ...]
  label: str
  log_path: str
  vectorized: bool = False


@dataclasses.dataclass
class _Running:
  job: _Job
  process: subprocess.Popen
  device: str | None
  started: float
  log: Any


def run_sweep(sweep: Sweep, workdir: str, devices: Sequence[str] = (),
              vectorize: bool = False, python: str = sys.executable,
              poll_seconds: float = 0.5) -> list[dict]:
  """Runs the unfinished trials of `sweep` and returns the records of the finished ones.

  With `devices`, up to len(devices) jobs run at once, each seeing only its device.
  SIGTERM/SIGINT stop the runner: each running trial is asked to checkpoint and stop.
  A trial that runs out of disk space stops the start of further trials (they would fill
  the same disk); the running ones go on, then SweepDiskFull is raised.
  """
  os.makedirs(workdir, exist_ok=True)
  for trial in sweep.trials:  # refuses workdirs run with other settings, finished or not
    claim_workdir(trial, sweep.base_config)
  pending = [t for t in sweep.trials if not is_finished(t)]
  for trial in sweep.trials:
    if is_finished(trial):
      logging.info("skip %s: finished", trial.name)
  jobs = _vectorized_jobs(sweep, pending, workdir, python) if vectorize else [
      _Job([t], t.command, t.name, os.path.join(t.workdir, "log.txt")) for t in pending]

  slots = list(devices) or [None]
  running: list[_Running] = []
  failed = []
  disk_full = []  # the jobs that ran out of disk space
  stop = StopRequest("stopping the running trials at their next step")
  with stop:
    while (jobs and not stop.signal and not disk_full) or running:
      free = [d for d in slots if d not in {r.device for r in running}]
      while jobs and free and not stop.signal and not disk_full:
        running.append(_start(jobs.pop(0), free.pop(0)))
      time.sleep(poll_seconds)
      if stop.signal:
        for r in running:
          if r.process.poll() is None:
            r.process.send_signal(signal.SIGTERM)  # the trial checkpoints, then exits
      for r in [r for r in running if r.process.poll() is not None]:
        running.remove(r)
        r.log.close()
        failed += _finish(r, sweep.evaluate, stopped=stop.signal is not None)
        if r.process.returncode == exit_codes.DISK_FULL:
          disk_full.append(r.job.label)
  if failed:
    logging.error("%d trial(s) failed: %s (see their log.txt); a rerun retries them",
                  len(failed), ", ".join(failed))
  if disk_full:  # before a stop's "rerun": a requeue would meet the same full disk
    raise SweepDiskFull(
        f"the disk filled during {', '.join(disk_full)} (see log.txt); no further trial "
        f"was started: free space in {workdir}, then rerun the same command to resume")
  if stop.signal:
    raise SweepStopped(f"sweep stopped by {stop.signal}; rerun the same command to resume")
  return [_read_done(t) for t in sweep.trials if is_finished(t)]


CPU_SLOT = "cpu:"  # a slot that is a CPU core rather than an accelerator


def _start(job: _Job, device: str | None) -> _Running:
  env = dict(os.environ)
  if device is not None and not device.startswith(CPU_SLOT):
    env["CUDA_VISIBLE_DEVICES"] = device
  log = open(job.log_path, "a")
  log.write(f"\n$ {shlex.join(job.command)}\n")
  log.flush()
  logging.info("start %s%s", job.label, f" on device {device}" if device is not None else "")
  process = subprocess.Popen(job.command, env=env, stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True,
                             preexec_fn=_die_with_parent_fn())
  if device is not None and device.startswith(CPU_SLOT):
    # Set before the child has imported JAX, whose threads then inherit the one core.
    os.sched_setaffinity(process.pid, {int(device[len(CPU_SLOT):])})
  return _Running(job, process, device, time.time(), log)


def _finish(running: _Running, evaluate, stopped: bool) -> list[str]:
  """Marks the job's trials that reached their final checkpoint; returns those that failed."""
  seconds = time.time() - running.started
  code = running.process.returncode
  failed = []
  for trial in running.job.trials:
    if code == 0 and final_checkpoint_exists(trial):
      try:
        mark_finished(trial, evaluate, seconds,
                      shlex.join(running.job.command) if running.job.vectorized else None)
      except Exception:  # the sweep's own evaluate(): a rerun evaluates again
        logging.exception("evaluating %s failed", trial.name)
        failed.append(trial.name)
        continue
      logging.info("done %s (%.0f s)", trial.name, seconds)
    elif code == exit_codes.DISK_FULL:
      logging.error("%s ran out of disk space; a rerun resumes it once space is freed",
                    trial.name)
    elif code in (exit_codes.FINISHED, exit_codes.RESUMABLE) or stopped:
      logging.warning("stopped %s before its last step; a rerun resumes it", trial.name)
    else:
      failed.append(trial.name)
      logging.error("failed %s (exit code %d)", trial.name, code)
  return failed


def _read_done(trial: Trial) -> dict:
  with open(os.path.join(trial.workdir, DONE_FILE)) as f:
    return json.load(f)


def _die_with_parent_fn():
  """On Linux, a child that gets SIGTERM (so it checkpoints and stops) if the runner dies,
  even by SIGKILL; elsewhere None. Only while the runner has a single thread, where
  running code between fork and exec is safe."""
  if not sys.platform.startswith("linux") or threading.active_count() > 1:
    return None
  try:
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before the fork
  except (OSError, AttributeError):
    return None
  set_parent_death_signal = 1  # PR_SET_PDEATHSIG
  return lambda: prctl(set_parent_death_signal, int(signal.SIGTERM))


def _vectorized_jobs(sweep: Sweep, pending: list[Trial], workdir: str, python: str):
  """One job per group of trials that differ only in array-valued hyperparameters."""
  groups: dict[str, list[Trial]] = {}
  for trial in pending:
    static, _ = vectorized.split_overrides(trial.overrides)
    groups.setdefault(json.dumps(static, sort_keys=True), []).append(trial)
  jobs = []
  for index, trials in enumerate(groups.values()):
    spec = {"base_config": sweep.base_config,
            "trials": [{"workdir": t.workdir, "overrides": t.overrides} for t in trials]}
    group_dir = os.path.join(workdir, "vectorized")
    os.makedirs(group_dir, exist_ok=True)
    spec_path = os.path.join(group_dir, f"group_{index}_{trials[0].name}.json")
    write_atomically(spec_path, json.dumps(spec, indent=2))
    command = (python, "-m", "wgan_gp.vectorized", spec_path)
    jobs.append(_Job(trials, command, f"{len(trials)} trials vectorised ({spec_path})",
                     spec_path[:-len(".json")] + ".log.txt", vectorized=True))
  return jobs


# ------------------------------------------------------------------ The table


def results_table(records: Iterable[dict], sort_by: str | None,
                  columns: Sequence[str]) -> tuple[str, str]:
  """(Markdown, CSV) of the finished trials, sorted by `sort_by` ('-name': descending).

  Trials lacking the sort metric (or with a non-finite one) come last. The Markdown
  table shows `columns`; the CSV has every override and every metric.
  """
  records = list(records)
  if sort_by:
    descending = sort_by.startswith("-")
    key = sort_by.lstrip("-")

    def order(record):
      value = _number(record["metrics"].get(key))
      if value is None:
        return (1, 0.0)
      return (0, -value if descending else value)

    records.sort(key=order)
  override_keys = list(dict.fromkeys(k for r in records for k in r["overrides"]))
  metric_keys = list(dict.fromkeys(k for r in records for k in r["metrics"]))
  shown = [c for c in columns if c in metric_keys]

  # The trial's name is its varying overrides (and its workdir): no column repeats them.
  header = ["trial", *shown]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for r in records:
    cells = [r["name"], *(_format_cell(r["metrics"].get(c)) for c in shown)]
    lines.append("| " + " | ".join(cells) + " |")
  markdown = "\n".join(lines) + "\n"

  buffer = io.StringIO()
  writer = csv.writer(buffer)
  writer.writerow(["trial", *override_keys, *metric_keys, "run_seconds", "command"])
  for r in records:
    writer.writerow([r["name"], *(r["overrides"].get(k, "") for k in override_keys),
                     *(r["metrics"].get(k, "") for k in metric_keys), r.get("run_seconds"),
                     r["command"]])
  return markdown, buffer.getvalue()


def _number(value):
  try:
    value = float(value)
  except (TypeError, ValueError):
    return None
  return value if math.isfinite(value) else None


def _format_cell(value) -> str:
  if value is None:
    return ""
  if isinstance(value, float):
    return f"{value:.4g}"
  return str(value)


def write_results(sweep: Sweep, workdir: str, records: list[dict],
                  sort_by: str | None) -> str:
  """Writes results.md and results.csv into the sweep's workdir; returns the Markdown."""
  markdown, table_csv = results_table(records, sort_by, sweep.columns)
  title = (f"# Sweep {sweep.path}\n\nBase config `{sweep.base_config}`; "
           f"{len(records)} of {len(sweep.trials)} trials finished"
           + (f", sorted by `{sort_by}`" if sort_by else "") + ".\n\n")
  write_atomically(os.path.join(workdir, "results.md"), title + markdown)
  write_atomically(os.path.join(workdir, "results.csv"), table_csv)
  return markdown


# ----------------------------------------------------------------- Command line


def parse_args(argv):
  parser = argparse.ArgumentParser(
      prog="python -m wgan_gp.sweep", description=__doc__.split("\n\n")[0])
  parser.add_argument("sweep_file", help="a sweep file, e.g. experiments/toy/sweeps/toy_lambda.py")
  parser.add_argument("--workdir", required=True,
                      help="the sweep's folder: one subfolder per trial, and the results")
  parser.add_argument("--sort_by", default=None,
                      help="the metric that orders the table, '-' first for descending "
                      "(default: the sweep file's SORT_BY)")
  parser.add_argument("--devices", default="",
                      help="comma-separated accelerator ids: run that many trials at once, "
                      "one device each (CUDA_VISIBLE_DEVICES); default: one at a time")
  parser.add_argument("--cpus", default="",
                      help="comma-separated CPU core ids: run that many trials at once on a "
                      "CPU host, each pinned to one core")
  parser.add_argument("--vectorize", action="store_true",
                      help="train trials that differ only in seed, λ, c or learning rates "
                      "in one compiled program (toy configs)")
  parser.add_argument("--dry_run", action="store_true",
                      help="print each trial's command and whether it is finished, run nothing")
  parser.add_argument("--table_only", action="store_true",
                      help="rewrite the results table from the finished trials, run nothing")
  return parser.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
  try:
    sweep = load_sweep(args.sweep_file, args.workdir)
  except SweepError as error:
    print(f"error: {error}", file=sys.stderr)
    return exit_codes.BAD_INPUT
  sort_by = args.sort_by or sweep.sort_by
  if args.dry_run:
    for trial in sweep.trials:
      state = "finished" if is_finished(trial) else "to run"
      print(f"[{state}] {trial.name}\n  {shlex.join(trial.command)}")
    return 0
  stopped = None
  if not args.table_only:
    devices = [d for d in args.devices.split(",") if d] + [
        CPU_SLOT + c for c in args.cpus.split(",") if c]
    try:
      run_sweep(sweep, args.workdir, devices, args.vectorize)
    except SweepError as error:
      print(f"error: {error}", file=sys.stderr)
      return exit_codes.BAD_INPUT
    except SweepStopped as error:
      stopped = error
    except SweepDiskFull as error:  # no table: it would need the disk space that is gone
      print(f"error: {error}", file=sys.stderr)
      return exit_codes.DISK_FULL
  os.makedirs(args.workdir, exist_ok=True)
  records = [_read_done(t) for t in sweep.trials if is_finished(t)]
  print(write_results(sweep, args.workdir, records, sort_by))
  print(f"{len(records)}/{len(sweep.trials)} trials finished; table in "
        f"{os.path.join(args.workdir, 'results.md')} and results.csv")
  if stopped:
    print(stopped, file=sys.stderr)
    return exit_codes.RESUMABLE  # the trials checkpointed: the same command goes on
  return 1 if len(records) < len(sweep.trials) and not args.table_only else 0


if __name__ == "__main__":
  sys.exit(main())
