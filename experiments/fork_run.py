"""Forks a run at one of its checkpoints, to screen a late change without retraining.

    python experiments/fork_run.py --from=runs/faces_cpu4_140_seed1 --step=22500 \\
        --to=runs/fork_decay
    python -m wgan_gp.main --config=configs/celeba64.py:cpu4 --workdir=runs/fork_decay \\
        <the run's own flags> --config.train_minutes=150 --config.optim.critic.schedule=...

The new workdir gets the run's config.json, the checkpoint at --step and the records
(metrics.jsonl, eval.jsonl) up to it; `main` resumes it under the changed settings, which
apply from that step on and are logged. Everything before the fork is the run's own, bit
for bit: a fork continued under the original settings ends where the run ended, and budget
schedules read the trained seconds that the checkpoint carries. So a change that starts
late in the budget is screened for the cost of its own minutes. A long run keeps
`keep_checkpoints` checkpoints (3 by default): raise it to fork earlier.
"""

import argparse
import json
import os
import shutil
import sys

RECORDS = ("metrics.jsonl", "eval.jsonl")


def fork(source: str, step: int, destination: str) -> None:
  """Writes the fork of `source` at checkpoint `step` into `destination` (a new folder)."""
  checkpoints = os.path.join(source, "checkpoints")
  kept = sorted(int(s) for s in os.listdir(checkpoints) if s.isdigit()) if os.path.isdir(
      checkpoints) else []
  if step not in kept:
    raise ValueError(f"{source} has no checkpoint {step}: pick one of {kept}, or keep more "
                     "with --config.keep_checkpoints in the run")
  if not os.path.exists(os.path.join(source, "config.json")):
    raise ValueError(f"{source} holds no config.json: pass a wgan_gp workdir")
  if os.path.exists(destination):
    raise ValueError(f"{destination} exists: pass a new folder as --to")
  os.makedirs(os.path.join(destination, "checkpoints"))
  shutil.copytree(os.path.join(checkpoints, str(step)),
                  os.path.join(destination, "checkpoints", str(step)))
  shutil.copy2(os.path.join(source, "config.json"), destination)
  for name in RECORDS:
    path = os.path.join(source, name)
    if not os.path.exists(path):
      continue
    with open(path) as records, open(os.path.join(destination, name), "w") as out:
      out.writelines(line for line in records if line.strip() and json.loads(line)["step"] <= step)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--from", dest="source", required=True, help="the run's workdir")
  parser.add_argument("--step", type=int, required=True, help="the checkpoint to fork at")
  parser.add_argument("--to", dest="destination", required=True, help="the fork's new workdir")
  args = parser.parse_args(argv)
  try:
    fork(args.source, args.step, args.destination)
  except ValueError as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  print(f"forked {args.source} at step {args.step} into {args.destination}: resume it with "
        f"python -m wgan_gp.main --workdir={args.destination} and the changed settings")
  return 0


if __name__ == "__main__":
  sys.exit(main())
