"""experiments/faces64/gpu_faces.sh end to end on the CPU, with a tiny model and budget: it must
write every file that a device call brings back (at most 8, each at most 16 MiB)."""

import json
import subprocess
import sys

import pytest
from PIL import Image

from conftest import CELEBA_TAR, REPO_ROOT, requires_celeba_tar, subprocess_env
from wgan_gp import pretrained

# What the script leaves in OUT_DIR, i.e. what the device call brings back.
# The script's own budget here, well inside the test's timeout: on a slow or busy machine
# it cuts (or skips) its throughput part and still ends, rather than being killed by the
# timeout at the same 600 s as its default budget.
SCRIPT_LIMIT_S = 420
TEST_TIMEOUT_S = 600
EXPECTED_FILES = {"generator/generator.npz", "generator/info.json",
                  "generator/norm_stats.npz", "eval.jsonl", "grid.png", "throughput.json",
                  "log.txt"}


@pytest.mark.slow
@requires_celeba_tar
def test_gpu_faces_script_writes_every_file_it_brings_back(tmp_path):
  out = tmp_path / "out"
  env = subprocess_env(
      PYTHON=sys.executable,
      WGAN_GP_GPU_FACES_CONFIG="configs/celeba64.py:gpu,smoke",
      WGAN_GP_FACES_TAR=str(CELEBA_TAR),
      WGAN_GP_GPU_FACES_WORKDIR=str(tmp_path / "work"),
      WGAN_GP_GPU_FACES_THROUGHPUT_ARGS="--trials=2 --steps=1 --rounds=1",
      WGAN_GP_GPU_FACES_LIMIT_S=str(SCRIPT_LIMIT_S))
  result = subprocess.run(
      ["bash", "experiments/faces64/gpu_faces.sh", str(out), "2", "--config.log_every=2",
       f"--config.data.cache_dir={tmp_path / 'cache'}"],
      cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=TEST_TIMEOUT_S)
  assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]

  files = {str(p.relative_to(out)): p.stat().st_size for p in out.rglob("*") if p.is_file()}
  assert set(files) == EXPECTED_FILES and len(files) <= 8
  assert all(0 < size <= 16 * 2**20 for size in files.values()), files

  generator = pretrained.load(str(out / "generator"))
  info = generator.info
  assert info["name"] == "gpu-recipe" and info["config"] == "configs/celeba64.py:gpu,smoke"
  # The smoke config's 10 steps end the run well before the 2 minutes, even on a busy CPU.
  assert info["steps"] == 10 and info["minutes"] > 0
  assert info["run_config"]["log_every"] == 2  # the overrides reached the training run
  records = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
  assert records[-1]["step"] == 10 and "eval/swd" in records[-1]
  assert Image.open(out / "grid.png").format == "PNG"
  # What the throughput measured before the time left ran out: all, a part, or a note.
  throughput = json.loads((out / "throughput.json").read_text())
  assert "note" in throughput or throughput["gflop_per_iteration"] > 0, throughput
  if "one_run" in throughput:
    assert throughput["one_run"]["images_per_s"] > 0
  if "k_runs" in throughput:
    assert throughput["k_runs"]["trials"] == 2 and throughput["k_runs"]["images_per_s"] > 0
  log = (out / "log.txt").read_text()
  assert "First step" in log and log.rstrip().endswith(f"7 files in {out}")
