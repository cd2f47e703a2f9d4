"""experiments/faces64/gpu_faces.sh end to end on the CPU, with a tiny model and budget: it must
write every file that a device call brings back (at most 8, each at most 16 MiB). Then,
in a second each, the script's own logic with a fake Python and a logging `timeout`: the
export after training was stopped or killed, the exit codes, the time arithmetic that
every limit the device tool may grant must keep, the refusal of a limit too small, and
what a device call carries against its 64 MiB."""

import json
import os
import re
import shutil
import subprocess
import sys
import time

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


SCRIPT = REPO_ROOT / "experiments" / "faces64" / "gpu_faces.sh"


def script_constant(name: str) -> int:
  """A time constant of the script (`NAME=123`), so the checks follow its values."""
  return int(re.search(rf"^{name}=(\d+)", SCRIPT.read_text(), re.M).group(1))


# A stand-in for the device's python3: each call appends its arguments to FAKE_LOG and
# does, at once, what the real call leaves behind. The training run writes config.json,
# a checkpoint unless FAKE_CHECKPOINT says otherwise ("none"; "tmp": only a save in
# progress), and eval.jsonl, then ends as FAKE_TRAIN says: "exit N", or killed by
# "KILL" or "TERM" (so `timeout --preserve-status` sees the signal, as on the device).
FAKE_PYTHON = r"""#!/usr/bin/env bash
printf '%s\n' "$*" | head -1 >> "$FAKE_LOG"
case "$*" in
  "-c import ml_collections") exit 0 ;;
  *load_config*) echo "${FAKE_RECIPE_MINUTES:-6.0}" ;;
  "-c import jax"*) echo "JAX fake [CpuDevice(id=0)]" ;;
  "-m wgan_gp.main "*)
    for arg; do case $arg in --workdir=*) work=${arg#--workdir=} ;; esac; done
    mkdir -p "$work/checkpoints"
    echo '{}' > "$work/config.json"
    echo '{"step": 10, "eval/swd": 1.0}' > "$work/eval.jsonl"
    case ${FAKE_CHECKPOINT:-step} in
      step) mkdir -p "$work/checkpoints/10" ;;
      tmp) mkdir -p "$work/checkpoints/10.orbax-checkpoint-tmp-1700000000" ;;
    esac
    echo "First step (fake)"
    train=${FAKE_TRAIN:-exit 0}
    case $train in
      "exit "*) exit "${train#exit }" ;;
      *) kill -s "$train" $$ ;;
    esac ;;
  "experiments/faces64/gpu_faces.py export "*)
    mkdir -p "$4"
    for f in generator.npz info.json norm_stats.npz; do echo x > "$4/$f"; done
    exit "${FAKE_EXPORT_RC:-0}" ;;
  "-m wgan_gp.sample "*)
    for arg; do case $arg in --out=*) echo png > "${arg#--out=}" ;; esac; done ;;
  "experiments/faces64/gpu_faces.py throughput "*) echo '{"gflop_per_iteration": 1}' > "$4" ;;
  *) echo "fake python: unexpected call: $*" >&2; exit 99 ;;
esac
"""


