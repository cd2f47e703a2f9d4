"""Quality against compute: `python -m wgan_gp.plot runs/a runs/b --out=curve.png`.

Draws each run's evaluations (`eval.jsonl`: FID, KID, SWD) against the minutes of
training the run had done when it evaluated (`eval/training_seconds`, recorded by the
run itself: compilation in, evaluations and checkpoints out), one panel per metric.
A run is a workdir, or a sweep's workdir (one curve per trial).
"""

import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

from wgan_gp import exit_codes  # noqa: E402
from wgan_gp.files import atomic_path  # noqa: E402

METRICS = ("fid", "kid", "swd")
EVAL_FILE = "eval.jsonl"


def read_curve(workdir: str) -> dict[str, list[tuple[float, float]]]:
  """{metric: [(training minutes, value), ...]} from a run's eval.jsonl."""
  curves: dict[str, list[tuple[float, float]]] = {}
  with open(os.path.join(workdir, EVAL_FILE)) as f:
    for line in f:
      record = json.loads(line)
      seconds = record.get("eval/training_seconds")
      if seconds is None:
        continue  # written before runs recorded their training time
      for metric in METRICS:
        value = record.get(f"eval/{metric}")
        if isinstance(value, (int, float)):
          curves.setdefault(metric, []).append((seconds / 60.0, float(value)))
  for points in curves.values():
    points.sort()
  return curves


def run_workdirs(paths: list[str]) -> list[str]:
  """The paths that are runs, and the trials of the paths that are sweeps."""
  runs = []
  for path in paths:
    if os.path.isfile(os.path.join(path, EVAL_FILE)):
      runs.append(path)
      continue
    trials = sorted(os.path.join(path, name) for name in os.listdir(path)
                    if os.path.isfile(os.path.join(path, name, EVAL_FILE)))
    if not trials:
      raise FileNotFoundError(f"{path} holds no {EVAL_FILE}, nor do its subfolders: "
                              "give a run's --workdir or a sweep's")
    runs.extend(trials)
  return runs


def plot(workdirs: list[str], out: str, labels: list[str] | None = None,
         metrics: tuple[str, ...] = METRICS, log_y: bool = False) -> str:
  """Writes the figure to `out` (PNG) and returns the path."""
  curves = [read_curve(w) for w in workdirs]
  labels = labels or [os.path.basename(os.path.normpath(w)) for w in workdirs]
  shown = [m for m in metrics if any(m in c for c in curves)]
  if not shown:
    raise ValueError(f"no evaluation of {', '.join(metrics)} with training seconds in "
                     f"{', '.join(workdirs)}")
  figure, axes = plt.subplots(1, len(shown), figsize=(5 * len(shown), 3.8), squeeze=False)
  for axis, metric in zip(axes[0], shown):
    for curve, label in zip(curves, labels):
      if metric in curve:
        minutes, values = zip(*curve[metric])
        axis.plot(minutes, values, marker="o", markersize=3, label=label)
    axis.set_xlabel("training minutes")
    axis.set_ylabel(metric.upper())
    if log_y:
      axis.set_yscale("log")
    axis.grid(alpha=0.3)
  axes[0][0].legend(fontsize=8)
  figure.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with atomic_path(out) as tmp:  # keeps out's extension: savefig picks the format by it
    figure.savefig(tmp, dpi=110)
  plt.close(figure)
  return out


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m wgan_gp.plot",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("workdirs", nargs="+", help="run or sweep workdirs")
  parser.add_argument("--out", required=True, help="the PNG to write")
  parser.add_argument("--labels", default="", help="comma-separated legend labels")
  parser.add_argument("--metrics", default=",".join(METRICS),
                      help="comma-separated subset of fid,kid,swd")
  parser.add_argument("--log_y", action="store_true", help="logarithmic value axes")
  args = parser.parse_args(argv)
  try:
    workdirs = run_workdirs(args.workdirs)
    labels = [label for label in args.labels.split(",") if label] or None
    if labels and len(labels) != len(workdirs):
      raise ValueError(f"--labels names {len(labels)} runs but {len(workdirs)} were given")
    print(plot(workdirs, args.out, labels,
               tuple(m for m in args.metrics.split(",") if m), args.log_y))
  except (FileNotFoundError, ValueError) as error:
    print(f"error: {error}", file=sys.stderr)
    return exit_codes.BAD_INPUT
  return exit_codes.FINISHED


if __name__ == "__main__":
  sys.exit(main())
