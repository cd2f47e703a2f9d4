"""Where wgan_gp caches what it derives once per machine: decoded images, converted
FID weights, dataset FID statistics."""

import os
from pathlib import Path


def user_cache_dir() -> Path:
  """$XDG_CACHE_HOME/wgan_gp, else ~/.cache/wgan_gp."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return Path(base) / "wgan_gp"
