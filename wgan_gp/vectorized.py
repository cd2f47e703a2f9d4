"""K trials of a toy config trained in one compiled program.

`jax.vmap` runs the training step (`iteration.train_step`, unchanged) over a stack of K GAN
states and K values of the array-valued hyperparameters: the seed (each trial's own
initial parameters and random streams), λ, c and the two learning rates. Everything
else (model, batch, n_critic, loss, number of steps) is shared, because it fixes shapes
or the program. A small model leaves one device mostly idle, so K trials take far less
than K times one; trial k gives what a single run with its settings gives, up to float
rounding (tests/test_vectorized.py).

From Python:

    trials = [{"loss.gp_weight": 0.1, "seed": 0}, {"loss.gp_weight": 10.0, "seed": 0}]
    vec = VectorizedTrials(config, trials)
    states = vec.init()
    states, metrics = vec.step(states)        # metrics["wasserstein"].shape == (2,)
    vec.trial_state(states, 1)                # trial 1's GANState

From the command line (`python -m wgan_gp.sweep ... --vectorize` writes the spec):

    python -m wgan_gp.vectorized spec.json

where spec.json is {"base_config": "configs/toy2d.py:8gaussians", "trials":
[{"workdir": ..., "overrides": {...}}, ...]}. Each trial's workdir gets what
`python -m wgan_gp.main` writes (config.json, metrics.jsonl, eval.jsonl, samples/,
checkpoints/), so a trial can be continued on its own with the single-run command.
"""

import collections
import contextlib
import copy
import functools
import json
import logging
import math
import os
import sys
from typing import Sequence

import jax
import jax.numpy as jnp

from wgan_gp import exit_codes, gan_state, iteration, periodic, train, validation, workdir_lock
from wgan_gp.config import get_dotted, load_config
from wgan_gp.data import create_source
from wgan_gp.evaluators import ToyEvaluator
from wgan_gp.parallel import AXIS_NAME
from wgan_gp.stopping import StopRequest
from wgan_gp.writers import MetricWriter

# The hyperparameters that may differ between the trials of one program.
ARRAY_FIELDS = ("seed", "loss.gp_weight", "loss.clip_value", "optim.generator.learning_rate",
                "optim.critic.learning_rate")


def split_overrides(overrides: dict) -> tuple[dict, dict]:
  """(overrides that fix the program, array-valued overrides)."""
  static = {k: v for k, v in overrides.items() if k not in ARRAY_FIELDS}
  return static, {k: v for k, v in overrides.items() if k in ARRAY_FIELDS}


def with_overrides(config, overrides: dict):
  """A copy of `config` with dotted-key overrides applied (type-checked)."""
  config = copy.deepcopy(config)
  config.update_from_flattened_dict(dict(overrides))
  return config


def stack(trees):
  """Trees with equal structure -> one tree with a leading trial axis."""
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


class VectorizedTrials:
  """The compiled step of K trials that share `config` except for `ARRAY_FIELDS`."""

  def __init__(self, config, trials: Sequence[dict]):
    if not trials:
      raise ValueError("a vectorised run needs at least one trial")
    for trial in trials:
      static = split_overrides(trial)[0]
      if static:
        raise ValueError(f"{sorted(static)} cannot differ within one vectorised run: only "
                         f"{', '.join(ARRAY_FIELDS)} can; run other settings separately")
    self.config = config
    self.configs = [with_overrides(config, trial) for trial in trials]
    self.source = create_source(config.data, config.seed)
    if not self.source.on_device:
      raise ValueError(f"data.source={config.data.source!r}: vectorised runs need data "
                       "sampled on the device (the toy configs)")
    self.gan = gan_state.build_gan(config, AXIS_NAME)
    # Only the swept fields become arrays: the others stay compile-time constants,
    # exactly as in a single run.
    swept = [f for f in ARRAY_FIELDS if f != "seed" and any(f in t for t in trials)]
    self.hparams = {f: jnp.asarray([get_dotted(c.to_dict(), f) for c in self.configs], jnp.float32)
                    for f in swept}
    # The budget fraction is one for all trials: they share a clock.
    self._step = jax.jit(jax.vmap(self._one_trial, in_axes=(0, 0, None)), donate_argnums=(0,))

  @property
  def num_trials(self) -> int:
    return len(self.configs)

  def init(self) -> gan_state.GANState:
    """The K initial states, stacked (each from its trial's seed)."""
    return stack([gan_state.create_train_state(c, self.gan) for c in self.configs])

  def step(self, states: gan_state.GANState, hparams: dict | None = None,
           time_fraction: float = 0.0):
    """One training iteration of every trial: (states, metrics of shape [K]).
    `time_fraction`: the fraction of `train_minutes` spent, as in a single run's step."""
    return self._step(states, self.hparams if hparams is None else hparams,
                      jnp.float32(time_fraction))

  def _one_trial(self, state, hparams, time_fraction):
    step = functools.partial(iteration.train_step, gan=self.gan, config=self.config,
                             sample_real=self.source.sample, axis_name=AXIS_NAME,
                             hparams=hparams, time_fraction=time_fraction)
    # The step averages over a device axis; a trial occupies one "device", an axis of
    # size 1 here, so its collectives are identities.
    on_one_device = jax.vmap(lambda s: step(s, None), axis_name=AXIS_NAME)
    new_state, metrics = on_one_device(jax.tree.map(lambda x: x[None], state))
    return jax.tree.map(lambda x: x[0], (new_state, metrics))

  @staticmethod
  def trial_state(states, k: int):
    return jax.tree.map(lambda x: x[k], states)


