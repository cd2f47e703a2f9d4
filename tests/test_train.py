import functools
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax, monitoring

from conftest import CONFIGS, REPO_ROOT, subprocess_env, wait_for_success
from wgan_gp import data, gan_state, iteration, losses, parallel
from wgan_gp.checkpoint import Checkpointer, abstract_like
from wgan_gp.config import load_config

# A compilation, or a program found in the persistent cache that the suite turns on
# (conftest.py): either means the step was traced and lowered again.
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"
_compilations = []
monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kw: _compilations.append(event) if event == _COMPILE_EVENT else None)
monitoring.register_event_listener(
    lambda event, **kw: _compilations.append(event) if event == _CACHE_HIT_EVENT else None)


def _toy_setup(**overrides):
  config = load_config(str(CONFIGS / "toy2d.py:smoke"), overrides)
  gan = gan_state.build_gan(config, parallel.AXIS_NAME)
  source = data.create_source(config.data, config.seed)
  return config, gan, source


def _reference_iteration(state, config, gan, source):
  """One WGAN-GP iteration written as a plain loop, no pmap and no scan."""
  g_optimizer, d_optimizer = gan_state.make_optimizers(config)
  indices = jnp.arange(config.batch_size)
  normal = lambda k: jax.random.normal(k, (gan.z_dim,))
  d_params, d_opt_state = state.d_params, state.d_opt_state
  for k in range(config.n_critic):
    keys = iteration.sample_keys(state.rng, state.step, (iteration.CRITIC_STREAM, k), indices)
    z = iteration.per_sample(normal, keys, iteration.Z_SALT)
    eps = iteration.per_sample(jax.random.uniform, keys, iteration.EPS_SALT)
    real = iteration.per_sample(source.sample, keys, iteration.REAL_SALT)
    fake = gan.generate(state.g_params, z)
    grads = jax.grad(lambda p: losses.wgan_gp_critic_loss(
        functools.partial(gan.criticize, p), real, fake, eps, config.loss.gp_weight)[0])(d_params)
    updates, d_opt_state = d_optimizer.update(grads, d_opt_state, d_params)
    d_params = optax.apply_updates(d_params, updates)
  keys = iteration.sample_keys(state.rng, state.step, (iteration.GENERATOR_STREAM,), indices)
  z = iteration.per_sample(normal, keys, iteration.Z_SALT)
  g_grads = jax.grad(lambda g: -jnp.mean(gan.criticize(d_params, gan.generate(g, z))))(
      state.g_params)
  updates, _ = g_optimizer.update(g_grads, state.g_opt_state, state.g_params)
  return optax.apply_updates(state.g_params, updates), d_params


@pytest.mark.slow
def test_step_equals_plain_loop_of_critic_then_generator_updates():
  config, gan, source = _toy_setup()
  host_state = gan_state.create_train_state(config, gan)
  expected_g, expected_d = jax.jit(
      lambda s: _reference_iteration(s, config, gan, source))(host_state)
  step = iteration.make_train_step(config, gan, source)
  new_state, metrics = step(parallel.replicate(host_state), None)
  new_state = parallel.unreplicate(new_state)
  assert int(new_state.step) == 1
  for got, want in zip(jax.tree.leaves((new_state.g_params, new_state.d_params)),
                       jax.tree.leaves((expected_g, expected_d))):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  values = iteration.host_metrics(metrics)
  assert set(values) >= {"critic_loss", "wasserstein", "gradient_penalty", "interp_grad_norm_mean",
                         "interp_grad_norm_max", "generator_loss", "critic_grad_norm",
                         "generator_grad_norm"}
  assert all(np.isfinite(v) for v in values.values())


@pytest.mark.slow
def test_step_compiles_once_across_steps_and_a_checkpoint_restore(tmp_path):
  config, gan, source = _toy_setup()
  host_state = gan_state.create_train_state(config, gan)
  step = iteration.make_train_step(config, gan, source)
  state, metrics = step(parallel.replicate(host_state), None)
  jax.block_until_ready(metrics)
  compiled_before = len(_compilations)
  for _ in range(10):
    state, metrics = step(state, None)
  checkpointer = Checkpointer(str(tmp_path / "ckpt"), keep=2)
  saved = parallel.unreplicate(state)
  checkpointer.save(11, saved, data_position=0)
  checkpointer.wait()
  restored, _ = checkpointer.restore(abstract_like(host_state))
  checkpointer.close()
  jax.tree.map(np.testing.assert_array_equal, restored, saved)
  state, metrics = step(parallel.replicate(restored), None)
  for _ in range(3):
    state, metrics = step(state, None)
  jax.block_until_ready(metrics)
  assert len(_compilations) == compiled_before, "the step was compiled again"
  assert int(parallel.unreplicate(state).step) == 15


