import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "configs"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
CELEBA_TAR = SHARED_DATA / "celeba_align_10k_89x109.tar"

requires_celeba_tar = pytest.mark.skipif(
    not CELEBA_TAR.exists(),
    reason=f"{CELEBA_TAR} not found: the shared CelebA sample sits beside the checkout in CI "
    "and the dev workspace, not in a user's clone")


def subprocess_env(devices: int = 1, **extra) -> dict:
  """Environment for a child Python: `devices` CPU devices, the repo importable."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
  env.update(extra)
  return env
