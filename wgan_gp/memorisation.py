"""Does a run's generator copy its training images? `python -m wgan_gp.memorisation`.

    python -m wgan_gp.memorisation --workdir=runs/faces [--data=PATH] [--num_samples=1000] \\
        [--holdout_count=1000] [--train_limit=M] [--out=RUN/memorisation.json]

Draws `--num_samples` samples of the run's EMA generator (the face protocol's noise: the
first of its samples, normalised by standing statistics), and, in the 2048-d Inception
pool features that FID uses, finds for each its nearest training image (Euclidean). The
baseline is the same distance for held-out real images, which the model never saw: how
close a fresh face of the data distribution comes to the training set. A generator that
draws fresh faces has its samples' nearest-training distances spread like the held-out
ones (or further, being imperfect); one that copies has samples far closer than real
faces come: the report gives quantiles of both distributions, and the fraction of the
samples closer than the held-out distances' 1% quantile (about 0.01 for fresh faces).
It writes the report (JSON, by default <workdir>/memorisation.json) and a PNG of the 8
closest samples, each beside its nearest training image (closest first, beside the JSON).

Held-out images: a run with `config.data.holdout` = K never trained on K images
(`wgan_gp.data.holdout.split_holdout`, a fixed permutation that does not depend on the
seed); they are the baseline, and the training images are the others. A run without a
holdout trained on every image: then `--holdout_count` images (default 1000) are set
aside by the same fixed rule, and both the samples and those images are compared with
the remaining ones. The model saw those images, so a sample copying one of them is not
found (the check covers the other N − K), which the report says
(`holdout_seen_in_training`); as a baseline, their distance to the rest is still one
real face's distance to other real faces.

The Inception features of the dataset are those of the face protocol, computed once per
machine for all its images and cached under the same key (if the protocol scored a run
on this data here, nothing is computed again); `--train_limit=M` compares with the first
M training images only (features of those rows and of the held-out ones, cached under
their own key), for tests and quick looks. `--data` reads the dataset from another path
than the run's config names (the same images, say, copied elsewhere).
"""

import argparse
import hashlib
import json
import logging
import os
import sys

import numpy as np

from wgan_gp.console import run_measurement_cli

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95)
CLOSEST = 8  # pairs in the PNG and the report's 'closest'


def default_extractor():
  """The FID Inception network (imported on use: the module loads without JAX)."""
  from wgan_gp.metrics.inception import default_extractor as extractor
  return extractor()


# ----------------------------------------------------------------------------------
# The maths: numpy only.


