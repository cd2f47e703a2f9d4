"""The console: plain log lines off a terminal (here, under pytest, stderr is not one),
a rich live display on one (a forced-terminal Console on a StringIO), and a toy run
that prints the short lines while metrics.jsonl keeps every metric."""

import io
import json
import logging
import re
import sys

import pytest

from conftest import CONFIGS
from wgan_gp import console

SUMMARY = {"steps_per_sec": 2.5, "eta_minutes": 0.6, "wasserstein": 1.5,
           "gradient_penalty": 0.25, "critic_loss": -1.25}


def test_duration_reads_at_a_glance():
  assert [console.format_duration(s) for s in (4.4, 363, 7_830, float("inf"))] == [
      "4s", "6m03s", "2h10m", "?"]


def test_training_falls_back_to_plain_lines_when_not_a_tty(caplog):
  assert not console.is_terminal()  # pytest captures stderr
  progress = console.TrainingProgress(100, start_step=0)
  assert not progress.interactive
  with caplog.at_level(logging.INFO):
    for step in range(1, 11):
      progress.advance(step)  # no output between log steps
    assert caplog.messages == []
    progress.logged(10, SUMMARY)
    progress.evaluated(10, {"fid": 45.12, "kid": 0.03})
    progress.logged(20, {**SUMMARY, "wasserstein": 1.25})
    progress.close()
  assert caplog.messages == [
      "step 10/100 (10.0%): 2.5 steps/s, ETA 36s, W 1.5, GP 0.25",
      "step 20/100 (20.0%): 2.5 steps/s, ETA 36s, W 1.25, GP 0.25; last eval FID 45.12 @10"]
  assert console._display._progress is None  # no live display was started
  assert not any("\r" in m or "\x1b" in m for m in caplog.messages)


def test_plain_bar_logs_only_its_summary_when_quick_and_lines_when_slow(caplog, monkeypatch):
  with caplog.at_level(logging.INFO):
    with console.ProgressBar(8, "Inception features") as bar:
      for done in range(1, 9):
        bar.update(done)
  [summary] = caplog.messages
  assert summary.startswith("Inception features: 8 images in ")
  caplog.clear()
  monkeypatch.setattr(console, "PLAIN_EVERY_S", 0.0)  # every update is "due"
  with caplog.at_level(logging.INFO):
    with console.ProgressBar(4, "Decoding") as bar:
      for done in (1, 2, 3, 4):
        bar.update(done)
  assert [m.split(" (")[0] for m in caplog.messages[:-1]] == [
      "Decoding: 1/4", "Decoding: 2/4", "Decoding: 3/4"]  # none at 4/4: the summary says it
  assert caplog.messages[-1].startswith("Decoding: 4 images in ")


@pytest.fixture
def terminal(monkeypatch):
  rich_console = pytest.importorskip("rich.console")
  out = io.StringIO()
  monkeypatch.setattr(console._display, "console",
                      rich_console.Console(file=out, force_terminal=True, width=160))
  return out


def test_live_display_on_a_terminal_shows_the_numbers_and_routes_logs_above(terminal):
  stderr = sys.stderr
  handler = logging.StreamHandler(stderr)
  root = logging.getLogger()
  root.addHandler(handler)
  try:
    progress = console.TrainingProgress(100, start_step=0, interactive=True)
    bar = console.ProgressBar(50, "Inception features, generated", interactive=True)
    assert handler.stream is not stderr  # records go through rich, above the live lines
    progress.advance(20)
    progress.logged(20, SUMMARY)
    progress.evaluated(10, {"fid": 45.12})  # the bar stays at step 20
    bar.update(25)
    root.warning("a log record while the display is live " + "x" * 200)
    console._display._progress.refresh()
    bar.finish()
    progress.close()
    assert handler.stream is stderr and console._display._progress is None
  finally:
    root.removeHandler(handler)
  text = terminal.getvalue()
  assert "train" in text and "20/100" in text and "10/100" not in text
  assert "2.5 steps/s, ETA 36s, W 1.5, GP 0.25; last eval FID 45.12 @10" in text
  assert "Inception features, generated" in text and "25/50" in text
  # Above the live lines, whole: not hard-wrapped at the terminal's 160 columns.
  assert "a log record while the display is live " + "x" * 200 in text
  assert "\x1b[" in text  # drawn with terminal control codes


@pytest.mark.slow
def test_toy_run_prints_short_lines_and_keeps_full_records(tmp_path, caplog):
  from wgan_gp import train
  from wgan_gp.config import load_config
  config = load_config(str(CONFIGS / "toy2d.py:smoke"), {"num_train_steps": 10})
  with caplog.at_level(logging.INFO):
    train.train_and_evaluate(config, str(tmp_path))
  lines = [m for m in caplog.messages if re.match(r"step \d+/", m)]
  assert [line.split(":")[0] for line in lines] == ["step 5/10 (50.0%)", "step 10/10 (100.0%)"]
  assert all(" steps/s, ETA " in line and ", W " in line and ", GP " in line for line in lines)
  assert "last eval" not in lines[0] and "modes" not in lines[0]
  assert not any("critic_grad_norm" in m for m in caplog.messages if m.startswith("step "))
  records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [5, 10]
  assert {"critic_loss", "wasserstein", "gradient_penalty", "critic_grad_norm",
          "generator_loss", "steps_per_sec", "eta_minutes"} <= set(records[0])
  # The evaluation keeps its full line (eval.jsonl's record, echoed).
  assert any(m.startswith("step 10: eval/") for m in caplog.messages)
