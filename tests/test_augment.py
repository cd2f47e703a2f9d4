"""Differentiable augmentation (wgan_gp/augment.py) and how the step uses it."""

import dataclasses
import functools

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import CONFIGS
from wgan_gp import augment, gan_state, iteration, losses, parallel
from wgan_gp.config import load_config

ALL = ("color", "translation", "cutout")


def _images(n=6, side=16, seed=0):
  return jax.random.uniform(jax.random.PRNGKey(seed), (n, side, side, 3), minval=-1, maxval=1)


def _params(n, side, seed=1):
  keys = jax.random.split(jax.random.PRNGKey(seed), n)
  return jax.vmap(lambda k: augment.draw(k, (side, side, 3)))(keys)


def test_policy_parsing_orders_and_refuses_unknown_names():
  assert augment.parse_policy("cutout, translation,color") == ALL
  assert augment.parse_policy("translation,flip") == ("flip", "translation")
  assert augment.parse_policy("") == ()
  with pytest.raises(ValueError, match="^config.augment: unknown augmentation \\['rotate'\\]"):
    augment.parse_policy("translation,rotate")
  with pytest.raises(ValueError, match="^config.loss.consistency_augment: unknown"):
    augment.parse_policy("rotate", "config.loss.consistency_augment")


def test_flip_mirrors_the_columns_of_the_samples_it_draws_and_no_others():
  x, p = _images(n=64), _params(64, 16)
  y = np.asarray(augment.flip(x, p))
  flipped = np.asarray(p.flip)
  assert 16 < flipped.sum() < 48  # about half
  np.testing.assert_array_equal(y[flipped], np.asarray(x)[flipped][:, :, ::-1])
  np.testing.assert_array_equal(y[~flipped], np.asarray(x)[~flipped])


def test_the_flip_draws_a_stream_of_its_own_so_the_other_fields_keep_their_values():
  key = jax.random.PRNGKey(7)
  keys = jax.random.split(key, 5)
  p = augment.draw(key, (16, 16, 3))
  assert float(p.brightness) == float(jax.random.uniform(keys[0]) - 0.5)
  assert float(p.contrast) == float(jax.random.uniform(keys[2]) + 0.5)
  assert bool(p.flip) == bool(jax.random.bernoulli(jax.random.fold_in(key, 5)))


def test_parameters_have_their_documented_ranges():
  side = 64
  p = _params(20_000, side)
  assert -0.5 <= p.brightness.min() and p.brightness.max() < 0.5
  assert 0.0 <= p.saturation.min() and p.saturation.max() < 2.0
  assert 0.5 <= p.contrast.min() and p.contrast.max() < 1.5
  # Up to 1/8 of the side, both directions, every shift reached.
  assert set(np.unique(p.shift).tolist()) == set(range(-8, 9))
  assert set(np.unique(p.cutout_centre).tolist()) == set(range(0, side + 1))


def _shift_reference(image, dy, dx):
  out = np.zeros_like(image)
  h, w = image.shape[:2]
  for r in range(h):
    for c in range(w):
      if 0 <= r - dy < h and 0 <= c - dx < w:
        out[r, c] = image[r - dy, c - dx]
  return out


def test_translation_moves_pixels_exactly_with_zero_padding():
  x, p = _images(), _params(6, 16)
  y = np.asarray(augment.translation(x, p))
  for i in range(6):
    dy, dx = map(int, p.shift[i])
    np.testing.assert_array_equal(y[i], _shift_reference(np.asarray(x[i]), dy, dx))


def test_cutout_zeroes_a_half_side_square_around_its_centre():
  x, p = _images(side=16), _params(6, 16)
  y = np.asarray(augment.cutout(x, p))
  for i in range(6):
    cy, cx = map(int, p.cutout_centre[i])
    expected = np.asarray(x[i]).copy()
    expected[max(cy - 4, 0):max(cy + 4, 0), max(cx - 4, 0):max(cx + 4, 0)] = 0.0
    np.testing.assert_array_equal(y[i], expected)


