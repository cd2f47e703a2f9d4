"""experiments/faces64/fork_run.py: a fork resumes its run's checkpoint, bit for bit, under the
settings given to it from the fork on."""

import errno
import json
import sys

import jax
import numpy as np
import pytest

from wgan_gp.checkpoint import Checkpointer

from conftest import CONFIGS, REPO_ROOT, copy_run
from test_main import _checkpoint_steps, _read_jsonl, _restore_params, _run_main

sys.path.insert(0, str(REPO_ROOT / "experiments" / "faces64"))
import fork_run  # noqa: E402


def _leaves(state):
  return jax.tree_util.tree_leaves(state)


@pytest.mark.slow
def test_fork_continued_as_before_ends_where_the_run_ended_and_changes_apply_after(
    tmp_path, toy_smoke_run, cli_in_process):
  original = copy_run(toy_smoke_run, tmp_path / "original")  # python -m wgan_gp.main, toy smoke
  assert _checkpoint_steps(original) == [10, 20]

  same = tmp_path / "same"
  assert fork_run.main([f"--from={original}", "--step=10", f"--to={same}"]) == 0
  assert _checkpoint_steps(same) == [10]
  assert [m["step"] for m in _read_jsonl(same / "metrics.jsonl")] == [5, 10]
  assert _read_jsonl(same / "eval.jsonl") == [
      e for e in _read_jsonl(original / "eval.jsonl") if e["step"] <= 10]
  assert "Resumed from step 10" in _run_main("toy2d.py:smoke", same).stderr
  assert [m["step"] for m in _read_jsonl(same / "metrics.jsonl")] == [5, 10, 15, 20]
  for a, b in zip(_leaves(_restore_params("toy2d.py:smoke", original)[0]),
                  _leaves(_restore_params("toy2d.py:smoke", same)[0]), strict=True):
    np.testing.assert_array_equal(a, b)

  # Another generator rate and a budget after the fork: the run's state at the fork,
  # another end, and config.json records the settings that trained the fork. A new
  # budget only when asked for (--change_budget), and then the fork's budget fraction
  # goes on from the seconds its checkpoint carries.
  faster = tmp_path / "faster"
  fork_run.fork(str(original), 10, str(faster))
  changes = ("--config.optim.generator.learning_rate=0.01", "--config.train_minutes=10")
  refused = cli_in_process("wgan_gp.main", "--config=" + str(CONFIGS / "toy2d.py:smoke"),
                           f"--workdir={faster}", *changes)
  assert refused.returncode == 2 and "pass --change_budget" in refused.stderr
  assert _checkpoint_steps(faster) == [10]
  resumed = _run_main("toy2d.py:smoke", faster, *changes, "--change_budget")
  assert "Resumed from step 10" in resumed.stderr
  assert "changing the budget 0 -> 10 min" in resumed.stderr
  saved = json.loads((faster / "config.json").read_text())
  assert saved["optim"]["generator"]["learning_rate"] == 0.01 and saved["train_minutes"] == 10
  checkpointer = Checkpointer(str(original / "checkpoints"), keep=5)
  carried = checkpointer.metadata(10)["training_seconds"]
  checkpointer.close()
  after = [m for m in _read_jsonl(faster / "metrics.jsonl") if m["step"] > 10]
  assert after and all(m["training_seconds"] >= carried for m in after)
  ends = [_restore_params("toy2d.py:smoke", run)[0] for run in (original, faster)]
  assert int(ends[1].step) == 20
  assert any(not np.array_equal(a, b)
             for a, b in zip(_leaves(ends[0].g_params), _leaves(ends[1].g_params)))


def test_fork_refuses_bad_input_in_one_line_and_leaves_no_half_made_fork(tmp_path, capsys,
                                                                           monkeypatch):
  original = tmp_path / "original"
  (original / "checkpoints" / "10").mkdir(parents=True)
  (original / "config.json").write_text("{}")
  with pytest.raises(ValueError, match=r"has no checkpoint 15: pick one of \[10\]"):
    fork_run.fork(str(original), 15, str(tmp_path / "fork"))
  (tmp_path / "taken").mkdir()
  assert fork_run.main([f"--from={original}", "--step=10", f"--to={tmp_path / 'taken'}"]) == 2
  assert "exists: pass a new folder" in capsys.readouterr().err
  # A copy that fails midway (a full disk), once the checkpoint is in the partial fork:
  # the error goes on, and no half-made fork is left behind.
  def copy_fails(source, destination):
    assert (tmp_path / "fork.partial" / "checkpoints" / "10").is_dir()
    raise OSError(errno.ENOSPC, "No space left on device", destination)

  monkeypatch.setattr(fork_run.shutil, "copy2", copy_fails)
  with pytest.raises(OSError, match="No space left"):
    fork_run.fork(str(original), 10, str(tmp_path / "fork"))
  monkeypatch.undo()
  assert not (tmp_path / "fork").exists() and not (tmp_path / "fork.partial").exists()
  # A damaged record: one line naming it.
  (original / "metrics.jsonl").write_text('{"step": 5}\n\n{"step": 1\n')
  with pytest.raises(ValueError, match=r"metrics.jsonl:3 is not a JSON record with a step"):
    fork_run.fork(str(original), 10, str(tmp_path / "fork"))
  with pytest.raises(ValueError, match="holds no config.json and checkpoints/"):
    fork_run.fork(str(tmp_path / "taken"), 10, str(tmp_path / "fork"))
