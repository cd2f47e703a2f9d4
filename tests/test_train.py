import functools
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import monitoring

from conftest import CONFIGS, REPO_ROOT, subprocess_env
from wgan_gp import data, gan_state, iteration, losses, parallel
from wgan_gp.checkpoint import Checkpointer, abstract_like
from wgan_gp.config import load_config

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_compilations = []
monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kw: _compilations.append(event) if event == _COMPILE_EVENT else None)


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


def test_several_devices_match_one_device_on_the_same_global_batches(tmp_path):
  """pmap over 4 CPU devices (and BatchNorm in the generator) = 1 device."""
  results = {}
  for devices in (1, 4):
    out = tmp_path / f"params_{devices}.npz"
    subprocess.run([sys.executable, str(REPO_ROOT / "tests" / "steps_on_devices.py"), str(out)],
                   check=True, env=subprocess_env(devices), cwd=REPO_ROOT / "tests",
                   timeout=600)
    results[devices] = dict(np.load(out))
  assert int(results[1].pop("devices")) == 1 and int(results[4].pop("devices")) == 4
  assert results[1].keys() == results[4].keys()
  assert any(k.startswith("images/") for k in results[1])
  for key in results[1]:
    np.testing.assert_allclose(results[4][key], results[1][key], rtol=1e-4, atol=1e-5,
                               err_msg=key)
