"""SHA-256 of every array that a fixed-seed run ends with: the check that a refactoring
changed nothing that the code computes.

Trains the toy smoke run and a CelebA-tar smoke run through `python -m wgan_gp.main`
of the checkout given (default: this one) and hashes each final checkpoint, read with
orbax alone so that the script does not depend on the package's layout. Compare two
checkouts on the same machine (XLA:CPU's rounding differs between processors, so the
hashes are not pinned anywhere):

  python experiments/references/param_hashes.py --out=before.json [--checkout=PATH]
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CELEBA_TAR = os.path.join(REPO_ROOT, "..", "shared", "data", "celeba_align_10k_89x109.tar")


def runs(work: str) -> dict[str, list[str]]:
  return {
      "toy_smoke": ["--config=configs/toy2d.py:smoke"],
      "celeba_tar_smoke": ["--config=configs/celeba64.py:smoke", "--config.data.source=images",
                           f"--config.data.path={CELEBA_TAR}", "--config.data.crop_size=54",
                           "--config.data.crop_fraction=0",
                           "--config.eval_metrics=", "--config.num_train_steps=6",
                           f"--config.data.cache_dir={work}/cache"],
  }


def checkpoint_hashes(checkpoints: str) -> dict:
  import orbax.checkpoint as ocp
  step = max(int(s) for s in os.listdir(checkpoints) if s.isdigit())
  tree = ocp.PyTreeCheckpointer().restore(os.path.join(checkpoints, str(step), "state"))
  leaves = ocp.tree.to_flat_dict(tree, sep="/")
  everything, fields = hashlib.sha256(), {}
  for key in sorted(leaves):
    data = np.ascontiguousarray(np.asarray(leaves[key])).tobytes()
    everything.update(key.encode())
    everything.update(data)
    fields.setdefault(key.split("/")[0], hashlib.sha256()).update(data)
  return {"checkpoint_step": step, "all": everything.hexdigest(),
          "fields": {k: v.hexdigest() for k, v in sorted(fields.items())}}


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", required=True, help="the JSON to write")
  parser.add_argument("--checkout", default=REPO_ROOT, help="the wgan_gp checkout to run")
  args = parser.parse_args()
  if not os.path.exists(CELEBA_TAR):
    print(f"error: {CELEBA_TAR} not found: the CelebA sample sits in ../shared/data",
          file=sys.stderr)
    return 2
  work = tempfile.mkdtemp(prefix="wgan_gp_hashes")
  results = {}
  for name, flags in runs(work).items():
    workdir = os.path.join(work, name)
    subprocess.run([sys.executable, "-m", "wgan_gp.main", *flags, f"--workdir={workdir}"],
                   cwd=args.checkout, check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": os.path.abspath(args.checkout)})
    results[name] = checkpoint_hashes(os.path.join(workdir, "checkpoints"))
    print(f"{name}: step {results[name]['checkpoint_step']}, {results[name]['all']}")
  with open(args.out, "w") as f:
    json.dump(results, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
