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
import types
from typing import NamedTuple

import jax
import numpy as np

from wgan_gp import models, periodic, schedules, standing_stats, visualize
from wgan_gp.console import TrainingProgress
from wgan_gp.data import create_source
from wgan_gp.evaluators import (GENERATION_BATCH, CriticScores, ImageEvaluator, ToyEvaluator,
                                parse_metrics)
from wgan_gp.gan_state import GANState, create_train_state
from wgan_gp.iteration import host_metrics, make_train_step
from wgan_gp.parallel import AXIS_NAME, prefetch_to_devices, replicate, unreplicate
from wgan_gp.stopping import StepAgreement, StopRequest
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
  # Wall-clock seconds spent training (the first compilation included, the recompilation
  # after each resume, samples, evaluations and checkpoints excluded), carried across
  # resumes: the x axis of quality-vs-compute.
  training_seconds: float
  saved: dict = {}  # everything saved beside the state (JSON): position, seconds, ...


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
  return Resumed(step, state, saved["position"], saved.get("training_seconds", 0.0), saved)


def fraction_reached(saved_config: dict | None, config, resumed: Resumed) -> float:
  """The largest budget fraction the resumed run had reached, under each budget it trained
  with (0 for a fresh start): the EMA reads at least this (`train_step`), so that a
  budget changed on resume never restarts an EMA that had started."""
  if resumed.step is None:
    return 0.0
  saved_config = saved_config or {}
  trained_under = types.SimpleNamespace(**{
      key: saved_config.get(key, config[key]) for key in ("num_train_steps", "train_minutes")})
  return max(resumed.saved.get("fraction_reached", 0.0),
             schedules.budget_fraction(int(resumed.state.step), resumed.training_seconds,
                                       trained_under))


