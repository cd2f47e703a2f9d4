"""FID and friends between any two image sets: `python -m wgan_gp.fid PATH_A PATH_B`.

Each path is a folder, .zip or .tar of JPEG/PNG images, an .npz of uint8 images
[N, H, W, 3] (as `wgan_gp.sample --format=npz` writes), or an .npz of statistics
(`mu`, `sigma`: pytorch-fid's and TTUR's format, or what `--save_stats` wrote).
Prints FID, KID, precision/recall (A real, B generated; on Inception features, where
the paper used VGG16's) and each image set's Inception Score, with the same network and
code as `evaluate` and training.

  python -m wgan_gp.fid /data/img_align_celeba.zip runs/x/samples --crop_fraction=0.6067
  python -m wgan_gp.fid /data/img_align_celeba.zip --crop_fraction=0.6067 --save_stats=celeba.npz
  python -m wgan_gp.fid celeba.npz runs/x/samples --metrics=fid

Images are centre-cropped to a square and resized to `--image_size` (64) with Pillow's
bicubic, as the training data is; images already at that size go in unchanged, whatever
the crop. The crop is `--crop_fraction` of the short side (0.6067: CelebA's face framing,
the training recipes' data.crop_fraction: 108 px of the 178x218 img_align_celeba, 54 px
of its 89x109 half-size copy), resolved to pixels against each path's first image, or
`--crop_size` source pixels; neither (the default): the largest square. The network then
resizes to 299 itself.
"""

import json
import os
import sys

import numpy as np
from absl import app, flags
from PIL import Image

from wgan_gp.data.images import DataError, crop_and_resize, dataset_crop, read_images
from wgan_gp.evaluators import inception_metrics
from wgan_gp.metrics import fid, inception
from wgan_gp.metrics.inception_score import inception_score
from wgan_gp.metrics.precision_recall import PR_FEATURES

from wgan_gp import exit_codes

FLAGS = flags.FLAGS
flags.DEFINE_string("save_stats", None, "Write PATH_A's statistics to this .npz (mu, sigma "
                    "as pytorch-fid reads them, plus the features for KID, IS, precision "
                    "and recall).")
flags.DEFINE_string("metrics", None, "A subset of 'fid,kid,is,pr' (is: Inception Score; "
                    "pr: precision and recall, on Inception features, not the paper's VGG16). "
                    "Default: all that the inputs allow.")
flags.DEFINE_float("crop_fraction", 0.0, "Centre square crop before resizing, as a "
                   "fraction of the short side: 0.6067 is CelebA's face framing (the face "
                   "recipes' data.crop_fraction) at any resolution. 0: --crop_size decides. "
                   "Images already at --image_size are not cropped.")
flags.DEFINE_integer("crop_size", 0, "Instead of --crop_fraction: the centre square crop in "
                     "source pixels. Both 0: the largest square.")
flags.DEFINE_integer("image_size", 64, "Side the images are resized to (Pillow bicubic) "
                     "before the network; images already at this size go in unchanged.")
flags.DEFINE_integer("batch_size", 50, "Images per Inception batch.")
flags.DEFINE_bool("json", False, "Print one JSON object instead of aligned lines.")

METRICS = ("fid", "kid", "is", "pr")


def load_images_or_stats(path: str, crop_size: int = 0, image_size: int = 64,
                         crop_fraction: float = 0.0):
  """(uint8 images [N, S, S, 3], None) or (None, fid.ReferenceStats) for one path."""
  if crop_size and crop_fraction:
    raise ValueError(f"--crop_size={crop_size} and --crop_fraction={crop_fraction:g} both set "
                     "the crop: give one of them")
  if not (0 <= crop_fraction <= 1 and crop_size >= 0):
    raise ValueError("--crop_fraction must be in [0, 1] and --crop_size >= 0")
  if not os.path.exists(path):
    raise DataError(f"{path!r} not found")
  if not path.endswith(".npz"):
    return read_images(path, crop_size, image_size, crop_fraction=crop_fraction), None
  with np.load(path, allow_pickle=False) as data:
    if "mu" in data.files:
      return None, fid.load_stats(path)
    arrays = [a for a in (data[k] for k in data.files) if a.ndim == 4]
  if len(arrays) != 1 or arrays[0].dtype != np.uint8 or arrays[0].shape[-1] != 3:
    raise DataError(f"{path} holds neither statistics (mu, sigma) nor one uint8 image "
                    "array [N, H, W, 3]")
  images = arrays[0]
  if images.shape[1:3] == (image_size, image_size):
    return images, None
  height, width = images.shape[1:3]
  pixels = dataset_crop(crop_size, crop_fraction, width, height, flag_prefix="--")
  return np.stack([crop_and_resize(Image.fromarray(im), pixels, image_size)
                   for im in images]), None


