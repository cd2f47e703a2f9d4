"""The GAN state, the WGAN-GP iteration, and the training loop.

Library first: `create_train_state`, `train_step` and `make_train_step` are what a
notebook uses; `train_and_evaluate` is the loop behind `python -m wgan_gp.main`.
"""

import collections
import functools
import itertools
import json
import logging
import math
import os
import time
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from wgan_gp import losses, visualize
from wgan_gp.config import (TOY_SOURCES, check_ranges, setting_changes,
                            state_incompatibilities, to_json)
from wgan_gp.console import TrainingProgress
from wgan_gp.data import create_source, data_shape
from wgan_gp.evaluation import (ImageEvaluator, ToyEvaluator, check_metrics_available,
                                parse_metrics)
from wgan_gp.files import write_atomically
from wgan_gp.models import GAN, build_gan as _build_gan
from wgan_gp.parallel import AXIS_NAME, prefetch_to_devices, replicate, unreplicate
from wgan_gp.stopping import StopAgreement, StopRequest
from wgan_gp.writers import MetricWriter

# Salts that keep the random streams of a step apart (fold_in constants).
CRITIC_STREAM, GENERATOR_STREAM = 0, 1
Z_SALT, EPS_SALT, REAL_SALT, FLIP_SALT = 0, 1, 2, 3


@flax.struct.dataclass
class GANState:
  """Everything one training iteration changes, as one pytree."""
  step: jax.Array  # generator updates done, int32 scalar
  g_params: Any
  d_params: Any
  g_opt_state: Any
  d_opt_state: Any
  ema_g_params: Any  # exponential moving average of g_params, for samples and evaluation
  rng: jax.Array  # root key; each step derives its randomness by fold_in(rng, step)


def build_gan(config, axis_name: str | None = None) -> GAN:
  """The model pair for `config` (data shape from config.data)."""
  return _build_gan(config.model, data_shape(config.data), axis_name)


# ------------------------------------------------------------------- Optimisers


def make_optimizer(opt_config, total_updates: int,
                   learning_rate=None) -> optax.GradientTransformation:
  """Adam with the paper's defaults, or RMSProp as in the original WGAN; the learning
  rate is constant or decays linearly to 0.

  `learning_rate` replaces the config's value when given, e.g. as an array that
  differs per trial of a vectorised sweep.
  """
  peak = opt_config.learning_rate if learning_rate is None else learning_rate
  if opt_config.schedule == "constant":
    learning_rate = peak
  elif opt_config.schedule == "linear":
    learning_rate = optax.linear_schedule(peak, 0.0, max(total_updates, 1))
  else:
    raise ValueError(f"unknown optimizer schedule {opt_config.schedule!r}; "
                     "expected 'constant' or 'linear'")
  if opt_config.name == "adam":
    return optax.adam(learning_rate, b1=opt_config.b1, b2=opt_config.b2, eps=opt_config.eps)
  if opt_config.name == "rmsprop":
    # ε outside the square root, as torch.optim.RMSprop (the original WGAN's) has it.
    return optax.rmsprop(learning_rate, decay=opt_config.rms_decay, eps=opt_config.eps,
                         eps_in_sqrt=False)
  raise ValueError(f"unknown optimizer {opt_config.name!r}; expected 'adam' or 'rmsprop'")


def make_optimizers(config, hparams=None
                    ) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
  """(generator optimiser, critic optimiser); the critic updates n_critic times per step.

  `hparams` may hold 'optim.generator.learning_rate' / 'optim.critic.learning_rate'
  (arrays) that replace the config's values.
  """
  hparams = hparams or {}
  return (make_optimizer(config.optim.generator, config.num_train_steps,
                         hparams.get("optim.generator.learning_rate")),
          make_optimizer(config.optim.critic, config.num_train_steps * config.n_critic,
                         hparams.get("optim.critic.learning_rate")))


# ------------------------------------------------------------------------ State


def create_train_state(config, gan: GAN, seed: int | None = None) -> GANState:
  """A fresh state on the default device (replicate it for the pmapped step)."""
  seed = config.seed if seed is None else seed
  g_optimizer, d_optimizer = make_optimizers(config)

  @jax.jit
  def init():
    g_params, d_params = gan.init(seed)
    return GANState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_params,
        d_params=d_params,
        g_opt_state=g_optimizer.init(g_params),
        d_opt_state=d_optimizer.init(d_params),
        ema_g_params=g_params,
        rng=jax.random.PRNGKey(seed),
    )

  return init()


