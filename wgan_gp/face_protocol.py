"""The face protocol: FID and KID of a run's EMA generator against its training images.

    python -m wgan_gp.face_protocol --workdir=runs/faces [--name=cpu-recipe] \\
        [--hardware="2-core CPU"] [--num_samples=5000] [--out=ROWS.json]

Protocol 2: the run's dataset (the 10,000-image CelebA sample, each image cropped and
resized as the run trained on it) is split, seeded, into disjoint halves A and B. N
samples of the EMA generator (fixed, seeded noise) are scored against the Inception
statistics of half A; beside them, the floor: N real images of half B against the same
statistics, what a generator that draws fresh images of the data distribution would
score at this N. N is at most half the dataset (5,000).

Protocol 1, the rows before it, scored against all 10,000 images and drew the floor's N
from those same images, so the floor shared half the reference's images and sat below
what a perfect generator scores (experiments/faces64/README.md). Every row keeps its figures
too, under 'protocol_1', for the rows that only have those; both come from the same
features, so they cost one Inception pass.

A shipped generator, whose run is gone, is measured again with
`--pretrained=celeba64-cpu --data_path=../shared/data/celeba_align_10k_89x109.tar`: its
info.json row with the new figures goes to --out (or is printed), and its folder is never
written.

FID is biased in 1/N; from the same samples' features (no further Inception pass) the row
also holds FID at N/5, 2N/5, ..., N and the least-squares line FID_N = FID_∞ + k/N through
them, under 'fid_vs_n' ({"n", "fid", "fid_std", "subsets", "fid_infinity", "slope"};
`wgan_gp.metrics.fid_infinity`). Only the generated side is extrapolated: the reference
statistics come from the 5,000 real images of half A, whose own bias stays in FID_∞.

The row (name, hardware, the run's config, minutes and steps of training as the run's
checkpoint records them, FID, KID, N, floor, FID against N) is printed and upserted by
name into the JSON list at --out, by default <workdir>/face_protocol.json (with
--pretrained and no --out, only printed). A file at --out that is not such a list is
refused before anything is measured; if writing the row fails, the row is kept in a file
beside it, and the error names that file. The project's own rows go to its table by naming it:
--out=experiments/faces64/results/faces.json. With --export=DIR the EMA generator is written there with the row,
for `python -m wgan_gp.sample --pretrained=DIR` (wgan_gp/pretrained.py). Progress goes
to stderr: a bar on a terminal, otherwise a log line every 10 s.
"""

import argparse
import json
import logging
import os
import sys
import tempfile
import time

import jax
import ml_collections
import numpy as np

from wgan_gp import data, pretrained, standing_stats
from wgan_gp.console import run_measurement_cli
from wgan_gp.checkpoint import Checkpointer
from wgan_gp.config import base_config
from wgan_gp.evaluators import GENERATION_BATCH, generate_in_batches
from wgan_gp.files import write_atomically
from wgan_gp.hardware import cpu_model
from wgan_gp.metrics import fid, fid_infinity
from wgan_gp.metrics.inception import default_extractor
from wgan_gp.runs import load_run

PROTOCOL = 2  # 1: reference all images, floor N of them; 2: disjoint halves (module doc)
CELEBA_TERMS = ("Trained on CelebA images (Liu et al. 2015), which are released for "
                "non-commercial research use only; these weights are shared under the "
                "same terms: non-commercial research use, no redistribution of the images.")


def reference_of_dataset(source, extractor) -> fid.ReferenceStats:
  """Features of every image of the dataset, computed once and cached; both halves are
  rows of them."""
  images = source.images
  return fid.reference_stats(f"{source.identity}_all{len(images)}", lambda: images,
                             extractor=extractor, progress_label="Inception: dataset (once)")


