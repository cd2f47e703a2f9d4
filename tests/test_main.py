"""`python -m wgan_gp.main` end to end: outputs, resume after SIGTERM, errors."""

import json
import logging
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from PIL import Image

from conftest import (CELEBA_TAR, CONFIGS, REPO_ROOT, copy_run, requires_celeba_tar,
                      subprocess_env, wait_for_success)
from wgan_gp import exit_codes, gan_state
from wgan_gp.checkpoint import Checkpointer, abstract_like
from wgan_gp.config import load_config


def _main_command(config, workdir, *overrides):
  return [sys.executable, "-m", "wgan_gp.main", f"--config={CONFIGS / config}",
          f"--workdir={workdir}", *overrides]


# Optional dependencies that a run from an image folder must not import: TensorFlow is for the
# TFDS source only, and torch for the PyTorch cross-check only.
_OPTIONAL_MODULES = ("tensorflow", "tensorflow_datasets", "torch")


def _main_command_reporting_imports(config, workdir, *overrides):
  """`_main_command`, run so that it prints at exit which `_OPTIONAL_MODULES` it imported."""
  argv = _main_command(config, workdir, *overrides)[2:]  # from the module name on
  script = ("import runpy, sys\n"
            f"sys.argv = {argv!r}\n"
            "try:\n"
            "  runpy.run_module('wgan_gp.main', run_name='__main__', alter_sys=True)\n"
            "finally:\n"
            f"  print('optional modules imported:', [m for m in {_OPTIONAL_MODULES!r} "
            "if m in sys.modules])\n")
  return [sys.executable, "-c", script]


def _run_main(config, workdir, *overrides, devices=1, check=True, report_imports=False,
              cache=None, optimised_code=False):
  """`cache`: the run's XDG_CACHE_HOME, for runs that would write to the user's cache;
  `optimised_code`: as `subprocess_env`'s, for runs that evaluate FID."""
  command = (_main_command_reporting_imports if report_imports else _main_command)(
      config, workdir, *overrides)
  env = subprocess_env(devices, optimised_code,
                       **({"XDG_CACHE_HOME": str(cache)} if cache else {}))
  result = subprocess.run(command, env=env,
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
  if check and result.returncode != 0:
    raise AssertionError(f"main failed ({result.returncode}):\n{result.stderr[-4000:]}")
  return result


def _checkpoint_steps(workdir):
  return sorted(int(d) for d in os.listdir(workdir / "checkpoints") if d.isdigit())


def _restore_params(config_name, workdir, overrides=None):
  config = load_config(str(CONFIGS / config_name), overrides)
  gan = gan_state.build_gan(config)
  checkpointer = Checkpointer(str(workdir / "checkpoints"), keep=5)
  state, position = checkpointer.restore(abstract_like(gan_state.create_train_state(config, gan)))
  checkpointer.close()
  return state, position


def _read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


def test_toy_smoke_run_writes_every_output(toy_smoke_run):
  workdir = toy_smoke_run  # python -m wgan_gp.main --config=configs/toy2d.py:smoke
  assert _checkpoint_steps(workdir) == [10, 20]
  metrics = _read_jsonl(workdir / "metrics.jsonl")
  assert [m["step"] for m in metrics] == [5, 10, 15, 20]
  for key in ("critic_loss", "generator_loss", "wasserstein", "gradient_penalty",
              "interp_grad_norm_mean", "interp_grad_norm_max", "critic_grad_norm",
              "generator_grad_norm", "steps_per_sec", "images_per_sec", "eta_minutes"):
    assert np.isfinite(metrics[-1][key]), key
  evals = _read_jsonl(workdir / "eval.jsonl")
  assert [e["step"] for e in evals] == [10, 20]
  assert 0 <= evals[-1]["eval/modes_captured"] <= 25
  assert os.listdir(workdir / "tensorboard")[0].startswith("events.out.tfevents")
  figure = Image.open(workdir / "samples" / "toy_step_0000020.png")
  assert figure.size[0] >= 300
  saved = json.loads((workdir / "config.json").read_text())
  assert saved["data"]["source"] == "25gaussians" and saved["num_train_steps"] == 20


def _write_image_folder(folder, count=40, size=(48, 56)):
  folder.mkdir()
  rng = np.random.default_rng(0)
  for i in range(count):
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=90)
  return folder


