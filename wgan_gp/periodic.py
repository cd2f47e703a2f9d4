"""What a training loop does between steps, shared by the single run (`train.py`) and
the vectorised trials (`vectorized.py`): when to log, sample, evaluate and checkpoint;
the training clock; the summary of a log window; the toy evaluation.
"""

import contextlib
import os
import time
from typing import NamedTuple

import numpy as np

from wgan_gp import schedules


class Due(NamedTuple):
  """The periodic work due after a step."""
  log: bool
  sample: bool
  evaluate: bool
  checkpoint: bool


def due(config, step: int, is_last: bool, stopping: bool) -> Due:
  """A stop logs and checkpoints; the last step does everything."""
  return Due(log=step % config.log_every == 0 or is_last or stopping,
             sample=step % config.sample_every == 0 or is_last,
             evaluate=bool(config.eval_every and step % config.eval_every == 0) or is_last,
             checkpoint=step % config.checkpoint_every == 0 or is_last or stopping)


def now() -> float:
  """Wall-clock seconds; the training loop's clock (a test may replace it)."""
  return time.time()


def process_seconds() -> float:
  """CPU seconds of this process, all threads: the clock of `train_clock='cpu'`."""
  return time.process_time()


CLOCKS = {"wall": lambda: now(), "cpu": lambda: process_seconds()}


class Spent:
  """The seconds a `TrainingClock` block took, set when it ends."""
  seconds = 0.0


class TrainingClock:
  """Seconds spent training, carried across resumes: compilation included; samples,
  evaluations, checkpoints and the recompilation after a resume (`with
  clock.periodic():`) excluded. The x axis of
  quality against compute.

  `kind` 'wall' (the default) counts wall-clock seconds; 'cpu' counts this process's CPU
  seconds, so that a trial pinned to one core gets the same work on a busy machine as
  on a quiet one (a screen's budget), only later.

  It also times the current log window for steps/s, which leaves compilation out
  (`start_window` after the first step).
  """

  def __init__(self, seconds_before: float, start_step: int, kind: str = "wall"):
    self._clock = CLOCKS[kind]
    self.seconds_before = seconds_before
    self._loop_start = self._clock()
    self._excluded = 0.0
    self.start_window(start_step)

  def trained(self) -> float:
    return self.seconds_before + self._clock() - self._loop_start - self._excluded

  @contextlib.contextmanager
  def periodic(self):
    """Leaves the block's seconds out of training (`as spent`: `spent.seconds` after it)."""
    start, spent = self._clock(), Spent()
    try:
      yield spent
    finally:
      spent.seconds = self._clock() - start
      self._excluded += spent.seconds
      self._window_excluded += spent.seconds

  @contextlib.contextmanager
  def measured(self):
    """Times the block on this clock (`as spent`), counted as training."""
    start, spent = self._clock(), Spent()
    try:
      yield spent
    finally:
      spent.seconds = self._clock() - start

  def start_window(self, step: int) -> None:
    self._window_start, self._window_step, self._window_excluded = self._clock(), step, 0.0

  def since_window_start(self) -> float:
    return self._clock() - self._window_start

  def end_window(self, step: int) -> float:
    """Steps per second of training in the window that ends at `step`; starts the next."""
    seconds = self._clock() - self._window_start - self._window_excluded
    steps_per_sec = (step - self._window_step) / max(seconds, 1e-9)
    self.start_window(step)
    return steps_per_sec


def summarize(window: list[dict], steps_per_sec: float, config, step: int,
              training_seconds: float) -> dict[str, float]:
  """A log record: the window's mean metrics (the largest interpolate gradient norm),
  throughput, the budget fraction spent and the ETA (whichever of num_train_steps and
  train_minutes ends the run first), and the learning rates of budget schedules: those
  that the window's last step applied (its `*_lr_scale` metrics)."""
  scales = {k: window[-1][k] for k in window[0] if k.endswith("_lr_scale")}
  summary = {k: float(np.mean([m[k] for m in window])) for k in window[0] if k not in scales}
  summary["interp_grad_norm_max"] = max(float(m["interp_grad_norm_max"]) for m in window)
  fraction = schedules.budget_fraction(step, training_seconds, config)
  summary.update(steps_per_sec=steps_per_sec,
                 images_per_sec=steps_per_sec * config.n_critic * config.batch_size,
                 eta_minutes=schedules.eta_seconds(step, training_seconds, steps_per_sec,
                                                   config) / 60,
                 training_seconds=training_seconds, budget_fraction=fraction)
  for name in ("critic", "generator"):
    scale = scales.get(f"{name}_lr_scale")  # budget schedules only
    if scale is not None:
      summary[f"{name}_learning_rate"] = float(config.optim[name].learning_rate * scale)
  return summary


def evaluate_toy(evaluator, g_params, d_params, config, step: int, workdir: str, writer,
                 write_figure: bool = True) -> dict:
  """Mode coverage of the 2-D toy run, and the Figure-1 view (samples, real data and the
  critic's contours) as a PNG and in TensorBoard."""
  results = evaluator(g_params)
  if write_figure:
    title = f"{config.data.source}, step {step}"
    if results:
      title += (f": {results['modes_captured']}/{results['num_modes']} modes, "
                f"{results['high_quality_pct']:.1f}% high quality")
    figure = evaluator.figure(g_params, d_params,
                              os.path.join(workdir, "samples", f"toy_step_{step:07d}.png"),
                              title)
    writer.write_image(step, "samples/toy", figure)
  return results
