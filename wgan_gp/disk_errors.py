"""A full, read-only or forbidden disk, found in an error (or what it was raised from)
and told in one line.

Python raises OSError with an errno; TensorStore (orbax's array writes) raises a
ValueError whose message carries it, `[os_error_code='28']`, and the file.
"""

import errno
import logging
import os
import re
import shutil
from typing import NamedTuple

from wgan_gp import exit_codes

FULL = (errno.ENOSPC, errno.EDQUOT)
READ_ONLY = (errno.EROFS,)
DENIED = (errno.EACCES, errno.EPERM)
_CODES = FULL + READ_ONLY + DENIED
_TENSORSTORE_CODE = re.compile(r"os_error_code='(\d+)'")
_TENSORSTORE_PATH = re.compile(r'Failed writing: "([^"]+)"')
_CHECKPOINT_TMP = re.compile(r"^(.*?)/(\d+)\.orbax-checkpoint-tmp(/|$)")


class DiskError(NamedTuple):
  code: int  # the errno
  path: str | None  # the file it failed on, when the error says


def find(error: BaseException | None) -> DiskError | None:
  """The first disk error in `error`'s chain (its causes and contexts), or None."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, OSError) and error.errno in _CODES:
      return DiskError(error.errno, error.filename)
    match = _TENSORSTORE_CODE.search(str(error))
    if match and int(match.group(1)) in _CODES:
      path = _TENSORSTORE_PATH.search(str(error))
      return DiskError(int(match.group(1)), path and path.group(1))
    error = error.__cause__ or error.__context__
  return None


def explain(error: BaseException, workdir: str) -> tuple[str, int] | None:
  """(one line naming the problem and the fix, exit code) for a disk error; else None."""
  found = find(error)
  if found is None:
    return None
  if found.code in FULL:
    checkpoint = _latest_checkpoint(os.path.join(workdir, "checkpoints"))
    free = f"{_size(_free(found.path or workdir))} free"
    space = f"a checkpoint takes {_size(checkpoint[1])}, {free}" if checkpoint else free
    where = f"writing {_name(found.path)}" if found.path else f"in {workdir}"
    resume = f"from step {checkpoint[0]}" if checkpoint else "from the start"
    return (f"no space left on the disk {where} ({space}): free some space, then rerun "
            f"the same command to resume {resume}", exit_codes.DISK_FULL)
  if found.code in READ_ONLY:  # the folder's property, whichever file came first
    folder = os.path.dirname(found.path) if found.path else workdir
    return (f"cannot write in {folder}: its file system is read-only: use a --workdir (and "
            "data.cache_dir) on a writable disk, or remount it read-write", exit_codes.BAD_INPUT)
  return (f"permission denied on {found.path or workdir}: give this user access to it, or "
          "use a --workdir (and data) that it can access", exit_codes.BAD_INPUT)


def is_reported_library_log(record: logging.LogRecord) -> bool:
  """An orbax log record (with its traceback) of a disk error that `explain` reports."""
  if f"{os.sep}orbax{os.sep}" not in record.pathname or record.levelno < logging.ERROR:
    return False
  error = record.exc_info[1] if record.exc_info else None
  return find(error) is not None or bool(
      (match := _TENSORSTORE_CODE.search(record.getMessage()))
      and int(match.group(1)) in _CODES)


def _free(path: str) -> int:
  while path and not os.path.exists(path):
    path = os.path.dirname(path)
  try:
    return shutil.disk_usage(path or ".").free
  except OSError:
    return 0


def _latest_checkpoint(directory: str) -> tuple[int, int] | None:
  """(step, bytes) of the newest complete checkpoint under `directory`."""
  try:
    steps = [int(name) for name in os.listdir(directory) if name.isdigit()]
  except OSError:
    return None
  if not steps:
    return None
  step = max(steps)
  total = 0
  for root, _, files in os.walk(os.path.join(directory, str(step))):
    for name in files:
      try:
        total += os.stat(os.path.join(root, name)).st_size
      except OSError:
        pass
  return step, total


def _name(path: str) -> str:
  """A file of a checkpoint being saved, as the checkpoint (its temporary name is long)."""
  match = _CHECKPOINT_TMP.match(path)
  return f"checkpoint {match.group(2)} in {match.group(1)}" if match else path


def _size(num_bytes: float) -> str:
  units = ["B", "KB", "MB", "GB", "TB"]
  while num_bytes >= 1000 and len(units) > 1:
    num_bytes /= 1000
    units.pop(0)
  return f"{num_bytes:.0f} B" if units[0] == "B" else f"{num_bytes:.1f} {units[0]}"
