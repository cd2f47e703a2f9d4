"""The WGAN-GP iteration: n_critic critic updates and one generator update, pmapped.

`train_step` is the pure function of one device; `make_train_step` is what the loop and
a notebook call.
"""

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from wgan_gp import augment, losses, schedules
from wgan_gp.models import GAN
from wgan_gp.parallel import AXIS_NAME
from wgan_gp.gan_state import GANState, make_optimizers

# Salts that keep the random streams of a step apart (fold_in constants).
CRITIC_STREAM, GENERATOR_STREAM = 0, 1
Z_SALT, EPS_SALT, REAL_SALT, FLIP_SALT = 0, 1, 2, 3
AUGMENT_REAL_SALT, AUGMENT_FAKE_SALT = 4, 5
CONSISTENCY_REAL_SALT, CONSISTENCY_FAKE_SALT = 6, 7


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


def salted(keys, salt):
  """Each sample's key, salted: a stream of its own for a batched consumer."""
  return jax.vmap(lambda k: jax.random.fold_in(k, salt))(keys)


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


def _scheduled_critic_loop(update, carry, real_batches, n_critic: int, gp_every: int,
                           consistency_every: int):
  """The n_critic updates with the penalty on updates 0, k, 2k, ... only (k = gp_every)
  and the consistency terms on updates m − 1, 2m − 1, ... only (m = consistency_every),
  so that with k = m the two alternate and no update carries both. Both divide
  n_critic, so the pattern is the same every step; unrolled so that each update is
  traced without what it skips: a weight of 0 or a `jnp.where` would still compute the
  penalty's double backward and the transformed batches' passes.

  A regulariser's metrics average the updates that carry it. The penalty's norms are
  measured before each penalised update, at a critic that the k − 1 updates without the
  penalty (and the generator's) have just moved: they show how well the penalty's grip
  holds between its applications.
  """
  outputs = []
  for k in range(n_critic):
    batch = None if real_batches is None else real_batches[k]
    carry, output = update(carry, (batch, jnp.int32(k)), penalize=k % gp_every == 0,
                           consistent=(k + 1) % consistency_every == 0)
    outputs.append(output)
  metrics = {}
  for name in dict.fromkeys(name for output in outputs for name in output):  # in order
    values = [output[name] for output in outputs if name in output]
    metrics[name] = (jnp.max(jnp.stack(values)) if name == "interp_grad_norm_max"
                     else jnp.mean(jnp.stack(values)))
  return carry, metrics


