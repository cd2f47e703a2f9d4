"""Images from a folder, a .zip or a .tar of JPEG/PNG files (no TensorFlow).

Each image is decoded once: centre-cropped (`crop_size` px of the source), resized to
`image_size` and kept as uint8 [N, S, S, 3]. Scaling to [−1, 1] happens on the device,
inside the step, so the host moves a quarter of the bytes.
"""

import concurrent.futures
import io
import logging
import os
import tarfile
import zipfile
from typing import Iterator

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_RESAMPLE = Image.Resampling.BICUBIC  # antialiased when downscaling, as Pillow resizes


class DataError(ValueError):
  """Input data that cannot be used; the message names the problem and the fix."""


def _is_image_name(name: str) -> bool:
  return name.lower().endswith(IMAGE_EXTENSIONS) and not os.path.basename(name).startswith(".")


def list_images(path: str) -> list[str]:
  """Sorted image names in a folder (recursively), a .zip or a .tar(.gz)."""
  if not path:
    raise DataError("config.data.path is empty: pass --config.data.path=<folder, .zip or "
                    ".tar of JPEG/PNG images> (e.g. CelebA's img_align_celeba.zip)")
  if not os.path.exists(path):
    raise DataError(f"image data not found at {path!r}: check --config.data.path")
  if os.path.isdir(path):
    names = [os.path.relpath(os.path.join(root, f), path)
             for root, _, files in os.walk(path) for f in files if _is_image_name(f)]
  elif zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as archive:
      names = [n for n in archive.namelist() if _is_image_name(n)]
  elif tarfile.is_tarfile(path):
    with tarfile.open(path) as archive:
      names = [m.name for m in archive.getmembers() if m.isfile() and _is_image_name(m.name)]
  else:
    raise DataError(f"{path!r} is neither a folder, a .zip nor a .tar: point "
                    "--config.data.path at one of those")
  if not names:
    raise DataError(f"no .jpg/.jpeg/.png images in {path!r}: check --config.data.path")
  return sorted(names)


def iterate_image_bytes(path: str, names: list[str]) -> Iterator[tuple[str, bytes]]:
  """Yields (name, encoded bytes) in the order of `names`, reading each source once."""
  if os.path.isdir(path):
    for name in names:
      with open(os.path.join(path, name), "rb") as f:
        yield name, f.read()
  elif zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as archive:
      for name in names:
        yield name, archive.read(name)
  else:
    wanted = set(names)
    found = {}
    # A tar is read front to back once; members come back in `names` order.
    with tarfile.open(path) as archive:
      for member in archive:
        if member.name in wanted:
          found[member.name] = archive.extractfile(member).read()
    for name in names:
      yield name, found[name]


def crop_and_resize(image: Image.Image, crop_size: int, image_size: int) -> np.ndarray:
  """Centre square crop of side `crop_size` (0: the largest), resize, RGB uint8 [S, S, 3]."""
  image = image.convert("RGB")
  width, height = image.size
  side = crop_size or min(width, height)
  if side > min(width, height):
    raise DataError(
        f"data.crop_size={crop_size} exceeds the image size {width}x{height}: use a crop "
        "that fits (e.g. 108 for CelebA 178x218, 54 for the 89x109 half-size copy) or 0")
  left, top = (width - side) // 2, (height - side) // 2
  image = image.crop((left, top, left + side, top + side))
  if side != image_size:
    image = image.resize((image_size, image_size), _RESAMPLE)
  return np.asarray(image, dtype=np.uint8)


def decode_image(data: bytes, crop_size: int, image_size: int) -> np.ndarray:
  with Image.open(io.BytesIO(data)) as image:
    return crop_and_resize(image, crop_size, image_size)


def decode_all(path: str, crop_size: int, image_size: int, workers: int = 0,
               progress=None) -> np.ndarray:
  """Decodes every image under `path` into uint8 [N, S, S, 3].

  Files that fail to decode are skipped and named in one log line; if none decode,
  that is an error. Decoding runs in threads (Pillow releases the GIL while decoding).
  `progress(done, total)` is called as images finish.
  """
  names = list_images(path)
  workers = workers or os.cpu_count() or 1
  images = np.empty((len(names), image_size, image_size, 3), np.uint8)
  ok = np.zeros(len(names), bool)
  failed = []

  def work(index, name, data):
    try:
      images[index] = decode_image(data, crop_size, image_size)
      ok[index] = True
    except DataError:
      raise
    except Exception:  # corrupt or truncated file: skip it, never fatal on its own
      failed.append(name)

  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    pending = set()
    for index, (name, data) in enumerate(iterate_image_bytes(path, names)):
      pending.add(pool.submit(work, index, name, data))
      if len(pending) >= 8 * workers:  # bound the encoded bytes held in memory
        done, pending = concurrent.futures.wait(
            pending, return_when=concurrent.futures.FIRST_COMPLETED)
        for future in done:
          future.result()
        if progress:
          progress(index + 1 - len(pending), len(names))
    for future in concurrent.futures.as_completed(pending):
      future.result()
  if progress:
    progress(len(names), len(names))

  if failed:
    logging.warning("Skipped %d of %d files in %s that failed to decode: %s%s", len(failed),
                    len(names), path, ", ".join(sorted(failed)[:10]),
                    " ..." if len(failed) > 10 else "")
  if not ok.any():
    raise DataError(f"none of the {len(names)} image files in {path!r} could be decoded: "
                    "check that they are valid JPEG/PNG files")
  return images[ok] if not ok.all() else images
