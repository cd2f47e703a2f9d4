"""wgan_gp/face_protocol.py: the floor's images, the row, the refusals, and the
measurement of a run and of a shipped generator, through a stand-in feature network (no
Inception weights)."""

import json
import os
import shutil
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from conftest import CONFIGS, REPO_ROOT, subprocess_env
from wgan_gp import data, exit_codes, face_protocol, gan_state, pretrained
from wgan_gp.checkpoint import Checkpointer
from wgan_gp.config import base_config, load_config, to_json
from wgan_gp.metrics import fid, fid_infinity
from wgan_gp.runs import load_run


class _StandInExtractor:
  """Per-channel mean and std of the images in [0, 1]: 6 'features', no weights. Keeps
  the progress labels it was given and the features of the generated side."""
  cache_key = "stand-in"

  def __init__(self):
    self.labels, self.generated = [], None

  def __call__(self, images, value_range=None, progress_label=None):
    self.labels.append(progress_label)
    low, high = value_range or (0.0, 255.0)
    x = (np.asarray(images, np.float64) - low) / (high - low)
    features = np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2))], axis=1)
    if value_range == (-1.0, 1.0):  # the generator's side
      self.generated = features.astype(np.float32)
    return features.astype(np.float32)


def _image_folder(folder, count, size):
  folder.mkdir()
  rng = np.random.default_rng(0)
  for i in range(count):
    # Noise around a per-image colour, so images differ in their features.
    pixels = rng.normal(rng.uniform(40, 215, 3), 30, (size[1], size[0], 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i:04d}.png")
  return folder


@pytest.fixture
def stand_in(monkeypatch, tmp_path):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # decoded images, statistics
  extractor = _StandInExtractor()
  monkeypatch.setattr(face_protocol, "default_extractor", lambda: extractor)
  return extractor


def test_upsert_replaces_a_row_in_place_and_appends_new_ones(tmp_path):
  path = str(tmp_path / "faces.json")
  face_protocol.upsert(path, {"name": "a", "fid": 1.0})
  face_protocol.upsert(path, {"name": "b", "fid": 2.0})
  rows = face_protocol.upsert(path, {"name": "a", "fid": 3.0, "protocol": 2})
  assert rows == [{"name": "a", "fid": 3.0, "protocol": 2}, {"name": "b", "fid": 2.0}]
  assert json.loads((tmp_path / "faces.json").read_text()) == rows


def test_floor_images_are_a_half_disjoint_from_the_reference_half():
  half_a, half_b = face_protocol.split_halves(10_000)
  assert len(half_a) == len(half_b) == 5_000
  assert not set(half_a) & set(half_b) and set(half_a) | set(half_b) == set(range(10_000))
  assert np.array_equal(face_protocol.floor_of_half(half_b, 5_000), half_b)  # N = |B|: all
  some = face_protocol.floor_of_half(half_b, 1_000)
  assert len(set(some)) == 1_000 and set(some) <= set(half_b)
  assert np.array_equal(some, face_protocol.floor_of_half(half_b, 1_000))  # seeded
  assert not np.array_equal(half_a, face_protocol.split_halves(10_000, seed=1)[0])
  odd_a, odd_b = face_protocol.split_halves(11)
  assert len(odd_a) == len(odd_b) == 5 and not set(odd_a) & set(odd_b)
  # Protocol 1's floor, kept for the old figures: drawn from the reference set itself.
  assert np.array_equal(face_protocol.floor_indices(10, 4),
                        np.sort(np.random.default_rng([0, 77]).permutation(10)[:4]))


@pytest.mark.parametrize("argv,message", [
    (["--pretrained=celeba64-cpu"], "--pretrained needs --data_path"),
    (["--pretrained=celeba64-cpu", "--data_path=x", "--workdir=w"], "drop --workdir"),
    (["--pretrained=celeba64-cpu", "--data_path=x", "--reference_only"], "drop --workdir"),
    (["--name=n"], "give --workdir"),
])
def test_conflicting_or_missing_flags_are_refused(capsys, argv, message):
  with pytest.raises(SystemExit) as exit_info:
    face_protocol.main(argv)
  assert exit_info.value.code == 2
  assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_a_missing_run_is_one_line(capsys, tmp_path):
  code = face_protocol.cli([f"--workdir={tmp_path / 'none'}", "--name=n", "--hardware=h",
                            f"--out={tmp_path / 'faces.json'}"])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == exit_codes.BAD_INPUT
  assert len(err) == 1 and err[0].startswith("error: ") and "holds no config.json" in err[0]
  assert not (tmp_path / "faces.json").exists()


def test_a_row_goes_beside_the_run_unless_out_names_a_table(tmp_path, monkeypatch, capsys):
  """A user scoring their own run writes nothing into the project's table by default: the
  row goes to <workdir>/face_protocol.json; --out names a table; --out= only prints; with
  --pretrained and no --out the row is only printed."""
  monkeypatch.chdir(tmp_path)  # a relative default would land here
  monkeypatch.setattr(face_protocol, "protocol_row", lambda *a, **k: {"fid": 1.0})
  monkeypatch.setattr(face_protocol, "remeasure_pretrained",
                      lambda *a, **k: {"name": "shipped", "fid": 2.0})
  workdir = tmp_path / "run"
  workdir.mkdir()
  common = [f"--workdir={workdir}", "--name=mine", "--hardware=h"]
  assert face_protocol.main(common) == 0
  (row,) = json.loads((workdir / "face_protocol.json").read_text())
  assert (row["name"], row["fid"]) == ("mine", 1.0)
  table = tmp_path / "table.json"
  assert face_protocol.main([*common, "--name=other", f"--out={table}"]) == 0
  assert [r["name"] for r in json.loads(table.read_text())] == ["other"]
  assert len(json.loads((workdir / "face_protocol.json").read_text())) == 1  # untouched
  (workdir / "face_protocol.json").unlink()
  assert face_protocol.main([*common, "--out="]) == 0
  assert not (workdir / "face_protocol.json").exists()
  # Only --workdir is needed: the row is named after the run, the hardware after this CPU.
  assert face_protocol.main([f"--workdir={workdir}"]) == 0
  (row,) = json.loads((workdir / "face_protocol.json").read_text())
  assert row["name"] == "run" and row["hardware"].startswith(f"{os.cpu_count()}-core ")
  assert row["hardware"].endswith("(the machine that scored it)")
  (workdir / "face_protocol.json").unlink()
  capsys.readouterr()
  assert face_protocol.main(["--pretrained=celeba64-cpu", "--data_path=x"]) == 0
  assert json.loads(capsys.readouterr().out)["name"] == "shipped"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "table.json"]


