"""Schedules over the training budget (wgan_gp/schedules.py): their values, and a run
on a time budget that ends its schedule, and its ETA, where the budget ends, across a
resume."""

import json
import logging
import os
import signal

import jax
import ml_collections
import numpy as np
import pytest

from conftest import CONFIGS
from wgan_gp import periodic, schedules, stopping, train
from wgan_gp.config import load_config


def _opt(schedule, decay_start=0.0, final_scale=0.0):
  return ml_collections.ConfigDict({"schedule": schedule, "decay_start": decay_start,
                                    "final_scale": final_scale})


@pytest.mark.parametrize("schedule", schedules.BUDGET_SCHEDULES)
def test_budget_schedules_hold_then_decay_to_their_end_value(schedule):
  opt = _opt(schedule, decay_start=0.4, final_scale=0.1)
  scale = lambda f: float(schedules.learning_rate_scale(opt, f))
  assert scale(0.0) == scale(0.4) == 1.0
  assert scale(1.0) == pytest.approx(0.1)
  assert scale(0.7) == pytest.approx(0.55, abs=1e-6)  # halfway through the decay
  quarter = 0.25 if schedule == "budget-linear" else 0.5 * (1 - np.cos(np.pi / 4))
  assert scale(0.55) == pytest.approx(1 - 0.9 * quarter, abs=1e-6)
  values = [scale(f) for f in np.linspace(0, 1, 50)]
  assert all(a >= b for a, b in zip(values, values[1:]))  # never rises
  assert schedules.learning_rate_scale(_opt("constant"), 0.5) is None


def test_budget_fraction_is_whichever_limit_is_nearer():
  config = ml_collections.ConfigDict({"num_train_steps": 1000, "train_minutes": 2.0})
  assert schedules.budget_fraction(100, 60.0, config) == 0.5  # time: 60 of 120 s
  assert schedules.budget_fraction(900, 60.0, config) == 0.9  # steps
  assert schedules.budget_fraction(100, 500.0, config) == 1.0  # clipped
  config.train_minutes = 0.0
  assert schedules.budget_fraction(100, 500.0, config) == 0.1
  # ETA: the time budget's remainder, or the steps left at this pace.
  assert schedules.eta_seconds(100, 60.0, 10.0, config) == 90.0
  config.train_minutes = 2.0
  assert schedules.eta_seconds(100, 60.0, 10.0, config) == 60.0


def test_late_ema_is_the_generator_until_it_starts():
  config = ml_collections.ConfigDict({"ema_decay": 0.999, "ema_start": 0.25})
  assert float(schedules.ema_decay(config, 5000, 0.2)) == 0.0
  assert float(schedules.ema_decay(config, 10**6, 0.3)) == pytest.approx(0.999)
  config.ema_start = 0.0  # the debiased warm-up of round 1
  assert float(schedules.ema_decay(config, 0, 0.0)) == pytest.approx(0.1)


def _read_jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


@pytest.mark.slow
def test_time_budget_ends_the_schedule_and_the_eta_across_a_resume(tmp_path, monkeypatch):
  """A 1-minute budget on a fake clock that advances 0.25 s per reading, stopped by
  SIGTERM halfway and resumed: the learning rates reach their end values as the budget
  ends, the fraction carries across the resume, and every ETA is the budget's remainder."""
  clock = {"t": 0.0, "signalled": False}

  def fake_now():
    clock["t"] += 0.25
    if clock["t"] > 40.0 and not clock["signalled"]:
      clock["signalled"] = True
      os.kill(os.getpid(), signal.SIGTERM)  # StopRequest turns it into a checkpoint
    return clock["t"]

  monkeypatch.setattr(periodic, "now", fake_now)
  monkeypatch.setattr(stopping, "_stopped_by", None)  # restored after the test
  config = load_config(str(CONFIGS / "toy2d.py:smoke"), {
      "train_minutes": 1.0, "num_train_steps": 10**6, "log_every": 1,
      "checkpoint_every": 10**6, "sample_every": 10**6, "eval_every": 0,
      "optim.generator.schedule": "budget-linear", "optim.generator.final_scale": 0.1,
      "optim.critic.schedule": "budget-cosine", "optim.critic.decay_start": 0.5})
  workdir = str(tmp_path / "run")
  first = train.train_and_evaluate(config, workdir)
  records = _read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  stopped_at = int(first.step)
  assert records[-1]["step"] == stopped_at and records[-1]["budget_fraction"] < 0.9

  second = train.train_and_evaluate(config, workdir)
  records = _read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  resumed = [r for r in records if r["step"] > stopped_at]
  assert int(second.step) > stopped_at and resumed
  fractions = [r["budget_fraction"] for r in records]
  assert fractions == sorted(fractions)  # carried across the resume, never restarted
  last = records[-1]
  assert last["budget_fraction"] == 1.0 and last["training_seconds"] >= 60.0
  peak_g = config.optim.generator.learning_rate
  peak_d = config.optim.critic.learning_rate
  assert last["generator_learning_rate"] == pytest.approx(0.1 * peak_g)
  assert last["critic_learning_rate"] == pytest.approx(0.0, abs=1e-12)
  assert records[0]["critic_learning_rate"] == pytest.approx(peak_d)
  for r in records:  # the ETA follows the budget, not num_train_steps
    assert r["eta_minutes"] * 60 == pytest.approx(max(60.0 - r["training_seconds"], 0.0),
                                                  abs=1e-6)