@pytest.mark.slow
def test_same_seed_same_result_different_seed_different_result():
  config, gan, source = _toy_setup()
  step = iteration.make_train_step(config, gan, source)

  def params_after_two_steps(seed):
    state = parallel.replicate(gan_state.create_train_state(config, gan, seed=seed))
    for _ in range(2):
      state, _ = step(state, None)
    return jax.tree.leaves(parallel.unreplicate(state).g_params)

  a, b, c = params_after_two_steps(0), params_after_two_steps(0), params_after_two_steps(1)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert any(not np.allclose(x, y) for x, y in zip(a, c))


@pytest.mark.slow
def test_several_devices_match_one_device_on_the_same_global_batches(tmp_path):
  """pmap over 4 CPU devices (and BatchNorm in the generator) = 1 device."""
  # Both at once: each child compiles on one core for most of its time.
  children = {devices: subprocess.Popen(
      [sys.executable, str(REPO_ROOT / "tests" / "steps_on_devices.py"),
       str(tmp_path / f"params_{devices}.npz")],
      env=subprocess_env(devices), cwd=REPO_ROOT / "tests", stderr=subprocess.PIPE, text=True)
      for devices in (1, 4)}
  results = {}
  for devices, child in children.items():
    wait_for_success(child)
    results[devices] = dict(np.load(tmp_path / f"params_{devices}.npz"))
  assert int(results[1].pop("devices")) == 1 and int(results[4].pop("devices")) == 4
  assert results[1].keys() == results[4].keys()
  assert any(k.startswith("images/") for k in results[1])
  for key in results[1]:
    np.testing.assert_allclose(results[4][key], results[1][key], rtol=1e-4, atol=1e-5,
                               err_msg=key)


# --- Independent references: Adam, the EMA, the image input, and the critic loop on
# accelerators, against the real step rather than the helpers it is built from.


def _numpy_adam(params, grads, moments, t, lr, b1=0.0, b2=0.9, eps=1e-8):
  """One Adam update (Kingma & Ba, Algorithm 1) in float64 NumPy, leaf by leaf."""
  mu = [b1 * m + (1 - b1) * g for m, g in zip(moments[0], grads)]
  nu = [b2 * v + (1 - b2) * g * g for v, g in zip(moments[1], grads)]
  new = [p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
         for p, m, v in zip(params, mu, nu)]
  return new, (mu, nu)


def _leaves64(tree):
  return [np.asarray(x, np.float64) for x in jax.tree.leaves(tree)]


def _as_tree(like, leaves):
  return jax.tree.unflatten(jax.tree.structure(like), [jnp.asarray(x, jnp.float32)
                                                       for x in leaves])


def _adam_state(opt_state):
  """optax's Adam state (count, mu, nu) inside an optimiser's chained state."""
  return next(s for s in opt_state if hasattr(s, "nu"))


