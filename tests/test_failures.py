"""Failing cleanly, through the real entry points as subprocesses.

A bad input gives a documented exit code and one line on stderr (`error: ...`, the
problem and the fix), never a traceback, and leaves the workdir's files as they were.
Checkpoints survive kills during writes and deletions, a diverging run, and damage.
"""

import asyncio
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile

import jax
import numpy as np
import pytest
from PIL import Image

from conftest import CONFIGS, REPO_ROOT, subprocess_env, wait_for_success
from wgan_gp import checkpoint, exit_codes, gan_state
from wgan_gp.checkpoint import Checkpointer, DamagedCheckpointError, abstract_like
from wgan_gp.config import load_config

_LOG_RECORD = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d")  # absl's log lines


def _run(module, *args, env=None, timeout=1800):
  return subprocess.run([sys.executable, "-m", f"wgan_gp.{module}", *map(str, args)],
                        env=subprocess_env(**(env or {})), cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=timeout)


def _main(config, workdir, *overrides, env=None):
  return _run("main", f"--config={CONFIGS / config}", f"--workdir={workdir}", *overrides,
              env=env)


def _error_line(result, code, *fragments, only_line=False):
  """The one line that is not a log record; asserts the exit code and no traceback."""
  stderr = result.stderr
  assert result.returncode == code, stderr[-3000:]
  assert "Traceback" not in stderr, stderr[-3000:]
  lines = [line for line in stderr.splitlines() if line.strip()]
  if only_line:
    assert len(lines) == 1, stderr
  errors = [line for line in lines if not _LOG_RECORD.match(line)]
  assert len(errors) == 1 and errors[0].startswith("error: "), stderr[-3000:]
  for fragment in fragments:
    assert fragment in errors[0], errors[0]
  return errors[0]