def _expected_figures(features, reference_rows, floor_rows, generated):
  """FID and KID from first principles: the statistics of the given feature rows."""
  reference = features[reference_rows]
  fid_of = lambda other: fid.frechet_distance(*fid.feature_statistics(reference),
                                              *fid.feature_statistics(other))
  kid_of = lambda other: fid.kernel_inception_distance(reference, other)[0]
  floor = features[floor_rows]
  return {"fid": fid_of(generated), "kid": kid_of(generated),
          "floor_fid": fid_of(floor), "floor_kid": kid_of(floor)}


def _check_figures(row, source, extractor):
  """The row's figures, protocol 2 and 1, against the dataset's stand-in features."""
  generated = extractor.generated
  features = extractor(source.images)
  half_a, half_b = face_protocol.split_halves(len(features))
  assert row["protocol"] == 2 and row["reference_images"] == len(half_a)
  want = _expected_figures(features, half_a, half_b, generated)  # N = |B|: all of B
  for key, value in want.items():
    assert row[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
  old = row["protocol_1"]
  everything = np.arange(len(features))
  want = _expected_figures(features, everything,
                           face_protocol.floor_indices(len(features), row["num_samples"]),
                           generated)
  assert old["reference_images"] == len(features)
  for key, value in want.items():
    assert old[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
  # FID against N from the same generated features (no other Inception pass): at fifths
  # of N, the last the row's FID, each below N the mean of its seeded subsets' FIDs.
  curve = row["fid_vs_n"]
  assert curve["n"] == fid_infinity.default_sizes(row["num_samples"]) and len(curve["n"]) == 5
  assert curve["fid"][-1] == pytest.approx(row["fid"], rel=1e-6)


def _tiny_run(tmp_path, folder):
  """A face workdir as training leaves it: config.json and a checkpoint with its
  training seconds (a fresh state; the protocol does not care how it was trained), whose
  EMA generator differs from the raw one, as after training."""
  config = load_config(str(CONFIGS / "celeba64.py:smoke"), {
      "data.source": "images", "data.path": str(folder), "data.crop_size": 0,
      "data.crop_fraction": 0.0})
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text(to_json(config))
  state = gan_state.create_train_state(config, gan_state.build_gan(config))
  state = state.replace(ema_g_params=jax.tree.map(lambda x: 0.5 * x, state.g_params))
  checkpointer = Checkpointer(str(workdir / "checkpoints"), keep=2)
  checkpointer.save(7, state, data_position=56, training_seconds=123.0)
  checkpointer.close()
  return config, workdir


def test_a_run_is_measured_against_half_a_with_its_config_and_training_time(
    tmp_path, stand_in, monkeypatch):
  folder = _image_folder(tmp_path / "faces", 30, (40, 48))
  config, workdir = _tiny_run(tmp_path, folder)
  out = tmp_path / "faces.json"
  generators = []
  generate = face_protocol.generate_in_batches
  monkeypatch.setattr(face_protocol, "generate_in_batches",
                      lambda fn, params, *a, **k: generators.append(params) or generate(
                          fn, params, *a, **k))
  assert face_protocol.main([f"--workdir={workdir}", "--name=tiny", "--hardware=CPU",
                             "--num_samples=100", f"--out={out}"]) == 0
  state = load_run(str(workdir)).state  # the samples are the EMA generator's
  (used,) = generators
  assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(used),
                                                  jax.tree.leaves(state.ema_g_params),
                                                  strict=True))
  assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(used),
                                                      jax.tree.leaves(state.g_params)))
  (row,) = json.loads(out.read_text())
  assert (row["name"], row["steps"], row["images_seen"]) == ("tiny", 7, 56)
  assert row["minutes"] == round(123.0 / 60, 2)  # the checkpoint's training seconds
  assert (row["seed"], row["steps_per_second"]) == (config.seed, round(7 / 123.0, 3))
  assert row["run_config"] == json.loads(to_json(config))  # the run's config, recorded
  assert row["num_samples"] == 15  # capped at half the 30 images
  assert all(stand_in.labels)  # every Inception pass shows progress
  _check_figures(row, data.create_source(config.data, 0), stand_in)


