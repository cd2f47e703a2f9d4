"""The training loop behind `python -m wgan_gp.main`: resume, train, sample, evaluate,
checkpoint, and stop cleanly.

The pieces it runs live beside it: the state in `gan_state.py`, the pmapped iteration in
`iteration.py`, the checks before a run in `validation.py`.
"""

import collections
import itertools
import logging
import math
import os
from typing import NamedTuple

import jax
import numpy as np

from wgan_gp import models, periodic, visualize
from wgan_gp.console import TrainingProgress
from wgan_gp.data import create_source
from wgan_gp.evaluators import ImageEvaluator, ToyEvaluator, parse_metrics
from wgan_gp.gan_state import GANState, create_train_state
from wgan_gp.iteration import host_metrics, make_train_step
from wgan_gp.parallel import AXIS_NAME, prefetch_to_devices, replicate, unreplicate
from wgan_gp.stopping import StopAgreement, StopRequest
from wgan_gp.validation import (IncompatibleCheckpointError, check_workdir, check_workdir_path,
                                save_config, validate_config)
from wgan_gp.writers import MetricWriter


def _check_finite(step_metrics, last_checkpoint, checkpoint_dir) -> None:
  for step, metrics in step_metrics:
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    if bad:
      where = (f"the last good checkpoint is step {last_checkpoint} in {checkpoint_dir}"
               if last_checkpoint is not None else "no checkpoint was saved")
      raise FloatingPointError(f"non-finite {', '.join(bad)} at step {step}: training "
                               f"stopped; {where}: lower the learning rates, then rerun")


class Resumed(NamedTuple):
  step: int | None  # the checkpoint's step; None for a fresh start
  state: GANState  # on the host
  data_position: int
  # Wall-clock seconds spent training (compilation included; samples, evaluations and
  # checkpoints excluded), carried across resumes: the x axis of quality-vs-compute.
  training_seconds: float


def resume(checkpointer, fresh_state: GANState, move_damaged: bool = True) -> Resumed:
  """The newest checkpoint that restores (newer damaged ones are moved aside to
  `damaged/`, unless `move_damaged=False`), or `fresh_state` if there is none."""
  # Orbax only when used (see train_and_evaluate).
  from wgan_gp.checkpoint import CheckpointMismatchError, abstract_like
  try:
    restored = checkpointer.restore_latest(abstract_like(fresh_state), move_damaged)
  except CheckpointMismatchError as error:
    raise IncompatibleCheckpointError(
        f"{error}: use a new --workdir or the original settings") from None
  if restored is None:
    return Resumed(None, fresh_state, 0, 0.0)
  step, state, saved = restored
  return Resumed(step, state, saved["position"], saved.get("training_seconds", 0.0))


