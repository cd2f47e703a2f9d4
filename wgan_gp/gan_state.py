"""The GAN state and its optimisers: what one training iteration changes."""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from wgan_gp import models, schedules
from wgan_gp.data import data_shape
from wgan_gp.models import GAN


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
  return models.build(config.model, data_shape(config.data), axis_name)


# ------------------------------------------------------------------- Optimisers


def make_optimizer(opt_config, total_updates: int,
                   learning_rate=None) -> optax.GradientTransformation:
  """Adam with the paper's defaults, or RMSProp as in the original WGAN; the learning
  rate is constant or decays linearly to 0 over the updates (the budget schedules of
  `wgan_gp.schedules` are applied by the step).

  `learning_rate` replaces the config's value when given, e.g. as an array that
  differs per trial of a vectorised sweep.
  """
  peak = opt_config.learning_rate if learning_rate is None else learning_rate
  if opt_config.schedule in ("constant",) + schedules.BUDGET_SCHEDULES:
    learning_rate = peak  # a budget schedule scales the updates in the step
  elif opt_config.schedule == "linear":
    learning_rate = optax.linear_schedule(peak, 0.0, max(total_updates, 1))
  else:
    raise ValueError(f"unknown optimizer schedule {opt_config.schedule!r}; expected one "
                     f"of {', '.join(schedules.SCHEDULES)}")
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
