"""Images from a folder, a .zip or a .tar of JPEG/PNG files (no TensorFlow).

Each image is decoded once: centre-cropped (`crop_size` px of the source, or
`crop_fraction` of its short side, resolved to pixels once per dataset against its first
image), resized to `image_size` and kept as uint8 [N, S, S, 3]. Scaling to [−1, 1] happens on the device,
inside the step, so the host moves a quarter of the bytes.
"""

import collections
import concurrent.futures
import contextlib
import hashlib
import io
import logging
import os
import tarfile
import zipfile
import zlib
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from wgan_gp.config import resolve_crop, small_crop_warning
from wgan_gp.console import ProgressBar
from wgan_gp.data.cache import CachedImages, load_or_build
from wgan_gp.data.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
RESAMPLE = Image.Resampling.BICUBIC  # antialiased when downscaling, as Pillow resizes
RESAMPLE_NAME = "pillow-bicubic"
# The decoder's version, part of a decoded cache's key (and so of the FID statistics keyed
# by it): bump it when decoding changes the pixels of some file, so no cache the old
# decoder built is reused. 1: Pillow's convert (16-bit greyscale clipped to white);
# 2: `to_rgb` scales it to 8 bits.
DECODER_VERSION = 2
# The version each kind's keys imply without naming it: folder keys predate version 2;
# archives are keyed by their bytes since after it. Named only above that, so an archive's
# identity (and its FID statistics, still right) stays as it was.
_IMPLIED_DECODER = {"folder": 1, "archive": 2}


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
    try:
      with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if _is_image_name(n)]
    except (zipfile.BadZipFile, OSError, EOFError) as error:
      raise _damaged_archive(path, error) from None
  elif tarfile.is_tarfile(path):
    try:
      with tarfile.open(path) as archive:
        names = [m.name for m in archive.getmembers() if m.isfile() and _is_image_name(m.name)]
        _check_tar_end(archive)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
      raise _damaged_archive(path, error) from None
  else:
    raise DataError(f"{path!r} is neither a folder, a .zip nor a .tar: point "
                    "--config.data.path at one of those")
  if not names:
    raise DataError(f"no .jpg/.jpeg/.png images in {path!r}: check --config.data.path")
  return sorted(names)


def _damaged_archive(path: str, error: BaseException) -> DataError:
  return DataError(f"{path!r} is truncated or corrupt ({type(error).__name__}: {error}): "
                   "download or pack it again")


def _check_tar_end(archive: tarfile.TarFile) -> None:
  """tarfile stops silently at a truncated member; a complete archive ends with a zero
  block where the members end."""
  archive.fileobj.seek(archive.offset)
  if archive.fileobj.read(tarfile.BLOCKSIZE) != bytes(tarfile.BLOCKSIZE):
    raise tarfile.ReadError(f"it ends inside or after member {archive.getmembers()[-1].name!r}"
                            if archive.getmembers() else "no end-of-archive marker")


@contextlib.contextmanager
def _tar_errors(path: str):
  try:
    yield
  except (tarfile.TarError, EOFError, zlib.error) as error:
    raise _damaged_archive(path, error) from None


def iterate_image_bytes(path: str, names: list[str]) -> Iterator[tuple[str, bytes | None]]:
  """Yields (name, encoded bytes) in the order of `names`, reading each source once.

  The bytes are None for a zip member that fails its CRC or does not decompress: it is
  skipped like a file that does not decode.
  """
  if os.path.isdir(path):
    for name in names:
      with open(os.path.join(path, name), "rb") as f:
        yield name, f.read()
  elif zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as archive:
      for name in names:
        try:
          data = archive.read(name)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError):
          data = None
        yield name, data
  else:
    # A tar is read front to back once. Members arrive in `names` order when the archive
    # is sorted (CelebA's is); others wait in memory until their turn.
    waiting, next_index = {}, 0
    with tarfile.open(path) as archive, _tar_errors(path):
      for member in archive:
        if next_index < len(names) and member.name == names[next_index]:
          yield member.name, archive.extractfile(member).read()
          next_index += 1
          while next_index < len(names) and names[next_index] in waiting:
            yield names[next_index], waiting.pop(names[next_index])
            next_index += 1
        elif member.isfile() and _is_image_name(member.name):
          waiting[member.name] = archive.extractfile(member).read()