def train_and_evaluate(config, workdir: str, change_budget: bool = False) -> GANState:
  """Trains (resuming from the latest checkpoint in `workdir`) and returns the final state.

  Writes metrics.jsonl, TensorBoard events, sample images and checkpoints into `workdir`.
  A resume under another `config.train_minutes` is refused unless `change_budget`
  (`schedules.describe_budget_change` says what it does).
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
  saved_config = check_workdir(config, workdir, checkpointer, change_budget)
  writer = MetricWriter(workdir, enabled=is_main_process, echo=False)  # console: `progress`
  eval_writer = writer.sibling("eval.jsonl")  # same TensorBoard run, its own JSONL

  # --- Input
  source = create_source(config.data, config.seed, config.batch_size)

  # --- Model and state
  gan = models.build(config.model, source.data_shape, AXIS_NAME)
  sampling_gan = models.build(config.model, source.data_shape, None)
  resumed = resume(checkpointer, create_train_state(config, gan))
  last_checkpoint, data_position = resumed.step, resumed.data_position
  resumed_from = resumed.step
  seconds_before = resumed.training_seconds
  reached = fraction_reached(saved_config, config, resumed)
  compile_seconds_before = resumed.saved.get("resume_compile_seconds", 0.0)
  if last_checkpoint is not None:
    logging.info("Resumed from step %d (data position %d)", last_checkpoint, data_position)
    old_minutes = (saved_config or {}).get("train_minutes", config.train_minutes)
    if old_minutes != config.train_minutes:
      logging.warning("Resuming %s: %s", workdir, schedules.describe_budget_change(
          old_minutes, config, int(resumed.state.step), seconds_before, reached))
  save_config(config, workdir)  # only now that its checkpoint is known to fit and restore
  start_step = int(resumed.state.step)
  state = replicate(resumed.state)
  del resumed  # the host copy
  p_train_step = make_train_step(config, gan, source)

  # --- Periodic work: samples, evaluation, checkpoints
  fixed_noise = jax.random.normal(jax.random.PRNGKey(config.seed + 1),
                                  (config.num_sample_images, gan.z_dim))
  generate = jax.jit(sampling_gan.generate)
  # Grids and evaluations normalise the EMA generator's BatchNorm by its standing
  # statistics, as every reported figure does (`wgan_gp.evaluate`, the face protocol):
  # the run's batch size, standing_stats.NUM_BATCHES batches, seed 0. Once per step.
  standing = {}

  def standing_at(step, state) -> standing_stats.StandingStats:
    if step not in standing:
      standing.clear()
      standing[step] = standing_stats.compute(sampling_gan, unreplicate(state.ema_g_params),
                                              config.batch_size)
    return standing[step]

  def write_samples(step, state):
    if not is_main_process or source.on_device:
      return  # the toy figure is written with the evaluation
    images = np.asarray(generate(unreplicate(state.ema_g_params), fixed_noise,
                                 standing_at(step, state).stats))
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
  # The critic on held-out against training images (data.holdout, issue #35).
  critic_scores = (CriticScores(source, sampling_gan, config.batch_size)
                   if getattr(source, "holdout", 0) else None)
  best_fid, best_norm_stats = math.inf, None
  if best is not None and best.latest_step() is not None:
    # A best/ chosen by another kind of figure (batch statistics, before they were
    # recorded) is replaced by the next evaluation.
    best_fid, best_norm_stats = best.metadata()["fid"], best.metadata().get("norm_stats")

  def evaluate(step, state, data_position, trained_seconds):
    # Every process evaluates (the same numbers): all must take part in a best-checkpoint
    # save. Only process 0 writes.
    nonlocal best_fid, best_norm_stats
    if evaluator is None and critic_scores is None:
      return
    g_params = unreplicate(state.ema_g_params)
    results, norm_stats = {}, None  # norm_stats: the generator's, when it is evaluated
    if source.on_device:
      results = periodic.evaluate_toy(evaluator, g_params, unreplicate(state.d_params), config,
                                      step, workdir, writer, write_figure=is_main_process)
      norm_stats = evaluator.describe_norm_stats(g_params)
    elif evaluator is not None:
      stats = standing_at(step, state)
      results = evaluator(g_params, stats.stats)
      norm_stats = standing_stats.describe(sampling_gan, g_params, stats, GENERATION_BATCH)
    if critic_scores is not None:
      results = {**results, **critic_scores(unreplicate(state.d_params))}
    if results:
      generator = {} if norm_stats is None else {"norm_stats": norm_stats}
      eval_writer.write_scalars(step, {**results, **generator,
                                       "training_seconds": trained_seconds}, prefix="eval/")
      progress.evaluated(step, results)
    if best is not None and (results["fid"] < best_fid or best_norm_stats != norm_stats):
      best_fid, best_norm_stats = results["fid"], norm_stats
      best.save(step, unreplicate(state), data_position, fid=best_fid, norm_stats=norm_stats,
                training_seconds=trained_seconds)

  # --- Loop
  examples_per_step = config.n_critic * config.batch_size
  if source.on_device:
    batches = itertools.repeat(None)
  else:
    batches = prefetch_to_devices(
        source.batches(data_position, config.n_critic, config.batch_size,
                       jax.process_index(), jax.process_count()), config.data.prefetch)
  prefetch = batches  # closed at the end
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

  resume_compile_record = {}  # for the first log record after a resume

  def log_metrics(step):
    """Writes the mean of the window's metrics, with throughput and ETA."""
    if not window:
      return
    summary = periodic.summarize(window, clock.end_window(step), config, step, clock.trained())
    summary.update(resume_compile_record)
    resume_compile_record.clear()
    writer.write_scalars(step, summary)
    progress.logged(step, summary)
    window.clear()

  logging.info("Training steps %d..%d on %d devices (%d processes), global batch %d, "
               "n_critic %d", start_step + 1, config.num_train_steps, jax.device_count(),
               jax.process_count(), config.batch_size, config.n_critic)
  if is_main_process and start_step == 0:
    writer.write_text(0, "config", "```\n" + str(config) + "\n```")
  step = start_step
  last_step = config.num_train_steps
  if budget_seconds and clock.seconds_before >= budget_seconds:
    logging.info("The training budget of %g min is spent (%.0f s); nothing to train",
                 config.train_minutes, clock.seconds_before)
    last_step = start_step

  def local_fraction():
    return clock.trained() / budget_seconds if budget_seconds else 0.0

  # Every process feeds the step process 0's budget fraction (see StepAgreement); the
  # first step after a start reads the checkpoint's, the same in every process.
  agreement = StepAgreement(seconds_before / budget_seconds if budget_seconds else 0.0)
  compile_seconds = 0.0

  def compile_step():
    """The step compiled ahead, timed. A fresh run counts its compilation as training;
    after a resume the recompilation is left out of the training time (and recorded), so
    that the minutes of a resumed run mean what an uninterrupted run's mean."""
    nonlocal batches, compile_seconds
    first_batch = next(batches)
    batches = itertools.chain([first_batch], batches)
    with (clock.periodic() if resumed_from is not None else clock.measured()) as spent:
      compiled = p_train_step.compile(state, first_batch, agreement.fraction(local_fraction()),
                                      reached)
    compile_seconds = spent.seconds
    if resumed_from is not None:
      resume_compile_record["resume_compile_seconds"] = compile_seconds
    logging.info("Compiled the step in %.1f s (%s)", compile_seconds,
                 "left out of the training time after a resume" if resumed_from is not None
                 else "counted as training")
    clock.start_window(start_step)
    return compiled
  # One live line on a terminal, a plain line per log step elsewhere.
  progress = TrainingProgress(config.num_train_steps, start_step, enabled=is_main_process,
                              train_minutes=config.train_minutes)
  with StopRequest() as stop_request:
    try:
      if last_step > start_step:
        train_step = compile_step()  # a signal meanwhile stops after the first step
      for step in range(start_step + 1, last_step + 1):
        with jax.profiler.StepTraceAnnotation("train", step_num=step):
          time_fraction = agreement.fraction(local_fraction())
          state, metrics = train_step(state, next(batches), time_fraction, reached)
        unchecked.append((step, metrics))
        progress.advance(step)
        data_position += examples_per_step
        # The host runs at most two steps ahead of the devices: enough to keep them busy,
        # and a stop request takes effect within a step or two.
        in_flight.append(metrics)
        if len(in_flight) > 2:
          jax.block_until_ready(in_flight.popleft())
        if step == start_step + 1:
          # The first step (its transfers and first batches) stays out of the steps/s.
          fetch_metrics(last_checkpoint)
          window.clear()
          logging.info("First step took %.1f s", clock.since_window_start())
          clock.start_window(step)
        trained = clock.trained()
        stopping, budget_spent = agreement.exchange(
            stop_request.signal is not None, bool(budget_seconds) and trained >= budget_seconds,
            trained / budget_seconds if budget_seconds else 0.0)
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
            checkpointer.save(
                step, unreplicate(state), data_position, training_seconds=trained_seconds,
                fraction_reached=max(reached, schedules.budget_fraction(step, trained_seconds,
                                                                        config)),
                resume_compile_seconds=compile_seconds_before + (
                    compile_seconds if resumed_from is not None else 0.0))
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
      if hasattr(prefetch, "close"):
        prefetch.close()  # stops the prefetch thread
      checkpointer.close()
      if best is not None:
        best.close()
      eval_writer.close()
      writer.close()
  return unreplicate(state)
