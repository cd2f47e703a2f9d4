"""Two processes on loopback (gloo, 2 CPU devices each) = one process with 4 devices."""

import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO_ROOT, subprocess_env, wait_for_success
from wgan_gp import exit_codes
from test_main import _checkpoint_steps, _main_command, _write_image_folder


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _distributed_args(port, process_id):
  return [f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
          f"--process_id={process_id}", "--distributed_timeout=60"]


@pytest.mark.slow
def test_two_processes_match_one_process_with_four_devices(tmp_path):
  images = _write_image_folder(tmp_path / "images")
  cache = tmp_path / "cache"
  script = str(REPO_ROOT / "tests" / "distributed_run.py")
  port = _free_port()
  processes = [
      subprocess.Popen([sys.executable, script, str(tmp_path / f"process{i}.npz"),
                        str(tmp_path / "multi"), str(images), str(cache), f"127.0.0.1:{port}",
                        "2", str(i)], env=subprocess_env(2), cwd=REPO_ROOT / "tests",
                       stderr=subprocess.PIPE, text=True)
      for i in range(2)]
  # The one-process reference beside them: each process compiles on one core for most of
  # its time.
  processes.append(subprocess.Popen(
      [sys.executable, script, str(tmp_path / "single.npz"), str(tmp_path / "one"),
       str(images), str(cache)], env=subprocess_env(4), cwd=REPO_ROOT / "tests",
      stderr=subprocess.PIPE, text=True))
  for process in processes:
    wait_for_success(process)

  first, second, single = (dict(np.load(tmp_path / f"{name}.npz"))
                           for name in ("process0", "process1", "single"))
  assert (int(first.pop("processes")), int(first.pop("devices"))) == (2, 4)
  assert (int(second.pop("processes")), int(second.pop("devices"))) == (2, 4)
  assert (int(single.pop("processes")), int(single.pop("devices"))) == (1, 4)
  for key in first:
    np.testing.assert_array_equal(first[key], second[key])
    np.testing.assert_allclose(first[key], single[key], rtol=1e-4, atol=1e-6, err_msg=key)
  assert _checkpoint_steps(tmp_path / "multi") == [2, 4]  # one checkpoint per step, shared


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_the_same_step(tmp_path):
  images = _write_image_folder(tmp_path / "images")
  workdir = tmp_path / "w"
  port = _free_port()
  overrides = ["--config.data.source=images", f"--config.data.path={images}",
               "--config.data.crop_size=40", "--config.data.crop_fraction=0",
               f"--config.data.cache_dir={tmp_path / 'c'}",
               "--config.num_train_steps=2000", "--config.log_every=1"]
  processes = [subprocess.Popen(_main_command("celeba64.py:smoke", workdir, *overrides,
                                              *_distributed_args(port, i)),
                                env=subprocess_env(2), cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True) for i in range(2)]
  metrics = workdir / "metrics.jsonl"
  deadline = time.time() + 400
  while not (metrics.exists() and metrics.read_text().count("\n") >= 3):
    assert all(p.poll() is None for p in processes) and time.time() < deadline
    time.sleep(0.1)
  processes[1].send_signal(signal.SIGTERM)
  outputs = [p.communicate(timeout=300)[1] for p in processes]
  assert [p.returncode for p in processes] == [exit_codes.RESUMABLE] * 2, (outputs[0][-2000:]
                                                                    + outputs[1][-2000:])
  stopped_at = [re.search(r"Stopped by (.+) at step (\d+)", out).groups() for out in outputs]
  assert stopped_at[1][0] == "SIGTERM" and stopped_at[0][0] == "a signal to another process"
  assert stopped_at[0][1] == stopped_at[1][1]
  assert _checkpoint_steps(workdir)[-1] == int(stopped_at[0][1]) < 2000


@pytest.mark.slow
def test_processes_whose_clocks_disagree_train_the_same_state(tmp_path):
  """Process 1's clock falls 0.4 s behind on a 3-second budget whose EMA starts at half
  of it: on its own clock it would start the EMA, and scale its updates, later than
  process 0. Both feed the step process 0's fraction, and end with the same state, bit
  for bit."""
  script = str(REPO_ROOT / "tests" / "distributed_clock_run.py")
  port = _free_port()
  processes = [
      subprocess.Popen([sys.executable, script, str(tmp_path / f"process{i}.npz"),
                        str(tmp_path / "run"), f"127.0.0.1:{port}", "2", str(i), str(0.4 * i)],
                       env=subprocess_env(2), cwd=REPO_ROOT / "tests", stderr=subprocess.PIPE,
                       text=True)
      for i in range(2)]
  for process in processes:
    wait_for_success(process)
  first, second = (dict(np.load(tmp_path / f"process{i}.npz")) for i in range(2))
  assert int(first["step"]) == int(second["step"]) > 5
  for key in first:
    np.testing.assert_array_equal(first[key], second[key], err_msg=key)


def test_unreachable_coordinator_fails_fast_with_one_line(tmp_path):
  start = time.time()
  result = subprocess.run(
      _main_command("toy2d.py:smoke", tmp_path / "w", f"--coordinator_address=127.0.0.1:{_free_port()}",
                    "--num_processes=2", "--process_id=1", "--distributed_timeout=3"),
      env=subprocess_env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == exit_codes.BAD_INPUT
  line = result.stderr.strip().splitlines()[-1]
  assert line.startswith("error: coordinator 127.0.0.1:") and "unreachable after 3 s" in line
  assert time.time() - start < 60


@pytest.mark.slow
def test_global_batch_not_divisible_by_all_devices_fails_in_every_process(tmp_path):
  port = _free_port()
  processes = [subprocess.Popen(_main_command("toy2d.py:smoke", tmp_path / "w",
                                              "--config.batch_size=6", *_distributed_args(port, i)),
                                env=subprocess_env(2), cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True) for i in range(2)]
  for process in processes:
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == exit_codes.BAD_INPUT
    assert "batch_size=6 is not divisible by the 4 devices" in stderr.strip().splitlines()[-1]
