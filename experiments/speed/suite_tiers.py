"""The test suite's two tiers measured: wall time, the passed/skipped/failed counts and
the line coverage of `wgan_gp/`, child processes included.

    python -m pip install "coverage>=7.10"
    python experiments/speed/suite_tiers.py --time=quick,full --cover=quick,full \\
        --out=experiments/speed/results/suite_tiers_<host>

`--time` runs each tier named as CI does (`python -m pytest`, with `-m "not slow"` for the
quick tier); `--cover` runs each tier named under coverage.py (configured in
pyproject.toml: `patch = ["subprocess"]` also measures the ~170 child Pythons that the
tests start), whose tracing slows it, so its wall time is recorded but is not the tier's
time. Timed runs go first. Each run starts with an empty JAX compilation cache (tests/conftest.py
makes one per session). Run it on a quiet machine: a test run beside it spoils both.
Writes <out>.json and <out>.md.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIER_ARGS = {"quick": ["-m", "not slow"], "full": []}
_COUNTS = re.compile(r"(\d+) (passed|failed|skipped|errors?|deselected)")


def _pytest_counts(output: str) -> dict:
  """The counts in pytest's last summary line ('1 failed, 597 passed, 3 warnings in ...')."""
  summary = [line for line in output.splitlines() if re.search(r"\bin [\d.]+s\b", line)]
  if not summary:
    return {}
  return {kind.rstrip("s") if kind.startswith("error") else kind: int(n)
          for n, kind in _COUNTS.findall(summary[-1])}


def _run_pytest(tier: str, prefix: list[str], env: dict) -> dict:
  env = dict(env)
  for variable in ("WGAN_GP_TESTS_JAX_CACHE", "WGAN_GP_TESTS_SESSION_JAX_CACHE"):
    env.pop(variable, None)  # cold: a fresh compilation cache per run
  command = [sys.executable, *prefix, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             *TIER_ARGS[tier]]
  start = time.monotonic()
  done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
  seconds = time.monotonic() - start
  sys.stdout.write(done.stdout[-3000:])
  return {"command": " ".join(command[1:]), "returncode": done.returncode,
          "wall_seconds": round(seconds, 1), **_pytest_counts(done.stdout)}


def time_tier(tier: str) -> dict:
  return _run_pytest(tier, [], dict(os.environ))


def cover_tier(tier: str) -> dict:
  with tempfile.TemporaryDirectory(prefix="wgan_gp_coverage_") as data_dir:
    env = dict(os.environ, COVERAGE_FILE=os.path.join(data_dir, ".coverage"))
    row = _run_pytest(tier, ["-m", "coverage", "run"], env)
    for step in (["combine", "--quiet"], ["json", "--quiet", "-o",
                                          os.path.join(data_dir, "coverage.json")]):
      subprocess.run([sys.executable, "-m", "coverage", *step], cwd=REPO_ROOT, env=env,
                     check=True)
    with open(os.path.join(data_dir, "coverage.json")) as f:
      report = json.load(f)
  totals = report["totals"]
  files = {path: data["summary"]["percent_covered"] for path, data in report["files"].items()}
  row.update(line_coverage_percent=round(totals["percent_covered"], 1),
             statements=totals["num_statements"], missing=totals["missing_lines"],
             least_covered={p: round(c, 1) for p, c in sorted(files.items(),
                                                              key=lambda kv: kv[1])[:10]})
  return row


def markdown(result: dict) -> str:
  lines = [f"# The test tiers ({result['hardware']}, {result['cores']} cores)", "",
           "| tier | command | passed | skipped | failed | wall min | line coverage of "
           "`wgan_gp/` | wall min under coverage |", "|---|---|---|---|---|---|---|---|"]
  for tier, row in result["tiers"].items():
    timed, covered = row.get("time", {}), row.get("coverage", {})
    counts = timed or covered
    minutes = lambda r: f"{r['wall_seconds'] / 60:.1f}" if r else ""  # noqa: E731
    coverage = f"{covered['line_coverage_percent']}%" if covered else ""
    command = " ".join(["python -m pytest",
                        *(f'"{a}"' if " " in a else a for a in TIER_ARGS[tier])])
    lines.append(f"| {tier} | `{command}` | {counts.get('passed', 0)} | "
                 f"{counts.get('skipped', 0)} | {counts.get('failed', 0)} | {minutes(timed)} | "
                 f"{coverage} | {minutes(covered)} |")
  return "\n".join(lines) + "\n"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--time", default="quick,full", help="tiers to time")
  parser.add_argument("--cover", default="", help="tiers to measure the coverage of")
  parser.add_argument("--out", default="", help="write <out>.json and <out>.md")
  args = parser.parse_args(argv)
  timed, covered = ([t for t in names.split(",") if t] for names in (args.time, args.cover))
  unknown = sorted(set(timed + covered) - set(TIER_ARGS))
  if unknown:
    sys.exit(f"error: unknown tier {unknown[0]!r}; name quick, full or both, "
             "e.g. --time=quick,full")
  if covered:
    try:
      import coverage  # noqa: PLC0415
    except ImportError:
      sys.exit('error: --cover needs coverage.py; pip install "coverage>=7.10"')
    if tuple(int(p) for p in coverage.__version__.split(".")[:2]) < (7, 10):
      sys.exit(f"error: coverage {coverage.__version__} cannot follow child processes; "
               'pip install "coverage>=7.10"')
  sys.path.insert(0, REPO_ROOT)
  from wgan_gp.files import write_atomically  # noqa: PLC0415
  from wgan_gp.hardware import cpu_model  # noqa: PLC0415
  result = {"hardware": cpu_model(), "cores": os.cpu_count(), "tiers": {}}
  for tier in timed:
    result["tiers"].setdefault(tier, {})["time"] = time_tier(tier)
  for tier in covered:
    result["tiers"].setdefault(tier, {})["coverage"] = cover_tier(tier)
  text = markdown(result)
  print(text)
  if args.out:
    write_atomically(args.out + ".json", json.dumps(result, indent=1))
    write_atomically(args.out + ".md", text)
  failed = any(r.get("returncode") for row in result["tiers"].values() for r in row.values())
  sys.exit(1 if failed else 0)


if __name__ == "__main__":
  main()