def compare(paths: list[str], metrics: str | None = None, save_stats: str | None = None,
            crop_size: int = 0, image_size: int = 64, batch_size: int = 50,
            extractor=None, crop_fraction: float = 0.0) -> dict:
  """The metrics of PATH_B against PATH_A (and of each alone, for IS); writes PATH_A's
  statistics to `save_stats` when given. Default metrics: those the inputs allow, the
  others listed under 'skipped'."""
  wanted = tuple(m.strip() for m in (metrics or ",".join(METRICS)).split(",") if m.strip())
  unknown = sorted(set(wanted) - set(METRICS))
  if unknown:
    raise ValueError(f"unknown metrics {unknown}; expected a subset of {','.join(METRICS)}")
  loaded = [load_images_or_stats(p, crop_size, image_size, crop_fraction) for p in paths]
  sides, results, skipped = [], {}, {}
  for path, (images, stats) in zip(paths, loaded):
    if images is not None:
      extractor = extractor or inception.InceptionFeatureExtractor(batch_size=batch_size)
      stats = fid.ReferenceStats.from_features(
          extractor(images, progress_label=f"Inception features of {path}"))
    sides.append(stats)
  results["num_a"] = sides[0].num_images
  if save_stats:
    fid.save_stats(save_stats, sides[0])
  if len(sides) == 2:
    results["num_b"] = sides[1].num_images
    pair = [m for m in wanted if m != "is"]
    if any(s.features is None for s in sides) and metrics is None:
      skipped.update({m: "statistics with only mu and sigma" for m in pair if m != "fid"})
      pair = [m for m in pair if m == "fid"]
    results.update(inception_metrics(tuple(pair), sides[0], sides[1], extractor))
    if "precision" in results:
      results["pr_features"] = PR_FEATURES
  if "is" in wanted:
    # By default only for images given; named in --metrics, also from saved features.
    if extractor is None and metrics is not None and any(s.features is not None for s in sides):
      extractor = inception.InceptionFeatureExtractor(batch_size=batch_size)
    if extractor is not None and extractor.has_logits:
      for name, side in zip("ab", sides):
        if side.features is not None:
          results[f"is_{name}"], results[f"is_{name}_std"] = inception_score(
              extractor.logits(side.features))
    elif metrics is not None:
      raise ValueError(inception.NO_LOGITS_MESSAGE if extractor else
                       "the Inception Score needs images or features, not mu and sigma alone")
    else:
      skipped["is"] = ("the weights have no logits layer" if extractor else
                       "no images given (name it in --metrics to use saved features)")
  if skipped:
    results["skipped"] = skipped
  return results


def format_results(results: dict) -> str:
  """Aligned 'name  value [± std]' lines; skipped metrics last, with the reason."""
  lines = []
  for key, value in results.items():
    if key.endswith("_std") or key == "skipped" or value is None:
      continue
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    if f"{key}_std" in results:
      text += f" ± {results[f'{key}_std']:.2g}"
    lines.append(f"{key:<10} {text}")
  for key, reason in results.get("skipped", {}).items():
    lines.append(f"{key:<10} skipped: {reason}")
  return "\n".join(lines)


def main(argv):
  paths = argv[1:]
  if not 1 <= len(paths) <= 2 or (len(paths) == 1 and not FLAGS.save_stats):
    raise app.UsageError("usage: python -m wgan_gp.fid PATH_A PATH_B [--metrics=...], or "
                         "PATH_A --save_stats=OUT.npz")
  try:
    results = compare(paths, FLAGS.metrics, FLAGS.save_stats, FLAGS.crop_size,
                      FLAGS.image_size, FLAGS.batch_size, crop_fraction=FLAGS.crop_fraction)
  except (FileNotFoundError, ValueError, DataError) as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(exit_codes.BAD_INPUT)
  print(json.dumps(results) if FLAGS.json else format_results(results))
  if FLAGS.save_stats:
    print(f"statistics of {paths[0]} written to {FLAGS.save_stats}", file=sys.stderr)


if __name__ == "__main__":
  app.run(main)
