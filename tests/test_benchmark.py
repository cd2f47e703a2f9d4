"""The benchmark's FLOP count, which its GFLOP/s and % of peak columns rest on."""

import sys
from unittest import mock

import jax
import jax.numpy as jnp
import pytest

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "experiments"))
import benchmark  # noqa: E402


def _matmul_sum(x, y):
  return (x @ y).sum()


SHAPES = (jax.ShapeDtypeStruct((64, 128), jnp.float32),
          jax.ShapeDtypeStruct((128, 32), jnp.float32))
MATMUL_FLOPS = 2 * 64 * 128 * 32


def test_cost_flops_counts_a_matmul():
  assert benchmark._cost_flops(_matmul_sum, *SHAPES) == pytest.approx(MATMUL_FLOPS, rel=0.01)


def test_cost_flops_falls_back_to_a_cpu_compilation():
  # jax 0.11 with CUDA analyses no CPU lowering (cost_analysis() is None); the count must
  # then come from a CPU compilation, not from the GPU's, which leaves out library convs.
  with mock.patch.object(jax.stages.Lowered, "cost_analysis", lambda self: None):
    with mock.patch.object(benchmark, "_cpu_compiled",
                           wraps=benchmark._cpu_compiled) as compiled:
      flops = benchmark._cost_flops(_matmul_sum, *SHAPES)
  compiled.assert_called_once()
  assert flops == pytest.approx(MATMUL_FLOPS, rel=0.01)


def test_iteration_gflop_counts_the_penalty_double_backward():
  # Tiny DCGAN: an iteration (5 critic updates with the penalty + 1 generator update) costs
  # several critic forwards per update, so it must dwarf one generator-plus-critic forward.
  gflop = benchmark.iteration_gflop("dcgan", batch=2, n_critic=5, width=8)
  config = benchmark.make_config("dcgan", 2, 5, 8)
  gan = benchmark.train.build_gan(config)
  g_params, d_params = jax.eval_shape(lambda: gan.init(0))
  z = jax.ShapeDtypeStruct((2, config.model.z_dim), jnp.float32)
  forward_gflop = benchmark._cost_flops(
      lambda g, d, z: gan.criticize(d, gan.generate(g, z)).sum(), g_params, d_params, z) / 1e9
  assert 20 * forward_gflop < gflop < 50 * forward_gflop  # 33x measured