def test_color_matches_its_formulas():
  x, p = _images(), _params(6, 16)
  y = np.asarray(augment.color(x, p))
  for i in range(6):
    v = np.asarray(x[i], np.float64) + float(p.brightness[i])
    m = v.mean(axis=-1, keepdims=True)
    v = (v - m) * float(p.saturation[i]) + m
    v = (v - v.mean()) * float(p.contrast[i]) + v.mean()
    np.testing.assert_allclose(y[i], v, atol=1e-5)


@pytest.mark.parametrize("policy", [("flip",), ("color",), ("translation",), ("cutout",), ALL])
def test_each_sample_is_augmented_on_its_own(policy):
  """A sample's result depends only on its image and its key, not on its batch-mates."""
  x = _images(n=5)
  keys = jax.random.split(jax.random.PRNGKey(3), 5)
  batch = np.asarray(augment.augment(x, keys, policy))
  for i in range(5):
    alone = augment.augment(x[i:i + 1], keys[i:i + 1], policy)
    np.testing.assert_allclose(batch[i], alone[0], rtol=0, atol=1e-6)
  # Different keys, different augmentations.
  assert not np.allclose(batch[0], np.asarray(augment.augment(x, keys[::-1], policy))[4])


def test_gradients_flow_through_each_transform_as_their_closed_forms_say():
  x, p = _images(n=4), _params(4, 16)
  w = jax.random.normal(jax.random.PRNGKey(7), x.shape)
  # translation is linear: its gradient is the weights shifted back.
  g = jax.grad(lambda v: jnp.sum(augment.translation(v, p) * w))(x)
  for i in range(4):
    dy, dx = map(int, p.shift[i])
    np.testing.assert_allclose(g[i], _shift_reference(np.asarray(w[i]), -dy, -dx), atol=1e-6)
  # cutout: the weights outside the square.
  g = jax.grad(lambda v: jnp.sum(augment.cutout(v, p) * w))(x)
  np.testing.assert_array_equal(g, w * augment.cutout_mask(p, 16, 16, jnp.float32))
  # color: against central differences in float64 terms.
  g = jax.grad(lambda v: jnp.sum(augment.color(v, p) * w))(x)
  direction = jax.random.normal(jax.random.PRNGKey(8), x.shape)
  h = 1e-2
  f = lambda v: float(jnp.sum(augment.color(v, p) * w))
  numeric = (f(x + h * direction) - f(x - h * direction)) / (2 * h)
  assert abs(float(jnp.sum(g * direction)) - numeric) < 1e-2 * max(1.0, abs(numeric))


def _augment_reference(image, p, i, side):
  """The policy ALL (color, translation, cutout) on one image, from the formulas above."""
  v = np.asarray(image, np.float64) + float(p.brightness[i])
  m = v.mean(axis=-1, keepdims=True)
  v = (v - m) * float(p.saturation[i]) + m
  v = (v - v.mean()) * float(p.contrast[i]) + v.mean()
  v = _shift_reference(v, *map(int, p.shift[i]))
  cy, cx = map(int, p.cutout_centre[i])
  q = side // 4
  v[max(cy - q, 0):max(cy + q, 0), max(cx - q, 0):max(cx + q, 0)] = 0.0
  return v


