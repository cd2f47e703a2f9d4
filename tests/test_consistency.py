"""Balanced consistency regularisation (bCR, config.loss.consistency_*): the loss's terms,
the step that feeds them, and the settings it refuses."""

import functools

import jax
import ml_collections
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import CONFIGS
from wgan_gp import augment, gan_state, iteration, losses, parallel
from wgan_gp.config import load_config
from wgan_gp.validation import check_values


def _linear_critic(w, x):
  return jnp.sum(x * w, axis=(1, 2, 3))


def _batches(seed=0):
  keys = jax.random.split(jax.random.PRNGKey(seed), 4)
  return [jax.random.uniform(k, (3, 4, 4, 2), minval=-1, maxval=1) for k in keys]


def test_the_terms_are_the_weighted_mean_squared_score_differences():
  w = jax.random.normal(jax.random.PRNGKey(9), (1, 4, 4, 2))
  real, fake, real_t, fake_t = _batches()
  critic = functools.partial(_linear_critic, w)
  eps = jnp.full((3,), 0.5)
  base, base_metrics = losses.wgan_gp_critic_loss(critic, real, fake, eps, 10.0)
  loss, metrics = losses.wgan_gp_critic_loss(critic, real, fake, eps, 10.0,
                                             transformed=(real_t, fake_t),
                                             consistency_weights=(2.0, 3.0))
  score = lambda x: np.asarray(x, np.float64).reshape(3, -1) @ np.asarray(w, np.float64).ravel()
  expected_real = np.mean((score(real) - score(real_t)) ** 2)
  expected_fake = np.mean((score(fake) - score(fake_t)) ** 2)
  assert float(metrics["consistency_real"]) == pytest.approx(expected_real, rel=1e-5)
  assert float(metrics["consistency_fake"]) == pytest.approx(expected_fake, rel=1e-5)
  assert float(loss) == pytest.approx(
      float(base) + 2.0 * expected_real + 3.0 * expected_fake, rel=1e-5)
  # The penalty and the Wasserstein estimate are the same with or without the terms.
  for name in ("gradient_penalty", "wasserstein"):
    assert float(metrics[name]) == float(base_metrics[name])
  assert "consistency_real" not in base_metrics


def test_a_zero_weight_leaves_its_term_out_of_the_computation():
  real, fake, real_t, fake_t = _batches(1)
  scored = []

  def critic(x):
    scored.append(x)
    return jnp.sum(x, axis=(1, 2, 3))

  _, metrics = losses.wgan_gp_critic_loss(critic, real, fake, jnp.full((3,), 0.5), None,
                                          transformed=(real_t, fake_t),
                                          consistency_weights=(1.0, 0.0))
  assert "consistency_real" in metrics and "consistency_fake" not in metrics
  assert any(x is real_t for x in scored) and not any(x is fake_t for x in scored)


def test_the_terms_train_the_critic_towards_scoring_a_transform_alike():
  """One gradient step on the real term alone shrinks it (the sign is right)."""
  w = jax.random.normal(jax.random.PRNGKey(3), (1, 4, 4, 2))
  real, fake, real_t, fake_t = _batches(2)

  def term(w):
    return losses.wgan_gp_critic_loss(functools.partial(_linear_critic, w), real, fake,
                                      jnp.full((3,), 0.5), None, transformed=(real_t, fake_t),
                                      consistency_weights=(1.0, 0.0))[1]["consistency_real"]

  before, grad = jax.value_and_grad(term)(w)
  assert float(term(w - 1e-3 * grad)) < float(before)


def _image_config(**overrides):
  return load_config(str(CONFIGS / "celeba64.py:cpu_round1,smoke"),
                     {"data.image_size": 16, "batch_size": 4, **overrides})