def test_a_shipped_generator_is_measured_again_with_both_floors(
    tmp_path, stand_in):
  shipped = tmp_path / "celeba64-cpu"
  shutil.copytree(pretrained.resolve("celeba64-cpu"), shipped)
  files = {p.name: p.read_bytes() for p in shipped.iterdir()}
  before = json.loads((shipped / "info.json").read_text())
  folder = _image_folder(tmp_path / "faces", 24, (89, 109))
  out = tmp_path / "faces.json"
  assert face_protocol.main([f"--pretrained={shipped}", f"--data_path={folder}",
                             "--num_samples=12", f"--out={out}"]) == 0
  # Re-measuring never changes what it measures: the row goes to --out only.
  assert {p.name: p.read_bytes() for p in shipped.iterdir()} == files
  (row,) = json.loads(out.read_text())
  assert {k: row[k] for k in ("name", "steps", "command", "run_config")} == {
      k: before[k] for k in ("name", "steps", "command", "run_config")}
  assert not {"model", "data", "terms"} & set(row)
  assert row["num_samples"] == 12 and "protocol_1" in row
  data_config = ml_collections.ConfigDict({  # as the protocol builds it from info.json
      **base_config().data.to_dict(), **pretrained.legacy_data_record(before["data"]),
      "source": "images",
      "path": str(folder)})
  _check_figures(row, data.create_source(data_config, 0), stand_in)


