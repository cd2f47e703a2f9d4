"""The losses WGAN-GP is compared with: wgan-clip and the non-saturating GAN, by config."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import CONFIGS
from wgan_gp import data, gan_state, iteration, losses, parallel, validation
from wgan_gp.config import load_config

_CLIP = {"loss.name": "wgan-clip", "loss.clip_value": 0.01,
         "optim.generator.name": "rmsprop", "optim.generator.learning_rate": 5e-5,
         "optim.critic.name": "rmsprop", "optim.critic.learning_rate": 5e-5}


def _linear_critic(d_params, x):
  return x @ d_params["w"] + d_params["b"]


def _inputs():
  real = jnp.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
  fake = jnp.array([[-1.0, 0.5], [0.5, -1.0], [0.0, 0.0]])
  return real, fake, jnp.array([0.0, 0.5, 1.0])


def test_gan_losses_are_the_non_saturating_cross_entropies():
  d_params = {"w": jnp.array([0.7, -0.4]), "b": jnp.array(0.1)}
  real, fake, eps = _inputs()
  loss, metrics = losses.gan_critic_loss(_linear_critic, d_params, real, fake, eps)
  sigmoid = lambda s: 1.0 / (1.0 + np.exp(-s))
  real_scores = np.asarray(real) @ [0.7, -0.4] + 0.1
  fake_scores = np.asarray(fake) @ [0.7, -0.4] + 0.1
  expected = -np.mean(np.log(sigmoid(real_scores))) - np.mean(np.log(1 - sigmoid(fake_scores)))
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  np.testing.assert_allclose(losses.gan_generator_loss(jnp.asarray(fake_scores)),
                             -np.mean(np.log(sigmoid(fake_scores))), rtol=1e-6)
  # Monitoring only: the input-gradient norm of a linear critic is ‖w‖ everywhere, and
  # measuring it adds nothing to the gradient of the loss.
  np.testing.assert_allclose(metrics["interp_grad_norm_mean"], np.hypot(0.7, 0.4), rtol=1e-6)
  grads = jax.grad(lambda p: losses.gan_critic_loss(_linear_critic, p, real, fake, eps)[0])(
      d_params)
  plain = jax.grad(lambda p: jnp.mean(jax.nn.softplus(-_linear_critic(p, real))) +
                   jnp.mean(jax.nn.softplus(_linear_critic(p, fake))))(d_params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), grads, plain)


def test_wgan_clip_has_no_penalty_in_its_loss_and_clips_every_parameter():
  d_params = {"w": jnp.array([3.0, -0.004]), "b": jnp.array(-0.5)}
  real, fake, eps = _inputs()
  loss, metrics = losses.wgan_critic_loss(_linear_critic, d_params, real, fake, eps)
  np.testing.assert_allclose(loss, -metrics["wasserstein"], rtol=1e-6)
  assert float(metrics["gradient_penalty"]) > 1.0  # measured (‖w‖ = 3), not trained on
  clip_config = load_config(str(CONFIGS / "toy2d.py:smoke"), _CLIP)
  clipped = losses.get_loss(clip_config.loss).constrain_critic(d_params)
  np.testing.assert_array_equal(clipped["w"], np.array([0.01, -0.004], np.float32))
  np.testing.assert_array_equal(clipped["b"], np.float32(-0.01))
  # Array-valued c, as in a vectorised sweep.
  np.testing.assert_allclose(losses.clip_weights(d_params, jnp.float32(0.5))["w"], [0.5, -0.004])


def test_rmsprop_update_is_the_original_wgans():
  config = load_config(str(CONFIGS / "toy2d.py:smoke"), _CLIP)
  optimizer = gan_state.make_optimizer(config.optim.critic, 100)
  params = jnp.array([1.0, -2.0])
  grads = jnp.array([0.3, -1e-3])
  opt_state = optimizer.init(params)
  updates, opt_state = optimizer.update(grads, opt_state, params)
  # torch.optim.RMSprop(lr=5e-5): v = (1 − α)g², Δ = −lr·g / (√v + ε), α = 0.99.
  v = 0.01 * np.square(np.asarray(grads))
  expected = -5e-5 * np.asarray(grads) / (np.sqrt(v) + 1e-8)
  np.testing.assert_allclose(updates, expected, rtol=1e-5)


@pytest.mark.parametrize("overrides", [{}, _CLIP, {"loss.name": "gan", "n_critic": 1}],
                         ids=["wgan-gp", "wgan-clip", "gan"])
def test_every_loss_runs_the_same_step_and_logs_the_same_metrics(overrides):
  config = load_config(str(CONFIGS / "toy2d.py:smoke"),
                       {"model.width": 8, "batch_size": 8, "n_critic": 2, **overrides})
  validation.validate_config(config)
  gan = gan_state.build_gan(config, parallel.AXIS_NAME)
  source = data.create_source(config.data, config.seed)
  state = parallel.replicate(gan_state.create_train_state(config, gan))
  step = iteration.make_train_step(config, gan, source)
  for _ in range(2):
    state, metrics = step(state, None)
  values = iteration.host_metrics(metrics)
  assert set(values) == {"critic_loss", "wasserstein", "gradient_penalty",
                         "interp_grad_norm_mean", "interp_grad_norm_max", "critic_grad_norm",
                         "generator_loss", "generator_grad_norm"}
  assert all(np.isfinite(v) for v in values.values())
  d_params = jax.tree.leaves(parallel.unreplicate(state).d_params)
  largest = max(float(jnp.max(jnp.abs(p))) for p in d_params)
  if config.loss.name == "wgan-clip":
    assert largest <= 0.01 and any(float(jnp.max(jnp.abs(p))) == np.float32(0.01)
                                   for p in d_params)
  else:
    assert largest > 0.1  # the initial weights are left alone


def test_unknown_loss_and_bad_clip_value_are_refused():
  config = load_config(str(CONFIGS / "toy2d.py:smoke"), {"loss.name": "wgan"})
  with pytest.raises(validation.ConfigError, match="expected one of wgan-gp, wgan-clip, gan"):
    validation.validate_config(config)
  config = load_config(str(CONFIGS / "toy2d.py:smoke"), {**_CLIP, "loss.clip_value": 0.0})
  with pytest.raises(validation.ConfigError, match="clip_value=0.0 must be > 0"):
    validation.validate_config(config)
  config = load_config(str(CONFIGS / "toy2d.py:smoke"), {"optim.critic.name": "sgd"})
  with pytest.raises(validation.ConfigError, match="expected 'adam' or 'rmsprop'"):
    validation.validate_config(config)