def run_with_fakes(tmp_path, limit_s, *args, **fake_env):
  """gpu_faces.sh with FAKE_PYTHON and a `timeout` that logs `SECONDS_SINCE_EPOCH ARGS`
  before it runs the real one: (result, out dir, python calls, timeout calls, start)."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir(parents=True, exist_ok=True)
  python = bin_dir / "python"
  python.write_text(FAKE_PYTHON)
  real_timeout = shutil.which("timeout")
  timeout = bin_dir / "timeout"
  timeout.write_text(f'#!/usr/bin/env bash\necho "$(date +%s) $*" >> "$FAKE_TIMEOUT_LOG"\n'
                     f'exec {real_timeout} "$@"\n')
  for path in (python, timeout):
    path.chmod(0o755)
  tar = tmp_path / "faces.tar"
  tar.write_bytes(b"")
  out = tmp_path / "out"
  env = dict(os.environ, PYTHON=str(python), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
             WGAN_GP_FACES_TAR=str(tar), WGAN_GP_GPU_FACES_WORKDIR=str(tmp_path / "work"),
             WGAN_GP_GPU_FACES_LIMIT_S=str(limit_s), FAKE_LOG=str(tmp_path / "python.log"),
             FAKE_TIMEOUT_LOG=str(tmp_path / "timeout.log"), **fake_env)
  start = int(time.time())
  result = subprocess.run(["bash", str(SCRIPT), str(out), *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
  read = lambda name: ((tmp_path / name).read_text().splitlines()
                       if (tmp_path / name).exists() else [])
  return result, out, read("python.log"), read("timeout.log"), start


@pytest.mark.parametrize("train, checkpoint, export_rc, expected_rc, exported", [
    ("exit 0", "step", 0, 0, True),
    ("exit 75", "step", 0, 75, True),     # SIGTERM at the deadline, after a checkpoint
    ("KILL", "step", 0, 137, True),       # SIGKILL after the grace: the older checkpoint
    ("TERM", "step", 0, 143, True),       # SIGTERM before the run's handler
    ("TERM", "none", 0, 143, False),      # ... before its first checkpoint
    ("KILL", "tmp", 0, 137, False),       # killed while saving its only checkpoint
    ("exit 74", "step", 0, 74, True),     # a full disk
    ("exit 1", "step", 0, 1, True),       # a crash
    ("exit 0", "step", 1, 1, False),      # finished, but the export failed
])
def test_gpu_faces_script_exports_the_newest_checkpoint_whatever_training_returned(
    tmp_path, train, checkpoint, export_rc, expected_rc, exported):
  result, out, calls, _, _ = run_with_fakes(
      tmp_path, 600, FAKE_TRAIN=train, FAKE_CHECKPOINT=checkpoint,
      FAKE_EXPORT_RC=str(export_rc))
  assert result.returncode == expected_rc, result.stdout + result.stderr
  export_calls = [c for c in calls if c.startswith("experiments/faces64/gpu_faces.py export")]
  assert len(export_calls) == (checkpoint == "step")
  files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
  if exported:
    assert files == EXPECTED_FILES
  else:
    assert "grid.png" not in files  # no grid without an exported generator
    assert {"eval.jsonl", "throughput.json", "log.txt"} <= files
    assert export_rc or not (out / "generator").exists()
  log = (out / "log.txt").read_text()
  assert log == result.stdout  # log.txt is what the device call prints
  last = log.rstrip().splitlines()[-1]
  assert last.startswith("gpu_faces: done in ") and f", exit {expected_rc} (" in last
  assert last.endswith(f"{len(files)} files in {out}")
  assert ("generator exported" if exported else "no generator exported") in last
  if checkpoint != "step":
    assert "holds no finished checkpoint: nothing to export" in log


def check_plan(tmp_path, limit_s, minutes_arg=()):
  """Runs the script with the fakes at `limit_s` and checks that every `timeout` it
  starts ends by its deadline, and the training's leaves the export its time; returns
  (log, the training's --config.train_minutes, whether the throughput was reserved)."""
  margin, extra, export_s = (script_constant(n) for n in ("MARGIN_S", "TRAIN_EXTRA_S",
                                                           "EXPORT_S"))
  result, out, calls, timeouts, start = run_with_fakes(tmp_path, limit_s, *minutes_arg)
  assert result.returncode == 0, result.stdout + result.stderr
  log = (out / "log.txt").read_text()
  plan = re.search(r"limit (\d+) s, deadline (\d+) s: training \S+ for (\S+) min.*"
                   r"throughput (\d+) s reserved", log)
  deadline = limit_s - margin
  assert plan and int(plan.group(1)) == limit_s and int(plan.group(2)) == deadline, log
  reserved = int(plan.group(4))
  assert len(timeouts) == 4, timeouts  # training, export, grid, throughput
  for line in timeouts:
    at, *args = line.split()
    kill_after = int(args[args.index("-k") + 1])
    duration = int(args[args.index("-k") + 2])
    # Whole seconds on both clocks: the script's start may fall a second after `start`.
    since_start = int(at) - start - 1
    assert since_start + duration <= deadline, (line, limit_s)
    assert since_start + duration + kill_after < limit_s, (line, limit_s)
    if "wgan_gp.main" in line:  # after SIGKILL, the export's time and the throughput's share
      assert since_start + duration + kill_after + export_s + reserved <= deadline, (line, limit_s)
      minutes = float(re.search(r"--config\.train_minutes=(\S+)", line).group(1))
      assert 60 * minutes + extra <= duration, (line, limit_s)  # what the budget omits
  assert float(plan.group(3)) == minutes
  return log, minutes, reserved > 0


def test_gpu_faces_script_derives_every_budget_from_the_granted_limit(tmp_path):
  # The full call: the recipe's 6 minutes, and the throughput's share beside them.
  log, minutes, throughput = check_plan(tmp_path / "600", 600)
  assert minutes == 6.0 and throughput and "warning" not in log
  # A shorter grant: training gets what the limit leaves, and says so.
  for limit_s in (450, 300):
    log, minutes, throughput = check_plan(tmp_path / str(limit_s), limit_s)
    assert 2 < minutes < 6 and not throughput, (limit_s, minutes)
    assert f"warning: the limit of {limit_s} s leaves {minutes:.2f} training minutes" in log
  # Given minutes that fit are kept, and a long grant does not stretch them.
  log, minutes, throughput = check_plan(tmp_path / "900", 900, ["3"])
  assert minutes == 3.0 and throughput


@pytest.mark.parametrize("limit_s, message", [
    ("299", "leaves 119 s to train, under the 120 s minimum"),
    ("60", "leaves -120 s to train, under the 120 s minimum"),
    ("10m", "is not a whole number of seconds"),
])
def test_gpu_faces_script_refuses_a_limit_too_small_in_one_line(tmp_path, limit_s, message):
  result, out, calls, timeouts, _ = run_with_fakes(tmp_path, limit_s)
  assert result.returncode == 2
  lines = result.stdout.splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
  assert calls == [] and timeouts == []  # refused before any Python starts
  assert (out / "log.txt").read_text() == result.stdout


def _sent_bytes() -> int:
  """Bytes of the files git sends to the device (tracked, untracked unless ignored)."""
  names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=REPO_ROOT, capture_output=True, check=True).stdout.split(b"\0")
  paths = [REPO_ROOT / os.fsdecode(n) for n in names if n]
  return sum(p.lstat().st_size for p in paths if os.path.lexists(p))