class ImageTooSmallError(DataError):
  """An image smaller than `data.crop_size`: skipped among others, fatal if all are."""

  def __init__(self, crop_size: int, width: int, height: int):
    super().__init__(
        f"data.crop_size={crop_size} exceeds the image size {width}x{height}: use a crop "
        "that fits, or data.crop_size=0 and a data.crop_fraction of the short side "
        "(CelebA's face framing at any resolution: 0.6067)")
    self.crop_size, self.size = crop_size, f"{width}x{height}"


def to_rgb(image: Image.Image) -> Image.Image:
  """RGB, with 16-bit greyscale scaled to 8 bits (Pillow's convert clips it to white)."""
  if image.mode.startswith("I"):  # I;16, I;16B, ... (and I, as older Pillows open them)
    grey = np.round(np.asarray(image, dtype=np.float64) / 257).clip(0, 255)
    image = Image.fromarray(grey.astype(np.uint8), "L")
  return image.convert("RGB")


def crop_and_resize(image: Image.Image, crop_size: int, image_size: int) -> np.ndarray:
  """Centre square crop of side `crop_size` (0: the largest), resize, RGB uint8 [S, S, 3]."""
  image = to_rgb(image)
  width, height = image.size
  side = crop_size or min(width, height)
  if side > min(width, height):
    raise ImageTooSmallError(crop_size, width, height)
  left, top = (width - side) // 2, (height - side) // 2
  image = image.crop((left, top, left + side, top + side))
  if side != image_size:
    image = image.resize((image_size, image_size), RESAMPLE)
  return np.asarray(image, dtype=np.uint8)


def decode_image(data: bytes, crop_size: int, image_size: int) -> np.ndarray:
  with Image.open(io.BytesIO(data)) as image:
    return crop_and_resize(image, crop_size, image_size)


def decode_into(out: np.ndarray, items: Iterator[tuple[str, object]],
                convert: Callable[[object], np.ndarray], workers: int = 0,
                progress: Callable[[int], None] | None = None) -> int:
  """Converts each (name, payload) into the next row of `out`, in order, in threads.

  Items that fail to convert, and images smaller than the crop, are skipped and named in
  a log line each. If all that decode are too small, the crop is wrong: that stops
  everything, as any other `DataError` does (a wrong setting, not a bad file). Returns
  the rows filled. The order is that of `items`, so every process that builds the same
  cache gets the same row for each image. Pillow releases the GIL while decoding and
  resizing.
  """
  workers = workers or os.cpu_count() or 1
  failed, too_small = [], []
  count = seen = 0

  def work(name, payload):
    if payload is None:  # unreadable in its archive
      return name, None
    try:
      return name, convert(payload)
    except ImageTooSmallError as error:
      return name, error
    except DataError:
      raise
    except Exception:  # a corrupt or truncated file: skip it, never fatal on its own
      return name, None

  def collect(future):
    nonlocal count, seen
    name, image = future.result()
    seen += 1
    if image is None:
      failed.append(name)
    elif isinstance(image, ImageTooSmallError):
      too_small.append((name, image))
    else:
      out[count] = image
      count += 1
    if progress:
      progress(seen)

  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    window = collections.deque()
    for name, payload in items:
      window.append(pool.submit(work, name, payload))
      if len(window) >= 8 * workers:  # bounds the encoded bytes held in memory
        collect(window.popleft())
    while window:
      collect(window.popleft())

  if failed:
    logging.warning("Skipped %d of %d files that failed to read or decode: %s%s", len(failed),
                    seen, ", ".join(sorted(failed)[:10]), " ..." if len(failed) > 10 else "")
  if too_small and count == 0:
    raise too_small[0][1]
  if too_small:
    named = sorted(f"{name} ({error.size})" for name, error in too_small)
    logging.warning("Skipped %d of %d images smaller than data.crop_size=%d: %s%s",
                    len(too_small), seen, too_small[0][1].crop_size, ", ".join(named[:10]),
                    " ..." if len(named) > 10 else "")
  return count


def source_fields(path: str) -> dict:
  """What identifies an image folder or archive's content, for the decoded cache.

  An archive is keyed by a hash of its bytes (about a second per GB), not its path and
  modification time: a copy, or the same file remounted, then reuses the decoded cache
  and the FID statistics keyed by it. A folder of loose files is keyed by its names,
  sizes and modification times: hashing each file of a 200,000-image folder on every
  start would cost more than it saves. Both name `DECODER_VERSION` once it is newer
  than the one their keys imply (`_IMPLIED_DECODER`).
  """
  path = os.path.abspath(path)
  if os.path.isdir(path):
    digest = hashlib.sha256()
    for name in list_images(path):
      stat = os.stat(os.path.join(path, name))
      digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return _with_decoder({"kind": "folder", "path": path, "files": digest.hexdigest()})
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 22), b""):
      digest.update(chunk)
  return _with_decoder({"kind": "archive", "sha256": digest.hexdigest()})