def _budget_step(**overrides):
  """The toy smoke step with both rates linear from the peak at fraction 0 to 0 at the
  end of the budget (scale = 1 - fraction) and an EMA that starts at half of it; its
  state before the first step (host) and a call `run(fraction, reached) -> (state,
  metrics)` from that state."""
  from wgan_gp import data, gan_state, iteration, parallel
  settings = {"ema_start": 0.5, **{f"optim.{name}.{key}": value for name in ("critic", "generator")
                                   for key, value in (("schedule", "budget-linear"),
                                                      ("decay_start", 0.0), ("final_scale", 0.0))}}
  config = load_config(str(CONFIGS / "toy2d.py:smoke"), {**settings, **overrides})
  gan = gan_state.build_gan(config, parallel.AXIS_NAME)
  source = data.create_source(config.data, config.seed)
  step = iteration.make_train_step(config, gan, source)
  host_state = gan_state.create_train_state(config, gan)

  def run(fraction, reached=0.0):
    state, metrics = step(parallel.replicate(host_state), None, fraction, reached)
    return parallel.unreplicate(state), iteration.host_metrics(metrics)

  return host_state, run


def test_the_step_applies_the_budget_it_is_given_and_starts_the_ema_at_ema_start():
  """What the step does with its time_fraction, against references: the updates scaled
  by the schedule (the scale it reports is the one it applied), and the EMA equal to the
  generator until ema_start, unless the run had reached it under an earlier budget."""
  before, run = _budget_step(n_critic=1)
  leaves = jax.tree.leaves
  full, full_metrics = run(0.0)
  half, half_metrics = run(0.5)
  spent, spent_metrics = run(1.0)
  for metrics, scale in ((full_metrics, 1.0), (half_metrics, 0.5), (spent_metrics, 0.0)):
    assert metrics["critic_lr_scale"] == metrics["generator_lr_scale"] == scale
  for params in ("d_params", "g_params"):
    # At the budget's end the scale is 0: no update at all, bit for bit.
    jax.tree.map(np.testing.assert_array_equal, getattr(spent, params), getattr(before, params))
    assert any(not np.array_equal(f, b) for f, b in zip(leaves(getattr(full, params)),
                                                          leaves(getattr(before, params))))
  # Halfway, half the critic's update (Adam's own state does not see the scale; the
  # generator's gradient depends on the critic's update, so only the critic's halves).
  for b, f, h in zip(leaves(before.d_params), leaves(full.d_params), leaves(half.d_params)):
    np.testing.assert_allclose(h - b, 0.5 * (f - b), rtol=1e-4, atol=1e-7)
  # Before ema_start the EMA is the generator itself; from it on, an average.
  below, _ = run(0.4)
  jax.tree.map(np.testing.assert_array_equal, below.ema_g_params, below.g_params)
  jax.tree.map(np.testing.assert_array_equal, full.ema_g_params, full.g_params)
  late, _ = run(0.6)
  assert any(not np.array_equal(e, g) for e, g in zip(leaves(late.ema_g_params),
                                                      leaves(late.g_params)))
  # A run that had reached ema_start under an earlier budget keeps averaging.
  kept, _ = run(0.3, reached=0.6)
  assert any(not np.array_equal(e, g) for e, g in zip(leaves(kept.ema_g_params),
                                                      leaves(kept.g_params)))


