"""What a person sees while something long runs: a live display, or plain log lines.

On a terminal (stderr is a TTY), one rich display redraws in place, a line per task
(training; the first-pass decode; an evaluation's Inception features), and log records
print above it. Anywhere else (CI, nohup, SLURM logs) each task writes plain log lines
instead, at most one per `PLAIN_EVERY_S` seconds for bars and one per log step for
training, so a log file stays short and greppable. This is only what is shown:
metrics.jsonl and TensorBoard keep the full records.
"""

import io
import logging
import math
import os
import sys
import time

PLAIN_EVERY_S = 10.0  # bars off a terminal: at most one progress line this often


def is_terminal(stream=None) -> bool:
  """True when `stream` (default stderr) is an interactive terminal that can redraw."""
  stream = sys.stderr if stream is None else stream
  try:
    return stream.isatty() and os.environ.get("TERM") != "dumb"
  except (AttributeError, ValueError):  # no isatty, or a closed stream
    return False


def format_duration(seconds: float) -> str:
  """'42s', '5m03s', '2h10m': an ETA that reads at a glance."""
  if not math.isfinite(seconds):
    return "?"
  seconds = max(int(round(seconds)), 0)
  if seconds < 60:
    return f"{seconds}s"
  if seconds < 3600:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class _AboveLive(io.TextIOBase):
  """A stderr stand-in whose lines print above the live display, unwrapped.

  (rich's own proxy hard-wraps each line at the terminal width, which breaks log lines
  that a person copies or greps.)
  """

  def __init__(self, console, original):
    self._console, self._original, self._partial = console, original, ""

  @property
  def rich_proxied_file(self):  # what rich unwraps to, should it reach this stream
    return self._original

  def write(self, text: str) -> int:
    from rich.text import Text
    lines = (self._partial + text).split("\n")
    self._partial = lines.pop()
    for line in lines:
      self._console.print(Text(line), soft_wrap=True)
    return len(text)

  def close_line(self) -> None:
    if self._partial:
      self.write("\n")

  def isatty(self) -> bool:
    return self._original.isatty()

  def fileno(self) -> int:
    return self._original.fileno()


class _LiveDisplay:
  """The one rich display of the process (rich allows one live display at a time).

  Tasks share it and come and go; it starts with the first and stops with the last.
  While it runs, stderr and the logging handlers that wrote to it write through
  `_AboveLive`, so records print above the live lines instead of through them. (absl's
  handler keeps the stderr it was created with: redirecting sys.stderr alone misses it.)
  """

  def __init__(self):
    self.console = None  # tests put a rich Console on a StringIO here
    self._progress = None
    self._stderr = None
    self._swapped = []  # (handler, original stream)

  def add(self, description: str, total: int, completed: int = 0) -> int:
    if self._progress is None:
      self._start()
    return self._progress.add_task(description, total=total, completed=completed, info="")

  def update(self, task: int, **fields) -> None:
    self._progress.update(task, **fields)

  def remove(self, task: int) -> None:
    self._progress.remove_task(task)
    if not self._progress.tasks:
      self._stop()

  def _start(self):
    from rich import progress as rp  # only on a terminal: plain runs never import rich
    from rich.console import Console
    from rich.table import Column
    self._stderr = sys.stderr
    # The numbers wrap onto a second line rather than squeeze the bar on a narrow terminal.
    self._progress = rp.Progress(
        rp.TextColumn("[bold]{task.description}", table_column=Column(no_wrap=True)),
        rp.BarColumn(bar_width=16), rp.MofNCompleteColumn(table_column=Column(no_wrap=True)),
        rp.TextColumn("{task.fields[info]}", table_column=Column(ratio=1, overflow="fold")),
        console=self.console or Console(file=self._stderr), refresh_per_second=2,
        redirect_stderr=False, redirect_stdout=False)
    self._progress.start()
    proxy = _AboveLive(self._progress.console, self._stderr)
    for handler in _stream_handlers():
      if handler.stream is self._stderr:
        self._swapped.append((handler, self._stderr))
        handler.setStream(proxy)
    sys.stderr = proxy

  def _stop(self):
    if isinstance(sys.stderr, _AboveLive):
      sys.stderr.close_line()
      sys.stderr = self._stderr
    for handler, stream in self._swapped:
      handler.setStream(stream)
    self._swapped = []
    self._progress.stop()
    self._progress = None


def _stream_handlers() -> list[logging.StreamHandler]:
  handlers = []
  for handler in logging.getLogger().handlers:
    for candidate in (handler, getattr(handler, "python_handler", None)):  # absl wraps one
      if isinstance(candidate, logging.StreamHandler):
        handlers.append(candidate)
  return handlers


_display = _LiveDisplay()


