"""The TFDS `celeb_a` source: mocked data through main, and the manual-dir error."""

import json

import numpy as np
import pytest

from conftest import CONFIGS
from test_main import _checkpoint_steps, _error_line, _run_main

tfds = pytest.importorskip("tensorflow_datasets", reason="TFDS is not installed: pip install -e '.[tfds]'")
pytest.importorskip("tensorflow", reason="TensorFlow is not installed: pip install -e '.[tfds]'")

from wgan_gp import exit_codes  # noqa: E402
from wgan_gp.data.celeba_tfds import MANUAL_FILES  # noqa: E402


@pytest.mark.slow
def test_missing_celeba_files_name_the_manual_route(tmp_path):
  result = _run_main("celeba64.py:smoke", tmp_path / "w", "--config.data.source=tfds",
                     f"--config.data.tfds_data_dir={tmp_path / 'tfds'}", check=False)
  assert result.returncode == exit_codes.BAD_INPUT
  line = _error_line(result.stderr)
  assert line.startswith("error: TFDS celeb_a is not prepared")
  assert all(name in line for name in MANUAL_FILES)
  assert str(tmp_path / "tfds" / "downloads" / "manual") in line
  assert "--config.data.source=images" in line  # the alternative that needs no TFDS


@pytest.mark.slow
def test_tfds_source_trains_through_main(tmp_path, monkeypatch):
  from absl import flags

  from wgan_gp import main

  manual = tmp_path / "manual"
  manual.mkdir()
  for name in MANUAL_FILES:  # present, as a user would place them; TFDS itself is mocked
    (manual / name).write_bytes(b"")
  workdir = tmp_path / "w"
  argv = ["main", f"--config={CONFIGS / 'celeba64.py:smoke'}", f"--workdir={workdir}",
          "--config.data.source=tfds", f"--config.data.tfds_manual_dir={manual}",
          f"--config.data.cache_dir={tmp_path / 'cache'}"]  # the face framing: a fraction
  monkeypatch.setattr("sys.argv", argv)  # config_flags finds its overrides in sys.argv
  flags.FLAGS(argv)
  try:
    with tfds.testing.mock_data(num_examples=24):
      main.main(argv[:1])
  finally:
    flags.FLAGS.unparse_flags()
  assert _checkpoint_steps(workdir) == [5, 10]
  assert (workdir / "samples" / "step_0000010.png").exists()
  saved = json.loads((workdir / "config.json").read_text())
  assert saved["data"]["source"] == "tfds"
  caches = list((tmp_path / "cache").glob("*.json"))
  assert len(caches) == 1 and json.loads(caches[0].read_text())["count"] == 24
  # celeb_a's 178x218 images: the face fraction resolves to 108 px, which keys the cache.
  assert json.loads(caches[0].read_text())["fields"]["crop_size"] == 108
  cached = np.load(caches[0].with_suffix(".npy"))
  assert cached.shape == (24, 32, 32, 3) and cached.std() > 10  # TFDS's random pixels