# ------------------------------------------------------------------ Update step


def sample_keys(rng, step, stream: tuple, global_indices):
  """One key per sample of a step's random stream, from the sample's global index.

  Randomness depends on (step, stream, index in the global batch) only, never on how
  the global batch is split across devices and processes. Streams: (CRITIC_STREAM, k)
  for critic update k, (GENERATOR_STREAM,) for the generator update.
  """
  key = jax.random.fold_in(rng, step)
  for part in stream:
    key = jax.random.fold_in(key, part)
  return jax.vmap(functools.partial(jax.random.fold_in, key))(global_indices)


def per_sample(fn, keys, salt):
  """fn(key) for each sample's key, salted so different draws stay independent."""
  return jax.vmap(lambda k: fn(jax.random.fold_in(k, salt)))(keys)


def _to_unit_range(images):
  """uint8 [0, 255] -> float32 [-1, 1]."""
  return images.astype(jnp.float32) * (2.0 / 255.0) - 1.0


def _critic_loop(update, carry, inputs, length: int):
  """`lax.scan(update, carry, inputs)`, written out as straight-line code on CPU.

  Inside a loop XLA:CPU keeps convolutions in layouts that send every weight gradient
  down its slow path (~10x on the whole step). `scan(unroll=True)` is not enough: a
  scan of length 1 still lowers to a one-trip loop, and n_critic=1 ran 10x slower
  than n_critic=2.
  """
  if jax.default_backend() != "cpu":
    return lax.scan(update, carry, inputs)
  outputs = []
  for k in range(length):
    carry, output = update(carry, jax.tree.map(lambda x: x[k], inputs))
    outputs.append(output)
  return carry, jax.tree.map(lambda *xs: jnp.stack(xs), *outputs)


def train_step(state: GANState, real_batches, *, gan: GAN, config,
               sample_real: Callable | None = None, axis_name: str = AXIS_NAME,
               hparams: dict | None = None):
  """One WGAN-GP iteration on one device, to run under pmap with `axis_name`.

  `n_critic` critic updates (a scan, each on its own real batch), then one generator
  update, with the loss named by `config.loss.name`. `real_batches` is this device's
  [n_critic, per_device, ...] (uint8 images), or None when `sample_real(key)` draws real
  examples on the device. Gradients and metrics are averaged over the devices.
  `hparams` maps dotted config names ('loss.gp_weight', 'loss.clip_value',
  'optim.{generator,critic}.learning_rate') to arrays that replace the config's values
  (`wgan_gp.vectorized` vmaps over them).
  """
  hparams = hparams or {}
  g_optimizer, d_optimizer = make_optimizers(config, hparams)
  loss = losses.get_loss(config.loss, hparams.get("loss.gp_weight"),
                         hparams.get("loss.clip_value"))
  n_critic = config.n_critic
  per_device = config.batch_size // lax.axis_size(axis_name)
  global_indices = lax.axis_index(axis_name) * per_device + jnp.arange(per_device)

  def random_inputs(stream):
    keys = sample_keys(state.rng, state.step, stream, global_indices)
    z = per_sample(lambda k: jax.random.normal(k, (gan.z_dim,)), keys, Z_SALT)
    return keys, z

  def critic_update(carry, inputs):
    d_params, d_opt_state = carry
    real, critic_iteration = inputs
    keys, z = random_inputs((CRITIC_STREAM, critic_iteration))
    eps = per_sample(jax.random.uniform, keys, EPS_SALT)
    if real is None:
      real = per_sample(sample_real, keys, REAL_SALT)
    else:
      real = _to_unit_range(real)
      if config.data.random_flip:
        flip = per_sample(jax.random.bernoulli, keys, FLIP_SALT)
        real = jnp.where(flip[:, None, None, None], real[:, :, ::-1], real)
    fake = gan.generate(state.g_params, z)

    def loss_fn(params):
      return loss.critic_loss(gan.criticize, params, real, fake, eps)

    grads, metrics = jax.grad(loss_fn, has_aux=True)(d_params)
    grads = lax.pmean(grads, axis_name)
    metrics["critic_grad_norm"] = optax.tree.norm(grads)
    updates, d_opt_state = d_optimizer.update(grads, d_opt_state, d_params)
    d_params = loss.constrain_critic(optax.apply_updates(d_params, updates))
    return (d_params, d_opt_state), metrics

  (d_params, d_opt_state), critic_metrics = _critic_loop(
      critic_update, (state.d_params, state.d_opt_state),
      (real_batches, jnp.arange(n_critic)), n_critic)

  _, z = random_inputs((GENERATOR_STREAM,))

  def generator_loss_fn(g_params):
    return loss.generator_loss(gan.criticize(d_params, gan.generate(g_params, z)))

  g_loss, g_grads = jax.value_and_grad(generator_loss_fn)(state.g_params)
  g_grads = lax.pmean(g_grads, axis_name)
  g_updates, g_opt_state = g_optimizer.update(g_grads, state.g_opt_state, state.g_params)
  g_params = optax.apply_updates(state.g_params, g_updates)

  # Debiased EMA: early on the average follows the generator instead of its init.
  decay = jnp.minimum(config.ema_decay, (1.0 + state.step) / (10.0 + state.step))
  ema_g_params = optax.incremental_update(g_params, state.ema_g_params, 1.0 - decay)

  metrics = {k: jnp.mean(v) for k, v in critic_metrics.items()}
  metrics["interp_grad_norm_max"] = jnp.max(critic_metrics["interp_grad_norm_max"])
  metrics["generator_loss"] = g_loss
  metrics["generator_grad_norm"] = optax.tree.norm(g_grads)
  metrics = lax.pmean(metrics, axis_name)
  metrics["interp_grad_norm_max"] = lax.pmax(metrics["interp_grad_norm_max"], axis_name)

  new_state = state.replace(step=state.step + 1, g_params=g_params, d_params=d_params,
                            g_opt_state=g_opt_state, d_opt_state=d_opt_state,
                            ema_g_params=ema_g_params)
  return new_state, metrics