def nearest_neighbours(queries: np.ndarray, references: np.ndarray,
                       chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
  """For each row of `queries` [Q, D], the Euclidean distance to its nearest row of
  `references` [R, D] and that row's index: (distances float64 [Q], indices int64 [Q]).
  In float64, through |q|² + |r|² − 2 q·r, `chunk` queries at a time."""
  queries = np.asarray(queries, np.float64)
  references = np.asarray(references, np.float64)
  if (queries.ndim != 2 or references.ndim != 2 or queries.shape[1] != references.shape[1]
      or not len(references)):
    raise ValueError(f"need features [Q, D] and [R >= 1, D], got {queries.shape} and "
                     f"{references.shape}")
  reference_norms = np.sum(references ** 2, axis=1)
  distances, indices = [], []
  for start in range(0, len(queries), chunk):
    block = queries[start:start + chunk]
    squared = (np.sum(block ** 2, axis=1)[:, None] + reference_norms[None, :]
               - 2.0 * block @ references.T)
    nearest = np.argmin(squared, axis=1)
    indices.append(nearest)
    distances.append(np.sqrt(np.maximum(squared[np.arange(len(block)), nearest], 0.0)))
  if not distances:
    return np.zeros(0), np.zeros(0, np.int64)
  return np.concatenate(distances), np.concatenate(indices).astype(np.int64)


def quantiles(values: np.ndarray, levels=QUANTILES) -> dict[str, float]:
  return {f"{q:g}": float(np.quantile(values, q)) for q in levels}


def memorisation_report(sample_features: np.ndarray, train_features: np.ndarray,
                        holdout_features: np.ndarray, train_rows: np.ndarray | None = None,
                        closest: int = CLOSEST) -> dict:
  """Nearest-training distances of the samples against those of the held-out images.

  `train_rows` names the training features' rows in the dataset (default: 0, 1, ...),
  so that the report's indices are dataset rows. Returns the summary (quantiles of both
  distributions, the held-out 1% quantile and the fraction of samples closer than it,
  the `closest` pairs, closest first) and every sample's distance and nearest row.
  """
  train_rows = (np.arange(len(train_features)) if train_rows is None
                else np.asarray(train_rows, np.int64))
  if len(train_rows) != len(train_features):
    raise ValueError(f"{len(train_rows)} train_rows for {len(train_features)} training "
                     "features")
  if len(sample_features) < 1 or len(holdout_features) < 1:
    raise ValueError("need at least one sample and one held-out image")
  sample_distance, sample_nearest = nearest_neighbours(sample_features, train_features)
  holdout_distance, _ = nearest_neighbours(holdout_features, train_features)
  threshold = float(np.quantile(holdout_distance, 0.01))
  order = np.argsort(sample_distance, kind="stable")[:closest]
  return {
      "num_samples": len(sample_features), "train_images": len(train_features),
      "holdout_images": len(holdout_features),
      "sample_distance_quantiles": quantiles(sample_distance),
      "holdout_distance_quantiles": quantiles(holdout_distance),
      "holdout_q01": threshold,
      "fraction_closer_than_holdout_q01": float(np.mean(sample_distance < threshold)),
      "closest": [{"sample": int(i), "train_index": int(train_rows[sample_nearest[i]]),
                   "distance": float(sample_distance[i])} for i in order],
      "sample_distances": sample_distance.tolist(),
      "sample_nearest_train_index": train_rows[sample_nearest].tolist(),
      "holdout_distances": holdout_distance.tolist(),
  }


def pairs_image(samples: np.ndarray, dataset_images: np.ndarray, closest: list[dict]):
  """uint8 grid: one row per pair, the sample (floats in [-1, 1]) on the left, its
  nearest training image (uint8 row of `dataset_images`) on the right."""
  from wgan_gp import visualize
  tiles = []
  for pair in closest:
    tiles.append(np.asarray(samples[pair["sample"]], np.float32))
    tiles.append(np.asarray(dataset_images[pair["train_index"]], np.float32) / 127.5 - 1.0)
  return visualize.image_grid(np.stack(tiles), columns=2)


# ----------------------------------------------------------------------------------
# The command.


def _check_holdout_count(data_config, holdout_count: int | None) -> None:
  """--holdout_count is for a run without a holdout (one line, before any work)."""
  run_holdout = data_config.get("holdout", 0) or 0
  if run_holdout and holdout_count is not None and holdout_count != run_holdout:
    raise ValueError(f"the run held out {run_holdout} images (config.data.holdout): drop "
                     f"--holdout_count={holdout_count}")


def _split(data_config, num_images: int, holdout_count: int | None):
  """(train rows, held-out rows, where the holdout comes from, whether the run saw it)."""
  from wgan_gp.data.holdout import split_holdout
  _check_holdout_count(data_config, holdout_count)
  run_holdout = data_config.get("holdout", 0) or 0
  if run_holdout:
    train, holdout = split_holdout(num_images, run_holdout)
    return train, holdout, "config.data.holdout", False
  count = 1000 if holdout_count is None else holdout_count
  if not 1 <= count < num_images:
    raise ValueError(f"--holdout_count={count}: give 1 to {num_images - 1} (of the "
                     f"{num_images} images)")
  train, holdout = split_holdout(num_images, count)
  return train, holdout, "--holdout_count", True


def _features_of_rows(source, rows: np.ndarray | None, extractor) -> np.ndarray:
  """Inception features of the dataset's `rows` (None: every image, under the face
  protocol's cache key, so one cache serves both), cached on disk."""
  from wgan_gp import face_protocol
  from wgan_gp.metrics import fid
  if rows is None:
    return face_protocol.reference_of_dataset(source, extractor).features
  digest = hashlib.sha256(np.asarray(rows, np.int64).tobytes()).hexdigest()[:12]
  return fid.reference_stats(
      f"{source.identity}_rows{len(rows)}_{digest}", lambda: source.images[rows],
      extractor=extractor, progress_label=f"Inception: {len(rows)} dataset images (once)"
  ).features


def measure(workdir: str, data_path: str | None = None, num_samples: int = 1000,
            holdout_count: int | None = None, train_limit: int | None = None,
            seed: int = 0, norm_stats: str = "standing") -> tuple[dict, np.ndarray]:
  """The report of the run in `workdir`, and the uint8 image of its closest pairs."""
  import jax

  from wgan_gp import data, standing_stats
  from wgan_gp.evaluators import GENERATION_BATCH, generate_in_batches
  from wgan_gp.runs import load_run

  run = load_run(workdir)
  data_config = run.config.data
  if data_path:
    data_config.path, data_config.source = data_path, "images"
  if data_config.source in data.TOY_SOURCES:
    raise ValueError(f"{workdir} trained on 2-D toy data ({data_config.source}): there are "
                     "no images to copy")
  _check_holdout_count(data_config, holdout_count)
  if train_limit is not None and train_limit < 1:
    raise ValueError(f"--train_limit={train_limit}: give at least 1")
  source = data.create_source(data_config, run.config.seed)
  train, holdout, holdout_from, seen = _split(data_config, len(source.images), holdout_count)
  extractor = default_extractor()
  if train_limit is not None:
    train = train[:train_limit]
    rows = np.concatenate([train, holdout])
    features = _features_of_rows(source, rows, extractor)
    train_features, holdout_features = features[:len(train)], features[len(train):]
  else:
    features = _features_of_rows(source, None, extractor)
    train_features, holdout_features = features[train], features[holdout]

  params = run.state.ema_g_params
  stats = (standing_stats.compute(run.gan, params, run.config.batch_size)
           if norm_stats == "standing" else None)
  logging.info("Generating %d samples", num_samples)
  samples = generate_in_batches(jax.jit(run.gan.generate), params, num_samples, run.gan.z_dim,
                                seed, norm_stats=None if stats is None else stats.stats)
  sample_features = extractor(samples, value_range=(-1.0, 1.0),
                              progress_label="Inception: samples")
  logging.info("Nearest training images of %d samples and %d held-out images among %d",
               num_samples, len(holdout), len(train))
  report = memorisation_report(sample_features, train_features, holdout_features, train)
  report = {
      "workdir": workdir, "step": run.step, "seed": seed,
      "norm_stats": standing_stats.describe(run.gan, params, stats, GENERATION_BATCH),
      "features": "Inception pool3, 2048-d (as FID); Euclidean distance",
      "dataset_images": len(source.images), "train_limit": train_limit,
      "holdout_from": holdout_from, "holdout_seen_in_training": seen,
      **report}
  return report, pairs_image(samples, source.images, report["closest"])


SUMMARY_KEYS = ("step", "num_samples", "train_images", "holdout_images", "holdout_from",
                "holdout_seen_in_training", "sample_distance_quantiles",
                "holdout_distance_quantiles", "holdout_q01",
                "fraction_closer_than_holdout_q01", "closest")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True, help="the run whose EMA generator to check")
  parser.add_argument("--data", default=None, help="the dataset's path, if not the one the "
                      "run's config names (a folder, .zip or .tar of the same images)")
  parser.add_argument("--num_samples", type=int, default=1000, help="samples to check")
  parser.add_argument("--holdout_count", type=int, default=None, help="for a run without "
                      "config.data.holdout: images set aside as the baseline, by the fixed "
                      "rule of wgan_gp.data.holdout (default 1000); the run trained on them")
  parser.add_argument("--train_limit", type=int, default=None, help="compare with the first "
                      "M training images only (tests, quick looks)")
  parser.add_argument("--seed", type=int, default=0, help="the samples' noise (0: the face "
                      "protocol's)")
  parser.add_argument("--norm_stats", choices=("standing", "batch"), default="standing",
                      help="the generator's BatchNorm statistics, as in face_protocol")
  parser.add_argument("--out", default=None, help="the JSON report (default: "
                      "<workdir>/memorisation.json); the PNG goes beside it, *_closest.png")
  args = parser.parse_args(argv)
  if args.num_samples < 1:
    parser.error(f"--num_samples={args.num_samples}: give at least 1")
  out = args.out or os.path.join(args.workdir, "memorisation.json")
  png = os.path.splitext(out)[0] + "_closest.png"
  report, image = measure(args.workdir, args.data, args.num_samples, args.holdout_count,
                          args.train_limit, args.seed, args.norm_stats)
  report["png"] = png

  from wgan_gp import visualize
  from wgan_gp.files import write_atomically
  visualize.save_png(image, png)
  write_atomically(out, json.dumps(report, indent=2) + "\n")
  print(json.dumps({k: report[k] for k in SUMMARY_KEYS}, indent=2))
  print(f"report: {out}\nclosest pairs: {png}", file=sys.stderr)
  return 0


def cli(argv=None) -> int:
  """`main`, with progress on stderr and bad input as one line (exit code 2)."""
  return run_measurement_cli(main, argv)


if __name__ == "__main__":
  sys.exit(cli())
