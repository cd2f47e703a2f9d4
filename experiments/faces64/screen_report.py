"""A screen at equal budget, read from its trials' own records: per trial its levers,
steps and steps/s, the final SWD and the SWD's slope over the last third of the budget
(at least its last 3 evaluations),
the time to quality, the critic's train-minus-held-out score gap, the penalty's grip
and, where the face protocol has been run on the trial, FID@N and FID_∞.

    python experiments/faces64/screen_report.py runs/faces_critic_step_screen \\
        --out=experiments/faces64/results/faces_critic_step_screen

Time to quality: the training minutes after which the running mean of 3 evaluations of a
trial's SWD stays at or below the final SWD of the trial named 'base' (the recipe under
the same budget): the gain in the unit a user pays in. Minutes are the trials' own
(`eval/training_seconds`: CPU minutes for a screen on `train_clock='cpu'`).
Writes <out>.json and <out>.md.
"""

import argparse
import json
import os
import statistics
import sys

_SLOPE_SHARE = 1 / 3  # the end of the budget over which the slope is fitted (3 points at least)


def _read_jsonl(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _slope(points: list[tuple[float, float]]) -> float | None:
  """Least-squares slope of (x, y) points, or None under 3 points."""
  if len(points) < 3:
    return None
  xs, ys = zip(*points)
  mx, my = statistics.fmean(xs), statistics.fmean(ys)
  var = sum((x - mx) ** 2 for x in xs)
  return sum((x - mx) * (y - my) for x, y in points) / var if var else None


def time_to_quality(curve: list[tuple[float, float]], target: float) -> float | None:
  """The first minute after which the running mean of 3 SWDs stays <= target."""
  means = [(curve[i][0], statistics.fmean(v for _, v in curve[i - 2:i + 1]))
           for i in range(2, len(curve))]
  reached = None
  for minute, mean in means:
    if mean <= target:
      reached = minute if reached is None else reached
    else:
      reached = None
  return reached


def trial_row(workdir: str) -> dict:
  trial = json.load(open(os.path.join(workdir, "trial.json")))
  evals = [e for e in _read_jsonl(os.path.join(workdir, "eval.jsonl")) if "eval/swd" in e]
  metrics = _read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  curve = [(e["eval/training_seconds"] / 60, e["eval/swd"]) for e in evals]
  row = {"name": os.path.basename(workdir), "overrides": trial["overrides"], "curve": curve}
  if evals:
    last = evals[-1]
    row.update(step=last["step"], minutes=curve[-1][0], swd=curve[-1][1],
               steps_per_sec=last["step"] / last["eval/training_seconds"])
    tail = [p for p in curve if p[0] >= curve[-1][0] * (1 - _SLOPE_SHARE)]
    row["swd_slope_per_min"] = _slope(curve[-max(3, len(tail)):])
    gaps = [e["eval/critic_score_gap"] for e in evals if "eval/critic_score_gap" in e]
    if gaps:
      row.update(critic_gap_first=gaps[0], critic_gap_last=gaps[-1],
                 critic_gap_slope_per_min=_slope(
                     [(e["eval/training_seconds"] / 60, e["eval/critic_score_gap"])
                      for e in evals if "eval/critic_score_gap" in e]))
  penalised = [m for m in metrics if "interp_grad_norm_mean" in m and "gradient_penalty" in m]
  if penalised:
    tail = penalised[-max(1, len(penalised) // 5):]
    row["interp_grad_norm_mean_last_fifth"] = statistics.fmean(
        m["interp_grad_norm_mean"] for m in tail)
    row["gradient_penalty_last_fifth"] = statistics.fmean(m["gradient_penalty"] for m in tail)
  protocol = os.path.join(workdir, "face_protocol.json")
  if os.path.exists(protocol):
    rows = json.load(open(protocol))
    if rows:
      row["fid"] = rows[-1]["fid"]
      row["fid_infinity"] = rows[-1].get("fid_vs_n", {}).get("fid_infinity")
      row["protocol_hardware"] = rows[-1].get("hardware")
  return row


def report(sweep_dir: str) -> dict:
  trials = sorted(d for d in os.listdir(sweep_dir)
                  if os.path.exists(os.path.join(sweep_dir, d, "trial.json")))
  rows = [trial_row(os.path.join(sweep_dir, d)) for d in trials]
  base = next((r for r in rows if r["name"] == "base" and "swd" in r), None)
  for row in rows:
    if base is not None and row.get("curve"):
      row["minutes_to_base_final_swd"] = time_to_quality(row["curve"], base["swd"])
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
  from wgan_gp.hardware import cpu_model  # noqa: PLC0415
  return {"sweep": sweep_dir, "hardware": cpu_model(), "trials": rows}


def _fmt(value, spec=".1f"):
  return "" if value is None else format(value, spec)


def markdown(result: dict) -> str:
  lines = [f"# {os.path.basename(result['sweep'].rstrip('/'))} ({result['hardware']})", "",
           "| trial | steps | steps/s | SWD | SWD slope /min | min to base's SWD | "
           "critic gap first → last | grad norm | FID@5k | FID_∞ |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for r in sorted(result["trials"], key=lambda r: r.get("swd", float("inf"))):
    lines.append(
        f"| {r['name']} | {r.get('step', '')} | {_fmt(r.get('steps_per_sec'), '.2f')} | "
        f"{_fmt(r.get('swd'))} | {_fmt(r.get('swd_slope_per_min'), '.2f')} | "
        f"{_fmt(r.get('minutes_to_base_final_swd')) or ('not reached' if r.get('curve') else '')} | "
        f"{_fmt(r.get('critic_gap_first'), '.3f')} → {_fmt(r.get('critic_gap_last'), '.3f')} | "
        f"{_fmt(r.get('interp_grad_norm_mean_last_fifth'), '.3f')} | {_fmt(r.get('fid'))} | "
        f"{_fmt(r.get('fid_infinity'))} |")
  return "\n".join(lines) + "\n"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("sweep_dir")
  parser.add_argument("--out", default="", help="write <out>.json and <out>.md")
  args = parser.parse_args(argv)
  result = report(args.sweep_dir)
  text = markdown(result)
  print(text)
  if args.out:
    with open(args.out + ".json", "w") as f:
      json.dump(result, f, indent=1)
    with open(args.out + ".md", "w") as f:
      f.write(text)


if __name__ == "__main__":
  main()
