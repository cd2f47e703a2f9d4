"""experiments/faces64/screen_report.py: a screen's table from its trials' own records."""

import json
import sys

import pytest

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "experiments" / "faces64"))
import screen_report  # noqa: E402


def _trial(sweep, name, overrides, swds, gaps=None, norms=(1.0, 1.1)):
  workdir = sweep / name
  workdir.mkdir(parents=True)
  (workdir / "trial.json").write_text(json.dumps({"base_config": "c", "overrides": overrides}))
  with open(workdir / "eval.jsonl", "w") as f:
    for i, swd in enumerate(swds):
      record = {"step": 100 * (i + 1), "eval/swd": swd, "eval/training_seconds": 60.0 * (i + 1)}
      if gaps:
        record["eval/critic_score_gap"] = gaps[i]
      f.write(json.dumps(record) + "\n")
  with open(workdir / "metrics.jsonl", "w") as f:
    for norm in norms:
      f.write(json.dumps({"interp_grad_norm_mean": norm, "gradient_penalty": 0.1}) + "\n")


def test_time_to_quality_is_when_the_running_mean_stays_at_or_below_the_target():
  curve = [(1, 30), (2, 20), (3, 10), (4, 30), (5, 10), (6, 10), (7, 10), (8, 10)]
  # Running means of 3 from minute 3: 20, 20, 16.7, 16.7, 10, 10: at or below 12 from
  # minute 7 on, at or below 17 from minute 5 on.
  assert screen_report.time_to_quality(curve, 12) == 7
  assert screen_report.time_to_quality(curve, 17) == 5
  assert screen_report.time_to_quality(curve, 5) is None


def test_report_reads_each_trial_against_the_base(tmp_path):
  _trial(tmp_path, "base", {}, [40, 30, 25, 22], gaps=[0.0, 0.1, 0.2, 0.3])
  _trial(tmp_path, "lazy", {"loss.gp_every": 2}, [35, 24, 20, 18, 16])
  rows = {r["name"]: r for r in screen_report.report(str(tmp_path))["trials"]}
  base, lazy = rows["base"], rows["lazy"]
  assert base["swd"] == 22 and base["steps_per_sec"] == pytest.approx(400 / 240)
  assert base["critic_gap_first"] == 0.0 and base["critic_gap_last"] == 0.3
  assert base["critic_gap_slope_per_min"] == pytest.approx(0.1)
  # The last 3 evaluations, 20, 18, 16 at minutes 3, 4, 5: -2 per minute.
  assert lazy["swd_slope_per_min"] == pytest.approx(-2.0)
  # Running means 26.3, 20.7, 18 at minutes 3, 4, 5: at or below base's 22 from minute 4.
  assert lazy["minutes_to_base_final_swd"] == 4
  assert lazy["interp_grad_norm_mean_last_fifth"] == pytest.approx(1.1)
  assert "critic_gap_first" not in lazy
  text = screen_report.markdown(screen_report.report(str(tmp_path)))
  assert text.index("| lazy |") < text.index("| base |")  # sorted by SWD
  assert "| 4.0 |" in text.split("| lazy |")[1].splitlines()[0]
  assert "not reached" in text.split("| base |")[1].splitlines()[0]  # its own running mean lags
