"""Summaries of a finished sweep for experiments/toy/README.md: a table of the toy metrics
averaged over seeds, and a montage of the trials' final figures (samples over contours,
or sample grids with --pattern='step_*.png').

    python experiments/toy/toy_summaries.py runs/toy_losses --group=loss.name,data.source \\
        --rows=loss.name --columns=data.source --montage=experiments/toy/figures/toy_losses_seed0.png
    python experiments/toy/toy_summaries.py runs/toy_lambda --group=loss.gp_weight,n_critic \\
        --rows=n_critic --columns=loss.gp_weight --montage=experiments/toy/figures/toy_lambda_seed0.png

Reads each trial's done.json (written by `python -m wgan_gp.sweep`); the montage shows
seed 0 (--seed) of each (row, column).
"""

import argparse
import glob
import json
import os

import numpy as np
from PIL import Image, ImageDraw

METRICS = ("eval/modes_captured", "eval/high_quality_pct", "wasserstein",
           "interp_grad_norm_mean")


def load_records(sweep_dir):
  records = []
  for path in sorted(glob.glob(os.path.join(sweep_dir, "*", "done.json"))):
    with open(path) as f:
      record = json.load(f)
    record["workdir"] = os.path.dirname(path)
    records.append(record)
  return records


def seed_averaged_table(records, group_keys):
  groups = {}
  for record in records:
    key = tuple(record["overrides"].get(k) for k in group_keys)
    groups.setdefault(key, []).append(record)
  metrics = [m for m in METRICS if any(m in r["metrics"] for r in records)]
  header = [*group_keys, "seeds", *metrics]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for key, members in groups.items():
    cells = [str(v) for v in key] + [str(len(members))]
    for metric in metrics:
      values = np.array([float(r["metrics"][metric]) for r in members if metric in r["metrics"]])
      if not len(values):
        cells.append("—")  # e.g. modes on the swiss roll, which has none
        continue
      per_seed = "/".join(f"{v:.3g}" for v in values)
      cells.append(f"{values.mean():.3g} ± {values.std():.2g} ({per_seed})" if len(values) > 1
                   else f"{values.mean():.3g}")
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def montage(records, rows_key, columns_key, seed, out_path, tile=260,
            pattern="toy_step_*.png"):
  chosen = [r for r in records if r["overrides"].get("seed", 0) == seed]
  rows = list(dict.fromkeys(r["overrides"].get(rows_key) for r in chosen))
  columns = list(dict.fromkeys(r["overrides"].get(columns_key) for r in chosen))
  canvas = Image.new("RGB", (tile * len(columns), tile * len(rows)), "white")
  for record in chosen:
    figures = sorted(glob.glob(os.path.join(record["workdir"], "samples", pattern)))
    if not figures:
      continue
    image = Image.open(figures[-1]).convert("RGB").resize((tile, tile), Image.LANCZOS)
    row = rows.index(record["overrides"].get(rows_key))
    column = columns.index(record["overrides"].get(columns_key))
    canvas.paste(image, (column * tile, row * tile))
    label = f"{rows_key}={rows[row]}, {columns_key}={columns[column]}"
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((column * tile + 2, row * tile + 14, column * tile + 8 + 6 * len(label),
                    row * tile + 28), fill="white")
    draw.text((column * tile + 5, row * tile + 15), label, fill="black")
  os.makedirs(os.path.dirname(out_path), exist_ok=True)
  canvas.quantize(colors=128).save(out_path, optimize=True)
  return rows, columns


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("sweep_dir")
  parser.add_argument("--group", required=True, help="comma-separated override keys")
  parser.add_argument("--rows")
  parser.add_argument("--columns")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--montage", help="where to write the montage PNG")
  parser.add_argument("--pattern", default="toy_step_*.png",
                      help="which of a trial's samples/ images (the last one is shown)")
  parser.add_argument("--tile", type=int, default=260, help="pixels per trial in the montage")
  args = parser.parse_args()
  records = load_records(args.sweep_dir)
  print(seed_averaged_table(records, args.group.split(",")))
  if args.montage:
    rows, columns = montage(records, args.rows, args.columns, args.seed, args.montage,
                            args.tile, args.pattern)
    print(f"\nwrote {args.montage}: rows {rows}, columns {columns} (seed {args.seed}), "
          f"{os.path.getsize(args.montage) // 1024} KB")


if __name__ == "__main__":
  main()
