"""Schedules over the fraction of the training budget spent.

A run ends at `num_train_steps` or when `train_minutes` of training have passed,
whichever comes first, so its step count is unknown in advance on a time budget. The
budget fraction, progress = max(step / num_train_steps, seconds / budget seconds), is
known at every step on any machine: schedules defined over it end where the budget ends,
and the progress line's ETA follows it.

Learning-rate schedules (`optim.{critic,generator}.schedule`):
  'constant'       the peak rate throughout (the paper's)
  'linear'         linear decay to 0 over num_train_steps updates (optax, step-based)
  'budget-linear'  constant until `decay_start`, then linear to `final_scale`·peak at the
                   end of the budget
  'budget-cosine'  the same with a half-cosine decay
The EMA of the generator can start late (`ema_start`, a budget fraction): before it the
average is the generator itself, so early weights do not linger in it.

The fraction is one number for the whole run: in a multi-process run every process feeds
the step process 0's (`wgan_gp.stopping.StepAgreement`). A resume continues it from the
trained seconds the checkpoint carries (the recompilation after a resume is left out of
them). A resume under another `train_minutes` is refused unless asked for
(`--change_budget`): then the schedules read the fraction of the new budget from there
on, and the EMA, once started, continues whatever the new fraction is
(`fraction_reached`, which the checkpoints carry); `describe_budget_change` says so in
one line.
"""

import math
import types

import jax.numpy as jnp

STEP_SCHEDULES = ("constant", "linear")
BUDGET_SCHEDULES = ("budget-linear", "budget-cosine")
SCHEDULES = STEP_SCHEDULES + BUDGET_SCHEDULES


def budget_fraction(step: int, trained_seconds: float, config) -> float:
  """The fraction of the training budget spent after `step` steps and `trained_seconds`
  of training, in [0, 1]: whichever of the two limits is nearer."""
  fraction = step / config.num_train_steps
  if config.train_minutes:
    fraction = max(fraction, trained_seconds / (60.0 * config.train_minutes))
  return min(fraction, 1.0)


def eta_seconds(step: int, trained_seconds: float, steps_per_sec: float, config) -> float:
  """Seconds of training left: the step limit at the current rate, or the time budget's
  remainder, whichever ends the run first."""
  remaining = (config.num_train_steps - step) / max(steps_per_sec, 1e-9)
  if config.train_minutes:
    remaining = min(remaining, 60.0 * config.train_minutes - trained_seconds)
  return max(remaining, 0.0)


def uses_budget(config) -> bool:
  """Whether the step reads the budget fraction (a budget schedule or a late EMA)."""
  return (any(config.optim[name].schedule in BUDGET_SCHEDULES
              for name in ("critic", "generator")) or config.ema_start > 0)


def learning_rate_scale(opt_config, fraction):
  """The multiplier of the peak learning rate at budget `fraction` (an array or float);
  None for the step-based schedules, which the optimiser applies itself."""
  if opt_config.schedule not in BUDGET_SCHEDULES:
    return None
  start, final = opt_config.decay_start, opt_config.final_scale
  # 0 before the decay starts, 1 at the end of the budget.
  t = jnp.clip((fraction - start) / max(1.0 - start, 1e-9), 0.0, 1.0)
  if opt_config.schedule == "budget-cosine":
    t = 0.5 * (1.0 - jnp.cos(math.pi * t))
  return 1.0 - (1.0 - final) * t


def ema_decay(config, step, fraction):
  """The EMA's decay at this step: debiased early on (the average follows the generator
  instead of its init), and 0 (the average is the generator) before `ema_start`; or,
  with `ema_halflife_images`, the decay of a half-life that grows with the images seen."""
  halflife_images = config.get("ema_halflife_images", 0.0)
  if halflife_images:
    # StyleGAN2-ADA's ramp: the half-life is a share of the images seen until it reaches
    # its cap, so that early weights leave the average as fast as they are replaced and
    # every checkpoint has a usable EMA generator.
    images_seen = step * config.batch_size  # before this step's, as StyleGAN2-ADA
    halflife = jnp.minimum(halflife_images, config.ema_rampup * images_seen)
    return jnp.power(0.5, config.batch_size / jnp.maximum(halflife, 1e-8))
  decay = jnp.minimum(config.ema_decay, (1.0 + step) / (10.0 + step))
  if config.ema_start > 0:
    decay = jnp.where(fraction < config.ema_start, 0.0, decay)
  return decay


def describe_budget_change(old_minutes: float, config, step: int, trained_seconds: float,
                           fraction_reached: float) -> str:
  """The line that says what resuming at `step` under `config.train_minutes` instead of
  `old_minutes` does to the EMA and the budget schedules."""
  old = types.SimpleNamespace(num_train_steps=config.num_train_steps, train_minutes=old_minutes)
  before = budget_fraction(step, trained_seconds, old)
  after = budget_fraction(step, trained_seconds, config)
  reached = max(before, fraction_reached)
  line = (f"changing the budget {old_minutes:g} -> {config.train_minutes:g} min at "
          f"{trained_seconds / 60:.1f} trained minutes: budget schedules read the fraction of "
          f"the new budget, {after:.2f} now (was {before:.2f})")
  for name in ("critic", "generator"):
    opt = config.optim[name]
    if opt.schedule in BUDGET_SCHEDULES:
      line += (f", the {name} rate {float(learning_rate_scale(opt, before)):.2f} -> "
               f"{float(learning_rate_scale(opt, after)):.2f} of its peak")
  if config.ema_start > 0 and reached < config.ema_start:
    line += f"; the EMA has not started: it starts at {config.ema_start:g} of the new budget"
  else:
    line += "; the EMA continues as it is (never reset to the generator, whatever the fraction)"
  return line
