"""Decoded-image caches: uint8 [N, S, S, 3] on disk, memory-mapped.

Epochs after the first never touch JPEG. A cache is keyed by everything that shapes its
content (the source's identity, the decoder's version, the crop in pixels as resolved
for the source's images, size, resampling), so a cache built under other settings is
never misused: another key, another file; and the same framing, written as pixels or as a
fraction of the short side, shares one cache. A cache is written to a temporary name and
renamed only when complete, with its metadata last, so an interrupted first pass
leaves no cache that looks valid.
"""

import hashlib
import json
import logging
import os
import socket
import time
from typing import Callable, NamedTuple

import numpy as np

from wgan_gp.console import ProgressBar
from wgan_gp.data.errors import DataError
from wgan_gp.files import atomic_path, write_atomically
from wgan_gp.user_cache import user_cache_dir

CACHE_FORMAT_VERSION = 1


class CachedImages(NamedTuple):
  images: np.ndarray  # uint8 [N, S, S, 3], memory-mapped
  identity: str  # the cache key: names this exact content (e.g. for FID statistics)


def cache_key(fields: dict) -> str:
  text = json.dumps({"version": CACHE_FORMAT_VERSION, **fields}, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:24]


def load_or_build(cache_dir: str, fields: dict, num_images: int, image_size: int,
                  fill: Callable[[np.ndarray, Callable], int]) -> CachedImages:
  """The cached images for `fields`, building them with `fill` on a miss.

  `fill(out, progress)` decodes into `out` (uint8 [num_images, S, S, 3], memory-mapped),
  calls `progress(done)` as it goes, and returns how many leading rows it filled (files
  that fail to decode are skipped, so this may be less than `num_images`).
  """
  cache_dir = cache_dir or str(user_cache_dir() / "decoded")
  try:
    os.makedirs(cache_dir, exist_ok=True)
  except OSError as error:
    raise _unusable(f"cannot create the decoded-image cache {cache_dir} ({error.strerror})") \
        from None
  key = cache_key(fields)
  data_path = os.path.join(cache_dir, f"{key}.npy")
  meta_path = os.path.join(cache_dir, f"{key}.json")
  if os.path.exists(meta_path) and os.path.exists(data_path):
    with open(meta_path) as f:
      meta = json.load(f)
    images = np.load(data_path, mmap_mode="r")
    if meta.get("fields") == fields and images.shape[1:] == (image_size, image_size, 3):
      logging.info("Using %d decoded images cached at %s", meta["count"], data_path)
      return CachedImages(images[:meta["count"]], key)
    logging.warning("Ignoring the decoded cache %s: it was built for other settings", data_path)

  if not os.access(cache_dir, os.W_OK | os.X_OK):  # a read-only cache serves hits only
    raise _unusable(f"cannot write the decoded-image cache {cache_dir} (read-only, or "
                    "another user's)")
  _remove_stale_partial_files(data_path)
  # The partial file names its host and process: `_remove_stale_partial_files` knows it.
  partial = f"{data_path}.tmp-{socket.gethostname()}-{os.getpid()}"
  progress = ProgressBar(num_images, "Decoding (first pass; cached after)")
  try:
    with atomic_path(data_path, partial):
      out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8,
                                      shape=(num_images, image_size, image_size, 3))
      count = fill(out, progress.update)
      out.flush()
      del out
      progress.finish()
    write_atomically(meta_path, json.dumps(
        {"fields": fields, "count": count, "built_at": time.strftime("%Y-%m-%d %H:%M:%S")},
        indent=2))
  except BaseException:
    progress.close()
    raise
  logging.info("Cached %d decoded images at %s", count, data_path)
  return CachedImages(np.load(data_path, mmap_mode="r")[:count], key)


def _unusable(problem: str) -> DataError:
  return DataError(f"{problem}: set --config.data.cache_dir to a folder this user can write")


def _remove_stale_partial_files(data_path: str) -> None:
  """Deletes the partial caches of killed first passes on this machine (their process is
  gone); another machine's, or a live process's, may still be filling."""
  folder, prefix = os.path.dirname(data_path), os.path.basename(data_path) + ".tmp-"
  host = socket.gethostname()
  for name in os.listdir(folder):
    owner, _, pid = name.removeprefix(prefix).rpartition("-")
    if not name.startswith(prefix) or owner != host or not pid.isdigit():
      continue
    try:
      os.kill(int(pid), 0)  # raises if no such process
    except ProcessLookupError:
      logging.info("Removing %s, left by a first pass that was killed", name)
      os.remove(os.path.join(folder, name))
    except PermissionError:  # another user's live process
      pass

