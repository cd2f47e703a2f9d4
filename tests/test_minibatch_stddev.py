"""The minibatch standard deviation in the critic (model.minibatch_stddev, #35 lever 3):
off, today's critic; on, a critic that reads a statistic of the batch it scores, with the
per-sample penalty taken on exactly the function the loss scores (the statistic held fixed
at the batch's value)."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from conftest import CONFIGS
from wgan_gp import gan_state, iteration, losses, models, parallel
from wgan_gp.config import base_config, load_config
from wgan_gp.validation import state_incompatibilities

SHAPE = (16, 16, 3)
# The ResNet critic's cases run in the full suite only: the quick tier checks the DCGAN one.
ARCHS = ("dcgan", pytest.param("resnet", marks=pytest.mark.slow))


def _model_config(arch, **overrides):
  config = base_config().model
  config.update(arch=arch, width=4, z_dim=8, **overrides)
  return config


def _paths_and_leaves(tree):
  return [("/".join(str(getattr(k, "key", k)) for k in path), leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _batch(n=4, seed=0):
  return jax.random.uniform(jax.random.PRNGKey(seed), (n, *SHAPE), minval=-1.0, maxval=1.0)


@pytest.mark.parametrize("arch", ARCHS)
def test_off_is_todays_critic_for_configs_with_and_without_the_field(arch):
  old = _model_config(arch)
  old = ml_collections.ConfigDict({k: v for k, v in old.items() if k != "minibatch_stddev"})
  off = _model_config(arch, minibatch_stddev=False)
  old_gan, off_gan = models.build(old, SHAPE), models.build(off, SHAPE)
  # The same modules as before the option (its fields at their defaults), hence the same
  # compiled programs and the same param tree as every committed run and checkpoint.
  assert off_gan == old_gan
  assert not off_gan.critic.minibatch_stddev and off_gan.critic.axis_name is None
  assert not off_gan.critic_reads_batch
  old_params, off_params = old_gan.init(0)[1], off_gan.init(0)[1]
  assert [p for p, _ in _paths_and_leaves(off_params)] == [p for p, _ in _paths_and_leaves(old_params)]
  jax.tree.map(np.testing.assert_array_equal, off_params, old_params)
  x = _batch()
  np.testing.assert_array_equal(off_gan.criticize(off_params, x), old_gan.criticize(old_params, x))
  # The penalty takes today's path: no statistic, no extra trunk.
  assert losses._batch_statistic_split(functools.partial(off_gan.criticize, off_params)) is None
  with pytest.raises(ValueError, match="reads no batch statistic"):
    off_gan.criticize(off_params, x, jnp.float32(1.0))

  # On, the one change to the tree: one more input channel where the statistic enters
  # the final block; every other leaf keeps its shape.
  on_params = models.build(_model_config(arch, minibatch_stddev=True), SHAPE).init(0)[1]
  changed = [p for (p, a), (_, b) in zip(_paths_and_leaves(on_params), _paths_and_leaves(off_params))
             if a.shape != b.shape]
  assert changed and all(p.startswith(("Conv_1", "ResidualBlockDown_1")) for p in changed), changed


@pytest.mark.parametrize("arch", ARCHS)
def test_on_a_score_depends_on_the_other_samples_only_through_the_statistic(arch):
  gan = models.build(_model_config(arch, minibatch_stddev=True), SHAPE)
  _, d_params = gan.init(0)
  x = _batch()
  changed = x.at[1:].set(_batch(3, seed=1))
  criticize = jax.jit(gan.criticize)
  before, after = criticize(d_params, x)[0], criticize(d_params, changed)[0]
  assert abs(float(before - after)) > 1e-4 * max(1.0, abs(float(before)))
  # Held at x's statistic, sample 0 scores as in x's batch, whatever its batch-mates.
  statistic = gan.critic_statistic(d_params, x)
  np.testing.assert_allclose(criticize(d_params, changed, statistic)[0], before, rtol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_penalty_differentiates_the_scored_function_with_the_statistic_fixed(arch):
  gan = models.build(_model_config(arch, minibatch_stddev=True), SHAPE)
  _, d_params = gan.init(0)
  real, fake = _batch(seed=2), _batch(seed=3)
  eps = jnp.array([0.1, 0.4, 0.7, 0.9])
  interpolates = losses.interpolate(real, fake, eps)
  n = interpolates.shape[0]
  loss_configs = [base_config().loss for _ in range(2)]
  loss_configs[1].name = "gan"

  @jax.jit
  def compute(d_params):
    # Independently: the Jacobian of the whole batch's scores, the interpolate batch's
    # statistic passed in as a constant. Its diagonal blocks are each sample's gradient.
    statistic = gan.critic_statistic(d_params, interpolates)
    jacobian = jax.jacrev(lambda x: gan.criticize(d_params, x, statistic))(interpolates)
    own = jnp.stack([jacobian[i, i] for i in range(n)])
    off_diagonal = jacobian * (1.0 - jnp.eye(n)).reshape(n, n, 1, 1, 1)
    want = jnp.sqrt(jnp.sum(jnp.square(own), axis=(1, 2, 3)))
    got = losses.per_sample_gradient_norms(functools.partial(gan.criticize, d_params),
                                           interpolates)
    # The entry points the step uses (losses.get_loss(...).critic_loss(gan.criticize,
    # ...)): the penalised loss, and the metrics of a loss that only reports the penalty.
    means = [losses.get_loss(config).critic_loss(gan.criticize, d_params, real, fake, eps)[1][
        "interp_grad_norm_mean"] for config in loss_configs]
    # The naive penalty: each sample a batch of one that computes its own statistic (a
    # standard deviation of 0), which differentiates another function.
    naive = jax.vmap(jax.grad(lambda s: gan.criticize(d_params, s[None])[0]))(interpolates)
    naive = jnp.sqrt(jnp.sum(jnp.square(naive), axis=(1, 2, 3)))
    return (want, got, jnp.stack(means), naive, jnp.max(jnp.abs(off_diagonal)),
            gan.critic_statistic(d_params, interpolates[:1]))

  want, got, means, naive, off_diagonal, one_sample_statistic = compute(d_params)
  assert float(off_diagonal) == 0.0  # the statistic fixed, no sample touches another
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(means, [jnp.mean(want)] * 2, rtol=1e-5)
  assert float(one_sample_statistic) == pytest.approx(models.STDDEV_EPSILON ** 0.5, rel=1e-4)
  assert float(jnp.max(jnp.abs(naive - want) / want)) > 1e-2, (naive, want)


def test_statistic_is_the_global_batch_s_across_devices():
  """Under the step's device axis, the statistic is that of the global batch, as the
  generator's BatchNorm: a batch split over 2 devices scores as on one."""
  config = _model_config("dcgan", minibatch_stddev=True)
  gan, split_gan = models.build(config, SHAPE), models.build(config, SHAPE, parallel.AXIS_NAME)
  _, d_params = gan.init(0)
  x = _batch()
  on_two = jax.vmap(lambda xs: split_gan.criticize(d_params, xs), axis_name=parallel.AXIS_NAME)(
      x.reshape(2, 2, *SHAPE))
  np.testing.assert_allclose(on_two.reshape(-1), gan.criticize(d_params, x), rtol=1e-5, atol=1e-6)
  per_device = jax.vmap(lambda xs: gan.criticize(d_params, xs))(x.reshape(2, 2, *SHAPE))
  assert not np.allclose(per_device.reshape(-1), gan.criticize(d_params, x), rtol=1e-4)


