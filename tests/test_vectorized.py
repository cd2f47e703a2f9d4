"""K trials in one vmapped program give what K single runs give."""

import json
import os

import jax
import numpy as np
import pytest

from conftest import CONFIGS
from wgan_gp import train, validation, vectorized
from wgan_gp.checkpoint import Checkpointer, abstract_like
from wgan_gp.config import load_config

# Every array-valued field differs between the two trials, and from the base config.
_TRIALS = [
    {"seed": 0, "loss.gp_weight": 0.1, "optim.critic.learning_rate": 1e-4},
    {"seed": 3, "loss.gp_weight": 10.0, "optim.critic.learning_rate": 3e-4,
     "optim.generator.learning_rate": 2e-4},
]


def _read_jsonl(path):
  return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_trial_k_equals_a_single_run_with_its_settings(tmp_path):
  config = load_config(str(CONFIGS / "toy2d.py:smoke"), {
      "n_critic": 2, "num_train_steps": 4, "log_every": 2, "checkpoint_every": 4,
      "eval_every": 4, "toy_eval_samples": 200})
  workdirs = [str(tmp_path / f"trial{k}") for k in range(len(_TRIALS))]
  states, healthy = vectorized.train_and_evaluate_trials(config, _TRIALS, workdirs)
  assert healthy == [True, True]

  single_config = vectorized.with_overrides(config, _TRIALS[1])
  single = train.train_and_evaluate(single_config, str(tmp_path / "single"))
  got = vectorized.VectorizedTrials.trial_state(states, 1)
  assert int(got.step) == int(single.step) == 4
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(single)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
  other = vectorized.VectorizedTrials.trial_state(states, 0)
  assert not np.allclose(jax.tree.leaves(other.g_params)[0], jax.tree.leaves(got.g_params)[0])

  # Each trial's workdir holds a single run's outputs, its checkpoint restorable as one.
  metrics = _read_jsonl(tmp_path / "trial1" / "metrics.jsonl")
  single_metrics = _read_jsonl(tmp_path / "single" / "metrics.jsonl")
  assert [m["step"] for m in metrics] == [m["step"] for m in single_metrics] == [2, 4]
  np.testing.assert_allclose(metrics[-1]["wasserstein"], single_metrics[-1]["wasserstein"],
                             rtol=1e-4)
  evals, single_evals = (_read_jsonl(tmp_path / run / "eval.jsonl")
                         for run in ("trial1", "single"))
  # The same record, each with its own (positive) clock.
  assert all(e.pop("eval/training_seconds") > 0 for e in evals + single_evals)
  assert evals == single_evals
  assert evals[-1]["eval/norm_stats"] == "none (the generator has no BatchNorm)"
  assert metrics[-1]["training_seconds"] > 0
  saved = json.loads((tmp_path / "trial1" / "config.json").read_text())
  assert saved["loss"]["gp_weight"] == 10.0 and saved["seed"] == 3
  checkpointer = Checkpointer(str(tmp_path / "trial1" / "checkpoints"), keep=2)
  restored, _ = checkpointer.restore(abstract_like(single))
  checkpointer.close()
  jax.tree.map(np.testing.assert_array_equal, restored, got)


def test_settings_that_change_the_program_cannot_be_vectorised():
  config = load_config(str(CONFIGS / "toy2d.py:smoke"))
  with pytest.raises(ValueError, match=r"\['n_critic'\] cannot differ"):
    vectorized.VectorizedTrials(config, [{"seed": 0}, {"seed": 1, "n_critic": 1}])
  assert vectorized.split_overrides({"seed": 1, "loss.gp_weight": 1.0, "model.width": 8}) == (
      {"model.width": 8}, {"seed": 1, "loss.gp_weight": 1.0})


