"""The round-2 search's table, compact: one row per trial with its levers, steps, steps/s
and SWD, sorted by SWD; and the mean SWD with and without each lever (a screen's
marginal effects, not an ablation at equal settings).

    python experiments/round2_table.py runs/faces_cpu_round2 [--json=OUT]
"""

import argparse
import csv
import json
import os
import statistics

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


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("workdir")
  parser.add_argument("--json", default="")
  args = parser.parse_args()
  with open(os.path.join(args.workdir, "results.csv")) as f:
    rows = [r for r in csv.DictReader(f) if r.get("eval/swd")]
  rows.sort(key=lambda r: float(r["eval/swd"]))
  header = ["#"] + list(LEVERS) + ["steps", "steps/s", "SWD ×10³"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  table = []
  for rank, r in enumerate(rows, 1):
    entry = {name: get(r) for name, get in LEVERS.items()}
    entry.update(steps=int(float(r["step"])), steps_per_sec=float(r["steps_per_sec"]),
                 swd=float(r["eval/swd"]), trial=r["trial"])
    table.append(entry)
    lines.append("| " + " | ".join([str(rank)] + [str(entry[n]) for n in LEVERS] + [
        str(entry["steps"]), f"{entry['steps_per_sec']:.2f}", f"{entry['swd']:.1f}"]) + " |")
  print("\n".join(lines))
  print("\nMean SWD ×10³ by lever value (trials differ in the other levers too):")
  marginals = {}
  for name in LEVERS:
    groups = {}
    for entry in table:
      groups.setdefault(entry[name], []).append(entry["swd"])
    marginals[name] = {k: (statistics.mean(v), len(v)) for k, v in sorted(groups.items())}
    print(f"  {name}: " + ", ".join(f"{k}: {m:.1f} (n={n})" for k, (m, n) in
                                     marginals[name].items()))
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"trials": table, "marginal_mean_swd": marginals}, f, indent=1)


if __name__ == "__main__":
  main()
