"""Host input pipeline throughput: first-pass decode rate and images/s from the cache.

    python experiments/speed/input_pipeline_benchmark.py [--tar ../shared/data/celeba_align_10k_89x109.tar]

Prints, for 64×64 and 128×128: the first pass (read the tar, decode JPEG, crop, resize,
write the memory-mapped cache) in images/s, then the images/s the training loop receives
from the cache: host batches alone (permutation, gather, process slice) and with the
device transfer and prefetch thread (`prefetch_to_devices`). One step's input is
n_critic × batch = 5 × 64 images.
"""

import argparse
import os
import pathlib
import tempfile
import time

import jax
import numpy as np

from wgan_gp.data import ImageSource
from wgan_gp.data.images import load_images
from wgan_gp.parallel import prefetch_to_devices

DEFAULT_TAR = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / \
    "celeba_align_10k_89x109.tar"


def images_per_second(iterator, images_per_item, rounds=3, seconds=2.0):
  """Median over `rounds` timed windows, after one warm-up window."""
  rates = []
  for _ in range(rounds + 1):
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
      item = next(iterator)
      count += 1
    jax.block_until_ready(item)
    rates.append(count * images_per_item / (time.perf_counter() - start))
  return float(np.median(rates[1:]))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--tar", default=str(DEFAULT_TAR))
  parser.add_argument("--crop", type=int, default=54, help="centre crop in source pixels")
  parser.add_argument("--n_critic", type=int, default=5)
  parser.add_argument("--batch_size", type=int, default=64)
  args = parser.parse_args()
  per_step = args.n_critic * args.batch_size
  print(f"CPU cores: {os.cpu_count()}, JAX devices: {jax.devices()}")
  print("| image size | first pass (decode + cache), img/s | host batches from cache, img/s "
        "| + device transfer and prefetch, img/s |")
  print("| --- | --- | --- | --- |")
  with tempfile.TemporaryDirectory() as cache_dir:
    for size in (64, 128):
      start = time.perf_counter()
      images = load_images(args.tar, args.crop, size, cache_dir=cache_dir).images
      decode_rate = len(images) / (time.perf_counter() - start)
      source = ImageSource(images, seed=0)
      host = images_per_second(source.batches(0, args.n_critic, args.batch_size), per_step)
      staged = prefetch_to_devices(source.batches(0, args.n_critic, args.batch_size), size=2)
      device = images_per_second(staged, per_step)
      staged.close()
      print(f"| {size}×{size} | {decode_rate:,.0f} | {host:,.0f} | {device:,.0f} |", flush=True)


if __name__ == "__main__":
  main()
