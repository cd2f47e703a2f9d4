"""The sweep runner: trials, names, the results table, and a killed sweep that resumes."""

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import CONFIGS, REPO_ROOT, subprocess_env
from wgan_gp import config as config_lib
from wgan_gp import exit_codes, sweep


def test_product_of_axes_and_alternatives():
  trials = sweep.product({"loss.gp_weight": [1, 10], "n_critic": [1, 5]},
                         [{"loss.name": "wgan-gp"}, {"loss.name": "gan", "n_critic": 1}])
  assert len(trials) == 8
  assert {"loss.gp_weight": 10, "n_critic": 1, "loss.name": "gan"} in trials
  assert sweep.product({"seed": 3}) == [{"seed": 3}]  # a scalar is a single value


def test_trial_names_show_what_varies_and_do_not_depend_on_order():
  trials = sweep.product({"optim.critic.learning_rate": [1e-4, 3e-4]},
                         {"optim.generator.learning_rate": [1e-4]}, {"seed": [0, 1]})
  names = sweep.trial_names(trials)
  assert names[0] == "optim.critic.learning_rate=0.0001,seed=0"
  assert sweep.trial_names(trials[::-1]) == names[::-1]


def test_a_misspelt_key_fails_before_any_trial_runs(tmp_path):
  sweep_file = tmp_path / "bad.py"
  sweep_file.write_text(f"BASE_CONFIG = {str(CONFIGS / 'toy2d.py:smoke')!r}\n"
                        "TRIALS = [{'loss.gp_wieght': 1.0}]\n")
  with pytest.raises(sweep.SweepError, match="gp_wieght"):
    sweep.load_sweep(str(sweep_file), str(tmp_path / "runs"))


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "experiments").glob("*/sweeps/*.py")),
                         ids=lambda path: path.stem)
def test_the_experiments_sweep_files_build_every_trial(tmp_path, monkeypatch, path):
  monkeypatch.chdir(REPO_ROOT)  # their BASE_CONFIGs are relative to the repository root
  loaded = sweep.load_sweep(str(path), str(tmp_path / "runs"))
  assert len(loaded.trials) >= 2
  assert all(t.command[:3] == (sys.executable, "-m", "wgan_gp.main") for t in loaded.trials)


def test_results_table_is_sorted_and_keeps_every_metric_in_the_csv():
  def record(name, quality):
    metrics = {"eval/high_quality_pct": quality, "wasserstein": 0.5} if quality is not None else {
        "wasserstein": 0.1}
    return {"name": name, "overrides": {"seed": int(name[-1])}, "metrics": metrics,
            "command": f"python -m wgan_gp.main {name}", "run_seconds": 1.0}

  records = [record("seed=1", 40.0), record("seed=2", None), record("seed=3", 90.5)]
  markdown, table = sweep.results_table(records, "-eval/high_quality_pct",
                                        ["eval/high_quality_pct", "wasserstein"])
  rows = markdown.splitlines()
  assert rows[0] == "| trial | eval/high_quality_pct | wasserstein |"
  assert [r.split(" | ")[0] for r in rows[2:]] == ["| seed=3", "| seed=1", "| seed=2"]
  parsed = list(csv.DictReader(io.StringIO(table)))
  assert [r["trial"] for r in parsed] == ["seed=3", "seed=1", "seed=2"]
  assert parsed[0]["command"] == "python -m wgan_gp.main seed=3" and parsed[0]["seed"] == "3"


def _write_sweep_file(path):
  path.write_text(f'''
from wgan_gp.sweep import product
BASE_CONFIG = {str(CONFIGS / "toy2d.py:smoke")!r}
FIXED = {{"model.width": 8, "batch_size": 16, "n_critic": 1, "num_train_steps": 8,
         "log_every": 4, "checkpoint_every": 4, "eval_every": 8, "toy_eval_samples": 100}}
TRIALS = product({{"loss.gp_weight": [0.1, 10.0]}})
SORT_BY = "wasserstein"
''')


def _sweep_command(sweep_file, workdir):
  return [sys.executable, "-m", "wgan_gp.sweep", str(sweep_file), f"--workdir={workdir}"]


