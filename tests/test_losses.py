"""The gradient penalty is per sample, over all of H, W, C, with one ε per sample."""

import jax
import jax.numpy as jnp
import numpy as np

from wgan_gp import losses


def _linear_critic(w, b=0.3):
  return lambda x: jnp.sum(x * w, axis=tuple(range(1, x.ndim))) + b


def test_penalty_of_linear_critic_is_closed_form():
  key_w, key_x = jax.random.split(jax.random.PRNGKey(0))
  w = jax.random.normal(key_w, (8, 8, 3))
  real, fake = jax.random.normal(key_x, (2, 5, 8, 8, 3))
  eps = jnp.linspace(0.0, 1.0, 5)
  penalty, norms = losses.gradient_penalty(_linear_critic(w), real, fake, eps)
  w_norm = float(jnp.sqrt(jnp.sum(w ** 2)))  # over H, W and C together
  np.testing.assert_allclose(norms, np.full(5, w_norm), rtol=1e-5)
  np.testing.assert_allclose(penalty, (w_norm - 1.0) ** 2, rtol=1e-5)
  # The buggy variants differ: the norm over channels only, or over the whole batch.
  channel_only = float(jnp.mean((jnp.sqrt(jnp.sum(w ** 2, axis=-1)) - 1.0) ** 2))
  whole_batch = (w_norm * np.sqrt(5) - 1.0) ** 2
  assert abs(float(penalty) - channel_only) > 1.0
  assert abs(float(penalty) - whole_batch) > 1.0


def _small_conv_critic(params, x):
  """A nonlinear critic with per-sample LayerNorm and no cross-sample term."""
  y = jax.lax.conv_general_dilated(x, params["k"], (2, 2), "SAME",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  y = (y - y.mean(axis=(1, 2, 3), keepdims=True)) / (y.std(axis=(1, 2, 3), keepdims=True) + 1e-5)
  y = jax.nn.leaky_relu(y, 0.2)
  return jnp.sum(y.reshape(y.shape[0], -1) @ params["w"], axis=-1)


def test_per_sample_norms_equal_gradient_of_batch_sum():
  key = jax.random.PRNGKey(1)
  k1, k2, k3 = jax.random.split(key, 3)
  params = {"k": jax.random.normal(k1, (3, 3, 3, 4)), "w": jax.random.normal(k2, (4 * 4 * 4, 1))}
  x = jax.random.normal(k3, (6, 8, 8, 3))
  critic = lambda batch: _small_conv_critic(params, batch)
  norms = losses.per_sample_gradient_norms(critic, x)
  # Without cross-sample terms, d(sum_i D(x_i))/dx_j = dD(x_j)/dx_j.
  batch_grads = jax.grad(lambda batch: jnp.sum(critic(batch)))(x)
  expected = jnp.sqrt(jnp.sum(batch_grads ** 2, axis=(1, 2, 3)))
  np.testing.assert_allclose(norms, expected, rtol=1e-5)
  assert np.ptp(np.asarray(norms)) > 0  # genuinely different per sample


def test_interpolation_uses_one_epsilon_per_sample():
  real = jnp.ones((3, 4, 4, 3))
  fake = -jnp.ones((3, 4, 4, 3))
  eps = jnp.array([0.0, 0.25, 1.0])
  x_hat = losses.interpolate(real, fake, eps)
  for i, e in enumerate([0.0, 0.25, 1.0]):
    np.testing.assert_allclose(x_hat[i], np.full((4, 4, 3), 2 * e - 1), atol=1e-7)


def test_zero_gradient_gives_finite_penalty_and_gradient():
  def dead_critic(params, x):  # ReLU of a very negative input: zero input gradient
    return jax.nn.relu(jnp.sum(x, axis=(1, 2, 3)) * params - 1e3)

  real, fake = jnp.ones((2, 2, 4, 4, 3))
  eps = jnp.array([0.3, 0.7])
  def penalty_of(params):
    return losses.gradient_penalty(lambda x: dead_critic(params, x), real, fake, eps)[0]
  penalty, grad = jax.value_and_grad(penalty_of)(jnp.float32(0.5))
  assert np.isfinite(penalty) and np.isfinite(grad)
  np.testing.assert_allclose(penalty, 1.0, atol=1e-5)  # (0 - 1)²


def test_critic_loss_combines_terms():
  w = jnp.full((2,), 0.5)
  critic = _linear_critic(w, b=0.0)
  real = jnp.array([[1.0, 1.0], [3.0, 1.0]])
  fake = jnp.array([[0.0, 0.0], [-2.0, 0.0]])
  eps = jnp.array([0.5, 0.5])
  loss, metrics = losses.wgan_gp_critic_loss(critic, real, fake, eps, gp_weight=10.0)
  wasserstein = np.mean([1.0, 2.0]) - np.mean([0.0, -1.0])
  penalty = (np.sqrt(0.5) - 1.0) ** 2
  np.testing.assert_allclose(metrics["wasserstein"], wasserstein, rtol=1e-6)
  np.testing.assert_allclose(metrics["gradient_penalty"], penalty, rtol=1e-5)
  np.testing.assert_allclose(loss, -wasserstein + 10.0 * penalty, rtol=1e-5)
  np.testing.assert_allclose(metrics["interp_grad_norm_max"], np.sqrt(0.5), rtol=1e-5)