def _folder_bytes(path) -> int:
  return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@requires_celeba_tar
def test_a_gpu_faces_call_carries_under_its_budget(tmp_path):
  """Tracked files + the CelebA tar + the wheels stay 4 MiB under the 64 MiB a device
  call carries: a commit that eats the margin fails here."""
  if not (REPO_ROOT / ".git").exists():
    pytest.skip("not a git checkout: the device tool sends what git lists")
  env = dict(os.environ, WGAN_GP_FACES_TAR=str(CELEBA_TAR))
  result = subprocess.run(["bash", str(SCRIPT), "--carry"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stdout + result.stderr
  total = float(re.search(r"= (\S+) MiB of the 64 MiB a device call carries \(budget 60 MiB",
                          result.stdout).group(1))
  # The same sum, counted here: what git sends, .data (or the tar it will hold), .whl
  # (or the script's allowance for it before gpu_wheels.sh made it).
  data = REPO_ROOT / ".data"
  wheels = REPO_ROOT / ".whl"
  expected = (_sent_bytes()
              + (_folder_bytes(data) if data.is_dir() else CELEBA_TAR.stat().st_size)
              + (_folder_bytes(wheels) if wheels.is_dir() else 2**20)) / 2**20
  assert abs(total - expected) < 0.01, (total, expected)
  assert total <= 60, result.stdout
  # Over a budget, it fails and names the largest files.
  result = subprocess.run(["bash", str(SCRIPT), "--carry"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60,
                          env=dict(env, WGAN_GP_CARRY_BUDGET_MIB=str(int(total) - 1)))
  assert result.returncode == 1
  assert f"error: the carry, {total:.2f} MiB, is over its {int(total) - 1} MiB budget" in result.stderr
  assert len(re.findall(r"^ +\d+\.\d+ MiB ", result.stderr, re.M)) == 5