def test_dry_run_lists_each_trial_and_its_command(tmp_path):
  """`python -m wgan_gp.sweep` itself (the quick tier's run of the command): --dry_run
  prints every trial, its state and the command that runs it, and runs nothing."""
  sweep_file, workdir = tmp_path / "tiny.py", tmp_path / "runs"
  _write_sweep_file(sweep_file)
  result = subprocess.run([*_sweep_command(sweep_file, workdir), "--dry_run"],
                          env=subprocess_env(), cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.splitlines()
  assert lines[0::2] == ["[to run] gp_weight=0.1", "[to run] gp_weight=10"]
  assert all(line.strip().startswith(f"{sys.executable} -m wgan_gp.main") and
             f"--workdir={workdir}/gp_weight=" in line for line in lines[1::2])
  assert lines[3].endswith("--config.loss.gp_weight=10.0")
  assert not workdir.exists()


@pytest.mark.slow
def test_sweep_runs_is_killed_and_resumes_without_redoing_finished_trials(tmp_path):
  sweep_file, workdir = tmp_path / "tiny.py", tmp_path / "runs"
  _write_sweep_file(sweep_file)
  first, second = workdir / "gp_weight=0.1", workdir / "gp_weight=10"

  runner = subprocess.Popen(_sweep_command(sweep_file, workdir), env=subprocess_env(),
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
  deadline = time.time() + 600
  while not (second / "log.txt").exists():  # the first trial is done, the second started
    assert runner.poll() is None and time.time() < deadline, runner.stdout.read()
    time.sleep(0.05)
  runner.send_signal(signal.SIGTERM)
  output, _ = runner.communicate(timeout=600)
  assert runner.returncode == exit_codes.RESUMABLE, output
  assert (first / "done.json").exists() and not (second / "done.json").exists()
  first_done = (first / "done.json").read_text()
  first_metrics = (first / "metrics.jsonl").read_text()

  result = subprocess.run(_sweep_command(sweep_file, workdir), env=subprocess_env(),
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "skip gp_weight=0.1: finished" in result.stderr
  assert "start gp_weight=0.1" not in result.stderr
  assert (first / "done.json").read_text() == first_done  # not redone
  assert (first / "metrics.jsonl").read_text() == first_metrics
  assert sorted(int(s) for s in os.listdir(second / "checkpoints")) == [4, 8]

  # The table: both trials with their final metrics, sorted by the sweep's SORT_BY.
  rows = list(csv.DictReader(io.StringIO((workdir / "results.csv").read_text())))
  assert {r["trial"] for r in rows} == {"gp_weight=0.1", "gp_weight=10"}
  assert [float(r["wasserstein"]) for r in rows] == sorted(float(r["wasserstein"]) for r in rows)
  assert all(r["step"] == "8" and 0 <= float(r["eval/modes_captured"]) <= 25 for r in rows)
  markdown = (workdir / "results.md").read_text()
  assert markdown.count("| gp_weight=") == 2 and "2 of 2 trials finished" in markdown

  # Each trial records the command that reproduces it on its own.
  done = json.loads((second / "done.json").read_text())
  assert done["command"].endswith(f"--workdir={second} --config.model.width=8 "
                                  "--config.batch_size=16 --config.n_critic=1 "
                                  "--config.num_train_steps=8 --config.log_every=4 "
                                  "--config.checkpoint_every=4 --config.eval_every=8 "
                                  "--config.toy_eval_samples=100 --config.loss.gp_weight=10.0")
  assert done["command"] in (second / "command.sh").read_text()


def test_changed_settings_in_the_same_workdir_are_refused(tmp_path):
  sweep_file, workdir = tmp_path / "tiny.py", tmp_path / "runs"
  _write_sweep_file(sweep_file)
  loaded = sweep.load_sweep(str(sweep_file), str(workdir))
  sweep.claim_workdir(loaded.trials[0], loaded.base_config)
  sweep_file.write_text(sweep_file.read_text().replace('"model.width": 8', '"model.width": 16'))
  changed = sweep.load_sweep(str(sweep_file), str(workdir))
  with pytest.raises(sweep.SweepError, match="other settings"):
    sweep.claim_workdir(changed.trials[0], changed.base_config)


_FAKE_TRAINER = '''#!{python}
"""Stands in for `python -m wgan_gp.main`: records its device and time, then finishes."""
import json, os, sys, time
workdir = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--workdir="))
start = time.time()
time.sleep(1.0)
os.makedirs(os.path.join(workdir, "checkpoints", "8"))
with open(os.path.join(workdir, "fake.json"), "w") as f:
  json.dump({{"device": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start,
             "end": time.time()}}, f)
'''


def test_trials_run_side_by_side_one_device_each(tmp_path):
  """The scheduler alone (a stand-in trainer): two devices, two trials at once."""
  fake_python = tmp_path / "fake_python"
  fake_python.write_text(_FAKE_TRAINER.format(python=sys.executable))
  fake_python.chmod(0o755)
  sweep_file, workdir = tmp_path / "tiny.py", tmp_path / "runs"
  _write_sweep_file(sweep_file)
  with open(sweep_file, "a") as f:  # the sweep's own final metrics, added to the table
    f.write("def evaluate(trial_workdir):\n  return {'trial_path_length': len(trial_workdir)}\n")
  loaded = sweep.load_sweep(str(sweep_file), str(workdir), python=str(fake_python))
  records = sweep.run_sweep(loaded, str(workdir), devices=["0", "1"], poll_seconds=0.05)
  assert len(records) == 2
  assert all(r["metrics"]["trial_path_length"] == len(str(workdir / r["name"]))
             for r in records)
  runs = [json.loads((workdir / r["name"] / "fake.json").read_text()) for r in records]
  assert sorted(r["device"] for r in runs) == ["0", "1"]
  assert max(r["start"] for r in runs) < min(r["end"] for r in runs)  # they overlapped


def test_a_full_disk_stops_the_sweep_with_its_own_code_not_the_requeue_one(tmp_path):
  """A trial out of disk space: no further trial starts (it would fill the same disk),
  and the sweep exits DISK_FULL, not RESUMABLE, which a scheduler would requeue."""
  fake_python = tmp_path / "fake_python"
  fake_python.write_text(f"#!{sys.executable}\nimport sys\nsys.exit({exit_codes.DISK_FULL})\n")
  fake_python.chmod(0o755)
  sweep_file, workdir = tmp_path / "tiny.py", tmp_path / "runs"
  _write_sweep_file(sweep_file)
  loaded = sweep.load_sweep(str(sweep_file), str(workdir), python=str(fake_python))
  with pytest.raises(sweep.SweepDiskFull, match="free space in .*then rerun"):
    sweep.run_sweep(loaded, str(workdir), poll_seconds=0.05)
  assert [(workdir / t.name / "log.txt").exists() for t in loaded.trials] == [True, False]
  assert not any((workdir / t.name / "done.json").exists() for t in loaded.trials)


def test_vectorize_groups_trials_that_differ_only_in_array_valued_settings(tmp_path):
  sweep_file, workdir = tmp_path / "grid.py", tmp_path / "runs"
  sweep_file.write_text(f'''
from wgan_gp.sweep import product
BASE_CONFIG = {str(CONFIGS / "toy2d.py:smoke")!r}
TRIALS = product({{"loss.gp_weight": [0.1, 10.0]}}, {{"n_critic": [1, 5]}}, {{"seed": [0, 1]}})
''')
  loaded = sweep.load_sweep(str(sweep_file), str(workdir))
  jobs = sweep._vectorized_jobs(loaded, list(loaded.trials), str(workdir), sys.executable)
  assert len(jobs) == 2  # one program per n_critic, 4 trials (λ × seed) in each
  for job in jobs:
    spec = json.loads(open(job.command[-1]).read())
    assert job.command[1:3] == ("-m", "wgan_gp.vectorized")
    assert len({t["overrides"]["n_critic"] for t in spec["trials"]}) == 1
    assert {(t["overrides"]["loss.gp_weight"], t["overrides"]["seed"])
            for t in spec["trials"]} == {(0.1, 0), (0.1, 1), (10.0, 0), (10.0, 1)}
    assert [t["workdir"] for t in spec["trials"]] == [t.workdir for t in job.trials]


def test_ablation_table_reads_unswept_levers_from_each_trial_config_and_gives_delta_vs_base(
    tmp_path):
  # An ablation's CSV has columns only for what some trial overrode; the rest comes from
  # the config each trial saved.
  overrides = {"base": {}, "model.width=16": {"model.width": 16}}
  records = []
  for name, trial_overrides in overrides.items():
    (tmp_path / name).mkdir()
    (tmp_path / name / "config.json").write_text(
        config_lib.to_json(config_lib.load_config(str(CONFIGS / "celeba64.py:cpu_round3"), trial_overrides)))
    swd = {"base": 30.5, "model.width=16": 33.0}[name]
    records.append({"name": name, "overrides": trial_overrides, "command": "",
                    "metrics": {"eval/swd": swd, "step": 2000, "steps_per_sec": 1.8}})
  _, table_csv = sweep.results_table(records, "eval/swd", [])
  (tmp_path / "results.csv").write_text(table_csv)
  out = subprocess.run([sys.executable, str(REPO_ROOT / "experiments" / "faces64" / "round2_table.py"),
                        str(tmp_path), f"--json={tmp_path / 'table.json'}"],
                       capture_output=True, text=True, check=True).stdout
  assert "Δ SWD vs base" in out and "Mean SWD" not in out
  trials = {t["trial"]: t for t in json.loads((tmp_path / "table.json").read_text())["trials"]}
  assert trials["base"]["width"] == "24" and trials["model.width=16"]["width"] == "16"
  assert trials["model.width=16"]["lr D/G"] == "0.0004/0.0002"  # not swept: from config.json
  assert trials["model.width=16"]["swd_minus_base"] == pytest.approx(2.5)
