"""Every fast convolution formulation equals the plain lax one (`impl='xla'`).

Checked for the forward pass, the input gradient, the weight gradient, and the
penalty's double backward: the gradient w.r.t. the kernel of the squared per-sample
input gradients, taken as the penalty takes it (grad under vmap).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import CONFIGS, gan_losses_and_grads, gan_losses_and_grads_fn
from wgan_gp import conv

# The fast impl picks a formulation per layer by channel count; each is checked alone
# (the threshold moved out of the way) and mixed in one model (at width 4, a threshold
# of 8 folds the layers with 3 or 4 channels and splits the wider ones).
FORMULATIONS = {"split": 0, "folded": 10**9, "mixed": 8}


@pytest.fixture(params=["split", "folded"])
def impl(request, monkeypatch):
  monkeypatch.setattr(conv, "_THIN_CHANNELS", FORMULATIONS[request.param])
  return "fast"


@pytest.fixture(params=sorted(FORMULATIONS))
def model_impl(request, monkeypatch):
  monkeypatch.setattr(conv, "_THIN_CHANNELS", FORMULATIONS[request.param])
  return "fast"

# (input size, channels in, channels out, kernel, stride): the models' 5×5 stride 2,
# 3×3 and 1×1 stride 1, plus odd sizes and kernels that do not divide by the stride.
CONV_CASES = [(8, 3, 4, 5, 2), (9, 2, 3, 5, 2), (6, 2, 3, 4, 2), (7, 2, 3, 5, 3),
              (6, 3, 2, 1, 2), (6, 3, 4, 3, 1), (5, 2, 3, 1, 1), (6, 2, 3, 5, 1)]
TRANSPOSE_CASES = [(4, 3, 4, 5, 2), (3, 2, 3, 5, 2), (4, 2, 3, 4, 2), (3, 2, 3, 5, 3),
                   (4, 2, 3, 3, 1)]


def _inputs(size, c_in, c_out, k):
  x_key, k_key = jax.random.split(jax.random.PRNGKey(size * 100 + k))
  return (jax.random.normal(x_key, (3, size, size + 1, c_in)),
          jax.random.normal(k_key, (k, k, c_in, c_out)))


def _assert_close(actual, expected):
  scale = float(jnp.max(jnp.abs(expected)))
  np.testing.assert_allclose(actual, expected, rtol=0, atol=2e-5 * max(scale, 1.0))


def _check_formulation(op, x, kernel):
  """Forward, both first derivatives and the penalty-style double backward."""
  fast, reference = op("fast"), op("xla")
  _assert_close(fast(x, kernel), reference(x, kernel))

  def first(conv):
    return jax.grad(lambda x, k: jnp.sum(jnp.sin(conv(x, k))), argnums=(0, 1))(x, kernel)
  for got, want in zip(first(fast), first(reference)):
    _assert_close(got, want)

  def penalty(conv, k):
    per_sample = jax.vmap(jax.grad(lambda xi: jnp.sum(jnp.sin(conv(xi[None], k)))))(x)
    return jnp.sum(jnp.square(per_sample))
  _assert_close(jax.grad(functools.partial(penalty, fast))(kernel),
                jax.grad(functools.partial(penalty, reference))(kernel))


@pytest.mark.parametrize("size,c_in,c_out,k,stride", CONV_CASES)
def test_conv2d_matches_xla(impl, size, c_in, c_out, k, stride):
  x, kernel = _inputs(size, c_in, c_out, k)
  op = lambda i: jax.jit(functools.partial(conv.conv2d, stride=stride,
                                           impl=impl if i == "fast" else i))
  _check_formulation(op, x, kernel)


@pytest.mark.parametrize("size,c_in,c_out,k,stride", TRANSPOSE_CASES)
def test_conv2d_transpose_matches_xla(impl, size, c_in, c_out, k, stride):
  x, kernel = _inputs(size, c_in, c_out, k)
  op = lambda i: jax.jit(functools.partial(conv.conv2d_transpose, stride=stride,
                                           impl=impl if i == "fast" else i))
  _check_formulation(op, x, kernel)


@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
@pytest.mark.slow
def test_models_penalty_gradient_matches_xla(model_impl, arch):
  """Whole critics and generators: the critic-loss gradient (penalty included) and the
  generator-loss gradient agree between formulations."""
  results = {impl: gan_losses_and_grads(16, 4, arch=arch, width=4, z_dim=8, conv_impl=impl)
             for impl in ("xla", model_impl)}
  for got, want in zip(jax.tree.leaves(results[model_impl]), jax.tree.leaves(results["xla"])):
    _assert_close(got, want)


@pytest.mark.parametrize("fold", ["all", "none"])
@pytest.mark.slow
def test_conv_fold_setting_keeps_the_values_and_changes_the_formulation(fold):
  """model.conv_fold reaches every strided layer of the DCGAN pair: the same values as
  the plain convolutions, up to the penalty's double backward, from other programs.
  Width 16 has wide layers (16 -> 32 channels) besides thin ones, so 'all', which the
  shipped recipes run, folds layers that 'thin' splits (at width 8 every layer is thin)."""
  overrides = dict(arch="dcgan", width=16, z_dim=8)
  want = gan_losses_and_grads(16, 4, conv_impl="xla", **overrides)
  got = gan_losses_and_grads(16, 4, conv_impl="fast", conv_fold=fold, **overrides)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    _assert_close(g, w)
  convolutions = {}
  for setting in (fold, "thin"):
    compute, params = gan_losses_and_grads_fn(16, 2, conv_impl="fast", conv_fold=setting,
                                              **overrides)
    convolutions[setting] = compute.lower(*params).compile().as_text().count(" convolution(")
  # Splitting runs a convolution per phase where folding runs one.
  assert (convolutions[fold] > convolutions["thin"]) == (fold == "none")
  assert (convolutions[fold] < convolutions["thin"]) == (fold == "all")


def test_unknown_conv_fold_is_rejected():
  from wgan_gp import models
  from wgan_gp.config import base_config
  config = base_config().model
  config.conv_fold = "origami"
  with pytest.raises(ValueError, match="model.conv_fold='origami'"):
    models.build(config, (16, 16, 3))


def _slow_convolutions_in(hlo: str):
  """The convolutions of compiled HLO that XLA:CPU runs on slow paths: base-dilated,
  window-reversed or grouped ones, and any not in the NHWC/HWIO layout that its Eigen
  kernels take (and the count of all)."""
  convolutions = [line for line in hlo.splitlines() if " convolution(" in line]
  slow = [line for line in convolutions
          if any(mark in line for mark in ("lhs_dilate", "rhs_reversal", "group_count"))
          or "dim_labels=b01f_01io->b01f" not in line]
  return slow, len(convolutions)


def _slow_convolutions(arch, impl):
  """Slow convolutions of the compiled critic- and generator-loss gradients."""
  compute, params = gan_losses_and_grads_fn(16, 2, arch=arch, width=8, z_dim=8,
                                            conv_impl=impl)
  return _slow_convolutions_in(compute.lower(*params).compile().as_text())


@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
@pytest.mark.slow
def test_fast_impl_compiles_to_no_slow_convolution(arch):
  slow, total = _slow_convolutions(arch, "fast")
  assert total > 10
  assert slow == []


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="checks XLA:CPU's lowering")
@pytest.mark.parametrize("n_critic", [1, 2, 5])
@pytest.mark.slow
def test_train_step_compiles_to_no_slow_convolution(n_critic):
  """The whole pmapped iteration, for every n_critic: a critic loop left as a loop (a
  length-1 scan is one) put weight gradients in transposed layouts, 10x slower."""
  from wgan_gp import gan_state, iteration, parallel
  from wgan_gp.config import base_config
  config = base_config()
  config.model.update(arch="dcgan", width=8, z_dim=8)
  config.data.image_size = 16
  config.batch_size, config.n_critic = 2, n_critic
  gan = gan_state.build_gan(config, parallel.AXIS_NAME)
  state = parallel.replicate(gan_state.create_train_state(config, gan))
  batch = parallel.shard_batch(np.zeros((n_critic, 2, 16, 16, 3), np.uint8))
  compiled = iteration.make_train_step(config, gan).lower(state, batch).compile()
  slow, total = _slow_convolutions_in(compiled.as_text())
  assert total > 10 * n_critic
  assert slow == []


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="checks XLA:CPU's lowering")
@pytest.mark.parametrize("width", [16, 24, 48])
@pytest.mark.slow
def test_recipe_step_at_narrow_widths_compiles_to_no_slow_convolution(width):
  """The CPU recipe's step (64×64, LayerNorm critic, BatchNorm generator, EMA) at the
  narrow widths that CPU training uses: 16-48 channels put layers on both sides of the
  fold-or-split threshold (conv._THIN_CHANNELS), and each must stay off the slow paths."""
  import sys
  sys.path.insert(0, str(CONFIGS))
  import celeba64
  from wgan_gp import gan_state, iteration, parallel
  config = celeba64.get_config("cpu_round1")  # conv_fold "thin": layers on both sides
  config.model.width, config.batch_size = width, 2
  gan = gan_state.build_gan(config, parallel.AXIS_NAME)
  state = parallel.replicate(gan_state.create_train_state(config, gan))
  batch = parallel.shard_batch(np.zeros((1, 2, 64, 64, 3), np.uint8))
  compiled = iteration.make_train_step(config, gan).lower(state, batch).compile()
  slow, total = _slow_convolutions_in(compiled.as_text())
  assert total > 40
  assert slow == []


def test_plain_strided_convolutions_compile_to_slow_ones():
  """The check above can fail: JAX's own derivatives of strided convolutions are
  base-dilated."""
  slow, _ = _slow_convolutions("dcgan", "xla")
  assert any("lhs_dilate" in line for line in slow)


def test_unknown_impl_is_rejected():
  x, kernel = _inputs(4, 1, 1, 3)
  with pytest.raises(ValueError, match="unknown conv impl"):
    conv.conv2d(x, kernel, 1, impl="nope")
  with pytest.raises(ValueError, match="unknown conv impl"):
    conv.conv2d_transpose(x, kernel, 2, impl="nope")


def test_auto_picks_fast_on_cpu_only():
  expected = "fast" if jax.default_backend() == "cpu" else "xla"
  assert conv.resolve_impl("auto") == expected
