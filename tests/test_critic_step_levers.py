"""The levers of #35 that make the critic's step cheaper or the EMA usable early: the lazy
penalty (loss.gp_every) and the EMA whose half-life grows with the images seen."""

import functools
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from conftest import CONFIGS
from wgan_gp import data, gan_state, iteration, losses, parallel, schedules
from wgan_gp.config import load_config
from wgan_gp.validation import check_values


def _toy_setup(**overrides):
  config = load_config(str(CONFIGS / "toy2d.py:smoke"), overrides)
  gan = gan_state.build_gan(config, parallel.AXIS_NAME)
  source = data.create_source(config.data, config.seed)
  return config, gan, source


def _lazy_reference_critic(state, config, gan, source):
  """The critic's updates of one step written out: the penalty, weighted λ·k, on updates
  0, k, 2k, ... and absent from the others."""
  _, d_optimizer = gan_state.make_optimizers(config)
  indices = jnp.arange(config.batch_size)
  d_params, d_opt_state = state.d_params, state.d_opt_state
  every = config.loss.gp_every
  for k in range(config.n_critic):
    keys = iteration.sample_keys(state.rng, state.step, (iteration.CRITIC_STREAM, k), indices)
    z = iteration.per_sample(lambda key: jax.random.normal(key, (gan.z_dim,)), keys,
                             iteration.Z_SALT)
    eps = iteration.per_sample(jax.random.uniform, keys, iteration.EPS_SALT)
    real = iteration.per_sample(source.sample, keys, iteration.REAL_SALT)
    fake = gan.generate(state.g_params, z)

    def loss(p, penalised=(k % every == 0)):
      critic = functools.partial(gan.criticize, p)
      wasserstein = jnp.mean(critic(real)) - jnp.mean(critic(fake))
      if not penalised:
        return -wasserstein
      return -wasserstein + config.loss.gp_weight * every * losses.gradient_penalty(
          critic, real, fake, eps)[0]

    updates, d_opt_state = d_optimizer.update(jax.grad(loss)(d_params), d_opt_state, d_params)
    d_params = optax.apply_updates(d_params, updates)
  return d_params


def _dot_count(config, gan, source, state):
  """Matrix products in the step's program: the penalty's double backward adds its own."""
  step = iteration.make_train_step(config, gan, source)
  text = step.lower(parallel.replicate(state), None).as_text()
  return text.count("stablehlo.dot_general")