def train_step(state: GANState, real_batches, *, gan: GAN, config,
               sample_real: Callable | None = None, axis_name: str = AXIS_NAME,
               hparams: dict | None = None, time_fraction=0.0, fraction_reached=0.0):
  """One WGAN-GP iteration on one device, to run under pmap with `axis_name`.

  `n_critic` critic updates (a scan, each on its own real batch), then one generator
  update, with the loss named by `config.loss.name`. `real_batches` is this device's
  [n_critic, per_device, ...] (uint8 images), or None when `sample_real(key)` draws real
  examples on the device. Gradients and metrics are averaged over the devices.
  `hparams` maps dotted config names ('loss.gp_weight', 'loss.clip_value',
  'optim.{generator,critic}.learning_rate') to arrays that replace the config's values
  (`wgan_gp.vectorized` vmaps over them). `time_fraction` is the fraction of
  `train_minutes` spent (host-measured); the budget schedules read
  max(step / num_train_steps, time_fraction) (`wgan_gp.schedules`). `fraction_reached` is
  the largest fraction the run had reached before, under any earlier budget: the EMA reads
  the larger of the two, so that once started it stays started when a budget is changed
  on resume. The learning-rate scales that the updates applied come back as the metrics
  `{critic,generator}_lr_scale` (budget schedules only).
  """
  hparams = hparams or {}
  policy = augment.parse_policy(config.augment)
  consistency_policy = consistency_transforms(config.loss)
  fraction = jnp.maximum(state.step / config.num_train_steps, time_fraction)
  d_scale = schedules.learning_rate_scale(config.optim.critic, fraction)
  g_scale = schedules.learning_rate_scale(config.optim.generator, fraction)
  g_optimizer, d_optimizer = make_optimizers(config, hparams)
  loss = losses.get_loss(config.loss, {k.removeprefix("loss."): v for k, v in hparams.items()
                                        if k.startswith("loss.")})
  n_critic = config.n_critic
  per_device = config.batch_size // lax.axis_size(axis_name)
  global_indices = lax.axis_index(axis_name) * per_device + jnp.arange(per_device)

  def random_inputs(stream):
    keys = sample_keys(state.rng, state.step, stream, global_indices)
    z = per_sample(lambda k: jax.random.normal(k, (gan.z_dim,)), keys, Z_SALT)
    return keys, z

  def critic_update(carry, inputs, penalize=True, consistent=True):
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
    with jax.named_scope("critic_batch"):
      fake = gan.generate(state.g_params, z)
      # The critic sees augmented reals and fakes, and the penalty interpolates those.
      real = augment.augment(real, salted(keys, AUGMENT_REAL_SALT), policy)
      fake = augment.augment(fake, salted(keys, AUGMENT_FAKE_SALT), policy)
      transformed = None
      if consistency_policy and consistent:  # bCR: the critic's inputs, transformed again
        transformed = (
            augment.augment(real, salted(keys, CONSISTENCY_REAL_SALT), consistency_policy),
            augment.augment(fake, salted(keys, CONSISTENCY_FAKE_SALT), consistency_policy))

    def loss_fn(params):
      return loss.critic_loss(gan.criticize, params, real, fake, eps, penalize=penalize,
                              transformed=transformed)

    # The named scopes label the HLO, so a profile can tell the step's parts apart
    # (experiments/speed/profile_step.py); they change no computation.
    with jax.named_scope("critic_loss"):
      grads, metrics = jax.grad(loss_fn, has_aux=True)(d_params)
    grads = lax.pmean(grads, axis_name)
    with jax.named_scope("critic_optimizer"):
      metrics["critic_grad_norm"] = optax.tree.norm(grads)
      updates, d_opt_state = d_optimizer.update(grads, d_opt_state, d_params)
      updates = _scaled(updates, d_scale)
      d_params = loss.constrain_critic(optax.apply_updates(d_params, updates))
    return (d_params, d_opt_state), metrics

  gp_every = config.loss.get("gp_every", 1)
  consistency_every = config.loss.get("consistency_every", 1)
  if gp_every == consistency_every == 1:
    (d_params, d_opt_state), critic_metrics = _critic_loop(
        critic_update, (state.d_params, state.d_opt_state),
        (real_batches, jnp.arange(n_critic)), n_critic)
    critic_metrics = {k: jnp.max(v) if k == "interp_grad_norm_max" else jnp.mean(v)
                      for k, v in critic_metrics.items()}
  else:
    (d_params, d_opt_state), critic_metrics = _scheduled_critic_loop(
        critic_update, (state.d_params, state.d_opt_state), real_batches, n_critic, gp_every,
        consistency_every)

  keys, z = random_inputs((GENERATOR_STREAM,))
  augment_keys = salted(keys, AUGMENT_FAKE_SALT)

  def generator_loss_fn(g_params):
    fake = augment.augment(gan.generate(g_params, z), augment_keys, policy)
    return loss.generator_loss(gan.criticize(d_params, fake))

  with jax.named_scope("generator_loss"):
    g_loss, g_grads = jax.value_and_grad(generator_loss_fn)(state.g_params)
  g_grads = lax.pmean(g_grads, axis_name)
  with jax.named_scope("generator_optimizer"):
    g_updates, g_opt_state = g_optimizer.update(g_grads, state.g_opt_state, state.g_params)
    g_updates = _scaled(g_updates, g_scale)
    g_params = optax.apply_updates(state.g_params, g_updates)

  with jax.named_scope("ema"):
    decay = schedules.ema_decay(config, state.step, jnp.maximum(fraction, fraction_reached))
    ema_g_params = optax.incremental_update(g_params, state.ema_g_params, 1.0 - decay)

  metrics = dict(critic_metrics)
  metrics["generator_loss"] = g_loss
  metrics["generator_grad_norm"] = optax.tree.norm(g_grads)
  for name, scale in (("critic", d_scale), ("generator", g_scale)):
    if scale is not None:  # what the updates applied, for the log (and the tests)
      metrics[f"{name}_lr_scale"] = jnp.asarray(scale, jnp.float32)
  # The max over devices of each device's max (a mean of maxima would understate it).
  grad_norm_max = metrics.pop("interp_grad_norm_max", None)
  metrics = lax.pmean(metrics, axis_name)
  if grad_norm_max is not None:
    metrics["interp_grad_norm_max"] = lax.pmax(grad_norm_max, axis_name)

  new_state = state.replace(step=state.step + 1, g_params=g_params, d_params=d_params,
                            g_opt_state=g_opt_state, d_opt_state=d_opt_state,
                            ema_g_params=ema_g_params)
  return new_state, metrics


