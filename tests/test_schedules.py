"""Schedules over the training budget (wgan_gp/schedules.py): their values, and a run
on a time budget that ends its schedule, and its ETA, where the budget ends, across a
resume."""

import json
import os
import signal

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