@pytest.mark.slow  # compiles the step and its reference
def test_lazy_penalty_penalises_every_kth_update_at_k_lambda_and_not_the_rest():
  config, gan, source = _toy_setup(**{"n_critic": 4, "loss.gp_every": 2})
  host_state = gan_state.create_train_state(config, gan)
  expected_d = jax.jit(lambda s: _lazy_reference_critic(s, config, gan, source))(host_state)
  step = iteration.make_train_step(config, gan, source)
  new_state, metrics = step(parallel.replicate(host_state), None)
  for got, want in zip(jax.tree.leaves(parallel.unreplicate(new_state).d_params),
                       jax.tree.leaves(expected_d)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  values = iteration.host_metrics(metrics)
  assert {"gradient_penalty", "interp_grad_norm_mean", "interp_grad_norm_max"} <= set(values)
  assert all(np.isfinite(v) for v in values.values())


def test_lazy_penalty_traces_the_updates_without_it_without_its_double_backward():
  config, gan, source = _toy_setup(**{"n_critic": 4, "loss.gp_every": 2})
  host_state = gan_state.create_train_state(config, gan)
  # The updates without the penalty are traced without it (not given a zero weight):
  # the penalty's products (its input gradient and the double backward) leave them.
  products = {(n_critic, every): _dot_count(
      _toy_setup(**{"n_critic": n_critic, "loss.gp_every": every})[0], gan, source, host_state)
      for n_critic, every in ((4, 1), (3, 1), (4, 2))}
  penalised_update = products[4, 1] - products[3, 1]
  penalty_alone = (products[4, 1] - products[4, 2]) // 2
  assert penalised_update / 4 < penalty_alone < penalised_update, products


def test_unpenalised_critic_loss_has_no_penalty_term_or_metrics():
  critic = lambda x: jnp.sum(x, axis=1) * 3.0
  real, fake = jnp.ones((4, 2)), jnp.zeros((4, 2))
  loss, metrics = losses.wgan_gp_critic_loss(critic, real, fake, jnp.full((4,), 0.5), None)
  assert float(loss) == pytest.approx(-6.0)
  assert set(metrics) == {"wasserstein", "critic_loss"}
  loss, metrics = losses.wgan_gp_critic_loss(critic, real, fake, jnp.full((4,), 0.5), 10.0)
  # ‖∇D‖ = 3·√2 everywhere: penalty (3√2 − 1)².
  assert float(metrics["gradient_penalty"]) == pytest.approx((3 * 2**0.5 - 1) ** 2, rel=1e-5)
  assert float(loss) == pytest.approx(-6.0 + 10.0 * (3 * 2**0.5 - 1) ** 2, rel=1e-5)


@pytest.mark.parametrize("overrides, named", [
    ({"n_critic": 3, "loss.gp_every": 2}, "must divide config.n_critic=3"),
    ({"loss.name": "gan", "loss.gp_every": 2, "n_critic": 2}, "applies to the wgan-gp loss"),
    ({"ema_halflife_images": 10_000.0, "ema_start": 0.5}, "set --config.ema_start=0"),
])
def test_levers_refuse_settings_they_cannot_honour_in_one_line(overrides, named):
  config = load_config(str(CONFIGS / "celeba64.py:cpu"), overrides)
  with pytest.raises(ValueError, match=named) as error:
    check_values(config)
  assert "\n" not in str(error.value)


def test_ema_half_life_grows_with_images_seen_to_its_cap():
  config = ml_collections.ConfigDict({"ema_decay": 0.999, "ema_start": 0.0, "batch_size": 32,
                                      "ema_halflife_images": 10_000.0, "ema_rampup": 0.05})
  decay = lambda step: float(schedules.ema_decay(config, step, 0.0))
  # Step 0 has seen no images: the average is the generator.
  assert decay(0) == 0.0
  # After 1,000 steps (32,000 images) the half-life is 1,600 images = 50 steps.
  assert decay(1000) == pytest.approx(0.5 ** (1 / 50), rel=1e-6)
  # From 200,000 images on, the cap: 10,000 images = 312.5 steps.
  assert decay(10**6) == pytest.approx(0.5 ** (32 / 10_000), rel=1e-6)
  assert decay(10**7) == decay(10**6)
  # Off, the recipes' EMA is unchanged.
  config.ema_halflife_images = 0.0
  assert decay(10**6) == pytest.approx(0.999)


def test_a_run_saved_before_the_levers_resumes_as_them_off_and_names_them_when_changed():
  from wgan_gp.validation import setting_changes  # noqa: PLC0415
  config = load_config(str(CONFIGS / "celeba64.py:cpu"))
  saved = json.loads(json.dumps(config.to_dict()))
  del saved["loss"]["gp_every"], saved["ema_halflife_images"], saved["ema_rampup"]
  assert setting_changes(saved, config) == []
  config.loss.gp_every = 2
  config.ema_halflife_images = 10_000.0
  assert sorted(setting_changes(saved, config)) == [
      "ema_halflife_images: 0.0 -> 10000.0", "loss.gp_every: 1 -> 2"]


def test_scheduled_loop_averages_each_regulariser_over_the_updates_that_carry_it():
  calls = []

  def update(carry, inputs, penalize, consistent):
    batch, k = inputs
    calls.append((int(k), penalize, consistent, None if batch is None else float(batch[0])))
    metrics = {"wasserstein": jnp.float32(k), "critic_loss": jnp.float32(10 * k)}
    if penalize:
      metrics.update(gradient_penalty=jnp.float32(k + 1), interp_grad_norm_mean=jnp.float32(k),
                     interp_grad_norm_max=jnp.float32(5 - k))
    if consistent:
      metrics.update(consistency_real=jnp.float32(k))
    return carry + 1, metrics

  carry, metrics = iteration._scheduled_critic_loop(
      update, 0, jnp.arange(6.0)[:, None], n_critic=6, gp_every=3, consistency_every=2)
  assert carry == 6
  # The penalty on 0 and 3 (the first of each 3), bCR on 1, 3 and 5 (the last of each 2).
  assert [(k, p, c) for k, p, c, _ in calls] == [
      (0, True, False), (1, False, True), (2, False, False), (3, True, True),
      (4, False, False), (5, False, True)]
  assert [batch for *_, batch in calls] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
  assert float(metrics["wasserstein"]) == pytest.approx(2.5)  # all six updates
  assert float(metrics["gradient_penalty"]) == pytest.approx(2.5)  # updates 0 and 3
  assert float(metrics["interp_grad_norm_mean"]) == pytest.approx(1.5)
  assert float(metrics["interp_grad_norm_max"]) == 5.0  # a max, not a mean
  # Update 0 has no bCR metric: the names are gathered from every update.
  assert float(metrics["consistency_real"]) == pytest.approx(3.0)  # updates 1, 3 and 5