def consistency_transforms(loss_config) -> tuple[str, ...]:
  """The transforms of the consistency regularisation; () when both weights are 0 (or
  for a config from before it), so that the step draws and scores nothing more."""
  if not (loss_config.get("consistency_real_weight", 0.0)
          or loss_config.get("consistency_fake_weight", 0.0)):
    return ()
  return augment.parse_policy(loss_config.consistency_augment,
                             "config.loss.consistency_augment")


def _scaled(updates, scale):
  """The optimiser's updates times the schedule's scale (for Adam and RMSProp the same
  as scaling the learning rate); untouched for step-based schedules."""
  if scale is None:
    return updates
  return jax.tree.map(lambda u: u * scale.astype(u.dtype), updates)


# The trailing arguments of a step compiled ahead (`step.lower(...).compile()`, which
# takes every argument) for a run without a time budget: fraction 0, none reached.
NO_BUDGET = (np.float32(0.0), np.float32(0.0))


class TrainStep:
  """The pmapped step: `step(replicated_state, sharded_batch[, time_fraction[,
  fraction_reached]]) -> (state, metrics)`, `step.lower(...)` for ahead-of-time
  compilation, and `step.compile(...)`, the same step compiled ahead (timed by the loop).

  `time_fraction` (the fraction of `train_minutes` spent, default 0) and
  `fraction_reached` (see `train_step`) go to every device alike; only the budget
  schedules and a late EMA read them. In a multi-process run each process passes its own:
  the training loop makes them agree (`wgan_gp.stopping.StepAgreement`).
  """

  def __init__(self, pmapped):
    self._pmapped = pmapped

  def __call__(self, state, batch, time_fraction: float = 0.0, fraction_reached: float = 0.0):
    return self._pmapped(state, batch, np.float32(time_fraction), np.float32(fraction_reached))

  def lower(self, state, batch, time_fraction: float = 0.0, fraction_reached: float = 0.0):
    return self._pmapped.lower(state, batch, np.float32(time_fraction),
                               np.float32(fraction_reached))

  def compile(self, state, batch, time_fraction: float = 0.0,
              fraction_reached: float = 0.0) -> "TrainStep":
    """This step compiled now for these arguments' shapes: calls with the same shapes
    run it without compiling again."""
    return TrainStep(self.lower(state, batch, time_fraction, fraction_reached).compile())


def make_train_step(config, gan: GAN, source=None, axis_name: str = AXIS_NAME) -> TrainStep:
  """The pmapped step of `train_step` (see `TrainStep`).

  `gan` must be built with the same `axis_name` (`build_gan(config, AXIS_NAME)`), so the
  generator's BatchNorm uses the global batch. `source` is the data source; when it
  samples on the device, pass `None` as the batch. The state's buffers are donated.
  """
  sample_real = source.sample if source is not None and source.on_device else None

  def step(state, batch, time_fraction, fraction_reached):
    return train_step(state, batch, gan=gan, config=config, sample_real=sample_real,
                      axis_name=axis_name, time_fraction=time_fraction,
                      fraction_reached=fraction_reached)

  return TrainStep(jax.pmap(step, axis_name=axis_name, in_axes=(0, 0, None, None),
                            donate_argnums=(0,)))


def host_metrics(metrics) -> dict[str, float]:
  """Device-averaged metrics of a step (replicated) as Python floats."""
  return {k: float(v.addressable_data(0)[0]) for k, v in metrics.items()}