_PLAIN_RUN = """
import sys
import numpy as np
from wgan_gp import face_protocol
from wgan_gp.console import ProgressBar

class StandIn:
  cache_key = 'stand-in'
  def __call__(self, images, value_range=None, progress_label=None):
    with ProgressBar(len(images), progress_label) as bar:
      bar.update(len(images))
    return np.asarray(images, np.float32).reshape(len(images), -1)[:, :4]

face_protocol.default_extractor = StandIn
sys.exit(face_protocol.cli(sys.argv[1:]))
"""


def test_off_a_terminal_progress_comes_as_plain_log_lines(tmp_path):
  folder = _image_folder(tmp_path / "faces", 20, (40, 48))
  _, workdir = _tiny_run(tmp_path, folder)
  result = subprocess.run(
      [sys.executable, "-c", _PLAIN_RUN, f"--workdir={workdir}", "--name=t", "--hardware=h",
       "--num_samples=10", f"--out={tmp_path / 'faces.json'}"],
      env=subprocess_env(XDG_CACHE_HOME=str(tmp_path / "cache")), cwd=REPO_ROOT,
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  for line in ("Inception: dataset (once): 20 images in", "Generating 10 samples",
               "Inception: generated: 10 images in", "FID and KID"):
    assert line in result.stderr, result.stderr[-3000:]
  assert "libtpu" not in result.stderr and "read only" not in result.stderr  # no chatter
  assert os.path.exists(tmp_path / "faces.json")


def test_a_damaged_out_is_named_before_measuring_and_a_row_is_never_lost(
    tmp_path, monkeypatch, capsys):
  """A damaged --out is refused in one line naming it and the fix, before the ~25-minute
  measurement; if writing the row fails after it, the row is kept beside the file."""
  measured = []
  row = {"name": "shipped", "fid": 2.0}
  monkeypatch.setattr(face_protocol, "remeasure_pretrained",
                      lambda *a, **k: measured.append(1) or row)
  monkeypatch.setattr(face_protocol, "protocol_row",
                      lambda *a, **k: measured.append(1) or {"fid": 1.0})
  out = tmp_path / "faces.json"
  out.write_text('[{"name": "a"}, {')
  workdir = tmp_path / "run"
  workdir.mkdir()
  for argv in (["--pretrained=celeba64-cpu", "--data_path=x"], [f"--workdir={workdir}"]):
    assert face_protocol.cli([*argv, f"--out={out}"]) == exit_codes.BAD_INPUT
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: --out={out} is damaged (Expecting property name")
    assert line.endswith("repair it, move it aside, or pass another --out")
  assert not measured and out.read_text() == '[{"name": "a"}, {'
  # Damaged while measuring: the row is printed and kept beside it, and the line says where.
  out.write_text("[]")

  def damaging(*args, **kwargs):
    out.write_text("{")
    return row

  monkeypatch.setattr(face_protocol, "remeasure_pretrained", damaging)
  assert face_protocol.cli(["--pretrained=celeba64-cpu", "--data_path=x",
                            f"--out={out}"]) == exit_codes.BAD_INPUT
  captured = capsys.readouterr()
  assert json.loads(captured.out) == row
  [line] = captured.err.strip().splitlines()
  [kept] = [p for p in tmp_path.iterdir() if p.name.startswith("faces.json.row-")]
  assert line.startswith(f"error: the row was measured but not written into {out} (")
  assert line.endswith(f"it is kept in {kept}; add it to the table by hand")
  assert json.loads(kept.read_text()) == row and out.read_text() == "{"