def _with_decoder(fields: dict) -> dict:
  if DECODER_VERSION > _IMPLIED_DECODER[fields["kind"]]:
    fields["decoder"] = DECODER_VERSION
  return fields


def first_image_size(path: str, names: list[str]) -> tuple[int, int]:
  """(width, height) of the first of `names` that opens (its header only)."""
  items = iterate_image_bytes(path, names)
  try:
    for name, data in items:
      try:
        with Image.open(io.BytesIO(data)) as image:
          return image.size
      except Exception:  # unreadable: decoding skips it too
        continue
  finally:
    items.close()
  raise DataError(f"none of the {len(names)} image files in {path!r} could be decoded: "
                  "check that they are valid JPEG/PNG files")


def dataset_crop(crop_size: int, crop_fraction: float, width: int, height: int,
                 flag_prefix: str = "--config.data.") -> int:
  """The crop in pixels for a dataset of width×height images (`resolve_crop`), with a
  warning when it leaves a patch of them."""
  warning = small_crop_warning(crop_size, crop_fraction, width, height, flag_prefix)
  if warning:
    logging.warning(warning)
  return resolve_crop(crop_size, crop_fraction, width, height)


def _resolved_crop(path, names, crop_size, crop_fraction, image_size, keep_sized=False,
                   flag_prefix="--config.data."):
  if not (crop_size or crop_fraction):
    return 0  # the largest centred square of each image
  width, height = first_image_size(path, names)
  if keep_sized and (width, height) == (image_size, image_size):
    return crop_size or 0  # generated samples: kept as they are
  return dataset_crop(crop_size, crop_fraction, width, height, flag_prefix)


def load_images(path: str, crop_size: int, image_size: int, cache_dir: str = "",
                workers: int = 0, crop_fraction: float = 0.0) -> CachedImages:
  """Every image under `path`, cropped and resized: uint8 [N, S, S, 3], memory-mapped.

  The crop is `crop_size` pixels or `crop_fraction` of the short side (one of them; both
  0: the largest centred square), resolved to pixels against the first image; the cache
  is keyed by those pixels, so the same framing shares a cache however it is expressed.
  Decoded once into the cache; later calls with the same settings read the cache.
  """
  names = list_images(path)
  crop_size = _resolved_crop(path, names, crop_size, crop_fraction, image_size)
  fields = {**source_fields(path), "crop_size": crop_size, "image_size": image_size,
            "resample": RESAMPLE_NAME}

  def fill(out, progress):
    return _decode_files_into(out, path, names, crop_size, image_size, workers, progress)

  return load_or_build(cache_dir, fields, len(names), image_size, fill)


def read_images(path: str, crop_size: int, image_size: int, workers: int = 0,
                crop_fraction: float = 0.0, flag_prefix: str = "--") -> np.ndarray:
  """As `load_images`, into memory and with no cache: for one-off reads (`wgan_gp.fid`).

  Images already `image_size` square are kept as they are, whatever the crop: one
  command can then read generated samples and the photos they are compared with.
  """
  names = list_images(path)
  crop_size = _resolved_crop(path, names, crop_size, crop_fraction, image_size,
                             keep_sized=True, flag_prefix=flag_prefix)
  out = np.empty((len(names), image_size, image_size, 3), np.uint8)
  with ProgressBar(len(names), f"Decoding {path}") as progress:
    count = _decode_files_into(out, path, names, crop_size, image_size, workers,
                               progress.update, keep_sized=True)
  return out[:count]


def _decode_kept_if_sized(data: bytes, crop_size: int, image_size: int) -> np.ndarray:
  with Image.open(io.BytesIO(data)) as image:
    if image.size == (image_size, image_size):
      return np.asarray(to_rgb(image), dtype=np.uint8)
    return crop_and_resize(image, crop_size, image_size)


def _decode_files_into(out, path, names, crop_size, image_size, workers, progress,
                       keep_sized: bool = False) -> int:
  decode = _decode_kept_if_sized if keep_sized else decode_image
  count = decode_into(out, iterate_image_bytes(path, names),
                      lambda data: decode(data, crop_size, image_size), workers, progress)
  if count == 0:
    raise DataError(f"none of the {len(names)} image files in {path!r} could be decoded: "
                    "check that they are valid JPEG/PNG files")
  return count
