"""Atomic file writes: a reader, or a run killed mid-write, never sees half a file.

Everything is written to a temporary file beside its target, then renamed over it
(`os.replace`, atomic on POSIX within a filesystem). `write_atomically` takes the whole
content; `atomic_path` hands a writer that wants a path (NumPy, Pillow, matplotlib, a
memory map) the temporary one.
"""

import contextlib
import os
import secrets
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, temporary: str | None = None) -> Iterator[str]:
  """A temporary path beside `path`, renamed to `path` when the block ends; deleted if it
  raises.

  The default temporary is unique (concurrent writers never share one) and keeps the
  target's extension, which writers such as `np.savez` and `savefig` go by; `temporary`
  names it instead (e.g. for a clean-up that recognises its owner by name).
  """
  path = os.fspath(path)
  if temporary is None:
    temporary = _new_temporary(path)
  try:
    yield temporary
    os.replace(temporary, path)
  except BaseException:
    if os.path.exists(temporary):
      os.remove(temporary)
    raise


def _new_temporary(path: str) -> str:
  """Creates an empty file beside `path` under a name no other writer has."""
  folder, name = os.path.split(os.path.abspath(path))
  while True:
    temporary = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp"
                             f"{os.path.splitext(name)[1]}")
    try:  # mode 0o666 under the umask, as open() gives (mkstemp's 0600 would hide a cache)
      os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
      return temporary
    except FileExistsError:
      continue


def write_atomically(path: str | os.PathLike, data: str | bytes) -> None:
  """Writes `data` (text as UTF-8, or bytes) to `path` atomically."""
  with atomic_path(path) as temporary:
    with open(temporary, "wb") as f:
      f.write(data.encode() if isinstance(data, str) else data)