class _NumpyReference:
  """The step in NumPy: gradients from `jax.grad` of the loss functions, everything the
  step does with them (Adam with b1=0, b2=0.9; the debiased EMA) written out here."""

  def __init__(self, config, gan, state, sample_real=None):
    self.config, self.gan, self.rng = config, gan, state.rng
    self.like_g, self.like_d = state.g_params, state.d_params
    self.g, self.d, self.ema = (_leaves64(state.g_params), _leaves64(state.d_params),
                                _leaves64(state.ema_g_params))
    zeros = lambda leaves: ([np.zeros_like(x) for x in leaves],) * 2
    self.g_moments, self.d_moments = zeros(self.g), zeros(self.d)
    self.g_count = self.d_count = 0
    self.critic_grads = jax.jit(jax.grad(lambda d, g, real, z, eps: losses.wgan_gp_critic_loss(
        functools.partial(gan.criticize, d), real, gan.generate(g, z), eps,
        config.loss.gp_weight)[0]))
    self.generator_grads = jax.jit(jax.grad(
        lambda g, d, z: -jnp.mean(gan.criticize(d, gan.generate(g, z)))))

    @functools.partial(jax.jit, static_argnums=1)
    def inputs(step, stream):
      """The step's per-sample keys, z, ε and (toy data) reals of one stream."""
      keys = iteration.sample_keys(self.rng, step, stream, jnp.arange(config.batch_size))
      z = iteration.per_sample(lambda k: jax.random.normal(k, (gan.z_dim,)), keys,
                               iteration.Z_SALT)
      eps = iteration.per_sample(jax.random.uniform, keys, iteration.EPS_SALT)
      real = (iteration.per_sample(sample_real, keys, iteration.REAL_SALT)
              if sample_real else None)
      return keys, z, eps, real

    self.inputs = inputs

  def step(self, step, real_for=None):
    """One iteration; real_for(k, keys) gives critic update k's reals in [-1, 1] (else
    the toy source samples them)."""
    lr_d, lr_g = (self.config.optim.critic.learning_rate,
                  self.config.optim.generator.learning_rate)
    g = _as_tree(self.like_g, self.g)
    for k in range(self.config.n_critic):
      keys, z, eps, real = self.inputs(step, (iteration.CRITIC_STREAM, k))
      if real_for is not None:
        real = jnp.asarray(real_for(k, keys))
      grads = self.critic_grads(_as_tree(self.like_d, self.d), g, real, z, eps)
      self.d_count += 1
      self.d, self.d_moments = _numpy_adam(self.d, _leaves64(grads), self.d_moments,
                                           self.d_count, lr_d)
    _, z, _, _ = self.inputs(step, (iteration.GENERATOR_STREAM,))
    grads = self.generator_grads(g, _as_tree(self.like_d, self.d), z)
    self.g_count += 1
    self.g, self.g_moments = _numpy_adam(self.g, _leaves64(grads), self.g_moments,
                                         self.g_count, lr_g)
    decay = min(self.config.ema_decay, (1 + step) / (10 + step))
    self.ema = [decay * e + (1 - decay) * p for e, p in zip(self.ema, self.g)]

  def check(self, state, rtol=1e-4, atol=1e-6):
    """The step's state against the reference: parameters, EMA, both Adam states."""
    pairs = [("g_params", state.g_params, self.g), ("d_params", state.d_params, self.d),
             ("ema_g_params", state.ema_g_params, self.ema)]
    for name, opt_state, moments, count in (
        ("g_opt_state", state.g_opt_state, self.g_moments, self.g_count),
        ("d_opt_state", state.d_opt_state, self.d_moments, self.d_count)):
      adam = _adam_state(opt_state)
      assert int(adam.count) == count, name
      pairs += [(f"{name}.mu", adam.mu, moments[0]), (f"{name}.nu", adam.nu, moments[1])]
    for name, got, want in pairs:
      got = jax.tree.leaves(got)
      assert len(got) == len(want), name
      for i, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"{name}[{i}]")


_ADAM_B0 = {f"optim.{n}.{k}": v for n in ("generator", "critic")
            for k, v in (("b1", 0.0), ("b2", 0.9), ("schedule", "constant"))}


@pytest.mark.slow
def test_two_steps_match_numpy_adam_and_the_debiased_ema():
  # ema_decay 0.15: the warm-up's (1+t)/(10+t) rules at t=0 (0.1), the decay at t=1.
  config, gan, source = _toy_setup(n_critic=2, ema_decay=0.15, **_ADAM_B0)
  host_state = gan_state.create_train_state(config, gan)
  reference = _NumpyReference(config, gan, host_state, source.sample)
  step = iteration.make_train_step(config, gan, source)
  state = parallel.replicate(host_state)
  for t in range(2):
    state, _ = step(state, None)
    reference.step(t)
  state = parallel.unreplicate(state)
  assert int(state.step) == 2
  reference.check(state)


