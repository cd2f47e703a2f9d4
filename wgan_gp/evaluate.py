"""Evaluates a run's generator: `python -m wgan_gp.evaluate --workdir=runs/celeba64`.

Images: FID, KID, the Inception Score and k-NN precision/recall (InceptionV3, against
the run's own dataset; its statistics are cached; precision/recall on Inception
features, where Kynkäänniemi et al. used VGG16's) and/or SWD. Toy data: modes captured
and % high-quality samples. Prints the results and appends them to
`<workdir>/eval.jsonl`.
"""

import json
import os
import sys

from absl import app, flags

from wgan_gp import data, evaluators, exit_codes, standing_stats
from wgan_gp.data import DataError
from wgan_gp.metrics.precision_recall import PR_FEATURES

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The run to evaluate.")
flags.DEFINE_integer("num_samples", None, "Generated (and real) samples; default: the run's "
                     "eval_samples (images) or toy_eval_samples (2-D data).")
flags.DEFINE_enum("generator", "ema", ["ema", "raw"], "The EMA generator or the raw one.")
flags.DEFINE_integer("step", None, "Checkpoint step; default: the latest.")
flags.DEFINE_bool("best", False, "Evaluate the best-FID checkpoint (<workdir>/best).")
flags.DEFINE_string("metrics", None, "Image metrics, a subset of 'fid,kid,is,pr,swd' (is: "
                    "Inception Score; pr: precision and recall, on Inception features, not "
                    "the paper's VGG16); default: the run's eval_metrics, or 'fid,kid' if it "
                    "has none.")
flags.DEFINE_integer("seed", 0, "Seed of the generator noise and the real subset.")
flags.DEFINE_enum("norm_stats", "standing", ["standing", "batch"], "The generator's "
                  "BatchNorm statistics: standing (computed at the run's batch size, "
                  "seeded) or those of each batch of 256 samples (the paper's sampling).")
flags.mark_flags_as_required(["workdir"])


def evaluate_run(workdir: str, num_samples: int | None = None, generator: str = "ema",
                 step: int | None = None, best: bool = False, metrics: str | None = None,
                 seed: int = 0, norm_stats: str = "standing") -> dict:
  """Evaluates one checkpoint; returns and appends to eval.jsonl the record written.
  `norm_stats`: "standing" (`wgan_gp.standing_stats`) or "batch" (the paper's)."""
  from wgan_gp.runs import load_run  # orbax only when it is used (see train)

  if num_samples is not None and num_samples < 1:  # 0 would fall back to the run's
    raise ValueError(f"--num_samples={num_samples} must be >= 1: pass a sample count, or "
                     "leave it out for the run's eval_samples")
  run = load_run(workdir, step, best)
  config = run.config
  g_params = run.state.ema_g_params if generator == "ema" else run.state.g_params
  stats = (standing_stats.compute(run.gan, g_params, config.batch_size)
           if norm_stats == "standing" else None)
  source = data.create_source(config.data, config.seed)
  if source.on_device:
    num_samples = num_samples or config.toy_eval_samples
    results = evaluators.ToyEvaluator(source, run.gan, num_samples, seed)(g_params)
  else:
    names = evaluators.parse_metrics(metrics or config.eval_metrics or "fid,kid")
    evaluators.check_metrics_available(names, flag="--metrics")
    evaluator = evaluators.ImageEvaluator(source, run.gan, names,
                                          num_samples or config.eval_samples, seed)
    num_samples = evaluator.num_samples
    results = evaluator(g_params, None if stats is None else stats.stats)
  record = {"step": run.step, "generator": generator, "checkpoint": "best" if best else "latest",
            "num_samples": num_samples, "seed": seed,
            "norm_stats": standing_stats.describe(run.gan, g_params, stats,
                                                  evaluators.GENERATION_BATCH),
            **{f"eval/{k}": v for k, v in results.items()}}
  if "precision" in results:
    record["pr_features"] = PR_FEATURES
  with open(os.path.join(workdir, "eval.jsonl"), "a") as f:
    f.write(json.dumps(record) + "\n")
  return record


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    record = evaluate_run(FLAGS.workdir, FLAGS.num_samples, FLAGS.generator, FLAGS.step,
                          FLAGS.best, FLAGS.metrics, FLAGS.seed, FLAGS.norm_stats)
  except (FileNotFoundError, ValueError, DataError) as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(exit_codes.BAD_INPUT)
  print(json.dumps(record))


if __name__ == "__main__":
  app.run(main)