@pytest.mark.slow
def test_a_changed_budget_is_refused_unless_asked_then_the_ema_continues(
    tmp_path, monkeypatch, caplog):
  """A run trained through a 3-second budget (fake clock), then resumed under 140/60 of
  it, as a 60-minute run extended to 140: refused without change_budget; with it, one
  line says what changes, the step reads the fraction of the new budget from the seconds
  the checkpoint carries (0.43, not 0), the EMA, started at half of the old budget, is not
  reset by the new fraction below ema_start, and the recompilation after the resume (100
  s here) is recorded and left out of the training time."""
  from wgan_gp import iteration
  from wgan_gp.checkpoint import Checkpointer
  from wgan_gp.validation import IncompatibleCheckpointError
  clock = {"t": 0.0, "dt": 0.25, "stop_after": None}

  def fake_now():
    clock["t"] += clock["dt"]
    if clock["stop_after"] is not None and clock["t"] > clock["stop_after"]:
      clock["stop_after"] = None
      os.kill(os.getpid(), signal.SIGTERM)  # a checkpoint and a stop, a step or two later
    return clock["t"]

  monkeypatch.setattr(periodic, "now", fake_now)
  monkeypatch.setattr(stopping, "_stopped_by", None)  # restored after the test
  overrides = {"train_minutes": 0.05, "num_train_steps": 10**6, "log_every": 1,
               "checkpoint_every": 10**6, "sample_every": 10**6, "eval_every": 0,
               "toy_eval_samples": 100, "ema_start": 0.5, "n_critic": 1,
               "optim.generator.schedule": "budget-linear"}
  workdir = str(tmp_path / "run")
  first = train.train_and_evaluate(load_config(str(CONFIGS / "toy2d.py:smoke"), overrides),
                                   workdir)
  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), keep=3)
  carried = checkpointer.metadata()["training_seconds"]  # what the resume carries on from
  checkpointer.close()
  assert carried >= 3.0
  ended = int(first.step)
  new_seconds = carried * 140 / 60  # the old budget's end at 0.43 of the new one
  longer = load_config(str(CONFIGS / "toy2d.py:smoke"), {
      **overrides, "train_minutes": new_seconds / 60})
  with pytest.raises(IncompatibleCheckpointError, match="pass --change_budget"):
    train.train_and_evaluate(longer, workdir)

  compile_step = iteration.TrainStep.compile

  def slow_compile(*args, **kwargs):
    clock["t"] += 100.0
    clock["stop_after"] = clock["t"] + 0.01  # a few steps, all below ema_start
    return compile_step(*args, **kwargs)

  monkeypatch.setattr(iteration.TrainStep, "compile", slow_compile)
  clock["dt"] = 1e-3
  with caplog.at_level(logging.WARNING):
    resumed = train.train_and_evaluate(longer, workdir, change_budget=True)
  line, = [r.getMessage() for r in caplog.records if "changing the budget" in r.getMessage()]
  assert f"0.05 -> {new_seconds / 60:g} min" in line and "0.43 now (was 1.00)" in line, line
  assert "the generator rate 0.00 -> 0.57 of its peak" in line, line
  assert "the EMA continues" in line, line
  records = [r for r in _read_jsonl(os.path.join(workdir, "metrics.jsonl")) if r["step"] > ended]
  assert records  # (the first step after a start is not logged)
  assert 99.0 < records[0]["resume_compile_seconds"] < 101.0
  peak = longer.optim.generator.learning_rate
  for r in records:  # left out: the seconds go on from the checkpoint's
    assert carried <= r["training_seconds"] < carried + 1.0
    # What the step applied: the fraction of the new budget, from the carried seconds.
    assert r["generator_learning_rate"] == pytest.approx(
        peak * (1 - r["training_seconds"] / new_seconds), rel=1e-3)
  leaves = jax.tree.leaves
  assert any(not np.array_equal(e, g) for e, g in zip(leaves(resumed.ema_g_params),
                                                      leaves(resumed.g_params)))
  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), keep=3)
  saved = checkpointer.metadata()
  checkpointer.close()
  assert saved["fraction_reached"] == 1.0 and 99.0 < saved["resume_compile_seconds"] < 101.0
