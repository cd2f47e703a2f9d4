"""The round-2 search's table, compact: one row per trial with its levers, steps, steps/s
and SWD, sorted by SWD; and the mean SWD with and without each lever (a screen's
marginal effects, not an ablation at equal settings). For an ablation (a sweep with a
trial named 'base'), each row's SWD against the base's instead of the marginal means.

    python experiments/faces64/round2_table.py runs/faces_cpu_round2 [--json=OUT]
    python experiments/faces64/round2_table.py runs/faces_cpu3_ablation
"""

import argparse
import csv
import json
import os
import statistics

from wgan_gp.config import get_dotted

LEVERS = {
    "augment": lambda r: r["augment"] or "none",
    "schedule": lambda r: r["optim.critic.schedule"] + (
        f"@{float(r['optim.critic.decay_start']):g}" if r["optim.critic.schedule"] != "constant" else ""),
    "width": lambda r: r["model.width"],
    "batch": lambda r: r["batch_size"],
    "n_critic": lambda r: r["n_critic"],
    "lr D/G": lambda r: f"{float(r['optim.critic.learning_rate']):g}/{float(r['optim.generator.learning_rate']):g}",
    "β2": lambda r: r["optim.critic.b2"],
    "EMA@start": lambda r: f"{r['ema_decay']}@{float(r['ema_start']):g}",
    "drift": lambda r: r["loss.drift_weight"],
}
LEVER_KEYS = ["augment", "optim.critic.schedule", "optim.critic.decay_start", "model.width",
              "batch_size", "n_critic", "optim.critic.learning_rate",
              "optim.generator.learning_rate", "optim.critic.b2", "ema_decay", "ema_start",
              "loss.drift_weight"]


def _fill_from_trial_config(row: dict, workdir: str) -> dict:
  """The levers that the sweep did not override (absent or blank in its CSV), read from
  the config that the trial saved."""
  config = None
  for key in LEVER_KEYS:
    if row.get(key, "") == "":
      if config is None:
        with open(os.path.join(workdir, row["trial"], "config.json")) as f:
          config = json.load(f)
      row[key] = str(get_dotted(config, key))
  return row


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("workdir")
  parser.add_argument("--json", default="")
  args = parser.parse_args()
  with open(os.path.join(args.workdir, "results.csv")) as f:
    rows = [_fill_from_trial_config(r, args.workdir) for r in csv.DictReader(f)
            if r.get("eval/swd")]
  rows.sort(key=lambda r: float(r["eval/swd"]))
  base = next((float(r["eval/swd"]) for r in rows if r["trial"] == "base"), None)
  header = ["#"] + list(LEVERS) + ["steps", "steps/s", "SWD ×10³"] + (
      ["Δ SWD vs base"] if base is not None else [])
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  table = []
  for rank, r in enumerate(rows, 1):
    entry = {name: get(r) for name, get in LEVERS.items()}
    entry.update(steps=int(float(r["step"])), steps_per_sec=float(r["steps_per_sec"]),
                 swd=float(r["eval/swd"]), trial=r["trial"])
    cells = [str(rank)] + [str(entry[n]) for n in LEVERS] + [
        str(entry["steps"]), f"{entry['steps_per_sec']:.2f}", f"{entry['swd']:.1f}"]
    if base is not None:
      entry["swd_minus_base"] = entry["swd"] - base
      cells.append(f"{entry['swd_minus_base']:+.1f}")
    table.append(entry)
    lines.append("| " + " | ".join(cells) + " |")
  print("\n".join(lines))
  summary = {"trials": table}
  if base is None:  # a screen: marginal means; an ablation is read off its Δ column
    print("\nMean SWD ×10³ by lever value (trials differ in the other levers too):")
    marginals = {}
    for name in LEVERS:
      groups = {}
      for entry in table:
        groups.setdefault(entry[name], []).append(entry["swd"])
      marginals[name] = {k: (statistics.mean(v), len(v)) for k, v in sorted(groups.items())}
      print(f"  {name}: " + ", ".join(f"{k}: {m:.1f} (n={n})" for k, (m, n) in
                                       marginals[name].items()))
    summary["marginal_mean_swd"] = marginals
  if args.json:
    with open(args.json, "w") as f:
      json.dump(summary, f, indent=1)


if __name__ == "__main__":
  main()