def _hashes(folder):
  """sha256 of every file under `folder`, by relative path."""
  found = {}
  for root, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        found[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
  return found


def _abstract_state(config_name="toy2d.py:smoke", overrides=None):
  config = load_config(str(CONFIGS / config_name), overrides)
  gan = gan_state.build_gan(config)
  return abstract_like(jax.eval_shape(lambda: gan_state.create_train_state(config, gan)))


def _classify(directory, abstract):
  """(steps that restore with finite values, steps that do not, other entries)."""
  checkpointer = Checkpointer(str(directory), keep=1, read_only=True)
  good, bad = [], []
  try:
    for step in sorted(checkpointer.all_steps()):
      try:
        checkpointer.restore_checked(abstract, step)
        good.append(step)
      except DamagedCheckpointError:
        bad.append(step)
  finally:
    checkpointer.close()
  others = sorted(n for n in os.listdir(directory) if not n.isdigit())
  return good, bad, others


@pytest.fixture(scope="module")
def toy_run(toy_smoke_run):
  """A finished toy run: checkpoints 10 and 20 (the session's; copy it to change it)."""
  return toy_smoke_run


@pytest.fixture()
def toy_copy(toy_run, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(toy_run, workdir)
  return workdir


def _write_images(folder, count=12):
  folder.mkdir()
  rng = np.random.default_rng(0)
  for i in range(count):
    Image.fromarray(rng.integers(0, 256, (56, 48, 3), dtype=np.uint8)).save(
        folder / f"{i:06d}.jpg", quality=90)
  return folder


def _image_overrides(path, tmp_path):
  return ["--config.data.source=images", f"--config.data.path={path}",
          "--config.data.crop_size=40", "--config.data.crop_fraction=0",
          f"--config.data.cache_dir={tmp_path / 'cache'}", "--config.eval_metrics="]


# ----------------------------------------------------------------- Bad flags and configs


def _syntax_error_config(tmp_path):
  path = tmp_path / "broken.py"
  path.write_text("def get_config(:\n")
  return path


@pytest.mark.parametrize("config,overrides,fragments", [
    ("toy2d.py:smoke", ["--config.loss.gp_wieght=1"], ["gp_wieght", 'Did you mean "gp_weight"']),
    ("nope.py", [], ["nope.py: no such file"]),
    ("SYNTAX", [], ["invalid syntax", "line 1"]),
    ("toy2d.py:nonsense", [], ["unknown toy2d.py arguments ['nonsense']"]),
    ("toy2d.py:smoke", ["--config.batch_size=abc"], ["--config.batch_size=abc"]),
    ("toy2d.py:smoke", ["stray"], ["unexpected arguments stray"]),
    ("toy2d.py:smoke", ["--config.batch_size=0"], ["config.batch_size=0 must be >= 1"]),
    ("toy2d.py:smoke", ["--config.batch_size=-8"], ["config.batch_size=-8 must be >= 1"]),
    ("toy2d.py:smoke", ["--config.optim.generator.learning_rate=-1e-4"],
     ["optim.generator.learning_rate=-0.0001 must be > 0"]),
    ("toy2d.py:smoke", ["--config.optim.critic.learning_rate=1e39"],
     ["optim.critic.learning_rate=1e+39 must be > 0 (and finite in float32)"]),
    ("toy2d.py:smoke", ["--config.loss.gp_weight=-1"], ["loss.gp_weight=-1.0 must be >= 0"]),
    ("toy2d.py:smoke", ["--config.loss.gp_weight=nan"], ["loss.gp_weight=nan"]),
    ("toy2d.py:smoke", ["--config.model.width=0"], ["model.width=0 must be >= 1"]),
    ("toy2d.py:smoke", ["--config.optim.critic.b2=1.5"], ["optim.critic.b2=1.5 must be in [0, 1)"]),
    ("toy2d.py:smoke", ["--config.data.source=foo"], ["unknown config.data.source 'foo'"]),
    ("celeba64.py:smoke", ["--config.data.crop_size=-3"], ["data.crop_size=-3 must be >= 0"]),
])
def test_bad_flag_or_config_fails_in_one_line_and_touches_nothing(toy_copy, tmp_path, config,
                                                                  overrides, fragments,
                                                                  cli_in_process):
  before = _hashes(toy_copy)
  config_arg = _syntax_error_config(tmp_path) if config == "SYNTAX" else CONFIGS / config
  result = cli_in_process("wgan_gp.main", f"--config={config_arg}", f"--workdir={toy_copy}",
                          *overrides)
  _error_line(result, exit_codes.BAD_INPUT, *fragments, only_line=True)
  assert _hashes(toy_copy) == before


@pytest.mark.parametrize("body,fragments", [
    ("TRIALS = [{(]", ["does not load", "line 2"]),
    ("TRIALS = [{}]", ["defines no BASE_CONFIG"]),
    ("BASE_CONFIG = CONFIG\nTRIALS = [{'loss.gp_weight': -1.0}]",
     ["trial gp_weight=-1", "loss.gp_weight=-1.0 must be >= 0"]),
    ("BASE_CONFIG = CONFIG\nTRIALS = [{'loss.gp_wieght': 1.0}]",
     ["gp_wieght", 'Did you mean "gp_weight"']),
])
def test_bad_sweep_file_fails_in_one_line_before_any_trial(tmp_path, body, fragments,
                                                           cli_in_process):
  sweep_file, workdir = tmp_path / "sweep.py", tmp_path / "runs"
  sweep_file.write_text(f"CONFIG = {str(CONFIGS / 'toy2d.py:smoke')!r}\n{body}\n")
  result = cli_in_process("wgan_gp.sweep", sweep_file, f"--workdir={workdir}")
  _error_line(result, exit_codes.BAD_INPUT, *fragments, only_line=True)
  assert not workdir.exists()  # no trial started


def test_missing_workdir_flag_and_workdir_that_is_a_file(tmp_path, cli_in_process):
  result = cli_in_process("wgan_gp.main", f"--config={CONFIGS / 'toy2d.py:smoke'}")
  _error_line(result, exit_codes.BAD_INPUT, "--workdir", only_line=True)
  a_file = tmp_path / "notes.txt"
  a_file.write_text("not a workdir")
  result = cli_in_process("wgan_gp.main", f"--config={CONFIGS / 'toy2d.py:smoke'}",
                          f"--workdir={a_file}")
  _error_line(result, exit_codes.BAD_INPUT, "is a file: pass a folder", only_line=True)
  assert a_file.read_text() == "not a workdir"


def test_failed_first_run_leaves_no_files(tmp_path):
  workdir = tmp_path / "w"
  result = _main("celeba64.py:smoke", workdir, *_image_overrides(tmp_path / "missing", tmp_path))
  _error_line(result, exit_codes.BAD_INPUT, "image data not found")
  assert _hashes(workdir) == {}  # no config.json, no empty metrics.jsonl or events file


# ------------------------------------------------------------------------- Workdirs

# Runs `wgan_gp.main` with every open (`open` or `os.open`) of a path containing a
# substring failing with an errno, as a full or read-only disk fails it.
_FAILING_MAIN = """
import builtins, os, runpy, sys
target, substring, code = os.environ["FAIL_OPEN"].split("|")
owner = os if target == "os.open" else builtins
real = owner.open
def failing(path, *args, **kwargs):
  if substring in str(path):
    raise OSError(int(code), os.strerror(int(code)), str(path))
  return real(path, *args, **kwargs)
owner.open = failing
sys.argv = ["wgan_gp.main", *sys.argv[1:]]
runpy.run_module("wgan_gp.main", run_name="__main__", alter_sys=True)
"""


def _failing_main(fail_open, workdir, *args):
  return subprocess.run([sys.executable, "-c", _FAILING_MAIN, f"--workdir={workdir}", *args],
                        env=subprocess_env(FAIL_OPEN=fail_open), cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=1800)


_HOLD_WORKDIR = """
import sys, time
from wgan_gp import workdir_lock
with workdir_lock.hold(sys.argv[1]):
  print("held", flush=True)
  time.sleep(600)
"""


@pytest.mark.slow
def test_second_run_in_a_held_workdir_fails_in_one_line_until_the_holder_dies(toy_copy):
  holder = subprocess.Popen([sys.executable, "-c", _HOLD_WORKDIR, str(toy_copy)],
                            env=subprocess_env(), cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            text=True)
  try:
    assert holder.stdout.readline() == "held\n"
    before = _hashes(toy_copy)
    result = _main("toy2d.py:smoke", toy_copy, "--config.num_train_steps=30")
    _error_line(result, exit_codes.BAD_INPUT, f"workdir {toy_copy} is in use by another run "
                f"(pid {holder.pid} on host {socket.gethostname()}, since ",
                "or use another --workdir")
    assert _hashes(toy_copy) == before
  finally:
    holder.kill()  # SIGKILL: no clean-up, the OS drops its lock
    holder.wait()
  assert (toy_copy / ".lock").exists()
  result = _main("toy2d.py:smoke", toy_copy, "--config.num_train_steps=30")
  assert result.returncode == exit_codes.FINISHED, result.stderr[-3000:]
  assert not (toy_copy / ".lock").exists()  # a run that ends removes it


def test_workdir_lock_is_one_per_workdir_and_released(tmp_path):
  from wgan_gp.workdir_lock import WorkdirInUseError, hold
  with hold(str(tmp_path)):
    with pytest.raises(WorkdirInUseError, match=f"pid {os.getpid()} on host"):
      with hold(str(tmp_path)):
        pass
  with hold(str(tmp_path)):  # released, and taken again
    pass
  assert os.listdir(tmp_path) == []


def test_read_only_workdir_fails_in_one_line(toy_copy):
  before = _hashes(toy_copy)
  result = _failing_main(f"os.open|config.json|{errno.EROFS}", toy_copy,
                         f"--config={CONFIGS / 'toy2d.py:smoke'}", "--config.num_train_steps=30")
  _error_line(result, exit_codes.BAD_INPUT, f"cannot write in {toy_copy}: its file system is "
              "read-only", "--workdir")
  assert _hashes(toy_copy) == before


@pytest.mark.parametrize("garbage,problem", [
    (b"{\"seed\": 0,", "Expecting property name"), (b"\x80junk", "codec can't decode"),
    pytest.param(b"[1, 2]", "a JSON list, not an object", marks=pytest.mark.slow)])
def test_damaged_config_json_fails_in_one_line(toy_copy, garbage, problem):
  (toy_copy / "config.json").write_bytes(garbage)
  before = _hashes(toy_copy)
  result = _main("toy2d.py:smoke", toy_copy)
  _error_line(result, exit_codes.BAD_INPUT, f"{toy_copy / 'config.json'} is damaged (", problem,
              "put the run's config back, or delete it")
  assert _hashes(toy_copy) == before
  if garbage.startswith(b"["):  # the way out the line offers
    (toy_copy / "config.json").unlink()
    assert _main("toy2d.py:smoke", toy_copy).returncode == exit_codes.FINISHED


@pytest.mark.slow  # two runs; the quick tier reads disk errors in-process (the next test)
def test_full_disk_during_a_checkpoint_exits_disk_full_in_one_line(tmp_path):
  workdir = tmp_path / "w"
  args = [f"--config={CONFIGS / 'toy2d.py:smoke'}", "--config.num_train_steps=30",
          "--config.eval_every=100"]
  result = _failing_main(f"open|{os.sep}20.orbax-checkpoint-tmp{os.sep}|{errno.ENOSPC}",
                         workdir, *args)
  # Not RESUMABLE: a scheduler that requeues on it would retry into the same full disk.
  assert exit_codes.DISK_FULL != exit_codes.RESUMABLE
  _error_line(result, exit_codes.DISK_FULL,
              f"no space left on the disk writing checkpoint 20 in {workdir / 'checkpoints'} "
              "(a checkpoint takes ", " free): free some space, then rerun the same command "
              "to resume from step 10")
  good, bad, others = _classify(workdir / "checkpoints", _abstract_state())
  assert good == [10] and bad == [] and not [n for n in others if "tmp" in n], others
  result = _run("main", f"--workdir={workdir}", *args)  # space freed: it goes on
  assert result.returncode == exit_codes.FINISHED, result.stderr[-3000:]
  assert "Resumed from step 10" in result.stderr


def test_disk_errors_are_found_in_tensorstore_messages_and_causes():
  from wgan_gp import disk_errors
  tensorstore = ValueError(
      "RESOURCE_EXHAUSTED: Error writing \"a/0.0\" in OCDBT database at local file "
      "\"/r/checkpoints/40.orbax-checkpoint-tmp/state/ocdbt.process_0/\": Failed writing: "
      "\"/r/checkpoints/40.orbax-checkpoint-tmp/state/ocdbt.process_0/d/ec83\": Failed to "
      "write 7012352 bytes to file 4: No space left on device [os_error_code='28']")
  line, code = disk_errors.explain(tensorstore, "/r")
  assert code == exit_codes.DISK_FULL and line.startswith(
      "no space left on the disk writing checkpoint 40 in /r/checkpoints (")
  try:
    try:
      raise OSError(errno.ENOSPC, "No space left on device")
    finally:
      raise OSError(errno.EBADF, "closing after it")  # e.g. a writer's close, later
  except OSError as error:
    assert disk_errors.find(error).code == errno.ENOSPC
  assert disk_errors.explain(ValueError("a bug"), "/r") is None
  quota = OSError(errno.EDQUOT, "Disk quota exceeded", "/r/metrics.jsonl")
  assert disk_errors.explain(quota, "/r")[1] == exit_codes.DISK_FULL


# ------------------------------------------------------------------------------ Data


@pytest.mark.slow
def test_corrupt_zip_member_is_skipped_and_named(tmp_path):
  images = _write_images(tmp_path / "images")
  archive = tmp_path / "images.zip"
  with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
    for path in sorted(images.iterdir()):
      z.write(path, path.name)
  with zipfile.ZipFile(archive) as z:
    member = z.getinfo("000003.jpg")
  data = bytearray(archive.read_bytes())
  data[member.header_offset + 30 + len(member.filename) + 100] ^= 0xFF  # fails its CRC
  archive.write_bytes(bytes(data))
  result = _main("celeba64.py:smoke", tmp_path / "w", *_image_overrides(archive, tmp_path),
                 "--config.num_train_steps=1")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  assert "Skipped 1 of 12 files that failed to read or decode: 000003.jpg" in result.stderr
  assert "11 images of 32x32" in result.stderr


@pytest.mark.slow
def test_image_smaller_than_the_crop_is_skipped_and_named(tmp_path):
  images = _write_images(tmp_path / "images", count=22)
  Image.new("RGB", (1, 1), (255, 0, 0)).save(images / "tiny.png")
  result = _main("celeba64.py:smoke", tmp_path / "w", *_image_overrides(images, tmp_path),
                 "--config.num_train_steps=1")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  assert "Skipped 1 of 23 images smaller than data.crop_size=40: tiny.png (1x1)" in result.stderr
  assert "22 images of 32x32" in result.stderr


def test_cmyk_jpeg_and_16_bit_grey_png_decode_to_their_colours(tmp_path):
  from wgan_gp.data.images import load_images
  folder = tmp_path / "images"
  folder.mkdir()
  Image.new("RGB", (48, 48), (200, 30, 60)).save(folder / "a_rgb.jpg", quality=95)
  Image.new("CMYK", (48, 48), (255, 0, 0, 0)).save(folder / "b_cmyk.jpg", quality=95)
  Image.new("CMYK", (48, 48), (0, 0, 0, 128)).save(folder / "c_cmyk_grey.jpg", quality=95)
  for name, value in (("d_grey16_mid.png", 0x8080), ("e_grey16_white.png", 0xFFFF)):
    grey16 = Image.fromarray(np.full((48, 48), value, np.uint16))
    assert grey16.mode.startswith("I;16")  # what Pillow writes and reads back: 16 bits
    grey16.save(folder / name)
  Image.new("RGB", (1, 1), (0, 0, 0)).save(folder / "f_tiny.png")
  images = load_images(str(folder), crop_size=40, image_size=8,
                       cache_dir=str(tmp_path / "cache")).images
  expected = [(200, 30, 60), (0, 255, 255), (127, 127, 127), (128, 128, 128), (255, 255, 255)]
  assert images.shape == (5, 8, 8, 3)
  np.testing.assert_allclose(images.reshape(5, -1, 3).mean(1), expected, atol=3)


@pytest.mark.parametrize("cache_dir", ["A_FILE/cache", "/proc/nope"])
def test_unwritable_cache_dir_fails_in_one_line(tmp_path, cache_dir):
  if cache_dir == "/proc/nope" and not os.path.isdir("/proc"):
    pytest.skip("no /proc here")
  images = _write_images(tmp_path / "images", count=3)
  (tmp_path / "A_FILE").write_text("a file, not a folder")
  cache_dir = cache_dir.replace("A_FILE", str(tmp_path / "A_FILE"))
  workdir = tmp_path / "w"
  result = _main("celeba64.py:smoke", workdir, *_image_overrides(images, tmp_path),
                 f"--config.data.cache_dir={cache_dir}")
  _error_line(result, exit_codes.BAD_INPUT, f"cannot create the decoded-image cache {cache_dir} (",
              "set --config.data.cache_dir to a folder this user can write")
  assert _hashes(workdir) == {}


@pytest.mark.parametrize("keep_fraction", [0.3, 0.6])
def test_truncated_tar_fails_in_one_line(tmp_path, keep_fraction):
  images = _write_images(tmp_path / "images")
  whole = tmp_path / "whole.tar"
  subprocess.run(["tar", "-cf", whole, "-C", images, "."], check=True)
  truncated = tmp_path / "images.tar"
  data = whole.read_bytes()
  truncated.write_bytes(data[:int(len(data) * keep_fraction)])
  result = _main("celeba64.py:smoke", tmp_path / "w", *_image_overrides(truncated, tmp_path))
  _error_line(result, exit_codes.BAD_INPUT, "is truncated or corrupt", "pack it again")


def test_killed_first_pass_leaves_no_partial_cache(tmp_path):
  from wgan_gp.data.images import load_images
  images = _write_images(tmp_path / "images", count=3)
  cache = tmp_path / "cache"
  load_images(str(images), 40, 32, str(cache))
  key = next(p.stem for p in cache.glob("*.npy"))
  host = socket.gethostname()
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True).stdout.strip()
  stale = cache / f"{key}.npy.tmp-{host}-{dead}"  # what a SIGKILL mid-decode leaves
  live = cache / f"{key}.npy.tmp-{host}-{os.getppid()}"  # a decode still running
  elsewhere = cache / f"{key}.npy.tmp-another-host-{dead}"
  for path in (stale, live, elsewhere):
    path.write_bytes(b"\0" * 1000)
  (cache / f"{key}.json").unlink()  # a miss: the next load builds the cache again
  load_images(str(images), 40, 32, str(cache))
  assert not stale.exists() and live.exists() and elsewhere.exists()


# ----------------------------------------------------------------- Evaluate and sample


def _torch_like_zip(path, payload: bytes):
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("archive/data.pkl", payload)
  return path


@pytest.fixture(scope="module")
def one_step_image_run(tmp_path_factory):
  """celeba64.py:smoke trained 1 step on 12 random images (read only: evaluate's
  refusals leave it as it is)."""
  tmp = tmp_path_factory.mktemp("one_step")
  images = _write_images(tmp / "images")
  workdir = tmp / "run"
  result = _main("celeba64.py:smoke", workdir, *_image_overrides(images, tmp),
                 "--config.num_train_steps=1")
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


@pytest.mark.slow
def test_tampered_or_truncated_fid_weights_fail_in_one_line(tmp_path, one_step_image_run):
  import pickle
  workdir = one_step_image_run
  tampered = _torch_like_zip(tmp_path / "tampered.pt",
                             pickle.dumps({"w": (os.system, ("true",))}, protocol=2))
  whole = _torch_like_zip(tmp_path / "whole.pt", pickle.dumps({"w": 1.0}) * 1000)
  truncated = tmp_path / "truncated.pt"
  truncated.write_bytes(whole.read_bytes()[:300])
  before = _hashes(workdir)
  for weights in (tampered, truncated):
    result = _run("evaluate", f"--workdir={workdir}", "--metrics=fid",
                  env={"WGAN_GP_FID_WEIGHTS": str(weights),
                       "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    _error_line(result, exit_codes.BAD_INPUT, f"FID weights file {weights} is damaged or not InceptionV3 "
                "weights", "reinstall them")
    assert _hashes(workdir) == before  # no eval.jsonl record


def test_evaluate_weights_hint_names_its_own_flag(tmp_path, one_step_image_run):
  workdir = one_step_image_run
  before = _hashes(workdir)
  result = _run("evaluate", f"--workdir={workdir}", "--metrics=fid",
                env={"WGAN_GP_FID_WEIGHTS": str(tmp_path / "absent.pth")})
  line = _error_line(result, exit_codes.BAD_INPUT, "or evaluate with --metrics=swd")
  assert "--config.eval_metrics" not in line
  assert _hashes(workdir) == before


@pytest.mark.parametrize("num_samples", [0, -5])
def test_evaluate_refuses_a_sample_count_below_one(toy_copy, num_samples):
  before = _hashes(toy_copy)
  result = _run("evaluate", f"--workdir={toy_copy}", f"--num_samples={num_samples}")
  _error_line(result, exit_codes.BAD_INPUT, f"--num_samples={num_samples} must be >= 1",
              only_line=True)
  assert _hashes(toy_copy) == before  # nothing measured, nothing appended to eval.jsonl


def test_evaluate_falls_back_past_a_damaged_checkpoint_without_moving_it(toy_copy):
  damaged = toy_copy / "checkpoints" / "20"
  (damaged / "data" / "metadata").unlink()
  before = _hashes(toy_copy / "checkpoints")
  result = _run("evaluate", f"--workdir={toy_copy}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert json.loads(result.stdout.strip().splitlines()[-1])["step"] == 10
  warnings = [l for l in result.stderr.splitlines() if "does not restore" in l]
  assert len(warnings) == 1 and "checkpoint 20 in" in warnings[0] and "using step 10" in warnings[0]
  assert _hashes(toy_copy / "checkpoints") == before  # evaluation moves nothing


def test_sample_of_a_damaged_step_fails_in_one_line(toy_copy):
  (toy_copy / "checkpoints" / "20" / "state" / "_METADATA").unlink()
  before = _hashes(toy_copy)
  result = _run("sample", f"--workdir={toy_copy}", "--step=20", "--mode=export", "--format=npz")
  _error_line(result, exit_codes.BAD_INPUT, "checkpoint 20 in", "does not restore", "pick another --step")
  assert _hashes(toy_copy) == before


# --------------------------------------------------------------------------- Checkpoints


@pytest.mark.parametrize("damage", [pytest.param("truncated data", marks=pytest.mark.slow),
                                    "no state metadata"])
def test_resume_falls_back_to_the_newest_checkpoint_that_restores(toy_copy, damage):
  latest = toy_copy / "checkpoints" / "20"
  if damage == "truncated data":
    for path in (latest / "state" / "ocdbt.process_0" / "d").iterdir():
      path.write_bytes(path.read_bytes()[:10])
  else:
    (latest / "state" / "_METADATA").unlink()
  damaged_files = _hashes(latest)
  result = _main("toy2d.py:smoke", toy_copy)
  assert result.returncode == exit_codes.FINISHED, result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  warnings = [l for l in result.stderr.splitlines() if "does not restore" in l]
  assert len(warnings) == 1, result.stderr[-3000:]
  assert (f"checkpoint 20 in {toy_copy / 'checkpoints'} does not restore" in warnings[0]
          and "resuming from step 10" in warnings[0])
  kept = [p for p in (toy_copy / "checkpoints" / "damaged").iterdir()]
  assert len(kept) == 1 and _hashes(kept[0]) == damaged_files  # moved, never changed
  assert str(kept[0]) in warnings[0]
  good, bad, _ = _classify(toy_copy / "checkpoints", _abstract_state())
  assert good == [10, 20] and bad == []


def test_late_reads_of_a_failed_restore_stay_off_stderr(monkeypatch, capsys):
  """TensorStore threads that call back into orbax's closed loop print through
  sys.excepthook, from a traceback that starts in call_soon_threadsafe; only that is
  dropped, and any other uncaught error still prints."""
  monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
  monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)
  monkeypatch.setattr(logging.getLogger("asyncio"), "filters", [])
  loop = asyncio.new_event_loop()
  loop.close()
  try:
    loop.call_soon_threadsafe(print)
  except RuntimeError as error:
    closed = error
  checkpoint._ignore_late_reads_of_failed_restores()
  sys.excepthook(RuntimeError, closed, closed.__traceback__.tb_next)  # as from native code
  assert capsys.readouterr().err == ""
  sys.excepthook(RuntimeError, closed, closed.__traceback__)  # called from Python code
  sys.excepthook(ValueError, ValueError("other"), None)
  err = capsys.readouterr().err
  assert "Event loop is closed" in err and "ValueError: other" in err
  # A sibling read's failure, abandoned by orbax, logged by asyncio when collected: it
  # carries no orbax frame (seen in CI), only TensorStore's spec. Other errors still log.
  records = []
  handler = logging.Handler()
  handler.emit = records.append
  monkeypatch.setattr(logging.getLogger("asyncio"), "handlers", [handler])
  for message in ('NOT_FOUND: Error opening "zarr" driver [tensorstore_spec=\'{}\']', "other"):
    error = ValueError(message)
    logging.getLogger("asyncio").error("Task exception was never retrieved",
                                       exc_info=(ValueError, error, None))
  assert [str(r.exc_info[1]) for r in records] == ["other"]


def test_no_checkpoint_restores_fails_in_one_line_and_touches_nothing(toy_copy):
  (toy_copy / "checkpoints" / "20" / "data" / "metadata").unlink()
  (toy_copy / "checkpoints" / "10" / "state" / "manifest.ocdbt").unlink()
  before = _hashes(toy_copy)
  result = _main("toy2d.py:smoke", toy_copy)
  _error_line(result, exit_codes.BAD_INPUT, "no checkpoint in", "restores (step 20:",
              "step 10:", "use a new --workdir")
  assert _hashes(toy_copy) == before


@pytest.mark.slow
def test_finished_run_is_not_rewritten_by_other_settings(toy_copy):
  before = _hashes(toy_copy)
  result = _main("toy2d.py:smoke", toy_copy, "--config.seed=1")
  _error_line(result, exit_codes.BAD_INPUT, "incompatible config (seed: 0 -> 1)")
  result = _main("toy2d.py:smoke", toy_copy, "--config.loss.gp_weight=1")
  _error_line(result, exit_codes.BAD_INPUT, "holds a finished run (step 20)",
              "loss.gp_weight: 0.1 -> 1.0", "--config.num_train_steps")
  assert _hashes(toy_copy) == before
  # Continuing it with a new setting is allowed, said, and recorded.
  result = _main("toy2d.py:smoke", toy_copy, "--config.num_train_steps=21",
                 "--config.loss.gp_weight=1")
  assert result.returncode == exit_codes.FINISHED, result.stderr[-3000:]
  assert "with changed settings" in result.stderr and "loss.gp_weight: 0.1 -> 1.0" in result.stderr
  assert json.loads((toy_copy / "config.json").read_text())["loss"]["gp_weight"] == 1.0


@pytest.mark.slow
def test_diverging_run_never_checkpoints_a_non_finite_state(tmp_path):
  # RMSProp's first step is about 10x the learning rate: with 1e38 the parameters
  # overflow while the step's metrics (computed before the update) are still finite.
  workdir = tmp_path / "w"
  overrides = ["--config.optim.generator.name=rmsprop", "--config.checkpoint_every=1"]
  result = _main("toy2d.py:smoke", workdir, *overrides, "--config.num_train_steps=2")
  assert result.returncode == 0, result.stderr[-3000:]
  result = _main("toy2d.py:smoke", workdir, *overrides, "--config.num_train_steps=5",
                 "--config.optim.generator.learning_rate=1e38")
  line = _error_line(result, exit_codes.NON_FINITE, "non-finite values in", "g_params",
                     "at step 3", "not checkpointed",
                     f"the last good checkpoint is step 2 in {workdir / 'checkpoints'}",
                     "lower the learning rates")
  good, bad, _ = _classify(workdir / "checkpoints",
                           _abstract_state(overrides={"optim.generator.name": "rmsprop"}))
  assert good == [1, 2] and bad == [], line


def test_checkpoint_with_non_finite_values_is_never_written_nor_resumed(tmp_path):
  import orbax.checkpoint as ocp
  from wgan_gp.checkpoint import NonFiniteStateError
  config = load_config(str(CONFIGS / "toy2d.py:smoke"))
  state = jax.device_get(gan_state.create_train_state(config, gan_state.build_gan(config)))
  broken = state.replace(ema_g_params=jax.tree.map(lambda x: np.full_like(x, np.inf),
                                                     state.ema_g_params))
  checkpointer = Checkpointer(str(tmp_path / "c"), keep=3)
  checkpointer.save(1, state, 0)
  with pytest.raises(NonFiniteStateError, match="non-finite values in ema_g_params at step 2: "
                     "training stopped and this state was not checkpointed; the last good "
                     "checkpoint is step 1"):
    checkpointer.save(2, broken, 0)
  checkpointer.wait()
  assert checkpointer.all_steps() == [1]
  # As an older version could write it:
  checkpointer._manager.save(2, args=ocp.args.Composite(
      state=ocp.args.StandardSave(broken), data=ocp.args.JsonSave({"position": 0})))
  checkpointer.wait()
  step, restored, _ = checkpointer.restore_latest(abstract_like(state), move_damaged=True)
  checkpointer.close()
  assert step == 1
  jax.tree.map(np.testing.assert_array_equal, restored, state)
  assert sorted(os.listdir(tmp_path / "c")) == ["1", "damaged"]


# -------------------------------------------------------------------- Kills and signals

# Runs `wgan_gp.main` with one os function hooked: the process SIGKILLs itself just
# before the n-th call with a path (source or destination) that contains a substring,
# e.g. the rename that commits a checkpoint or an unlink of the deletion that
# keep_checkpoints started.
_KILLED_MAIN = """
import os, runpy, signal, sys
op, substring, n = os.environ["KILL_BEFORE"].split("|")
calls = 0
real = getattr(os, op)
def hooked(*args, **kwargs):
  global calls
  if any(substring in str(path) for path in args[:2]):
    calls += 1
    if calls == int(n):
      os.kill(os.getpid(), signal.SIGKILL)
  return real(*args, **kwargs)
setattr(os, op, hooked)
sys.argv = ["wgan_gp.main", *sys.argv[1:]]
runpy.run_module("wgan_gp.main", run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow
def test_sigkill_during_checkpoint_writes_and_deletions(tmp_path):
  overrides = [f"--config={CONFIGS / 'toy2d.py:smoke'}", "--config.num_train_steps=6",
               "--config.checkpoint_every=1", "--config.keep_checkpoints=2",
               "--config.eval_every=0"]
  straight = tmp_path / "straight"
  # The uninterrupted run beside the killed ones: each uses about one core.
  straight_run = subprocess.Popen(
      [sys.executable, "-m", "wgan_gp.main", f"--workdir={straight}", *overrides],
      env=subprocess_env(), cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
      text=True)
  workdir = tmp_path / "killed"
  checkpoints = workdir / "checkpoints"
  abstract = _abstract_state()
  kills = [
      ("rename", "/3.orbax-checkpoint-tmp", 2),  # step 3 half committed
      ("unlink", f"{os.sep}.deleting{os.sep}", 3),  # deleting step 1, part way
      ("replace", f"{os.sep}.deleting{os.sep}", 1),  # step 4 saved, step 2 not yet moved
      ("mkdir", "/6.orbax-checkpoint-tmp", 1),  # step 5 saved, step 6 not started
  ]
  must_go = []  # what a later run must remove: tmp folders, broken or surplus steps
  for op, substring, n in kills:
    result = subprocess.run([sys.executable, "-c", _KILLED_MAIN, f"--workdir={workdir}",
                             *overrides], env=subprocess_env(KILL_BEFORE=f"{op}|{substring}|{n}"),
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800)
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    assert not [p for p in must_go if (checkpoints / p).exists()], "left over by a resume"
    if op == "replace":  # what the old deleter left when killed: the oldest step, gutted
      (checkpoints / "2" / "data" / "metadata").unlink()
    good, bad, others = _classify(checkpoints, abstract)
    # Every numbered folder a kill leaves restores; only the one damaged by hand does not.
    assert good and bad == ([2] if op == "replace" else []), (good, bad, others)
    deleting = checkpoints / ".deleting"
    must_go = ([str(s) for s in bad + good[:-2]] + [p for p in others if "tmp" in p]
               + [f".deleting/{p}" for p in (os.listdir(deleting) if deleting.is_dir() else [])])
  result = _run("main", f"--workdir={workdir}", *overrides)
  assert result.returncode == exit_codes.FINISHED, result.stderr[-3000:]
  assert sorted(n for n in os.listdir(checkpoints) if n != ".deleting") == ["5", "6"]
  assert not os.listdir(checkpoints / ".deleting")
  wait_for_success(straight_run)
  restored = Checkpointer(str(checkpoints), keep=1, read_only=True)
  expected = Checkpointer(str(straight / "checkpoints"), keep=1, read_only=True)
  try:
    a, _ = restored.restore_checked(abstract, 6)
    b, _ = expected.restore_checked(abstract, 6)
  finally:
    restored.close()
    expected.close()
  jax.tree.map(np.testing.assert_array_equal, a, b)  # kills change nothing


def _start_long_run(workdir):
  process = subprocess.Popen(
      [sys.executable, "-m", "wgan_gp.main", f"--config={CONFIGS / 'toy2d.py:smoke'}",
       f"--workdir={workdir}", "--config.num_train_steps=100000", "--config.log_every=1",
       "--config.checkpoint_every=100000", "--config.eval_every=0"],
      env=subprocess_env(), cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
      text=True)
  deadline = time.time() + 300
  while not (workdir / "metrics.jsonl").exists():
    assert process.poll() is None and time.time() < deadline, process.stderr.read()[-3000:]
    time.sleep(0.1)
  return process


@pytest.mark.slow
def test_stop_signal_exits_resumable_after_a_checkpoint(tmp_path):
  process = _start_long_run(tmp_path / "w")
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=300)
  assert process.returncode == exit_codes.RESUMABLE, stderr[-3000:]
  assert "Stopped by SIGTERM" in stderr and "Traceback" not in stderr
  good, bad, _ = _classify(tmp_path / "w" / "checkpoints", _abstract_state())
  assert len(good) == 1 and bad == []


# Runs `wgan_gp.main` with every checkpoint save made 30 s slower, so that a second
# Ctrl-C surely lands while the first one's checkpoint is being saved.
_SLOW_SAVE_MAIN = """
import runpy, sys, time
from wgan_gp import checkpoint
save = checkpoint.Checkpointer.save
def slow_save(*args, **kwargs):
  time.sleep(30)
  return save(*args, **kwargs)
checkpoint.Checkpointer.save = slow_save
sys.argv = ["wgan_gp.main", *sys.argv[1:]]
runpy.run_module("wgan_gp.main", run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow
def test_second_ctrl_c_stops_at_once_in_one_line(tmp_path):
  workdir, log = tmp_path / "w", tmp_path / "stderr.txt"
  with open(log, "w") as stderr_file:
    process = subprocess.Popen(
        [sys.executable, "-c", _SLOW_SAVE_MAIN, f"--config={CONFIGS / 'toy2d.py:smoke'}",
         f"--workdir={workdir}", "--config.num_train_steps=100000", "--config.log_every=1",
         "--config.checkpoint_every=100000", "--config.eval_every=0"],
        env=subprocess_env(), cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=stderr_file)
    deadline = time.time() + 1200
    while not (workdir / "metrics.jsonl").exists():
      assert process.poll() is None and time.time() < deadline, log.read_text()[-3000:]
      time.sleep(0.1)
    process.send_signal(signal.SIGINT)  # first: checkpoint (slowly), then stop
    while "SIGINT received" not in log.read_text():
      assert process.poll() is None and time.time() < deadline, log.read_text()[-3000:]
      time.sleep(0.05)
    process.send_signal(signal.SIGINT)  # second: at once
    process.wait(timeout=300)
  stderr = log.read_text()
  assert process.returncode == exit_codes.INTERRUPTED, stderr[-3000:]
  assert "Traceback" not in stderr
  errors = [l for l in stderr.splitlines() if l.strip() and not _LOG_RECORD.match(l)]
  assert errors == ["error: interrupted by Ctrl-C, without saving since the last checkpoint: "
                    "rerun the same command to resume from it"], stderr[-3000:]


@pytest.mark.slow
def test_coordinator_whose_peer_never_joins_fails_in_one_line(tmp_path):
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  start = time.time()
  result = _main("toy2d.py:smoke", tmp_path / "w", f"--coordinator_address=127.0.0.1:{port}",
                 "--num_processes=2", "--process_id=0", "--distributed_timeout=5")
  _error_line(result, exit_codes.BAD_INPUT, f"not all 2 processes joined the run at "
              f"127.0.0.1:{port} within 5 s", "--distributed_timeout")
  assert time.time() - start < 300  # bounded by the timeout, not the runtime's abort