@pytest.mark.slow
def test_the_step_scores_its_critic_inputs_against_their_transforms_as_documented():
  """The step's critic gradient against a plain re-derivation: bCR between the critic's
  own (here augmented) inputs and their transforms, drawn from the consistency salts."""
  config = _image_config(**{"augment": "color", "loss.consistency_real_weight": 10.0,
                            "loss.consistency_fake_weight": 5.0})
  step_gan = gan_state.build_gan(config, parallel.AXIS_NAME)
  gan = gan_state.build_gan(config)  # the reference runs outside pmap
  state = gan_state.create_train_state(config, gan)
  real_u8 = np.asarray(jax.random.randint(jax.random.PRNGKey(2), (1, 4, 16, 16, 3), 0, 256),
                       np.uint8)
  indices = jnp.arange(4)
  transforms = augment.parse_policy(config.loss.consistency_augment)
  assert transforms == ("flip", "translation")

  def reference_critic_grads(state):
    keys = iteration.sample_keys(state.rng, state.step, (iteration.CRITIC_STREAM, 0), indices)
    z = iteration.per_sample(lambda k: jax.random.normal(k, (gan.z_dim,)), keys,
                             iteration.Z_SALT)
    eps = iteration.per_sample(jax.random.uniform, keys, iteration.EPS_SALT)
    real = jnp.asarray(real_u8[0], jnp.float32) / 127.5 - 1.0
    real = augment.augment(real, iteration.salted(keys, iteration.AUGMENT_REAL_SALT), ("color",))
    fake = augment.augment(gan.generate(state.g_params, z),
                           iteration.salted(keys, iteration.AUGMENT_FAKE_SALT), ("color",))
    real_t = augment.augment(real, iteration.salted(keys, iteration.CONSISTENCY_REAL_SALT),
                             transforms)
    fake_t = augment.augment(fake, iteration.salted(keys, iteration.CONSISTENCY_FAKE_SALT),
                             transforms)

    def loss(p):
      critic = functools.partial(gan.criticize, p)
      return (jnp.mean(critic(fake)) - jnp.mean(critic(real))
              + config.loss.gp_weight * losses.gradient_penalty(critic, real, fake, eps)[0]
              + 10.0 * jnp.mean(jnp.square(critic(real) - critic(real_t)))
              + 5.0 * jnp.mean(jnp.square(critic(fake) - critic(fake_t))))
    return jax.grad(loss)(state.d_params)

  expected = jax.jit(reference_critic_grads)(state)
  step = iteration.make_train_step(config, step_gan)
  new_state, metrics = step(parallel.replicate(state), real_u8[None])
  metrics = iteration.host_metrics(metrics)
  assert metrics["consistency_real"] > 0 and metrics["consistency_fake"] > 0
  # Adam's first moment after one step (β1 = 0) is the gradient itself.
  assert config.optim.critic.b1 == 0.0
  mu = next(s for s in parallel.unreplicate(new_state).d_opt_state if hasattr(s, "nu")).mu
  close = functools.partial(np.testing.assert_allclose, rtol=2e-4, atol=2e-6)
  jax.tree.map(close, mu, expected)
  # The terms change the gradient: without them it differs.
  plain = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), expected,
                       jax.jit(lambda s: jax.grad(lambda p: losses.wgan_gp_critic_loss(
                           functools.partial(gan.criticize, p), *_critic_inputs(s, gan, real_u8),
                           config.loss.gp_weight)[0])(s.d_params))(state))
  assert max(jax.tree.leaves(plain)) > 1e-4


def _critic_inputs(state, gan, real_u8):
  keys = iteration.sample_keys(state.rng, state.step, (iteration.CRITIC_STREAM, 0),
                               jnp.arange(4))
  z = iteration.per_sample(lambda k: jax.random.normal(k, (gan.z_dim,)), keys, iteration.Z_SALT)
  eps = iteration.per_sample(jax.random.uniform, keys, iteration.EPS_SALT)
  real = augment.augment(jnp.asarray(real_u8[0], jnp.float32) / 127.5 - 1.0,
                         iteration.salted(keys, iteration.AUGMENT_REAL_SALT), ("color",))
  fake = augment.augment(gan.generate(state.g_params, z),
                         iteration.salted(keys, iteration.AUGMENT_FAKE_SALT), ("color",))
  return real, fake, eps


@pytest.mark.slow  # compiles the step and its reference
def test_consistency_every_m_puts_bcr_at_m_lambda_on_the_last_update_of_each_group():
  """n_critic 2 with gp_every 2 and consistency_every 2: the penalty (λ·2) on update 0,
  bCR (its weights ·2) on update 1, each update written out against the step's critic."""
  config = _image_config(**{"n_critic": 2, "loss.gp_every": 2, "loss.consistency_every": 2,
                            "loss.consistency_real_weight": 1.0,
                            "loss.consistency_fake_weight": 0.5})
  check_values(config)
  step_gan = gan_state.build_gan(config, parallel.AXIS_NAME)
  gan = gan_state.build_gan(config)
  state = gan_state.create_train_state(config, gan)
  real_u8 = np.asarray(jax.random.randint(jax.random.PRNGKey(4), (2, 4, 16, 16, 3), 0, 256),
                       np.uint8)
  policy = augment.parse_policy(config.augment)
  transforms = augment.parse_policy(config.loss.consistency_augment)

  def reference_critic(state):
    _, d_optimizer = gan_state.make_optimizers(config)
    d_params, d_opt_state = state.d_params, state.d_opt_state
    for k in range(2):
      keys = iteration.sample_keys(state.rng, state.step, (iteration.CRITIC_STREAM, k),
                                   jnp.arange(4))
      z = iteration.per_sample(lambda key: jax.random.normal(key, (gan.z_dim,)), keys,
                               iteration.Z_SALT)
      eps = iteration.per_sample(jax.random.uniform, keys, iteration.EPS_SALT)
      real = jnp.asarray(real_u8[k], jnp.float32) / 127.5 - 1.0
      real = augment.augment(real, iteration.salted(keys, iteration.AUGMENT_REAL_SALT), policy)
      fake = augment.augment(gan.generate(state.g_params, z),
                             iteration.salted(keys, iteration.AUGMENT_FAKE_SALT), policy)
      real_t = augment.augment(real, iteration.salted(keys, iteration.CONSISTENCY_REAL_SALT),
                               transforms)
      fake_t = augment.augment(fake, iteration.salted(keys, iteration.CONSISTENCY_FAKE_SALT),
                               transforms)

      def loss(p, k=k, real=real, fake=fake, eps=eps, real_t=real_t, fake_t=fake_t):
        critic = functools.partial(gan.criticize, p)
        value = jnp.mean(critic(fake)) - jnp.mean(critic(real))
        if k == 0:
          return value + 2 * config.loss.gp_weight * losses.gradient_penalty(
              critic, real, fake, eps)[0]
        return (value + 2 * 1.0 * jnp.mean(jnp.square(critic(real) - critic(real_t)))
                + 2 * 0.5 * jnp.mean(jnp.square(critic(fake) - critic(fake_t))))

      updates, d_opt_state = d_optimizer.update(jax.grad(loss)(d_params), d_opt_state, d_params)
      d_params = optax.apply_updates(d_params, updates)
    return d_params

  expected = jax.jit(reference_critic)(state)
  step = iteration.make_train_step(config, step_gan)
  new_state, metrics = step(parallel.replicate(state), real_u8[None])
  close = functools.partial(np.testing.assert_allclose, rtol=2e-4, atol=2e-6)
  jax.tree.map(close, parallel.unreplicate(new_state).d_params, expected)
  metrics = iteration.host_metrics(metrics)
  assert metrics["consistency_real"] > 0 and metrics["consistency_fake"] > 0
  assert metrics["gradient_penalty"] > 0


