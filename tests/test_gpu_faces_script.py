"""experiments/gpu_faces.sh end to end on the CPU, with a tiny model and budget: it must
write every file that a device call brings back (at most 8, each at most 16 MiB)."""

import json
import subprocess
import sys

from PIL import Image

from conftest import CELEBA_TAR, REPO_ROOT, requires_celeba_tar, subprocess_env
from wgan_gp import pretrained

# What the script leaves in OUT_DIR, i.e. what the device call brings back.
EXPECTED_FILES = {"generator/generator.npz", "generator/info.json",
                  "generator/norm_stats.npz", "eval.jsonl", "grid.png", "throughput.json",
                  "log.txt"}


@requires_celeba_tar
def test_gpu_faces_script_writes_every_file_it_brings_back(tmp_path):
  out = tmp_path / "out"
  env = subprocess_env(
      PYTHON=sys.executable,
      WGAN_GP_GPU_FACES_CONFIG="configs/celeba64.py:gpu,smoke",
      WGAN_GP_FACES_TAR=str(CELEBA_TAR),
      WGAN_GP_GPU_FACES_WORKDIR=str(tmp_path / "work"),
      WGAN_GP_GPU_FACES_THROUGHPUT_ARGS="--trials=2 --steps=1 --rounds=1")
  result = subprocess.run(
      ["bash", "experiments/gpu_faces.sh", str(out), "2", "--config.log_every=2",
       f"--config.data.cache_dir={tmp_path / 'cache'}"],
      cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
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
  throughput = json.loads((out / "throughput.json").read_text())
  assert throughput["gflop_per_iteration"] > 0
  assert throughput["one_run"]["images_per_s"] > 0
  assert throughput["k_runs"]["trials"] == 2 and throughput["k_runs"]["images_per_s"] > 0
  log = (out / "log.txt").read_text()
  assert "First step" in log and log.rstrip().endswith(f"7 files in {out}")