def split_halves(num_images: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Disjoint halves (A, B) of the dataset's indices, seeded and sorted: A's statistics
  are the reference, B holds the floor's real images (an odd image out is in neither)."""
  order = np.random.default_rng([seed, 78]).permutation(num_images)
  half = num_images // 2
  return np.sort(order[:half]), np.sort(order[half:2 * half])


def floor_of_half(half_b: np.ndarray, num_samples: int, seed: int = 0) -> np.ndarray:
  """The floor's real images: `num_samples` of half B (all of it at N = |B|), sorted."""
  chosen = np.random.default_rng([seed, 79]).permutation(len(half_b))[:num_samples]
  return np.sort(half_b[chosen])


def floor_indices(num_images: int, num_samples: int, seed: int = 0) -> np.ndarray:
  """Protocol 1's floor: a seeded subset of the reference set itself (overlapping it)."""
  return np.sort(np.random.default_rng([seed, 77]).permutation(num_images)[:num_samples])


def fid_vs_n_of(reference: fid.ReferenceStats, features: np.ndarray,
                seed: int = 0) -> dict | None:
  """FID of the samples at N = 1/5, 2/5, ..., all of them (5 seeded subsets below all),
  and the line FID_N = FID_∞ + k/N through them (`wgan_gp.metrics.fid_infinity`), from the
  features already computed: no Inception pass. Only the generated side is extrapolated:
  the reference is half A's 5,000 real images, whose own bias stays in FID_∞. None below
  10 samples, too few for the fit."""
  if len(features) < 10:
    return None
  return fid_infinity.fid_vs_n(reference, features, seed=seed)


def measure(gan, g_params, source, num_samples: int, seed: int = 0,
            norm_stats: standing_stats.StandingStats | None = None) -> dict:
  """FID/KID of `num_samples` samples against half A of `source`'s images, and the floor
  (as many images of half B against the same statistics); protocol 1's under
  'protocol_1'. Samples are normalised by `norm_stats` (standing statistics), or
  without, by the statistics of batches of `GENERATION_BATCH`."""
  extractor = default_extractor()
  start = time.time()
  dataset = reference_of_dataset(source, extractor)
  half_a, half_b = split_halves(dataset.num_images, seed)
  if num_samples > len(half_b):
    logging.warning("N = %d samples capped at %d, half the dataset: the floor's images "
                    "come from the other half", num_samples, len(half_b))
  num_samples = min(num_samples, len(half_b))
  logging.info("Generating %d samples", num_samples)
  fake = generate_in_batches(jax.jit(gan.generate), g_params, num_samples, gan.z_dim, seed,
                             norm_stats=None if norm_stats is None else norm_stats.stats)
  features = extractor(fake, value_range=(-1.0, 1.0), progress_label="Inception: generated")
  logging.info("FID and KID of the samples and of the floor (protocols 2 and 1)")
  reference = fid.ReferenceStats.from_features(dataset.features[half_a])
  generated = fid.evaluate_against(reference, features)
  floor = fid.evaluate_against(
      reference, dataset.features[floor_of_half(half_b, num_samples, seed)])
  old = fid.evaluate_against(dataset, features)
  old_floor = fid.evaluate_against(
      dataset, dataset.features[floor_indices(dataset.num_images, num_samples, seed)])
  logging.info("FID against N, extrapolated to infinite N")
  fid_vs_n = fid_vs_n_of(reference, features, seed)
  return {"protocol": PROTOCOL,
          "norm_stats": standing_stats.describe(gan, g_params, norm_stats, GENERATION_BATCH),
          "fid": generated["fid"], "kid": generated["kid"], "kid_std": generated["kid_std"],
          "num_samples": num_samples, "reference_images": reference.num_images,
          "floor_fid": floor["fid"], "floor_kid": floor["kid"], "floor_kid_std": floor["kid_std"],
          "fid_vs_n": fid_vs_n,
          "protocol_1": {"fid": old["fid"], "kid": old["kid"], "kid_std": old["kid_std"],
                         "reference_images": dataset.num_images,
                         "floor_fid": old_floor["fid"], "floor_kid": old_floor["kid"]},
          "evaluation_seconds": round(time.time() - start, 1)}


def protocol_row(workdir: str, num_samples: int, seed: int = 0,
                 norm_stats: str = "standing") -> dict:
  run = load_run(workdir)
  source = data.create_source(run.config.data, run.config.seed)
  params = run.state.ema_g_params
  stats = (standing_stats.compute(run.gan, params, run.config.batch_size)
           if norm_stats == "standing" else None)
  measured = measure(run.gan, params, source, num_samples, seed, stats)
  checkpoint = Checkpointer(os.path.join(workdir, "checkpoints"), keep=1_000_000)
  try:
    seconds = checkpoint.metadata(run.step).get("training_seconds")
  finally:
    checkpoint.close()
  return {"seed": run.config.seed, "steps": run.step,
          "minutes": None if seconds is None else round(seconds / 60.0, 2),
          "steps_per_second": None if not seconds else round(run.step / seconds, 3),
          **measured, "images_seen": run.data_position, "run_config": run.config.to_dict()}


def remeasure_pretrained(name_or_path: str, data_path: str, num_samples: int,
                         norm_stats: str = "standing") -> dict:
  """A shipped generator measured again (its run is gone): its info.json row with new
  FID, KID and floor. Nothing is written: its folder stays as it was measured."""
  generator = pretrained.load(name_or_path, standing=norm_stats == "standing")
  data_config = ml_collections.ConfigDict({
      **base_config().data.to_dict(), **pretrained.legacy_data_record(generator.info["data"]),
      "source": "images",
      "path": data_path})
  measured = measure(generator.gan, generator.params, data.create_source(data_config, 0),
                     num_samples, norm_stats=generator.norm_stats)
  info = {**generator.info, **measured}
  if info.get("steps") and info.get("minutes"):  # so that a faster CPU tells itself apart
    info["steps_per_second"] = round(info["steps"] / (60.0 * info["minutes"]), 3)
  info.setdefault("seed", generator.info.get("seed", 0))
  return {k: v for k, v in info.items() if k not in ("model", "data", "terms")}


def read_table(path: str) -> list[dict]:
  """The rows of the JSON list at `path` ([] if there is none); one line naming the file
  and the fix if it is not a list of named rows."""
  if not os.path.exists(path):
    return []
  try:
    with open(path) as f:
      rows = json.load(f)
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "name" in r
                                             for r in rows):
      raise ValueError("not a JSON list of rows with a 'name'")
  except (ValueError, UnicodeDecodeError, IsADirectoryError) as error:
    raise ValueError(f"--out={path} is damaged ({error}): repair it, move it aside, or pass "
                     "another --out") from None
  return rows


