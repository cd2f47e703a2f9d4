"""Forks a run at one of its checkpoints, to screen a late change without retraining.

    python experiments/faces64/fork_run.py --from=runs/faces_cpu4_140_seed1 --step=22500 \\
        --to=runs/fork_decay
    python -m wgan_gp.main --config=configs/celeba64.py:cpu --workdir=runs/fork_decay \\
        <the run's own flags> --config.train_minutes=150 --change_budget \\
        --config.optim.critic.schedule=...

The new workdir gets the run's config.json, the checkpoint at --step and the records
(metrics.jsonl, eval.jsonl) up to it; `main` resumes it under the changed settings, which
apply from that step on and are logged; a new budget only with --change_budget, which
says in one line what it does to the schedules (they read the fraction of the new budget)
and the EMA (it continues). Everything before the fork is the run's own, bit
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
  """Writes the fork of `source` at checkpoint `step` into `destination` (a new folder),
  whole or not at all: it is built beside its final name and renamed at the end."""
  checkpoints = os.path.join(source, "checkpoints")
  if not os.path.exists(os.path.join(source, "config.json")) or not os.path.isdir(checkpoints):
    raise ValueError(f"{source} holds no config.json and checkpoints/: pass a wgan_gp workdir")
  kept = sorted(int(s) for s in os.listdir(checkpoints) if s.isdigit())
  if step not in kept:
    raise ValueError(f"{source} has no checkpoint {step}: pick one of {kept}, or keep more "
                     "with --config.keep_checkpoints in the run")
  if os.path.exists(destination):
    raise ValueError(f"{destination} exists: pass a new folder as --to")
  records = {name: _records_up_to(os.path.join(source, name), step) for name in RECORDS
             if os.path.exists(os.path.join(source, name))}
  partial = destination.rstrip(os.sep) + ".partial"
  shutil.rmtree(partial, ignore_errors=True)  # a fork that an earlier failure left half-made
  try:
    shutil.copytree(os.path.join(checkpoints, str(step)),
                    os.path.join(partial, "checkpoints", str(step)))
    shutil.copy2(os.path.join(source, "config.json"), partial)
    for name, lines in records.items():
      with open(os.path.join(partial, name), "w") as out:
        out.writelines(lines)
    os.rename(partial, destination)
  except BaseException:
    shutil.rmtree(partial, ignore_errors=True)
    raise


def _records_up_to(path: str, step: int) -> list[str]:
  """The lines of a JSONL record file up to `step`; one line naming a damaged record."""
  kept = []
  with open(path) as records:
    for number, line in enumerate(records, 1):
      if not line.strip():
        continue
      try:
        record_step = json.loads(line)["step"]
      except (ValueError, KeyError, TypeError):
        raise ValueError(f"{path}:{number} is not a JSON record with a step: repair or "
                         "delete that line") from None
      if record_step <= step:
        kept.append(line.rstrip("\n") + "\n")
  return kept


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--from", dest="source", required=True, help="the run's workdir")
  parser.add_argument("--step", type=int, required=True, help="the checkpoint to fork at")
  parser.add_argument("--to", dest="destination", required=True, help="the fork's new workdir")
  args = parser.parse_args(argv)
  try:
    fork(args.source, args.step, args.destination)
  except (ValueError, OSError) as error:  # OSError: a folder unreadable, a disk full
    print(f"error: {error}", file=sys.stderr)
    return 2
  print(f"forked {args.source} at step {args.step} into {args.destination}: resume it with "
        f"python -m wgan_gp.main --workdir={args.destination} and the changed settings "
        "(with --change_budget for another --config.train_minutes)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
