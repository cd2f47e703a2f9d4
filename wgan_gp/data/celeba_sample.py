"""Builds a half-size CelebA sample, like the project's, from CelebA's own download:

  python -m wgan_gp.data.celeba_sample --source=img_align_celeba.zip \\
      --out=celeba_align_10k_89x109.tar

`--source` is the official `img_align_celeba.zip` (Align&Cropped Images) or the folder it
extracts to. The choice of images:
  default     the first --count (10,000) .jpg names in name order, 000001.jpg ...
              010000.jpg: the faces of the project's shared sample
  --seed=N    --count names drawn without replacement from all the source's .jpg names
              sorted by file name: `np.random.default_rng(N).choice(len(names), count,
              replace=False)`, kept in name order. The same source, seed and NumPy give
              the same choice (NumPy does not promise the stream across versions).
Each image is decoded, halved (178x218 -> 89x109; an odd side rounds down) with
Pillow's resize (--resample, default bicubic, Pillow's default filter; the filter behind
the shared sample is unrecorded) and written as a baseline JPEG at quality 75 with 4:2:0
chroma: the quantization and Huffman tables of the shared sample's files, which are
Pillow's defaults. The tar holds `img_align_celeba/` and the files in name order under
it, with fixed times, owners and modes (the shared sample's layout), so the same
choice, filter and Pillow build give the same bytes. It is written to a temporary name
beside --out and renamed when complete; an existing --out is never replaced. One line
on stdout: the count, the path and the tar's sha256. No TensorFlow.
"""

import argparse
import collections
import concurrent.futures
import hashlib
import io
import os
import sys
import tarfile
import zipfile
import zlib
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image

from wgan_gp import exit_codes
from wgan_gp.data.errors import DataError
from wgan_gp.files import atomic_path

FOLDER = "img_align_celeba"  # the folder inside the tar, as in CelebA's zip
MTIME = 1767225600  # 2026-01-01T00:00:00Z: every member's time, as in the shared sample
JPEG_OPTIONS = {"quality": 75, "subsampling": "4:2:0"}  # the shared sample's tables
RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "box": Image.Resampling.BOX,
            "lanczos": Image.Resampling.LANCZOS}
DEFAULT_COUNT = 10_000
FULL_CELEBA = 202_599  # images in img_align_celeba.zip


def _is_jpeg_name(name: str) -> bool:
  base = os.path.basename(name)
  return base.lower().endswith((".jpg", ".jpeg")) and not base.startswith(".")


def list_source(source: str) -> dict[str, str]:
  """{file name: where it is in `source`} of the .jpg files of a zip or a folder
  (recursively), in name order. File names must be unique."""
  if not os.path.exists(source):
    raise DataError(f"--source={source!r} not found: point it at CelebA's "
                    "img_align_celeba.zip or the folder it extracts to")
  if os.path.isdir(source):
    paths = [os.path.relpath(os.path.join(root, f), source)
             for root, _, files in os.walk(source) for f in files if _is_jpeg_name(f)]
  elif zipfile.is_zipfile(source):
    try:
      with zipfile.ZipFile(source) as archive:
        paths = [n for n in archive.namelist() if _is_jpeg_name(n) and not n.endswith("/")]
    except (zipfile.BadZipFile, OSError, EOFError) as error:
      raise _damaged(source, error) from None
  else:
    with open(source, "rb") as f:
      if f.read(4) == b"PK\x03\x04":  # a zip's start without its end: a partial download
        raise _damaged(source, zipfile.BadZipFile("no end of central directory"))
    raise DataError(f"--source={source!r} is neither a .zip nor a folder: point it at "
                    "CelebA's img_align_celeba.zip or the folder it extracts to")
  located = {}
  for path in sorted(paths):
    name = os.path.basename(path)
    if name in located:
      raise DataError(f"{source!r} holds {name} twice ({located[name]} and {path}): "
                      "point --source at one img_align_celeba folder or zip")
    located[name] = path
  if not located:
    raise DataError(f"no .jpg images in {source!r}: point --source at CelebA's "
                    "img_align_celeba.zip or the folder it extracts to")
  return dict(sorted(located.items()))


def _damaged(source: str, error: BaseException) -> DataError:
  return DataError(f"{source!r} is truncated or corrupt ({type(error).__name__}: {error}): "
                   "download it again")


def choose(names: list[str], count: int, seed: int | None = None,
           source: str = "the source") -> list[str]:
  """`count` of the sorted `names`: the first ones (seed None) or a seeded draw without
  replacement; in name order either way."""
  names = sorted(names)
  _check_choice(count, seed)
  if count > len(names):
    raise DataError(f"{source} holds {len(names):,} .jpg images, fewer than "
                    f"--count={count}: give --count={len(names)} or less, or use the full "
                    f"img_align_celeba.zip ({FULL_CELEBA:,} images)")
  if seed is None:
    return names[:count]
  picked = np.random.default_rng(seed).choice(len(names), count, replace=False)
  return [names[i] for i in np.sort(picked)]


