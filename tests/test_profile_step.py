"""The step profiler (experiments/speed/profile_step.py): how it sorts XLA's instructions, how
it shares overlapping thunks' wall time, and a real trace of a tiny step."""

import sys

import jax
import pytest

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "experiments" / "speed"))
import profile_step  # noqa: E402


@pytest.mark.parametrize("line, kind", [
    ("%c = f32[64,32,32,16]{3,2,1,0} convolution(%a, %b), window={size=5x5 stride=2x2 "
     "pad=1_2x1_2}, dim_labels=b01f_01io->b01f", "conv strided"),
    ("%c = f32[64,16,16,16]{3,2,1,0} convolution(%a, %b), window={size=3x2 pad=1_1x1_0}, "
     "dim_labels=b01f_01io->b01f", "conv stride-1"),
    ("%c = f32[16,5,5,32]{3,2,1,0} convolution(%a, %b), window={size=16x16 pad=1_2x1_2 "
     "rhs_dilate=2x2}, dim_labels=b01f_01io->b01f", "conv weight gradient"),
    ("%c = f32[16,3,3,12]{3,2,1,0} convolution(%a, %b), window={size=32x32 pad=1_1x1_1}, "
     "dim_labels=b01f_01io->b01f", "conv weight gradient"),
    ("%c = f32[64,32,32,16]{3,2,1,0} convolution(%a, %b), window={size=5x5 pad=2_2x2_2 "
     "lhs_dilate=2x2}, dim_labels=b01f_01io->b01f", "conv SLOW PATH"),
])
def test_convolutions_are_sorted_by_kind(line, kind):
  assert profile_step.conv_kind(line) == kind


def test_overlapping_thunks_share_the_wall_time():
  # One execution [0, 100]: a alone 0-10, a and b 10-30, idle 30-40, c 40-100; d lies
  # outside every execution and counts for nothing.
  wall = profile_step.share_wall_time(
      [(0, 100)], [(0, 30, "a"), (10, 30, "b"), (40, 100, "c"), (150, 160, "d")])
  assert wall == {"a": 20, "b": 10, "(idle)": 10, "c": 60}
  assert sum(wall.values()) == 100


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="reads XLA:CPU's thunk events")
@pytest.mark.slow
def test_profile_of_a_tiny_step_adds_up_and_names_its_parts(tmp_path):
  args = profile_step.parse_args(["--widths", "4", "--batch", "2", "--steps", "2",
                                  "--repeats", "1", "--top", "1000",
                                  "--out", str(tmp_path / "p")])
  results = profile_step.main(args)
  entry, = results["widths"]
  assert entry["slow_path_convolutions"] == 0
  kinds = entry["by_kind_ms"]
  for kind in ("conv strided", "conv stride-1", "conv weight gradient", "elementwise"):
    assert kinds[kind] > 0, kind
  assert "conv SLOW PATH" not in kinds
  # The shares add up to the time the step executed, and that is most of the wall time.
  assert sum(kinds.values()) == pytest.approx(entry["execution_ms_per_iteration"], rel=1e-6)
  assert 0 < entry["execution_ms_per_iteration"] < 1000 * max(entry["times_s"]) * 3
  # Every named part of the step has its instructions (the named scopes reach the HLO).
  for scope in profile_step.SCOPES:
    assert entry["by_scope_ms"].get(scope, 0) > 0, scope
  table = (tmp_path / "p.md").read_text()
  assert "| kind | width 4 |" in table and "| critic_loss |" in table
  assert (tmp_path / "p.json").exists()