@pytest.mark.slow  # compiles a training step
def test_training_step_with_the_option_on_runs_and_gives_finite_metrics():
  config = load_config(str(CONFIGS / "celeba64.py:cpu_round1,smoke"),
                       {"data.image_size": 16, "batch_size": 4, "n_critic": 2,
                        "model.minibatch_stddev": True})
  gan = gan_state.build_gan(config, parallel.AXIS_NAME)
  state = gan_state.create_train_state(config, gan)
  real = np.random.default_rng(0).integers(
      0, 256, (1, config.n_critic, config.batch_size, *SHAPE), dtype=np.uint8)
  step = iteration.make_train_step(config, gan)
  new_state, metrics = step(parallel.replicate(state), real)
  values = iteration.host_metrics(metrics)
  assert {"critic_loss", "wasserstein", "gradient_penalty", "interp_grad_norm_mean",
          "generator_loss"} <= set(values)
  assert all(np.isfinite(v) for v in values.values()), values
  new_state = parallel.unreplicate(new_state)
  assert int(new_state.step) == 1
  assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(new_state.d_params),
                                                    jax.tree.leaves(state.d_params)))


def test_option_is_refused_for_the_toy_critic_and_is_state_defining():
  config = _model_config("mlp", minibatch_stddev=True)
  with pytest.raises(ValueError, match="minibatch_stddev applies to the image critics") as error:
    models.build(config, (2,))
  assert "\n" not in str(error.value)
  # A checkpoint from before the field (off) resumes under off, not under on.
  on = load_config(str(CONFIGS / "celeba64.py:cpu"), {"model.minibatch_stddev": True})
  saved = load_config(str(CONFIGS / "celeba64.py:cpu")).to_dict()
  del saved["model"]["minibatch_stddev"]
  assert state_incompatibilities(saved, load_config(str(CONFIGS / "celeba64.py:cpu"))) == []
  assert state_incompatibilities(saved, on) == ["model.minibatch_stddev: False -> True"]