def upsert(path: str, row: dict) -> list[dict]:
  rows = read_table(path)
  names = [r["name"] for r in rows]
  if row["name"] in names:  # in its place
    rows[names.index(row["name"])] = row
  else:
    rows.append(row)
  write_atomically(path, json.dumps(rows, indent=2) + "\n")
  return rows


def upsert_or_keep(path: str, row: dict) -> None:
  """`upsert`, or, if it fails (the file damaged or made unwritable while measuring), the
  row kept in a file beside `path` (or in the temporary folder) and one line naming it."""
  try:
    upsert(path, row)
    return
  except (OSError, ValueError) as error:
    failure = str(error)
  for folder in (os.path.dirname(os.path.abspath(path)), tempfile.gettempdir()):
    kept = os.path.join(folder, f"{os.path.basename(path)}.row-{time.strftime('%Y%m%d-%H%M%S')}"
                        f"-{os.getpid()}.json")
    try:
      write_atomically(kept, json.dumps(row, indent=2) + "\n")
      break
    except OSError:
      kept = None
  raise ValueError(f"the row was measured but not written into {path} ({failure}): "
                   + (f"it is kept in {kept}; add it to the table by hand" if kept else
                      "it could not be kept either (printed above)"))


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", help="the run to measure")
  parser.add_argument("--pretrained", help="instead: measure this shipped generator again "
                      "on --data_path: its info.json record with the new figures, to --out "
                      "(its folder is not written)")
  parser.add_argument("--data_path", help="with --pretrained: the images it trained on")
  parser.add_argument("--name", help="the row's name in the table (default: the workdir's "
                      "folder name)")
  parser.add_argument("--hardware", help="where the run trained, in words (default: this "
                      "machine's CPU, said to be the scoring machine)")
  parser.add_argument("--num_samples", type=int, default=5000,
                      help="N, at most half the dataset (the floor's images are the other half)")
  parser.add_argument("--norm_stats", choices=("standing", "batch"), default="standing",
                      help="the generator's BatchNorm statistics: standing (stored with a "
                      "shipped generator, computed for a run at its batch size) or those "
                      f"of each batch of {GENERATION_BATCH} (the paper's sampling)")
  parser.add_argument("--config", default="", help="the config the run used, for the table")
  parser.add_argument("--command", default="", help="the command that reproduces the run")
  parser.add_argument("--out", default=None,
                      help="the JSON list the row is upserted into (default: "
                      "<workdir>/face_protocol.json; with --pretrained, none: printed only); "
                      "the project's table is experiments/faces64/results/faces.json")
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
    if args.out:
      read_table(args.out)  # a damaged table is refused before the measurement, not after
    row = remeasure_pretrained(args.pretrained, args.data_path, args.num_samples,
                               args.norm_stats)
    print(json.dumps(row, indent=2))
    if args.out:
      upsert_or_keep(args.out, row)
    return 0
  if not args.workdir:
    parser.error("give --workdir (or --pretrained and --data_path)")
  args.name = args.name or os.path.basename(os.path.normpath(args.workdir))
  args.hardware = args.hardware or f"{os.cpu_count()}-core {cpu_model()} (the machine that scored it)"
  if args.reference_only:
    with open(os.path.join(args.workdir, "config.json")) as f:
      data_config = ml_collections.ConfigDict(json.load(f)).data
    reference = reference_of_dataset(data.create_source(data_config, 0), default_extractor())
    print(f"reference statistics of {reference.num_images} images cached")
    return 0
  out = args.out if args.out is not None else os.path.join(args.workdir, "face_protocol.json")
  if out:
    read_table(out)  # a damaged table is refused before the measurement, not after
  row = {"name": args.name, "hardware": args.hardware, "config": args.config,
         **protocol_row(args.workdir, args.num_samples, norm_stats=args.norm_stats),
         "command": args.command}
  print(json.dumps(row, indent=2))  # first: whatever fails next, the row is on stdout
  if out:
    upsert_or_keep(out, row)
  if args.export:
    run = load_run(args.workdir)
    pretrained.export(args.export, run.config, run.state.ema_g_params,
                      {**row, "terms": CELEBA_TERMS})
  return 0


def cli(argv=None) -> int:
  """`main`, with progress on stderr and bad input as one line (exit code 2)."""
  return run_measurement_cli(main, argv)


if __name__ == "__main__":
  sys.exit(cli())