def make_train_step(config, gan: GAN, source=None, axis_name: str = AXIS_NAME):
  """The pmapped step: `step(replicated_state, sharded_batch) -> (state, metrics)`.

  `gan` must be built with the same `axis_name` (`build_gan(config, AXIS_NAME)`), so the
  generator's BatchNorm uses the global batch. `source` is the data source; when it
  samples on the device, pass `None` as the batch. The state's buffers are donated.
  """
  sample_real = source.sample if source is not None and source.on_device else None
  step = functools.partial(train_step, gan=gan, config=config, sample_real=sample_real,
                           axis_name=axis_name)
  return jax.pmap(step, axis_name=axis_name, donate_argnums=(0,))


def host_metrics(metrics) -> dict[str, float]:
  """Device-averaged metrics of a step (replicated) as Python floats."""
  return {k: float(v.addressable_data(0)[0]) for k, v in metrics.items()}


# ------------------------------------------------------------------ Training loop


class ConfigError(ValueError):
  """A config that cannot run; the message names the field and the fix."""


class IncompatibleCheckpointError(ValueError):
  """The workdir holds a checkpoint written under a different model/data config."""


def validate_config(config) -> None:
  """Fails fast, before any data is read or anything compiled."""
  try:
    check_ranges(config)  # every numeric field, and the data source
  except ValueError as error:
    raise ConfigError(str(error)) from None
  devices = jax.device_count()
  if config.batch_size % devices:
    raise ConfigError(f"config.batch_size={config.batch_size} is not divisible by the "
                      f"{devices} devices: set --config.batch_size to a multiple of {devices}")
  if config.loss.name not in losses.LOSSES:
    raise ConfigError(f"unknown loss.name {config.loss.name!r}; expected one of "
                      f"{', '.join(losses.LOSSES)}")
  try:
    build_gan(config)
    make_optimizers(config)
    if config.data.source not in TOY_SOURCES:
      check_metrics_available(parse_metrics(config.eval_metrics))
  except ValueError as error:
    raise ConfigError(str(error)) from None


def prepare_workdir(config, workdir: str, checkpointer) -> None:
  """Refuses a workdir whose checkpoint came from an incompatible config; saves this one."""
  check_workdir(config, workdir, checkpointer)
  save_config(config, workdir)


def check_workdir_path(workdir: str) -> None:
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f"--workdir={workdir} is a file: pass a folder (a new one, or a run's)")


