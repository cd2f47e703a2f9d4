"""Every repository path that the READMEs, the experiment scripts, the configs and the
package's docstrings name exists: a moved or renamed file must take its mentions along.

A mention is a path that starts with experiments/, configs/, wgan_gp/ or tests/ (from the
repository root), or, in a README under experiments/, a backticked or linked path whose
first part is an entry of that README's folder, or '..' (relative to the README).
Outputs, data and placeholders are not checked: paths under runs/, /tmp/ or ../shared/
(the data beside the checkout), with $, and with <, { or * in them. An --out prefix
counts when its files exist (PREFIX.json, PREFIX.md).
"""

import re

import pytest

from conftest import REPO_ROOT

PREFIXES = ("experiments", "configs", "wgan_gp", "tests")
_PATH_CHARS = r"[\w./<>*$-]"
# Not inside a longer path (../x, /tmp/x, $R/x, src/x) or a word.
ROOTED = re.compile(rf"(?<![\w./$~-])((?:{'|'.join(PREFIXES)})/{_PATH_CHARS}*"
                    rf"(?:\{{[^}}\s]*\}}{_PATH_CHARS}*)*)")
BACKTICKED_OR_LINKED = re.compile(r"`([^`\s]+)`|\]\(([^)\s#]+)")
PLACEHOLDER = re.compile(r"[<>{}*$]")


def _files():
  files = [REPO_ROOT / "README.md"]
  files += sorted((REPO_ROOT / "experiments").rglob("README.md"))
  for pattern in ("*.py", "*.sh"):
    files += sorted((REPO_ROOT / "experiments").rglob(pattern))
  files += sorted((REPO_ROOT / "configs").glob("*.py"))
  files += sorted((REPO_ROOT / "wgan_gp").rglob("*.py"))
  return [f for f in files if "__pycache__" not in f.parts and f.is_file()]


def _exists(path) -> bool:
  return path.exists() or any(path.parent.glob(path.name + ".*"))  # an --out prefix


def mentions(text: str, source) -> list[tuple[int, str, object]]:
  """(line, as written, the path it names) for each repository path in `text`."""
  found = []
  relative_to_readme = source.name == "README.md" and "experiments" in source.parent.parts
  for number, line in enumerate(text.splitlines(), 1):
    for match in ROOTED.finditer(line):
      written = match.group(1).rstrip(".")
      if not PLACEHOLDER.search(written):
        found.append((number, written, REPO_ROOT / written))
    if not relative_to_readme:
      continue
    for match in BACKTICKED_OR_LINKED.finditer(line):
      written = (match.group(1) or match.group(2)).rstrip(".")
      first = written.split("/")[0]
      if ("/" not in written or PLACEHOLDER.search(written) or first in PREFIXES
          or "://" in written or written.startswith("../shared/")
          or not (first == ".." or (source.parent / first).exists())):
        continue
      found.append((number, written, source.parent / written))
  return found


def test_the_mention_finder_sees_paths_and_skips_outputs_and_placeholders(tmp_path):
  readme = REPO_ROOT / "experiments" / "faces64" / "README.md"
  text = ("see `experiments/faces64/fork_run.py`, (configs/celeba64.py:cpu) and\n"
          "--out=experiments/faces64/results/faces.json. Not runs/x, /tmp/wgan_gp/weights/a,\n"
          "$R/faces, experiments/*/sweeps/, <workdir>/x, wgan_gp/weights/{folder} nor\n"
          "`runs/faces_cpu4`, `../shared/data/a.tar`; but `results/faces.json`,\n"
          "[toy](../toy/README.md) and\n"
          "`experiments/faces64/results/faces_cpu3_seed{0,1,2}/` is a placeholder.")
  assert [(n, w) for n, w, _ in mentions(text, readme)] == [
      (1, "experiments/faces64/fork_run.py"), (1, "configs/celeba64.py"),
      (2, "experiments/faces64/results/faces.json"), (4, "results/faces.json"),
      (5, "../toy/README.md")]


@pytest.mark.parametrize("source", _files(), ids=lambda f: str(f.relative_to(REPO_ROOT)))
def test_every_path_named_exists(source):
  missing = [f"{source.relative_to(REPO_ROOT)}:{number}: {written}"
             for number, written, path in mentions(source.read_text(encoding="utf-8"), source)
             if not _exists(path)]
  assert not missing, "paths that do not exist:\n" + "\n".join(missing)