@pytest.mark.slow
def test_the_steps_penalty_interpolates_augmented_reals_and_fakes():
  """The step itself, with a critic D(x) = ½Σ a·x² (input gradient a·x): its penalty's
  norms are ‖a·x̂_i‖, x̂_i = ε_i·aug(real_i) + (1 − ε_i)·aug(fake_i), each image
  augmented here by the closed forms, with parameters of its own (reals' and fakes' apart)."""
  config, gan = _image_setup(augment="color,translation,cutout")
  side = 16
  a = jax.random.uniform(jax.random.PRNGKey(9), (side, side, 3), minval=0.5, maxval=2.0)

  @dataclasses.dataclass(frozen=True)
  class QuadraticCritic(type(gan)):
    def criticize(self, d_params, x):
      return 0.5 * jnp.sum(a * jnp.square(x), axis=(1, 2, 3))

  quadratic = QuadraticCritic(gan.generator, gan.critic, gan.z_dim, gan.data_shape)
  state = gan_state.create_train_state(config, gan)
  real_u8 = np.asarray(jax.random.randint(jax.random.PRNGKey(2), (1, 4, side, side, 3), 0, 256),
                       np.uint8)
  _, metrics = iteration.make_train_step(config, quadratic)(parallel.replicate(state),
                                                            real_u8[None])

  indices = jnp.arange(4)
  keys = iteration.sample_keys(state.rng, state.step, (iteration.CRITIC_STREAM, 0), indices)
  z = iteration.per_sample(lambda k: jax.random.normal(k, (gan.z_dim,)), keys, iteration.Z_SALT)
  eps = np.asarray(iteration.per_sample(jax.random.uniform, keys, iteration.EPS_SALT))
  fake = gan_state.build_gan(config).generate(state.g_params, z)
  real = real_u8[0].astype(np.float64) * (2.0 / 255.0) - 1.0
  draw = lambda salt: jax.vmap(lambda k: augment.draw(k, (side, side, 3)))(
      iteration.salted(keys, salt))
  real_p, fake_p = draw(iteration.AUGMENT_REAL_SALT), draw(iteration.AUGMENT_FAKE_SALT)
  norms = [np.linalg.norm(np.asarray(a, np.float64) * (
      eps[i] * _augment_reference(real[i], real_p, i, side)
      + (1 - eps[i]) * _augment_reference(np.asarray(fake[i]), fake_p, i, side)))
           for i in range(4)]
  np.testing.assert_allclose(np.asarray(metrics["interp_grad_norm_mean"]).ravel()[0],
                             np.mean(norms), rtol=1e-4)
  np.testing.assert_allclose(np.asarray(metrics["interp_grad_norm_max"]).ravel()[0],
                             np.max(norms), rtol=1e-4)


def _image_setup(**overrides):
  config = load_config(str(CONFIGS / "celeba64.py:cpu_round1,smoke"),
                       {"data.image_size": 16, "batch_size": 4, **overrides})
  gan = gan_state.build_gan(config, parallel.AXIS_NAME)
  return config, gan


