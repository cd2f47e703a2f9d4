"""experiments/speed/suite_tiers.py: the tiers' counts read from pytest, and its refusals."""

import sys

import pytest

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "experiments" / "speed"))
import suite_tiers  # noqa: E402


def test_counts_come_from_pytests_last_summary_line():
  output = ("tests/test_a.py ..s.F\n"
            "FAILED tests/test_a.py::test_x - AssertionError: 3 passed in 2s\n"
            "==== 1 failed, 597 passed, 4 skipped, 3 warnings in 1292.11s (0:21:32) ====\n")
  assert suite_tiers._pytest_counts(output) == {"failed": 1, "passed": 597, "skipped": 4}
  assert suite_tiers._pytest_counts("2 errors, 10 deselected in 0.5s") == {
      "error": 2, "deselected": 10}
  assert suite_tiers._pytest_counts("no summary") == {}


def test_an_unknown_tier_is_refused_naming_the_choices(capsys):
  with pytest.raises(SystemExit, match="unknown tier 'fast'; name quick, full or both"):
    suite_tiers.main(["--time=quick", "--cover=fast"])


def test_the_table_puts_time_and_coverage_side_by_side():
  result = {"hardware": "AMD EPYC", "cores": 2, "tiers": {"quick": {
      "time": {"command": "-m pytest -m not slow", "passed": 9, "skipped": 1,
               "wall_seconds": 300.0},
      "coverage": {"passed": 9, "skipped": 1, "wall_seconds": 420.0,
                   "line_coverage_percent": 81.5}}}}
  row = suite_tiers.markdown(result).splitlines()[-1]
  assert row == '| quick | `python -m pytest -m "not slow"` | 9 | 1 | 0 | 5.0 | 81.5% | 7.0 |'
