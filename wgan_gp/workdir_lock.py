"""One run per workdir: an OS lock on `<workdir>/.lock` while a run holds it.

A flock(2) lock belongs to the open file, so it goes with the process: a run killed by
SIGKILL leaves no stale lock, only the file, which the next run takes over. The file
names its holder (pid, host, start), for the error of a second run. A run that ends
removes it while still holding the lock; a run that opened the old file meanwhile sees
it gone and starts over on a new one.

Where the lock does not reach: a file system that keeps flock(2) locks on the client
covers this host only, so a run on another host that mounts the same workdir is not
stopped. Those are NFS mounted `nolock` or `local_lock=flock|all`, CIFS/SMB mounted
`nobrl`, Lustre mounted `localflock`, and FUSE network mounts (sshfs, rclone, s3fs,
gcsfuse); `hold` says so in one warning per mount (read from /proc/mounts). NFS, CIFS and
Lustre with their default locking pass the lock to the server, which every host sees.
"""

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import socket
import time
from typing import Iterator

LOCK_NAME = ".lock"
MOUNTS_FILE = "/proc/mounts"  # a test may point it at a fake
# A file lock on these covers this host only: (fstype, mount option) pairs, None for
# every mount of the type.
_HOST_LOCAL_LOCKS = (("nfs", "nolock"), ("nfs", "local_lock=flock"), ("nfs", "local_lock=all"),
                     ("nfs4", "nolock"), ("nfs4", "local_lock=flock"),
                     ("nfs4", "local_lock=all"), ("cifs", "nobrl"), ("smb3", "nobrl"),
                     ("lustre", "localflock"), ("fuse.sshfs", None), ("fuse.rclone", None),
                     ("fuse.s3fs", None), ("fuse.gcsfuse", None))
_warned_mounts: set[str] = set()  # one warning per mount point and process
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
  if fd is not None:
    _warn_if_host_local(workdir)
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


def host_local_mount(path: str, mounts_file: str | None = None) -> tuple[str, str] | None:
  """(mount point, why) if a file lock under `path` covers this host only, judged by the
  mount that holds it (the longest mount point above its real path in `mounts_file`,
  default `MOUNTS_FILE`); None for a lock every host sees, or if the mounts are unknown."""
  try:
    with open(mounts_file or MOUNTS_FILE) as f:
      lines = f.read().splitlines()
  except OSError:  # not Linux: nothing to say
    return None
  real = os.path.realpath(path)
  found = None
  for line in lines:
    fields = line.split()
    if len(fields) < 4:
      continue
    # /proc/mounts writes a space in a path as \040 (octal escapes).
    point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])
    inside = real == point or real.startswith(point.rstrip("/") + "/")
    if inside and (found is None or len(point) >= len(found[0])):  # the later of equals
      found = (point, fields[2], fields[3].split(","))  # is mounted on top
  if found is None:
    return None
  point, fstype, options = found
  for local_type, option in _HOST_LOCAL_LOCKS:
    if fstype == local_type and (option is None or option in options):
      return point, f"{fstype}" + (f" mounted {option}" if option else "")
  return None


def _warn_if_host_local(workdir: str) -> None:
  found = host_local_mount(workdir)
  if found is None or found[0] in _warned_mounts:
    return
  _warned_mounts.add(found[0])
  logging.warning("The workdir lock of %s covers this host only (%s is %s): a run on "
                  "another host is not stopped from using the same workdir; start runs "
                  "in it from one host", workdir, found[0], found[1])
