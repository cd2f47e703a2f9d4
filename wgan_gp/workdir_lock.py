"""One run per workdir: an OS lock on `<workdir>/.lock` while a run holds it.

A flock(2) lock belongs to the open file, so it goes with the process: a run killed by
SIGKILL leaves no stale lock, only the file, which the next run takes over. The file
names its holder (pid, host, start), for the error of a second run. A run that ends
removes it while still holding the lock; a run that opened the old file meanwhile sees
it gone and starts over on a new one.
"""

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import time
from typing import Iterator

LOCK_NAME = ".lock"
# flock unsupported by the file system (e.g. Lustre mounted without -o flock).
_NO_LOCKS = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)


class WorkdirInUseError(RuntimeError):
  """Another live run holds the workdir; the message names it."""


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[None]:
  """Holds `workdir`'s lock for the block (creating the folder); raises
  `WorkdirInUseError`, changing nothing, if another run holds it."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_NAME)
  fd = _acquire(path, workdir)
  try:
    yield
  finally:
    if fd is not None:
      with contextlib.suppress(OSError):  # a read-only or full disk: the lock still goes
        os.unlink(path)
      os.close(fd)


def _acquire(path: str, workdir: str) -> int | None:
  """The descriptor of `path`, locked and naming this process; None if the file system
  has no locks (said in a warning)."""
  while True:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _describe_holder(fd)
      os.close(fd)
      raise WorkdirInUseError(
          f"workdir {workdir} is in use by another run ({holder}): wait for it to end or "
          "stop it, or use another --workdir") from None
    except OSError as error:
      os.close(fd)
      if error.errno not in _NO_LOCKS:
        raise
      logging.warning("Cannot lock %s (%s): nothing stops a second run in this workdir",
                      path, error.strerror)
      return None
    try:
      current = os.stat(path)
    except FileNotFoundError:
      current = None
    if current is not None and os.path.samestat(os.fstat(fd), current):
      os.ftruncate(fd, 0)
      os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                               "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
      return fd
    os.close(fd)  # locked a file its holder removed on exit: take the new one


def _describe_holder(fd: int) -> str:
  try:
    holder = json.loads(os.pread(fd, 4096, 0))
    return f"pid {holder['pid']} on host {holder['host']}, since {holder['since']}"
  except (OSError, ValueError, KeyError, TypeError):  # written a moment from now
    return "a run that is starting"
