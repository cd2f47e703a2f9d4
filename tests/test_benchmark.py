"""The benchmark: its FLOP count, which its GFLOP/s and % of peak columns rest on, and
its per-n_critic configs."""

import json
import sys
from unittest import mock

import jax
import jax.numpy as jnp
import pytest

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "experiments" / "speed"))
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
  gan = benchmark.gan_state.build_gan(config)
  g_params, d_params = jax.eval_shape(lambda: gan.init(0))
  z = jax.ShapeDtypeStruct((2, config.model.z_dim), jnp.float32)
  forward_gflop = benchmark._cost_flops(
      lambda g, d, z: gan.criticize(d, gan.generate(g, z)).sum(), g_params, d_params, z) / 1e9
  assert 20 * forward_gflop < gflop < 50 * forward_gflop  # 33x measured


class _FakeVariant:
  """Stands in for JaxVariant (whose step takes ~30 s to compile): records the n_critic
  of the args it is built with."""
  built = []

  def __init__(self, arch, batch, args, conv_impl, compute_dtype):
    self.name = f"jax {conv_impl} {compute_dtype}"
    self.compile_s = 0.0
    _FakeVariant.built.append((arch, batch, args.width, args.n_critic))

  def run(self):
    pass

  def memory_bytes(self):
    return None


def test_benchmark_times_every_width_and_n_critic(tmp_path):
  # Lists of widths and n_critic values give one config per pair, each built,
  # FLOP-counted and summarised with its own values, and a table with both columns.
  # Tiny: DCGAN width 4 and 8, batch 2, one round, no PyTorch variants, the matmul peak
  # not measured.
  args = benchmark.parse_args([
      "--archs", "dcgan", "--batch-sizes", "2", "--n-critic", "1,2", "--width", "4,8",
      "--repeats", "1", "--jax", "xla:float32", "--torch", "", "--out", str(tmp_path / "b")])
  _FakeVariant.built = []
  with mock.patch.object(benchmark, "matmul_peak_gflops", lambda dtype: 100.0), \
       mock.patch.object(benchmark, "JaxVariant", _FakeVariant):
    benchmark.benchmark(args)
  assert _FakeVariant.built == [("dcgan", 2, 4, 1), ("dcgan", 2, 4, 2),
                                ("dcgan", 2, 8, 1), ("dcgan", 2, 8, 2)]
  results = json.loads((tmp_path / "b.json").read_text())
  configs = results["configs"]
  assert [(c["arch"], c["batch"], c["width"], c["n_critic"]) for c in configs] == [
      ("dcgan", 2, 4, 1), ("dcgan", 2, 4, 2), ("dcgan", 2, 8, 1), ("dcgan", 2, 8, 2)]
  narrow, wide = configs[0]["gflop_per_iteration"], configs[2]["gflop_per_iteration"]
  assert 2 * narrow < wide  # twice the width: ~4x the FLOPs of the inner layers
  configs = [c for c in configs if c["width"] == 8]
  for c in configs:
    v = c["variants"]["jax xla float32"]
    assert len(v["times_s"]) == 1
    assert v["images_per_s"] * v["median_s"] == pytest.approx(c["n_critic"] * 2)
  one, two = (c["gflop_per_iteration"] for c in configs)
  assert one < two < 2 * one  # one more critic update, the generator update shared
  if benchmark.torch is not None:
    one, two = (c["torch_counter_gflop"] for c in configs)
    assert one < two < 2 * one
  table = (tmp_path / "b.md").read_text()
  assert "| arch | batch | width | n_critic | variant |" in table
  for width in (4, 8):
    assert f"| dcgan | 2 | {width} | 1 | jax xla float32 |" in table
    assert f"| dcgan | 2 | {width} | 2 | jax xla float32 |" in table


@pytest.mark.slow
def test_jax_variant_times_the_real_step():
  """The real JaxVariant: the pmapped step, compiled ahead of time and run with the
  budget fraction it takes since the budget schedules (a stale call once broke every
  JAX row of the benchmark while the faked tests above passed)."""
  args = benchmark.parse_args(["--width", "4", "--n-critic", "1"])
  args.width, args.n_critic = 4, 1
  variant = benchmark.JaxVariant("dcgan", 2, args, "fast", "float32")
  assert variant.compile_s > 0
  variant.run()
  assert int(variant.state.step[0]) == 2  # one run while set up, one here


def test_cpu_model_names_the_widest_vector_unit_and_amx():
  amx = "model name\t: Xeon X\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile\n"
  epyc = "model name\t: EPYC Y\nflags\t\t: fpu avx avx2\n"
  from wgan_gp import hardware
  with mock.patch.object(hardware.Path, "read_text", lambda self: amx):
    assert benchmark.cpu_model() == "Xeon X, avx512f, AMX"
  with mock.patch.object(hardware.Path, "read_text", lambda self: epyc):
    assert benchmark.cpu_model() == "EPYC Y, avx2, no AMX"


def test_n_critic_default_is_1_2_5():
  assert benchmark.n_critic_values(benchmark.parse_args([])) == [1, 2, 5]