@pytest.mark.slow
def test_image_step_scales_uint8_to_unit_range_and_flips_the_drawn_samples():
  config = load_config(str(CONFIGS / "celeba64.py:smoke"), {
      "data.image_size": 8, "data.random_flip": True, "n_critic": 1, "batch_size": 8,
      "ema_decay": 0.5, **_ADAM_B0})
  gan = gan_state.build_gan(config, parallel.AXIS_NAME)
  host_state = gan_state.create_train_state(config, gan)
  batch = np.random.default_rng(0).integers(0, 256, (1, 1, 8, 8, 8, 3), dtype=np.uint8)
  flips = {}

  def real_for(flip):
    def real(k, keys):
      images = batch[0, k].astype(np.float64) / 127.5 - 1.0  # 0 -> -1, 255 -> 1
      drawn = np.asarray(jax.vmap(lambda key: jax.random.bernoulli(
          jax.random.fold_in(key, iteration.FLIP_SALT)))(keys))
      flips[flip] = drawn
      mirrored = images[:, :, ::-1]  # NHWC: the W axis
      return np.where(drawn[:, None, None, None] & flip, mirrored, images).astype(np.float32)
    return real

  step = iteration.make_train_step(config, gan)
  state, _ = step(parallel.replicate(host_state), batch)
  state = parallel.unreplicate(state)
  reference = _NumpyReference(config, gan_state.build_gan(config), host_state)
  reference.step(0, real_for(True))
  reference.check(state)
  assert 0 < flips[True].sum() < len(flips[True])  # both flipped and kept samples
  unflipped = _NumpyReference(config, gan_state.build_gan(config), host_state)
  unflipped.step(0, real_for(False))
  assert not np.allclose(jax.tree.leaves(state.d_params)[0], unflipped.d[0], rtol=1e-4,
                         atol=1e-6), "the flips made no difference: the check proves nothing"


@pytest.mark.slow
def test_scan_critic_loop_of_accelerators_matches_the_straight_line_cpu_loop(monkeypatch):
  config, gan, source = _toy_setup(n_critic=3)
  host_state = gan_state.create_train_state(config, gan)

  def two_steps():
    step = iteration.make_train_step(config, gan, source)
    state = parallel.replicate(host_state)
    for _ in range(2):
      state, metrics = step(state, None)
    return parallel.unreplicate(state), iteration.host_metrics(metrics)

  straight, straight_metrics = two_steps()
  scans = []

  def counting_scan(f, init, xs, *args, **kwargs):
    scans.append(jax.tree.leaves(xs)[0].shape[0])
    return lax.scan(f, init, xs, *args, **kwargs)

  # As iteration.py sees it: a GPU (so the lax.scan path), and a scan that counts calls.
  monkeypatch.setattr(iteration, "jax", types.SimpleNamespace(
      **{**vars(jax), "default_backend": lambda: "gpu"}))
  monkeypatch.setattr(iteration, "lax", types.SimpleNamespace(
      **{**vars(lax), "scan": counting_scan}))
  scanned, scanned_metrics = two_steps()
  assert scans == [3], "the step did not go through lax.scan"
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-6, atol=1e-7),
               scanned, straight)
  assert scanned_metrics == pytest.approx(straight_metrics, rel=1e-5, abs=1e-7)


def test_consecutive_steps_and_updates_draw_new_noise_and_epsilon():
  """The references above share `sample_keys` and the salts with the step, so a helper
  that ignored the step or the stream would pass them: here it cannot."""
  rng, indices = jax.random.PRNGKey(0), jnp.arange(8)
  draws = {}
  for step, stream in ((0, (iteration.CRITIC_STREAM, 0)), (1, (iteration.CRITIC_STREAM, 0)),
                       (0, (iteration.CRITIC_STREAM, 1)), (0, (iteration.GENERATOR_STREAM,))):
    keys = iteration.sample_keys(rng, step, stream, indices)
    z = iteration.per_sample(lambda k: jax.random.normal(k, (4,)), keys, iteration.Z_SALT)
    eps = iteration.per_sample(jax.random.uniform, keys, iteration.EPS_SALT)
    draws[step, stream] = np.asarray(z), np.asarray(eps)
  values = list(draws.values())
  for i, (z, eps) in enumerate(values):
    assert len(np.unique(eps)) == len(indices)  # each sample its own ε
    assert len(np.unique(z[:, 0])) == len(indices)
    for other_z, other_eps in values[i + 1:]:
      assert not np.isin(eps, other_eps).any() and not np.isin(z, other_z).any()
