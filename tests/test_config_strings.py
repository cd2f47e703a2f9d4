"""Every config string the project writes down still means what it says.

Recipes are renamed when a better one arrives (configs/celeba64.py), so a record that
names `celeba64.py:<recipe>` must be rewritten in the same commit. These tests load every
such string in the READMEs, in experiments/ and in the shipped generators' info.json,
and check each record that carries its run's whole config against it.
"""

import json
import pathlib
import re
import shlex

import pytest

from conftest import CELEBA_TAR_IMAGE_SIZE, REPO_ROOT
from wgan_gp.config import base_config, canonical_config, get_dotted, load_config, set_dotted

CONFIG_STRING = re.compile(r"\b((?:celeba64|toy2d)\.py(?::[a-z0-9_]+(?:,[a-z0-9_]+)*)?)")
TEXT_SUFFIXES = {".md", ".py", ".json", ".csv", ".sh", ".ipynb"}


def _documents() -> list[pathlib.Path]:
  files = [REPO_ROOT / "README.md"]
  files += [p for p in (REPO_ROOT / "experiments").rglob("*") if p.suffix in TEXT_SUFFIXES]
  files += sorted((REPO_ROOT / "wgan_gp" / "weights").glob("*/info.json"))
  files += sorted((REPO_ROOT / "configs").glob("*.py"))
  return sorted(files)


def _config_strings() -> dict[str, list[str]]:
  """config string -> the files that name it."""
  found: dict[str, list[str]] = {}
  for path in _documents():
    for match in CONFIG_STRING.finditer(path.read_text(errors="replace")):
      found.setdefault(match.group(1), []).append(str(path.relative_to(REPO_ROOT)))
  return found


def _records() -> list[tuple[str, dict]]:
  """(where, record) for every JSON object that holds a run's whole config and the
  `wgan_gp.main` command that made it (a row scored from another run's checkpoint names
  no command of its own; its config string is still loaded above)."""
  found = []

  def visit(node, where):
    if isinstance(node, dict):
      if "run_config" in node and "config" in node and "wgan_gp.main" in node.get("command", ""):
        found.append((f"{where}:{node.get('name', '?')}", node))
      for value in node.values():
        visit(value, where)
    elif isinstance(node, list):
      for value in node:
        visit(value, where)

  for path in _documents():
    if path.suffix == ".json":
      visit(json.loads(path.read_text()), str(path.relative_to(REPO_ROOT)))
  return found


def _main_command(command: str) -> tuple[str, dict[str, str]]:
  """The --config and the --config.* overrides of the `wgan_gp.main` call in `command`
  (which may chain a fork or the protocol before or after it)."""
  for part in re.split(r"\s*(?:&&|;|\n)\s*", command):
    words = shlex.split(part.replace("\\\n", " "))
    if "wgan_gp.main" not in words:
      continue
    config, overrides = None, {}
    for word in words:
      if word.startswith("--config="):
        config = word.split("=", 1)[1]
      elif word.startswith("--config."):
        key, _, value = word[len("--config."):].partition("=")
        overrides[key] = value
    return config, overrides
  raise AssertionError(f"no `python -m wgan_gp.main` in {command!r}")


def _typed(config, overrides: dict[str, str]) -> dict:
  """Command-line override strings as the config's own types, as --config.x=v parses them."""
  typed = {}
  for key, text in overrides.items():
    current = get_dotted(config.to_dict(), key)
    if isinstance(current, bool):
      typed[key] = {"true": True, "false": False}[text.lower()]
    else:
      typed[key] = type(current)(text)
  return typed


def _load(config_string: str, overrides: dict[str, str]):
  path = REPO_ROOT / "configs" / config_string.rsplit("/", 1)[-1]
  config = load_config(str(path))
  config.unlock()
  for key, value in _typed(config, overrides).items():
    set_dotted(config, key, value)
  return json.loads(json.dumps(config.to_dict()))


def _with_later_fields(saved: dict, defaults: dict) -> dict:
  """A record's config with the fields added to the code after it was made, at their
  defaults: what that code did (e.g. model.conv_fold arrived with 'thin' as the default)."""
  merged = dict(saved)
  for key, value in defaults.items():
    if key not in merged:
      merged[key] = value
    elif isinstance(value, dict) and isinstance(merged[key], dict):
      merged[key] = _with_later_fields(merged[key], value)
  return merged


STRINGS = _config_strings()
RECORDS = _records()


def test_the_documents_name_configs_and_records():
  """The scan below can fail only if it finds what it checks."""
  assert len(STRINGS) >= 5
  assert any(s.endswith("celeba64.py:cpu") for s in STRINGS)
  assert len(RECORDS) >= 15


@pytest.mark.parametrize("config_string", sorted(STRINGS))
def test_every_named_config_loads(config_string):
  arg = config_string.partition(":")[2]
  try:
    load_config(str(REPO_ROOT / "configs" / config_string.partition(":")[0]) + (f":{arg}" if arg else ""))
  except ValueError as error:
    raise AssertionError(f"{config_string} (named in {STRINGS[config_string]}) no longer "
                         f"loads: {error}") from None


@pytest.mark.parametrize("where, record", RECORDS, ids=[w for w, _ in RECORDS])
def test_every_record_names_the_config_it_ran(where, record):
  """The record's command, and its `config` with the command's overrides, each give the
  run's saved config: a renamed recipe left behind in a record fails here."""
  command_config, overrides = _main_command(record["command"])
  # Compared in the framing resuming uses: the crop as pixels of the runs' images (every
  # record trained on the 89x109 tar), however a config writes it.
  assert record["run_config"]["data"]["path"].endswith("celeba_align_10k_89x109.tar"), where
  saved = _with_later_fields(canonical_config(record["run_config"], CELEBA_TAR_IMAGE_SIZE),
                             json.loads(json.dumps(base_config().to_dict())))
  for config_string, what in ((command_config, "its command"), (record["config"], "its config")):
    loaded = canonical_config(_load(config_string, overrides), CELEBA_TAR_IMAGE_SIZE)
    assert loaded == saved, f"{where}: {what} {config_string}"


def test_old_recipe_names_are_refused_with_their_new_names():
  with pytest.raises(ValueError, match="'cpu4' is now 'cpu'"):
    load_config(str(REPO_ROOT / "configs" / "celeba64.py:cpu4"))
  with pytest.raises(ValueError, match="'cpu3' is now 'cpu_round3'"):
    load_config(str(REPO_ROOT / "configs" / "celeba64.py:cpu3,smoke"))