def _check_choice(count: int, seed: int | None) -> None:
  if count < 1:
    raise DataError(f"--count={count}: give at least 1")
  if seed is not None and seed < 0:
    raise DataError(f"--seed={seed}: give a seed >= 0, or none for the first --count names")


def halve(data: bytes, resample: str = "bicubic") -> bytes:
  """A JPEG at half the width and height (rounded down) of the image encoded in `data`."""
  with Image.open(io.BytesIO(data)) as image:
    image = image.convert("RGB")
    small = image.resize((max(1, image.width // 2), max(1, image.height // 2)),
                         RESAMPLE[resample])
  out = io.BytesIO()
  small.save(out, "JPEG", **JPEG_OPTIONS)
  return out.getvalue()


def _read(source: str, located: dict[str, str], names: list[str]) -> Iterator[tuple[str, bytes]]:
  """(name, bytes) of each of `names`, in order."""
  if os.path.isdir(source):
    for name in names:
      with open(os.path.join(source, located[name]), "rb") as f:
        yield name, f.read()
    return
  try:
    with zipfile.ZipFile(source) as archive:
      for name in names:
        yield name, archive.read(located[name])
  except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as error:
    raise _damaged(source, error) from None


def _converted(items: Iterable[tuple[str, bytes]], convert: Callable[[bytes], bytes],
               source: str, workers: int) -> Iterator[tuple[str, bytes]]:
  """(name, convert(bytes)) in the order of `items`, converted in threads (Pillow
  releases the GIL), with a bounded number of images in flight."""
  def work(name, data):
    try:
      return name, convert(data)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
      raise DataError(f"{name} in {source!r} does not decode ({type(error).__name__}: "
                      f"{error}): download the source again") from None

  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    window = collections.deque()
    for name, data in items:
      window.append(pool.submit(work, name, data))
      if len(window) >= 8 * workers:
        yield window.popleft().result()
    while window:
      yield window.popleft().result()


def _tar_info(name: str, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
  info = tarfile.TarInfo(name)
  info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
  info.mode = 0o755 if directory else 0o644
  info.size, info.mtime = size, MTIME
  info.uid = info.gid = 0
  info.uname = info.gname = ""
  return info


def write_tar(path: str, files: Iterable[tuple[str, bytes]]) -> None:
  """A GNU tar at `path` of `FOLDER/` and then each (file name, bytes) under it, in the
  order given, with the fixed metadata of `_tar_info`."""
  with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as archive:
    archive.addfile(_tar_info(FOLDER, directory=True))
    for name, data in files:
      archive.addfile(_tar_info(f"{FOLDER}/{name}", len(data)), io.BytesIO(data))


def sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 22), b""):
      digest.update(chunk)
  return digest.hexdigest()


def build(source: str, out: str, count: int = DEFAULT_COUNT, seed: int | None = None,
          resample: str = "bicubic", workers: int = 0) -> str:
  """Writes the sample to `out` (see the module's docstring); returns its sha256."""
  if os.path.lexists(out):
    raise DataError(f"--out={out!r} exists: remove it or give another --out "
                    "(a sample is never overwritten)")
  if resample not in RESAMPLE:
    raise DataError(f"--resample={resample!r}: use one of {', '.join(RESAMPLE)}")
  _check_choice(count, seed)
  if workers < 0:
    raise DataError(f"--workers={workers}: give 0 (one per CPU) or more")
  located = list_source(source)
  names = choose(list(located), count, seed, repr(source))
  workers = workers or os.cpu_count() or 1
  folder = os.path.dirname(os.path.abspath(out))
  os.makedirs(folder, exist_ok=True)
  with atomic_path(out) as temporary:
    write_tar(temporary, _converted(_read(source, located, names),
                                    lambda data: halve(data, resample), source, workers))
    if os.path.lexists(out):  # appeared while this one was written
      raise DataError(f"--out={out!r} appeared while the sample was written: remove it "
                      "or give another --out")
  return sha256(out)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m wgan_gp.data.celeba_sample",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--source", required=True,
                      help="CelebA's img_align_celeba.zip, or the folder it extracts to")
  parser.add_argument("--out", required=True, help="the .tar to write; must not exist")
  parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="images in the sample")
  parser.add_argument("--seed", type=int, default=None,
                      help="unset: the first --count file names (000001.jpg ...), the "
                      "shared sample's faces; N: a draw of --count names with "
                      "np.random.default_rng(N), kept in name order")
  parser.add_argument("--resample", choices=list(RESAMPLE), default="bicubic",
                      help="Pillow's filter for halving (default: bicubic)")
  parser.add_argument("--workers", type=int, default=0,
                      help="threads decoding and encoding; 0: one per CPU")
  args = parser.parse_args(argv)
  try:
    digest = build(args.source, args.out, args.count, args.seed, args.resample, args.workers)
  except (DataError, OSError) as error:
    print(f"error: {error}", file=sys.stderr)
    return exit_codes.BAD_INPUT
  choice = "the first in name order" if args.seed is None else f"seed {args.seed}"
  print(f"{args.count} images ({choice}, halved with {args.resample}) written to "
        f"{args.out}, sha256 {digest}")
  return exit_codes.FINISHED


if __name__ == "__main__":
  sys.exit(main())