def train_and_evaluate(config, workdir: str) -> GANState:
  """Trains (resuming from the latest checkpoint in `workdir`) and returns the final state.

  Writes metrics.jsonl, TensorBoard events, sample images and checkpoints into `workdir`.
  """
  # Orbax only when it is used: importing it logs through absl, which then gives the
  # root logger a handler, so that a CLI's own logging.basicConfig (the sweep's) does nothing.
  from wgan_gp.checkpoint import Checkpointer

  # --- Setup
  validate_config(config)
  eval_metrics = parse_metrics(config.eval_metrics)
  is_main_process = jax.process_index() == 0
  check_workdir_path(workdir)
  os.makedirs(workdir, exist_ok=True)
  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), config.keep_checkpoints)
  check_workdir(config, workdir, checkpointer)
  writer = MetricWriter(workdir, enabled=is_main_process, echo=False)  # console: `progress`
  eval_writer = writer.sibling("eval.jsonl")  # same TensorBoard run, its own JSONL

  # --- Input
  source = create_source(config.data, config.seed)

  # --- Model and state
  gan = models.build(config.model, source.data_shape, AXIS_NAME)
  sampling_gan = models.build(config.model, source.data_shape, None)
  resumed = resume(checkpointer, create_train_state(config, gan))
  last_checkpoint, data_position = resumed.step, resumed.data_position
  seconds_before = resumed.training_seconds
  if last_checkpoint is not None:
    logging.info("Resumed from step %d (data position %d)", last_checkpoint, data_position)
  save_config(config, workdir)  # only now that its checkpoint is known to fit and restore
  start_step = int(resumed.state.step)
  state = replicate(resumed.state)
  del resumed  # the host copy
  p_train_step = make_train_step(config, gan, source)

  # --- Periodic work: samples, evaluation, checkpoints
  fixed_noise = jax.random.normal(jax.random.PRNGKey(config.seed + 1),
                                  (config.num_sample_images, gan.z_dim))
  generate = jax.jit(sampling_gan.generate)

  def write_samples(step, state):
    if not is_main_process or source.on_device:
      return  # the toy figure is written with the evaluation
    images = np.asarray(generate(unreplicate(state.ema_g_params), fixed_noise))
    grid = visualize.image_grid(images)
    visualize.save_png(grid, os.path.join(workdir, "samples", f"step_{step:07d}.png"))
    writer.write_image(step, "samples/ema", grid)

  best = None
  if source.on_device:
    evaluator = ToyEvaluator(source, sampling_gan, config.toy_eval_samples, config.seed)
  else:
    evaluator = ImageEvaluator(source, sampling_gan, eval_metrics, config.eval_samples,
                               config.seed) if eval_metrics else None
    if "fid" in eval_metrics:
      best = Checkpointer(os.path.join(workdir, "best"), keep=1)
  best_fid = best.metadata()["fid"] if best and best.latest_step() is not None else math.inf

  def evaluate(step, state, data_position, trained_seconds):
    # Every process evaluates (the same numbers): all must take part in a best-checkpoint
    # save. Only process 0 writes.
    nonlocal best_fid
    if evaluator is None:
      return
    g_params = unreplicate(state.ema_g_params)
    if source.on_device:
      results = periodic.evaluate_toy(evaluator, g_params, unreplicate(state.d_params), config,
                                      step, workdir, writer, write_figure=is_main_process)
    else:
      results = evaluator(g_params)
    if results:
      eval_writer.write_scalars(step, {**results, "training_seconds": trained_seconds},
                                prefix="eval/")
      progress.evaluated(step, results)
    if best is not None and results["fid"] < best_fid:
      best_fid = results["fid"]
      best.save(step, unreplicate(state), data_position, fid=best_fid,
                training_seconds=trained_seconds)

  # --- Loop
  examples_per_step = config.n_critic * config.batch_size
  if source.on_device:
    batches = itertools.repeat(None)
  else:
    batches = prefetch_to_devices(
        source.batches(data_position, config.n_critic, config.batch_size,
                       jax.process_index(), jax.process_count()), config.data.prefetch)
  unchecked = []  # (step, device metrics) dispatched but not yet fetched and checked
  window = []  # fetched metrics since the last log line
  clock = periodic.TrainingClock(seconds_before, start_step, config.train_clock)
  budget_seconds = 60.0 * config.train_minutes
  in_flight = collections.deque()  # device metrics of the last steps dispatched

  def fetch_metrics(last_checkpoint):
    """Fetches the steps dispatched since the last fetch; stops on a non-finite value."""
    fetched = [(s, host_metrics(m)) for s, m in unchecked]
    unchecked.clear()
    _check_finite(fetched, last_checkpoint, checkpointer.directory)
    window.extend(m for _, m in fetched)

  def log_metrics(step):
    """Writes the mean of the window's metrics, with throughput and ETA."""
    if not window:
      return
    summary = periodic.summarize(window, clock.end_window(step), config, step, clock.trained())
    writer.write_scalars(step, summary)
    progress.logged(step, summary)
    window.clear()

  logging.info("Training steps %d..%d on %d devices (%d processes), global batch %d, "
               "n_critic %d", start_step + 1, config.num_train_steps, jax.device_count(),
               jax.process_count(), config.batch_size, config.n_critic)
  if is_main_process and start_step == 0:
    writer.write_text(0, "config", "```\n" + str(config) + "\n```")
  step = start_step
  stop_agreement = StopAgreement(reason="a signal to another process")
  budget_agreement = StopAgreement()  # every process stops at the same step
  last_step = config.num_train_steps
  if budget_seconds and clock.seconds_before >= budget_seconds:
    logging.info("The training budget of %g min is spent (%.0f s); nothing to train",
                 config.train_minutes, clock.seconds_before)
    last_step = start_step
  # One live line on a terminal, a plain line per log step elsewhere.
  progress = TrainingProgress(config.num_train_steps, start_step, enabled=is_main_process,
                              train_minutes=config.train_minutes)
  with StopRequest() as stop_request:
    try:
      for step in range(start_step + 1, last_step + 1):
        with jax.profiler.StepTraceAnnotation("train", step_num=step):
          time_fraction = clock.trained() / budget_seconds if budget_seconds else 0.0
          state, metrics = p_train_step(state, next(batches), time_fraction)
        unchecked.append((step, metrics))
        progress.advance(step)
        data_position += examples_per_step
        # The host runs at most two steps ahead of the devices: enough to keep them busy,
        # and a stop request takes effect within a step or two.
        in_flight.append(metrics)
        if len(in_flight) > 2:
          jax.block_until_ready(in_flight.popleft())
        if step == start_step + 1:
          # Compilation happens here; keep it out of the steps/s figures.
          fetch_metrics(last_checkpoint)
          window.clear()
          logging.info("First step (compilation included) took %.1f s",
                       clock.since_window_start())
          clock.start_window(step)
        stopping = stop_agreement.should_stop(stop_request.signal is not None)
        budget_spent = budget_agreement.should_stop(
            bool(budget_seconds) and clock.trained() >= budget_seconds)
        is_last = step == config.num_train_steps or budget_spent
        work = periodic.due(config, step, is_last, stopping)
        if work.log or work.checkpoint:
          fetch_metrics(last_checkpoint)  # never checkpoint a state that went non-finite
        if work.log:
          log_metrics(step)
        if work.sample or work.evaluate or work.checkpoint:
          jax.block_until_ready(state)  # the steps in flight count as training
        trained_seconds = clock.trained()
        with clock.periodic():
          if work.sample:
            write_samples(step, state)
          if work.evaluate:
            evaluate(step, state, data_position, trained_seconds)
          if work.checkpoint:
            checkpointer.save(step, unreplicate(state), data_position,
                              training_seconds=trained_seconds)
            last_checkpoint = step
        if budget_spent:
          logging.info("Training budget of %g min spent at step %d", config.train_minutes, step)
          break
        if stopping:
          logging.warning("Stopped by %s at step %d; checkpoint saved",
                          stop_request.signal or "a signal to another process", step)
          break
    finally:
      progress.close()
      if hasattr(batches, "close"):
        batches.close()  # stops the prefetch thread
      checkpointer.close()
      if best is not None:
        best.close()
      eval_writer.close()
      writer.close()
  return unreplicate(state)