@pytest.mark.slow
def test_trials_resume_past_damaged_checkpoints_as_a_single_run_does(tmp_path):
  config = load_config(str(CONFIGS / "toy2d.py:smoke"), {
      "n_critic": 2, "num_train_steps": 4, "log_every": 2, "checkpoint_every": 2,
      "eval_every": 0, "toy_eval_samples": 200})
  straight = [str(tmp_path / f"straight{k}") for k in range(len(_TRIALS))]
  expected, _ = vectorized.train_and_evaluate_trials(config, _TRIALS, straight)
  resumed = [str(tmp_path / f"resumed{k}") for k in range(len(_TRIALS))]
  vectorized.train_and_evaluate_trials(config, _TRIALS, resumed)
  def damage(workdir):  # the newest checkpoint loses its metadata
    (tmp_path / workdir / "checkpoints" / "4" / "state" / "_METADATA").unlink()

  damage(resumed[0])  # trial 0 could resume from step 2, trial 1 from 4: refused, untouched
  with pytest.raises(validation.IncompatibleCheckpointError, match="different steps"):
    vectorized.train_and_evaluate_trials(config, _TRIALS, resumed)
  assert sorted(p.name for p in (tmp_path / resumed[0] / "checkpoints").iterdir()) == ["2", "4"]
  damage(resumed[1])
  states, healthy = vectorized.train_and_evaluate_trials(config, _TRIALS, resumed)
  assert healthy == [True, True]
  for workdir in resumed:  # set aside, not deleted, and trained again from step 2
    assert len(list((tmp_path / workdir / "checkpoints" / "damaged").iterdir())) == 1
    steps = [m["step"] for m in _read_jsonl(tmp_path / workdir / "metrics.jsonl")]
    assert steps == [2, 4, 4]
  jax.tree.map(np.testing.assert_array_equal, states, expected)


def test_a_vectorised_run_holds_every_trials_workdir(tmp_path, capsys):
  from wgan_gp import exit_codes, workdir_lock
  workdirs = [str(tmp_path / f"trial{k}") for k in range(len(_TRIALS))]
  spec = tmp_path / "spec.json"
  spec.write_text(json.dumps({"base_config": str(CONFIGS / "toy2d.py:smoke"), "trials": [
      {"workdir": w, "overrides": t} for w, t in zip(workdirs, _TRIALS)]}))
  with workdir_lock.hold(workdirs[1]):
    assert vectorized.main([str(spec)]) == exit_codes.BAD_INPUT
  error = capsys.readouterr().err
  assert error.startswith(f"error: workdir {workdirs[1]} is in use by another run (pid ")
  assert error.count("\n") == 1
  assert os.listdir(workdirs[0]) == [] and os.listdir(workdirs[1]) == []  # nothing written


@pytest.mark.slow  # ~20 s on two busy cores: compiling the step with a budget schedule
def test_a_vectorised_run_keeps_train_minutes_and_feeds_its_fraction_to_the_step(
    tmp_path, monkeypatch):
  from wgan_gp import periodic
  config = load_config(str(CONFIGS / "toy2d.py:smoke"), {
      "n_critic": 1, "num_train_steps": 1000, "log_every": 1000, "checkpoint_every": 1000,
      "eval_every": 0, "toy_eval_samples": 200, "train_minutes": 5 / 60, "ema_start": 0.5,
      "optim.generator.schedule": "budget-linear"})
  workdirs = [str(tmp_path / "trial0")]
  seconds, fractions = [0.0], []
  step = vectorized.VectorizedTrials.step

  def one_second_steps(self, states, hparams=None, time_fraction=0.0):
    assert all(os.path.exists(os.path.join(w, ".lock")) for w in workdirs)  # held
    fractions.append(time_fraction)
    seconds[0] += 1.0  # every step takes a second of the (fake) training clock
    return step(self, states, hparams, time_fraction)

  monkeypatch.setattr(periodic, "now", lambda: seconds[0])
  monkeypatch.setattr(vectorized.VectorizedTrials, "step", one_second_steps)
  states, healthy = vectorized.train_and_evaluate_trials(config, _TRIALS[:1], workdirs)
  assert healthy == [True] and int(states.step[0]) == 5  # the budget's 5 s
  np.testing.assert_allclose(fractions, [0.0, 0.2, 0.4, 0.6, 0.8])
  for k, workdir in enumerate(workdirs):
    (last,) = _read_jsonl(tmp_path / workdir / "metrics.jsonl")
    assert last["step"] == 5 and last["budget_fraction"] == 1.0
    assert not os.path.exists(os.path.join(workdir, ".lock"))  # released
    # The EMA started at the budget's half (steps 4 and 5), not at half of 1000 steps.
    trial = vectorized.VectorizedTrials.trial_state(states, k)
    assert not np.allclose(jax.tree.leaves(trial.ema_g_params)[0],
                           jax.tree.leaves(trial.g_params)[0])