class ProgressBar:
  """A bar with rate and ETA for `total` items: `update(done)` as it goes, then `finish()`.

  Off a terminal it logs a progress line at most every `PLAIN_EVERY_S` seconds (none for a
  short task) and, at `finish`, one summary line with the time taken.
  """

  def __init__(self, total: int, label: str, unit: str = "images", enabled: bool = True,
               interactive: bool | None = None):
    self.total, self.label, self.unit, self.enabled = total, label, unit, enabled
    self.done = 0
    self.start = self._last_line = time.time()
    self.interactive = enabled and (is_terminal() if interactive is None else interactive)
    self._task = _display.add(label, total) if self.interactive else None

  def update(self, done: int) -> None:
    self.done = done
    if not self.enabled:
      return
    now = time.time()
    rate = done / max(now - self.start, 1e-9)
    eta = format_duration((self.total - done) / rate) if rate > 0 else "?"
    text = f"{rate:.0f} {self.unit}/s, ETA {eta}"
    if self.interactive:
      _display.update(self._task, completed=done, info=text)
    elif now - self._last_line >= PLAIN_EVERY_S and done < self.total:
      self._last_line = now
      logging.info("%s: %d/%d (%s)", self.label, done, self.total, text)

  def close(self) -> None:
    """Takes the bar off the display, with no summary (e.g. when the task failed)."""
    if self._task is not None:
      _display.remove(self._task)
      self._task = None

  def finish(self) -> None:
    self.close()
    if self.enabled:
      elapsed = time.time() - self.start
      logging.info("%s: %d %s in %.1f s (%.0f %s/s)", self.label, self.done, self.unit,
                   elapsed, self.done / max(elapsed, 1e-9), self.unit)

  def __enter__(self):
    return self

  def __exit__(self, exc_type, *_):
    self.finish() if exc_type is None else self.close()


def _eval_text(results: dict) -> str:
  """The one number of an evaluation worth a glance."""
  if "modes_captured" in results:
    return f"{results['modes_captured']}/{results['num_modes']} modes"
  for name in ("fid", "kid", "is", "swd"):
    if name in results:
      return f"{name.upper()} {results[name]:.4g}"
  return ""


class TrainingProgress:
  """The training run at a glance: step/total, steps/s, ETA, Wasserstein estimate,
  penalty and the last evaluation.

  `advance(step)` after every step (cheap: it only moves the bar on a terminal);
  `logged(step, summary)` with each log step's averaged metrics; `evaluated(step,
  results)` after an evaluation; `close()` at the end. On a terminal that is one live
  line; elsewhere one plain log line per log step.
  """

  def __init__(self, total_steps: int, start_step: int = 0, enabled: bool = True,
               interactive: bool | None = None, train_minutes: float = 0.0):
    self.total_steps, self.enabled = total_steps, enabled
    self.train_minutes = train_minutes
    self._fraction = None  # of the budget, from the last log step
    self.interactive = enabled and (is_terminal() if interactive is None else interactive)
    self._task = _display.add("train", total_steps, start_step) if self.interactive else None
    self._numbers = ""
    self._last_eval = ""

  def advance(self, step: int) -> None:
    if self._task is not None:
      _display.update(self._task, completed=step)

  def logged(self, step: int, summary: dict) -> None:
    if not self.enabled:
      return
    numbers = [f"{summary['steps_per_sec']:.3g} steps/s",
               f"ETA {format_duration(summary['eta_minutes'] * 60)}"]
    for key, short in (("wasserstein", "W"), ("gradient_penalty", "GP")):
      if key in summary:
        numbers.append(f"{short} {summary[key]:.3g}")
    self._numbers = ", ".join(numbers)
    self._fraction = summary.get("budget_fraction")
    if self._task is not None and self.train_minutes and self._fraction:
      # The bar's total: the steps the time budget will allow at this pace.
      _display.update(self._task, total=max(step, round(step / self._fraction)))
    self._show(step)

  def evaluated(self, step: int, results: dict) -> None:
    if self.enabled and _eval_text(results):
      self._last_eval = f"{_eval_text(results)} @{step}"
      if self._task is not None:
        self._show(step)

  def _show(self, step: int) -> None:
    text = self._numbers + (f"; last eval {self._last_eval}" if self._last_eval else "")
    if self._task is not None:
      _display.update(self._task, info=text)
    else:
      fraction = step / max(self.total_steps, 1) if self._fraction is None else self._fraction
      if self.train_minutes and fraction > step / max(self.total_steps, 1):
        # The time budget ends the run first: say so, instead of step/num_train_steps.
        logging.info("step %d (%.1f%% of %g min): %s", step, 100.0 * fraction,
                     self.train_minutes, text)
      else:
        logging.info("step %d/%d (%.1f%%): %s", step, self.total_steps, 100.0 * fraction,
                     text)

  def close(self) -> None:
    if self._task is not None:
      _display.remove(self._task)
      self._task = None


def run_measurement_cli(main, argv=None) -> int:
  """`main(argv)` of a measuring command (the face protocol, the memorisation check):
  progress as log lines on stderr, and a missing run, generator, data or weights as one
  line and exit code 2 (`wgan_gp.exit_codes.BAD_INPUT`)."""
  from wgan_gp import exit_codes  # noqa: PLC0415  (console is imported by the loop early)
  # Orbax's import gave the root logger a handler already: replace it. Orbax logs through
  # absl, down to warnings that a read-only restore is read-only: errors only.
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                      datefmt="%H:%M:%S", force=True)
  logging.getLogger("absl").setLevel(logging.ERROR)
  try:
    return main(argv)
  except (FileNotFoundError, ValueError) as error:  # DataError, WeightsError among them
    print(f"error: {error}", file=sys.stderr)
    return exit_codes.BAD_INPUT