def check_workdir(config, workdir: str, checkpointer) -> None:
  """Refuses to resume a checkpoint under settings it cannot continue with.

  Refused: another model, data or optimiser (the state does not fit), another seed (the
  checkpoint carries its seed's random streams), and any change to a finished run
  (nothing would train under it, yet config.json would claim it). Other changes, e.g. a
  learning rate, apply from the resumed step on, and are logged.
  """
  path = os.path.join(workdir, "config.json")
  latest = checkpointer.latest_step()
  if latest is None or not os.path.exists(path):
    return
  with open(path) as f:
    saved = json.load(f)
  differences = state_incompatibilities(saved, config)
  if saved.get("seed", config.seed) != config.seed:
    differences.append(f"seed: {saved['seed']!r} -> {config.seed!r}")
  if differences:
    raise IncompatibleCheckpointError(
        f"workdir {workdir} holds a checkpoint from an incompatible config "
        f"({'; '.join(differences)}): use a new --workdir or the original settings")
  changes = setting_changes(saved, config)
  if changes and latest >= config.num_train_steps:
    raise IncompatibleCheckpointError(
        f"workdir {workdir} holds a finished run (step {latest}) and this command changes "
        f"its settings ({'; '.join(changes)}): nothing would train, and its config.json "
        "stays as it is; use a new --workdir, or a larger --config.num_train_steps to "
        "continue it with these settings")
  if changes:
    logging.warning("Resuming %s with changed settings, from the resumed step on: %s",
                    workdir, "; ".join(changes))


def save_config(config, workdir: str) -> None:
  """Writes config.json (process 0), atomically."""
  path = os.path.join(workdir, "config.json")
  if jax.process_index() == 0:
    write_atomically(path, to_json(config))


def _check_finite(step_metrics, last_checkpoint, checkpoint_dir) -> None:
  for step, metrics in step_metrics:
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    if bad:
      where = (f"the last good checkpoint is step {last_checkpoint} in {checkpoint_dir}"
               if last_checkpoint is not None else "no checkpoint was saved")
      raise FloatingPointError(f"non-finite {', '.join(bad)} at step {step}: training "
                               f"stopped; {where}: lower the learning rates, then rerun")