@pytest.mark.slow
def test_step_augments_reals_fakes_and_the_generators_fakes_as_documented():
  """The step against a plain re-derivation: critic on augmented reals and fakes, the
  penalty between them, and the generator's loss backpropagated through augmentation."""
  config, gan = _image_setup(augment="color,translation,cutout")
  policy = augment.parse_policy(config.augment)
  state = gan_state.create_train_state(config, gan)
  plain_gan = gan
  gan = gan_state.build_gan(config)  # the reference runs outside pmap
  real_u8 = np.asarray(jax.random.randint(jax.random.PRNGKey(2), (1, 4, 16, 16, 3), 0, 256),
                       np.uint8)
  g_opt, d_opt = gan_state.make_optimizers(config)
  indices = jnp.arange(4)
  normal = lambda k: jax.random.normal(k, (gan.z_dim,))

  def reference(state):
    keys = iteration.sample_keys(state.rng, state.step, (iteration.CRITIC_STREAM, 0), indices)
    z = iteration.per_sample(normal, keys, iteration.Z_SALT)
    eps = iteration.per_sample(jax.random.uniform, keys, iteration.EPS_SALT)
    real = jnp.asarray(real_u8[0], jnp.float32) / 127.5 - 1.0
    real = augment.augment(real, iteration.salted(keys, iteration.AUGMENT_REAL_SALT), policy)
    fake = augment.augment(gan.generate(state.g_params, z),
                           iteration.salted(keys, iteration.AUGMENT_FAKE_SALT), policy)
    grads = jax.grad(lambda p: losses.wgan_gp_critic_loss(
        functools.partial(gan.criticize, p), real, fake, eps, config.loss.gp_weight)[0])(
            state.d_params)
    updates, _ = d_opt.update(grads, state.d_opt_state, state.d_params)
    d_params = optax.apply_updates(state.d_params, updates)
    keys = iteration.sample_keys(state.rng, state.step, (iteration.GENERATOR_STREAM,), indices)
    z = iteration.per_sample(normal, keys, iteration.Z_SALT)
    aug_keys = iteration.salted(keys, iteration.AUGMENT_FAKE_SALT)
    g_grads = jax.grad(lambda g: -jnp.mean(gan.criticize(
        d_params, augment.augment(gan.generate(g, z), aug_keys, policy))))(state.g_params)
    updates, _ = g_opt.update(g_grads, state.g_opt_state, state.g_params)
    return optax.apply_updates(state.g_params, updates), d_params, grads, g_grads

  expected_g, expected_d, d_grads, g_grads = jax.jit(reference)(state)
  gan = plain_gan
  step = iteration.make_train_step(config, gan)
  new_state, _ = step(parallel.replicate(state), real_u8[None])
  new_state = parallel.unreplicate(new_state)
  close = functools.partial(np.testing.assert_allclose, rtol=2e-4, atol=2e-6)
  jax.tree.map(close, new_state.d_params, expected_d)
  jax.tree.map(close, new_state.g_params, expected_g)
  # Adam's first step moves each parameter by its rate times the gradient's sign, so the
  # parameters pass under any positive rescaling of a loss; its first moment (β1 = 0: the
  # gradient itself) does not.
  assert config.optim.critic.b1 == config.optim.generator.b1 == 0.0
  adam_mu = lambda opt_state: next(s for s in opt_state if hasattr(s, "nu")).mu
  jax.tree.map(close, adam_mu(new_state.d_opt_state), d_grads)
  jax.tree.map(close, adam_mu(new_state.g_opt_state), g_grads)
  # And augmentation changes the step: without it the result differs.
  plain_config, _ = _image_setup(augment="")
  plain = iteration.make_train_step(plain_config, gan)(parallel.replicate(state), real_u8[None])[0]
  assert not np.allclose(jax.tree.leaves(parallel.unreplicate(plain).g_params)[0],
                         jax.tree.leaves(new_state.g_params)[0])


def _fraction_reaches_the_state(config, gan) -> bool:
  """Whether the step's `time_fraction` input feeds any output (top-level data flow)."""
  state = jax.tree.map(lambda x: x[None], gan_state.create_train_state(config, gan))
  real = jnp.zeros((1, 1, 4, 16, 16, 3), jnp.uint8)
  step = functools.partial(iteration.train_step, gan=gan, config=config)
  closed = jax.make_jaxpr(lambda s, r, f: jax.vmap(
      lambda s, r: step(s, r, time_fraction=f), axis_name=parallel.AXIS_NAME)(s, r))(
          state, real, 0.5)
  jaxpr = closed.jaxpr
  live = {jaxpr.invars[-1]}
  for eqn in jaxpr.eqns:
    if any(v in live for v in eqn.invars if not isinstance(v, jax.extend.core.Literal)):
      live.update(eqn.outvars)
  return any(v in live for v in jaxpr.outvars if not isinstance(v, jax.extend.core.Literal))


def test_with_every_lever_off_the_step_never_augments_nor_reads_the_budget(monkeypatch):
  """Levers off, the step is round 1's program: augmentation is never applied and the
  budget fraction feeds nothing (experiments/references/param_hashes.py compares the final states
  of whole runs before and after a change, bit for bit)."""
  config, gan = _image_setup()

  def refuse(*args, **kwargs):
    raise AssertionError("augmentation applied with config.augment empty")

  monkeypatch.setattr(augment, "apply", refuse)
  assert not _fraction_reaches_the_state(config, gan)
  # The check can fail: a budget schedule or a late EMA does read it.
  for overrides in ({"optim.generator.schedule": "budget-cosine"}, {"ema_start": 0.5}):
    assert _fraction_reaches_the_state(_image_setup(**overrides)[0], gan)