def _critic_products(config, gan, state, real_u8):
  """Convolutions and matrix products in the step's program (a folded layer is a product)."""
  step = iteration.make_train_step(config, gan)
  text = step.lower(parallel.replicate(state), real_u8).as_text()
  return text.count("stablehlo.convolution") + text.count("stablehlo.dot_general")


def test_the_updates_without_bcr_are_traced_without_its_critic_passes():
  """Not a zero weight: the transformed batches' forward and backward leave the program."""
  base = {"n_critic": 2, "loss.gp_every": 2}
  on = {**base, "loss.consistency_real_weight": 1.0, "loss.consistency_fake_weight": 1.0}
  config = _image_config(**base)
  gan = gan_state.build_gan(config, parallel.AXIS_NAME)
  state = gan_state.create_train_state(config, gan_state.build_gan(config))
  real_u8 = np.zeros((1, 2, 4, 16, 16, 3), np.uint8)
  off, every_1, every_2 = (_critic_products(_image_config(**overrides), gan, state, real_u8)
                           for overrides in (base, on, {**on, "loss.consistency_every": 2}))
  assert every_1 - off == 2 * (every_2 - off) > 0, (off, every_1, every_2)


def test_off_by_default_and_for_a_config_from_before_it():
  config = load_config(str(CONFIGS / "celeba64.py:cpu"))
  assert iteration.consistency_transforms(config.loss) == ()
  saved_before = {k: v for k, v in config.loss.to_dict().items()
                  if not k.startswith("consistency")}
  assert iteration.consistency_transforms(ml_collections.ConfigDict(saved_before)) == ()
  config = _image_config(**{"loss.consistency_fake_weight": 1.0})
  assert iteration.consistency_transforms(config.loss) == ("flip", "translation")


@pytest.mark.parametrize("overrides, message", [
    ({"loss.consistency_real_weight": -1.0},
     "^config.loss.consistency_real_weight=-1 is negative: set it to 0"),
    ({"loss.consistency_real_weight": 10.0, "loss.name": "gan"},
     "applies to the wgan-gp loss, not 'gan': set both to 0"),
    ({"loss.consistency_fake_weight": 10.0, "loss.consistency_augment": ""},
     "consistency_augment is empty.*--config.loss.consistency_augment=flip,translation"),
    ({"loss.consistency_fake_weight": 10.0, "loss.consistency_augment": "flip,rotate"},
     "^config.loss.consistency_augment: unknown augmentation \\['rotate'\\]"),
    ({"loss.consistency_every": 2, "n_critic": 2},
     "^config.loss.consistency_every=2 spaces the consistency terms, and both weights are 0"),
    ({"loss.consistency_every": 2, "n_critic": 3, "loss.consistency_real_weight": 1.0},
     "^config.loss.consistency_every=2 must divide config.n_critic=3"),
])
def test_settings_it_refuses_say_what_to_set(overrides, message):
  with pytest.raises(ValueError, match=message):
    check_values(_image_config(**overrides))


def test_toy_data_is_refused_with_the_fix():
  config = load_config(str(CONFIGS / "toy2d.py:smoke"), {"loss.consistency_real_weight": 1.0})
  with pytest.raises(ValueError, match="2-D toy data: set both to 0"):
    check_values(config)