def train_and_evaluate(config, workdir: str) -> GANState:
  """Trains (resuming from the latest checkpoint in `workdir`) and returns the final state.

  Writes metrics.jsonl, TensorBoard events, sample images and checkpoints into `workdir`.
  """
  # Orbax only when it is used: importing it logs through absl, which then gives the
  # root logger a handler, so that a CLI's own logging.basicConfig (the sweep's) does nothing.
  from wgan_gp.checkpoint import CheckpointMismatchError, Checkpointer, abstract_like

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
  gan = _build_gan(config.model, source.data_shape, AXIS_NAME)
  sampling_gan = _build_gan(config.model, source.data_shape, None)
  host_state = create_train_state(config, gan)
  data_position, last_checkpoint, seconds_before = 0, None, 0.0
  try:  # the newest checkpoint that restores; newer damaged ones are moved aside
    restored = checkpointer.restore_latest(abstract_like(host_state), move_damaged=True)
  except CheckpointMismatchError as error:
    raise IncompatibleCheckpointError(
        f"{error}: use a new --workdir or the original settings") from None
  if restored is not None:
    last_checkpoint, host_state, saved = restored
    data_position = saved["position"]
    # Wall-clock seconds spent training (compilation included; samples, evaluations and
    # checkpoints excluded), carried across resumes: the x axis of quality-vs-compute.
    seconds_before = saved.get("training_seconds", 0.0)
    logging.info("Resumed from step %d (data position %d)", last_checkpoint, data_position)
  save_config(config, workdir)  # only now that its checkpoint is known to fit and restore
  start_step = int(host_state.step)
  state = replicate(host_state)
  del host_state
  p_train_step = make_train_step(config, gan, source)

  # --- Periodic work: samples, evaluation, checkpoints
  fixed_noise = jax.random.normal(jax.random.PRNGKey(config.seed + 1),
                                  (config.num_sample_images, gan.z_dim))
  generate = jax.jit(sampling_gan.generate)

  def write_samples(step):
    if not is_main_process:
      return
    if source.on_device:
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

  def evaluate(step, trained_seconds):
    # Every process evaluates (the same numbers): all must take part in a best-checkpoint
    # save. Only process 0 writes.
    nonlocal best_fid
    if evaluator is None:
      return
    g_params = unreplicate(state.ema_g_params)
    results = evaluator(g_params)
    if source.on_device and is_main_process:
      title = f"{config.data.source}, step {step}"
      if results:
        title += (f": {results['modes_captured']}/{results['num_modes']} modes, "
                  f"{results['high_quality_pct']:.1f}% high quality")
      figure = evaluator.figure(g_params, unreplicate(state.d_params),
                                os.path.join(workdir, "samples", f"toy_step_{step:07d}.png"),
                                title)
      writer.write_image(step, "samples/toy", figure)
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
  window_start_time, window_start_step = time.time(), start_step
  periodic_seconds = 0.0  # samples, evals and checkpoints: kept out of steps/s
  loop_start, excluded_seconds = time.time(), 0.0  # excluded: all periodic work so far

  def seconds_trained() -> float:
    return seconds_before + time.time() - loop_start - excluded_seconds

  budget_seconds = 60.0 * config.train_minutes
  in_flight = collections.deque()  # device metrics of the last steps dispatched

  def fetch_metrics():
    """Fetches the steps dispatched since the last fetch; stops on a non-finite value."""
    nonlocal unchecked
    fetched = [(s, host_metrics(m)) for s, m in unchecked]
    unchecked = []
    _check_finite(fetched, last_checkpoint, checkpointer.directory)
    window.extend(m for _, m in fetched)

  def log_metrics(step):
    """Writes the mean of the window's metrics, with throughput and ETA."""
    nonlocal window_start_time, window_start_step, periodic_seconds
    if not window:
      return
    now = time.time()
    training_seconds = now - window_start_time - periodic_seconds
    steps_per_sec = (step - window_start_step) / max(training_seconds, 1e-9)
    summary = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
    summary["interp_grad_norm_max"] = max(m["interp_grad_norm_max"] for m in window)
    summary.update(steps_per_sec=steps_per_sec,
                   images_per_sec=steps_per_sec * examples_per_step,
                   eta_minutes=(config.num_train_steps - step) / max(steps_per_sec, 1e-9) / 60,
                   training_seconds=seconds_trained())
    writer.write_scalars(step, summary)
    progress.logged(step, summary)
    window.clear()
    window_start_time, window_start_step, periodic_seconds = now, step, 0.0

  logging.info("Training steps %d..%d on %d devices (%d processes), global batch %d, "
               "n_critic %d", start_step + 1, config.num_train_steps, jax.device_count(),
               jax.process_count(), config.batch_size, config.n_critic)
  if is_main_process and start_step == 0:
    writer.write_text(0, "config", "```\n" + str(config) + "\n```")
  step = start_step
  stop_agreement = StopAgreement(reason="a signal to another process")
  budget_agreement = StopAgreement()  # every process stops at the same step
  last_step = config.num_train_steps
  if budget_seconds and seconds_before >= budget_seconds:
    logging.info("The training budget of %g min is spent (%.0f s); nothing to train",
                 config.train_minutes, seconds_before)
    last_step = start_step
  # One live line on a terminal, a plain line per log step elsewhere.
  progress = TrainingProgress(config.num_train_steps, start_step, enabled=is_main_process)
  with StopRequest() as stop_request:
    try:
      for step in range(start_step + 1, last_step + 1):
        with jax.profiler.StepTraceAnnotation("train", step_num=step):
          state, metrics = p_train_step(state, next(batches))
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
          fetch_metrics()
          window.clear()
          logging.info("First step (compilation included) took %.1f s",
                       time.time() - window_start_time)
          window_start_time, window_start_step = time.time(), step
        stopping = stop_agreement.should_stop(stop_request.signal is not None)
        budget_spent = budget_agreement.should_stop(
            bool(budget_seconds) and seconds_trained() >= budget_seconds)
        is_last = step == config.num_train_steps or budget_spent
        is_log = step % config.log_every == 0 or is_last or stopping
        is_checkpoint = step % config.checkpoint_every == 0 or is_last or stopping
        if is_log or is_checkpoint:
          fetch_metrics()  # never checkpoint a state that went non-finite
        if is_log:
          log_metrics(step)
        is_sample = step % config.sample_every == 0 or is_last
        is_eval = (config.eval_every and step % config.eval_every == 0) or is_last
        if is_sample or is_eval or is_checkpoint:
          jax.block_until_ready(state)  # the steps in flight count as training
        periodic_start, trained_seconds = time.time(), seconds_trained()
        if is_sample:
          write_samples(step)
        if is_eval:
          evaluate(step, trained_seconds)
        if is_checkpoint:
          checkpointer.save(step, unreplicate(state), data_position,
                            training_seconds=trained_seconds)
          last_checkpoint = step
        periodic_seconds += time.time() - periodic_start
        excluded_seconds += time.time() - periodic_start
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