# ------------------------------------------------------------ Training to workdirs


def train_and_evaluate_trials(config, trials: Sequence[dict], workdirs: Sequence[str]):
  """Trains K trials together, each writing the outputs of a single run to its workdir.

  Resumes when every workdir holds a checkpoint of the same step. A trial that goes
  non-finite stops being checkpointed (its last good checkpoint stays) while the others
  go on; it ends without a final checkpoint, so a sweep reports it as failed.

  Holds every workdir's lock (`wgan_gp.workdir_lock`, as `python -m wgan_gp.main` does)
  for the run: `WorkdirInUseError` if another run holds one, before anything is written.
  `train_minutes` is a budget of the shared clock: all trials stop together when the K
  of them have trained that long, and budget schedules and `ema_start` read its fraction.
  """
  if len(set(map(os.path.realpath, workdirs))) != len(workdirs):
    raise ValueError(f"the trials' workdirs {list(workdirs)} are not all different: give "
                     "each trial its own")
  for workdir in workdirs:
    validation.check_workdir_path(workdir)
  with contextlib.ExitStack() as locks:
    for workdir in workdirs:
      locks.enter_context(workdir_lock.hold(workdir))
    return _train_and_evaluate_trials(config, trials, workdirs)


def _train_and_evaluate_trials(config, trials: Sequence[dict], workdirs: Sequence[str]):
  # Orbax only when it is used, as in train.train_and_evaluate.
  from wgan_gp.checkpoint import Checkpointer, NonFiniteStateError

  vec = VectorizedTrials(config, trials)
  for trial_config in vec.configs:
    validation.validate_config(trial_config)
  checkpointers = []
  for trial_config, workdir in zip(vec.configs, workdirs):
    validation.check_workdir_path(workdir)
    os.makedirs(workdir, exist_ok=True)
    checkpointers.append(Checkpointer(os.path.join(workdir, "checkpoints"),
                                      trial_config.keep_checkpoints))
    validation.check_workdir(trial_config, workdir, checkpointers[-1])

  states = vec.init()
  fresh = [vec.trial_state(states, k) for k in range(vec.num_trials)]
  # The trials agree on a step before anything is moved: a refused resume changes nothing.
  latest = [train.resume(c, s, move_damaged=False).step for c, s in zip(checkpointers, fresh)]
  seconds_before = 0.0
  if any(s is not None for s in latest):
    if len(set(latest)) != 1:
      raise validation.IncompatibleCheckpointError(
          f"the trials' latest checkpoints are at different steps "
          f"({dict(zip(workdirs, latest))}): a vectorised run resumes only together; remove "
          "the trials' workdirs to restart them")
    restored = [train.resume(c, s) for c, s in zip(checkpointers, fresh)]
    states = stack([r.state for r in restored])
    # The trials trained together, so their training seconds agree: take the first's.
    seconds_before = restored[0].training_seconds
    logging.info("Resumed %d trials from step %d", vec.num_trials, latest[0])
    del restored
  del fresh
  for trial_config, workdir in zip(vec.configs, workdirs):
    validation.save_config(trial_config, workdir)  # once its checkpoint is known to restore

  sampling_gan = gan_state.build_gan(config)
  # One evaluator per trial (each samples with its own seed): the protocol of a single run.
  evaluators = [ToyEvaluator(vec.source, sampling_gan, c.toy_eval_samples, c.seed)
                for c in vec.configs]
  writers = [MetricWriter(w) for w in workdirs]
  eval_writers = [w.sibling("eval.jsonl") for w in writers]
  healthy = [True] * vec.num_trials
  examples_per_step = config.n_critic * config.batch_size

  def evaluate(step, k, trained_seconds):
    state = vec.trial_state(states, k)
    results = periodic.evaluate_toy(evaluators[k], state.ema_g_params, state.d_params, config,
                                    step, workdirs[k], writers[k])
    if results:
      norm_stats = evaluators[k].describe_norm_stats(state.ema_g_params)
      eval_writers[k].write_scalars(step, {**results, "norm_stats": norm_stats,
                                           "training_seconds": trained_seconds}, prefix="eval/")

  def log_metrics(step, window):
    """One log record per trial; a trial that went non-finite is checkpointed no more."""
    fetched = jax.device_get(window)
    steps_per_sec, trained_seconds = clock.end_window(step), clock.trained()
    for k in range(vec.num_trials):
      trial_window = [{name: float(m[name][k]) for name in m} for m in fetched]
      summary = periodic.summarize(trial_window, steps_per_sec, config, step, trained_seconds)
      if healthy[k] and not all(math.isfinite(v) for v in summary.values()):
        healthy[k] = False
        logging.error("trial %s went non-finite by step %d; its last good checkpoint "
                      "stays, the other trials go on", workdirs[k], step)
      writers[k].write_scalars(step, summary)

  start_step = int(states.step[0])
  data_position = start_step * examples_per_step  # toy data: a count, as in a single run
  window = []  # device metrics since the last log line
  in_flight = collections.deque()  # as in train.py: at most two steps ahead of the device
  clock = periodic.TrainingClock(seconds_before, start_step, config.train_clock)
  budget_seconds = 60.0 * config.train_minutes
  last_step = config.num_train_steps
  if budget_seconds and clock.seconds_before >= budget_seconds:
    logging.info("The training budget of %g min is spent (%.0f s); nothing to train",
                 config.train_minutes, clock.seconds_before)
    last_step = start_step
  logging.info("Training %d trials together, steps %d..%d", vec.num_trials, start_step + 1,
               config.num_train_steps)
  with StopRequest() as stop_request:
    try:
      for step in range(start_step + 1, last_step + 1):
        time_fraction = clock.trained() / budget_seconds if budget_seconds else 0.0
        states, metrics = vec.step(states, time_fraction=time_fraction)
        window.append(metrics)
        data_position += examples_per_step
        in_flight.append(metrics)
        if len(in_flight) > 2:
          jax.block_until_ready(in_flight.popleft())
        if step == start_step + 1:
          jax.block_until_ready(metrics)
          logging.info("First step (compilation included) took %.1f s",
                       clock.since_window_start())
          window = []
          clock.start_window(step)
        stopping = stop_request.signal is not None
        budget_spent = bool(budget_seconds) and clock.trained() >= budget_seconds
        work = periodic.due(config, step, step == config.num_train_steps or budget_spent,
                            stopping)
        # Metrics are checked before every checkpoint: a non-finite state is never saved.
        if window and (work.log or work.checkpoint):
          log_metrics(step, window)
          window = []
        trained_seconds = clock.trained()
        with clock.periodic():
          for k in range(vec.num_trials):
            if healthy[k] and work.evaluate:
              evaluate(step, k, trained_seconds)
            if healthy[k] and work.checkpoint:
              try:
                checkpointers[k].save(step, vec.trial_state(states, k), data_position,
                                      training_seconds=trained_seconds)
              except NonFiniteStateError as error:  # metrics finite, the state not
                healthy[k] = False
                logging.error("trial %s: %s; the other trials go on", workdirs[k], error)
        if budget_spent:
          logging.info("Training budget of %g min spent at step %d", config.train_minutes, step)
          break
        if stopping:
          logging.warning("Stopped by %s at step %d; checkpoints saved", stop_request.signal,
                          step)
          break
    finally:
      for closeable in (*checkpointers, *eval_writers, *writers):
        closeable.close()
  return states, healthy


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if len(argv) != 1:
    print("usage: python -m wgan_gp.vectorized spec.json", file=sys.stderr)
    return exit_codes.BAD_INPUT
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
  logging.getLogger("absl").setLevel(logging.WARNING)  # Orbax's step-by-step save logs
  with open(argv[0]) as f:
    spec = json.load(f)
  split = [split_overrides(t["overrides"]) for t in spec["trials"]]
  statics = {json.dumps(static, sort_keys=True) for static, _ in split}
  if len(statics) != 1:
    print(f"error: the trials differ in more than {', '.join(ARRAY_FIELDS)}", file=sys.stderr)
    return exit_codes.BAD_INPUT
  config = load_config(spec["base_config"], split[0][0])
  try:
    _, healthy = train_and_evaluate_trials(config, [array for _, array in split],
                                           [t["workdir"] for t in spec["trials"]])
  except (validation.ConfigError, validation.IncompatibleCheckpointError, ValueError,
          workdir_lock.WorkdirInUseError) as error:
    print(f"error: {error}", file=sys.stderr)
    return exit_codes.BAD_INPUT
  return exit_codes.FINISHED if all(healthy) else exit_codes.NON_FINITE


if __name__ == "__main__":
  sys.exit(main())