def test_image_folder_smoke_run(image_smoke_run):
  workdir, result = image_smoke_run  # celeba64.py:smoke on an image folder (conftest.py)
  assert "optional modules imported: []" in result.stdout
  assert _checkpoint_steps(workdir) == [5, 10]
  grid = np.asarray(Image.open(workdir / "samples" / "step_0000010.png"))
  assert grid.shape == (4 * 34 + 2, 4 * 34 + 2, 3)  # 16 samples of 32 px, 2 px padding
  assert grid.std() > 5  # generated content, not a blank canvas
  _, position = _restore_params("celeba64.py:smoke", workdir)
  assert position == 10 * 2 * 8  # steps × n_critic × batch


@pytest.mark.slow
@requires_celeba_tar
def test_celeba_tar_smoke_run(tmp_path):
  workdir = tmp_path / "celeba"
  result = _run_main("celeba64.py:smoke,halfsize", workdir, "--config.data.source=images",
                     f"--config.data.path={CELEBA_TAR}", f"--config.data.cache_dir={tmp_path}")
  assert "Cached 10000 decoded images" in result.stderr
  assert (workdir / "samples" / "step_0000010.png").exists()
  assert len(_read_jsonl(workdir / "metrics.jsonl")) == 2


@pytest.mark.slow
def test_sigterm_then_resume_equals_uninterrupted_run(tmp_path):
  overrides = ["--config.num_train_steps=300", "--config.log_every=1",
               "--config.checkpoint_every=1000", "--config.model.width=64",
               "--config.batch_size=64"]
  straight = tmp_path / "straight"
  # The uninterrupted run beside the interrupted one: each uses about one core.
  straight_run = subprocess.Popen(_main_command("toy2d.py:smoke", straight, *overrides),
                                  env=subprocess_env(), cwd=REPO_ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

  interrupted = tmp_path / "interrupted"
  process = subprocess.Popen(_main_command("toy2d.py:smoke", interrupted, *overrides),
                             env=subprocess_env(), cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
  metrics_file = interrupted / "metrics.jsonl"
  deadline = time.time() + 300
  while not (metrics_file.exists() and metrics_file.read_text().count("\n") >= 2):
    assert process.poll() is None and time.time() < deadline, "run ended before the signal"
    time.sleep(0.05)
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=300)
  assert process.returncode == exit_codes.RESUMABLE, stderr[-3000:]
  assert "Stopped by SIGTERM" in stderr
  stopped_at = _checkpoint_steps(interrupted)
  assert len(stopped_at) == 1 and 2 <= stopped_at[0] < 300

  _run_main("toy2d.py:smoke", interrupted, *overrides)
  assert _checkpoint_steps(interrupted)[-1] == 300
  wait_for_success(straight_run)
  a, _ = _restore_params("toy2d.py:smoke", straight, {"model.width": 64})
  b, _ = _restore_params("toy2d.py:smoke", interrupted, {"model.width": 64})
  jax.tree.map(np.testing.assert_array_equal, a, b)


def _error_line(stderr):
  """A failure's one line: the last of stderr, its only 'error: ' line, no traceback
  (log records of the run before it may precede it)."""
  lines = stderr.strip().splitlines()
  assert [line for line in lines if line.startswith("error: ")] == lines[-1:], stderr[-3000:]
  assert "Traceback" not in stderr, stderr[-3000:]
  return lines[-1]


@pytest.mark.parametrize("overrides,devices,message", [
    (["--config.loss.gp_wieght=1"], 1, "gp_wieght"),
    (["--config.batch_size=abc"], 1, "batch_size"),
    (["--config.batch_size=33"], 2, "batch_size=33 is not divisible by the 2 devices"),
    (["--config.model.critic_norm=batchnorm"], 1, "per-sample gradient penalty"),
])
def test_bad_config_fails_with_one_clear_line(tmp_path, overrides, devices, message,
                                              cli_in_process):
  if devices == 1:  # this process has one CPU device: the refusal runs here
    result = cli_in_process("wgan_gp.main", f"--config={CONFIGS / 'toy2d.py:smoke'}",
                            f"--workdir={tmp_path / 'w'}", *overrides)
  else:
    result = _run_main("toy2d.py:smoke", tmp_path / "w", *overrides, devices=devices,
                       check=False)
  assert result.returncode == exit_codes.BAD_INPUT
  # Refused before anything runs: stderr is that one line and nothing else.
  assert result.stderr.strip().splitlines() == [_error_line(result.stderr)]
  assert message in _error_line(result.stderr)
  assert not (tmp_path / "w" / "checkpoints").exists() or not os.listdir(
      tmp_path / "w" / "checkpoints")


@pytest.mark.parametrize("path_kind,message", [
    ("missing", "image data not found"),
    ("empty", "no .jpg/.jpeg/.png images"),
    ("undecodable", "could be decoded"),
])
def test_bad_image_data_fails_with_one_clear_line(tmp_path, path_kind, message):
  path = tmp_path / "data"
  if path_kind != "missing":
    path.mkdir()
  if path_kind == "undecodable":
    (path / "a.jpg").write_bytes(b"junk")
  result = _run_main("celeba64.py:smoke", tmp_path / "w", "--config.data.source=images",
                     f"--config.data.path={path}", f"--config.data.cache_dir={tmp_path / 'c'}",
                     check=False)
  assert result.returncode == exit_codes.BAD_INPUT
  assert message in _error_line(result.stderr)


def test_incompatible_workdir_is_refused_and_left_intact(tmp_path, toy_smoke_run):
  workdir = copy_run(toy_smoke_run, tmp_path / "w")
  result = _run_main("toy2d.py:smoke", workdir, "--config.model.width=64", check=False)
  assert result.returncode == exit_codes.BAD_INPUT
  assert "incompatible config (model.width: 32 -> 64)" in _error_line(result.stderr)
  assert _checkpoint_steps(workdir) == [10, 20]


def _tree_listing(folder):
  """Every file under `folder` with its size and modification time."""
  return {(path, os.path.getsize(path), os.path.getmtime(path))
          for path in (os.path.join(d, f) for d, _, files in os.walk(folder) for f in files)}


def test_intact_checkpoint_of_another_config_is_refused_and_left_intact(tmp_path,
                                                                       toy_smoke_run):
  """config.json agrees with the command, the checkpoints do not (copied in from another
  run, say): one line naming the arrays, nothing moved to damaged/, nothing written."""
  workdir = copy_run(toy_smoke_run, tmp_path / "w")
  saved = json.loads((workdir / "config.json").read_text())
  saved["model"]["width"] = 64
  (workdir / "config.json").write_text(json.dumps(saved))
  before = _tree_listing(workdir)
  result = _run_main("toy2d.py:smoke", workdir, "--config.model.width=64", check=False)
  assert result.returncode == exit_codes.BAD_INPUT
  line = _error_line(result.stderr)
  assert "checkpoint 20" in line and "holds other arrays than this config's state" in line
  assert "use a new --workdir or the original settings" in line
  assert _tree_listing(workdir) == before


@pytest.mark.slow
def test_nonfinite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path, toy_smoke_run):
  workdir = copy_run(toy_smoke_run, tmp_path / "w")
  result = _run_main("toy2d.py:smoke", workdir, "--config.num_train_steps=40",
                     "--config.optim.critic.learning_rate=1e38", check=False)
  assert result.returncode == exit_codes.NON_FINITE
  line = _error_line(result.stderr)
  assert line.startswith("error: non-finite") and "at step 2" in line, line
  assert "last good checkpoint is step 20" in line
  assert _checkpoint_steps(workdir) == [10, 20]


def test_a_cpu_command_prints_no_missing_libtpu_notice(tmp_path):
  """JAX logs at INFO that libtpu.so is absent on every CPU/GPU machine; it reads like an
  error, so the package filters that one line (wgan_gp/xla_setup.py)."""
  result = subprocess.run(
      [sys.executable, "-m", "wgan_gp.sample", "--pretrained=celeba64-cpu", "--num=4",
       f"--out={tmp_path / 'grid.png'}"],
      env=subprocess_env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "libtpu" not in result.stderr


def test_only_the_missing_libtpu_notice_is_filtered(caplog):
  # Importing wgan_gp (above) installed the filter.
  logger = logging.getLogger("jax._src.xla_bridge")
  missing = ("Unable to initialize backend 'tpu': INTERNAL: Failed to open libtpu.so: "
             "libtpu.so: cannot open shared object file: No such file or directory")
  failing = "Unable to initialize backend 'tpu': UNAVAILABLE: TPU initialization failed"
  with caplog.at_level(logging.INFO, logger=logger.name):
    logger.info(missing)
    logger.info(failing)  # a TPU machine whose TPU fails: still said
    logger.warning(missing)  # as a warning: still said
  assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
      (logging.INFO, failing), (logging.WARNING, missing)]
