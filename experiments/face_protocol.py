"""The face protocol: FID and KID of a run's EMA generator against all its training images.

    python experiments/face_protocol.py --workdir=runs/faces_cpu --name=cpu-recipe \\
        --hardware="2-core CPU" [--num_samples=5000] [--out=experiments/results/faces.json]

N samples of the EMA generator (fixed, seeded noise) against the Inception statistics
of every image of the run's dataset (the 10,000-image CelebA sample: 10k reference
images, each cropped and resized as the run trained on it). Beside every figure, the
floor: N real images drawn from the same set against the same statistics, which is
what a perfect generator would score at this N. N = 5,000 on a CPU, 10,000 on a GPU
(the protocol is written up in experiments/README.md).

A shipped generator, whose run is gone, is measured again with
`--pretrained=celeba64-cpu --data_path=../shared/data/celeba_align_10k_89x109.tar`.

The row (name, hardware, minutes and steps of training as the run's checkpoint records
them, FID, KID, N, floor) is upserted by name into the JSON list at --out and printed.
With --export=DIR the EMA generator is written there with the row, for
`python -m wgan_gp.sample --pretrained=DIR` (wgan_gp/pretrained.py).
"""

import argparse
import json
import os
import sys
import time

import ml_collections
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from wgan_gp import data, pretrained  # noqa: E402
from wgan_gp.checkpoint import Checkpointer  # noqa: E402
from wgan_gp.config import base_config  # noqa: E402
from wgan_gp.evaluators import generate_in_batches  # noqa: E402
from wgan_gp.files import write_atomically  # noqa: E402
from wgan_gp.metrics import fid  # noqa: E402
from wgan_gp.metrics.inception import default_extractor  # noqa: E402
from wgan_gp.runs import load_run  # noqa: E402

REFERENCE_BATCH = 500  # images per Inception call on the reference side
CELEBA_TERMS = ("Trained on CelebA images (Liu et al. 2015), which are released for "
                "non-commercial research use only; these weights are shared under the "
                "same terms: non-commercial research use, no redistribution of the images.")


def reference_of_dataset(source, extractor) -> fid.ReferenceStats:
  """Statistics of every image of the dataset, computed once and cached."""
  images = source.images
  return fid.reference_stats(
      f"{source.identity}_all{len(images)}",
      lambda: (images[i:i + REFERENCE_BATCH] for i in range(0, len(images), REFERENCE_BATCH)),
      extractor=extractor)


def floor_indices(num_images: int, num_samples: int, seed: int = 0) -> np.ndarray:
  """The real images of the floor: a seeded subset of the reference set."""
  return np.sort(np.random.default_rng([seed, 77]).permutation(num_images)[:num_samples])


def measure(gan, g_params, source, num_samples: int, seed: int = 0) -> dict:
  """FID/KID of `num_samples` samples against every image of `source`, and the floor."""
  extractor = default_extractor()
  start = time.time()
  reference = reference_of_dataset(source, extractor)
  num_samples = min(num_samples, reference.num_images)
  fake = generate_in_batches(jax.jit(gan.generate), g_params, num_samples, gan.z_dim, seed)
  generated = fid.evaluate_against(reference, extractor(fake, value_range=(-1.0, 1.0)))
  floor = fid.evaluate_against(
      reference, reference.features[floor_indices(reference.num_images, num_samples, seed)])
  return {"fid": generated["fid"], "kid": generated["kid"], "kid_std": generated["kid_std"],
          "num_samples": num_samples, "reference_images": reference.num_images,
          "floor_fid": floor["fid"], "floor_kid": floor["kid"],
          "evaluation_seconds": round(time.time() - start, 1)}


def protocol_row(workdir: str, num_samples: int, seed: int = 0) -> dict:
  run = load_run(workdir)
  source = data.create_source(run.config.data, run.config.seed)
  measured = measure(run.gan, run.state.ema_g_params, source, num_samples, seed)
  checkpoint = Checkpointer(os.path.join(workdir, "checkpoints"), keep=1_000_000)
  try:
    seconds = checkpoint.metadata(run.step).get("training_seconds")
  finally:
    checkpoint.close()
  return {"steps": run.step,
          "minutes": None if seconds is None else round(seconds / 60.0, 2),
          **measured, "images_seen": run.data_position}


def remeasure_pretrained(name_or_path: str, data_path: str, num_samples: int) -> dict:
  """A shipped generator measured again (its run is gone): its info.json row with new
  FID, KID and floor, written back to info.json."""
  generator = pretrained.load(name_or_path)
  data_config = ml_collections.ConfigDict({
      **base_config().data.to_dict(), **generator.info["data"], "source": "images",
      "path": data_path})
  measured = measure(generator.gan, generator.params, data.create_source(data_config, 0),
                     num_samples)
  info = {**generator.info, **measured}
  write_atomically(os.path.join(pretrained.resolve(name_or_path), pretrained.INFO_FILE),
                   json.dumps(info, indent=2) + "\n")
  return {k: v for k, v in info.items() if k not in ("model", "data", "terms")}


def upsert(path: str, row: dict) -> list[dict]:
  rows = []
  if os.path.exists(path):
    with open(path) as f:
      rows = json.load(f)
  names = [r["name"] for r in rows]
  if row["name"] in names:  # in its place
    rows[names.index(row["name"])] = row
  else:
    rows.append(row)
  write_atomically(path, json.dumps(rows, indent=2) + "\n")
  return rows


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", help="the run to measure")
  parser.add_argument("--pretrained", help="instead: measure this shipped generator again "
                      "on --data_path, keeping its info.json record")
  parser.add_argument("--data_path", help="with --pretrained: the images it trained on")
  parser.add_argument("--name", help="the row's name in the table (with --workdir)")
  parser.add_argument("--hardware", help="where the run trained, in words (with --workdir)")
  parser.add_argument("--num_samples", type=int, default=5000)
  parser.add_argument("--config", default="", help="the config the run used, for the table")
  parser.add_argument("--command", default="", help="the command that reproduces the run")
  parser.add_argument("--out", default="experiments/results/faces.json")
  parser.add_argument("--reference_only", action="store_true",
                      help="only compute (and cache) the statistics of the run's dataset")
  parser.add_argument("--export", default="", help="also write the EMA generator and the "
                      "row to this folder (a pretrained generator)")
  args = parser.parse_args(argv)
  if args.pretrained:
    if not args.data_path:
      parser.error("--pretrained needs --data_path")
    if args.workdir or args.export or args.reference_only:
      parser.error("--pretrained measures a shipped generator: drop --workdir, --export "
                   "and --reference_only")
    row = remeasure_pretrained(args.pretrained, args.data_path, args.num_samples)
    if args.out:
      upsert(args.out, row)
    print(json.dumps(row, indent=2))
    return 0
  if not (args.workdir and args.name and args.hardware):
    parser.error("give --workdir, --name and --hardware (or --pretrained and --data_path)")
  if args.reference_only:
    with open(os.path.join(args.workdir, "config.json")) as f:
      data_config = ml_collections.ConfigDict(json.load(f)).data
    reference = reference_of_dataset(data.create_source(data_config, 0), default_extractor())
    print(f"reference statistics of {reference.num_images} images cached")
    return 0
  row = {"name": args.name, "hardware": args.hardware, "config": args.config,
         **protocol_row(args.workdir, args.num_samples), "command": args.command}
  if args.out:
    upsert(args.out, row)
  if args.export:
    run = load_run(args.workdir)
    pretrained.export(args.export, run.config, run.state.ema_g_params,
                      {**row, "terms": CELEBA_TERMS})
  print(json.dumps(row, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
