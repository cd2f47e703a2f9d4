"""wgan_gp/memorisation.py: nearest training images of samples and of held-out images,
the report, and the command on a tiny run through a stand-in feature network (no
Inception weights)."""

import json

import numpy as np
import pytest
from PIL import Image

from test_face_protocol import _image_folder, _StandInExtractor, _tiny_run
from wgan_gp import data, evaluators, exit_codes, memorisation
from wgan_gp.data.holdout import split_holdout


def test_nearest_neighbours_match_brute_force_in_chunks():
  rng = np.random.default_rng(0)
  queries, references = rng.normal(size=(7, 5)), rng.normal(size=(11, 5))
  distances, indices = memorisation.nearest_neighbours(queries, references, chunk=3)
  brute = np.linalg.norm(queries[:, None] - references[None], axis=2)
  np.testing.assert_array_equal(indices, brute.argmin(axis=1))
  np.testing.assert_allclose(distances, brute.min(axis=1), rtol=1e-9)


def test_the_report_ranks_an_exact_copy_first_at_distance_zero():
  rng = np.random.default_rng(1)
  train = rng.normal(size=(50, 8)).astype(np.float32)
  holdout = rng.normal(size=(200, 8)).astype(np.float32)
  samples = rng.normal(size=(10, 8)).astype(np.float32)
  samples[6] = train[17]  # a copy
  rows = np.arange(50) * 3  # the training features' dataset rows
  report = memorisation.memorisation_report(samples, train, holdout, rows)
  first = report["closest"][0]
  assert (first["sample"], first["train_index"]) == (6, 51)
  assert first["distance"] < 1e-5
  assert report["closest"][1]["distance"] > 0.1  # the others are fresh draws
  assert [p["distance"] for p in report["closest"]] == sorted(
      p["distance"] for p in report["closest"])
  assert len(report["closest"]) == 8 and report["sample_nearest_train_index"][6] == 51
  holdout_d = np.linalg.norm(holdout[:, None] - train[None], axis=2).min(axis=1)
  sample_d = np.linalg.norm(samples[:, None] - train[None], axis=2).min(axis=1)
  threshold = np.quantile(holdout_d, 0.01)
  assert report["holdout_q01"] == pytest.approx(threshold, rel=1e-6)
  assert report["fraction_closer_than_holdout_q01"] == np.mean(sample_d < threshold)
  assert report["fraction_closer_than_holdout_q01"] >= 0.1  # the copy, at least
  assert report["holdout_distance_quantiles"]["0.5"] == pytest.approx(
      np.median(holdout_d), rel=1e-6)
  assert list(report["sample_distance_quantiles"]) == ["0.01", "0.05", "0.25", "0.5",
                                                       "0.75", "0.95"]
  assert (report["num_samples"], report["train_images"], report["holdout_images"]) == (
      10, 50, 200)


@pytest.fixture
def tiny_run(tmp_path, monkeypatch):
  """A tiny face run on 30 images, the stand-in features, and a generator whose sample 2
  is an exact copy of dataset image `copied` (a training image under the fixed split of 6
  held out): (workdir, image folder, copied)."""
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
  monkeypatch.setattr(memorisation, "default_extractor", _StandInExtractor)
  folder = _image_folder(tmp_path / "faces", 30, (40, 48))
  config, workdir = _tiny_run(tmp_path, folder)
  images = data.create_source(config.data, 0).images  # as the run decoded them: 32 px
  train, _ = split_holdout(30, 6)
  copied = int(train[1])
  generate = evaluators.generate_in_batches

  def copying(*args, **kwargs):  # sample 2: image `copied`, in the generator's [-1, 1]
    samples = np.array(generate(*args, **kwargs))
    samples[2] = images[copied] / 127.5 - 1.0
    return samples

  monkeypatch.setattr(evaluators, "generate_in_batches", copying)
  return workdir, folder, copied


def test_the_command_finds_a_copied_training_image_and_writes_report_and_pairs(
    tiny_run, tmp_path, capsys):
  workdir, _, copied = tiny_run
  out = tmp_path / "memo.json"
  assert memorisation.main([f"--workdir={workdir}", "--num_samples=8", "--holdout_count=6",
                            f"--out={out}"]) == 0
  report = json.loads(out.read_text())
  summary = json.loads(capsys.readouterr().out)
  assert summary["closest"] == report["closest"]
  first = report["closest"][0]
  assert (first["sample"], first["train_index"]) == (2, copied) and first["distance"] < 1e-5
  assert report["closest"][1]["distance"] > 1e-3
  # The run has no holdout: 6 images set aside by the fixed rule, which it trained on.
  assert (report["holdout_from"], report["holdout_seen_in_training"]) == ("--holdout_count",
                                                                          True)
  assert (report["dataset_images"], report["train_images"], report["holdout_images"]) == (
      30, 24, 6)
  assert report["num_samples"] == 8 and len(report["sample_distances"]) == 8
  train, _ = split_holdout(30, 6)
  assert set(report["sample_nearest_train_index"]) <= set(train.tolist())
  # The dataset's features went to the face protocol's cache file, one for both commands.
  assert len(list((tmp_path / "cache" / "wgan_gp").glob("refstats_*_all30__stand-in.npz"))) == 1
  # The pairs, closest first: the copied sample on the left, its training image beside it.
  png = np.asarray(Image.open(report["png"]))
  assert report["png"] == str(tmp_path / "memo_closest.png")
  assert png.shape == (8 * 34 + 2, 2 * 34 + 2, 3)  # 8 rows of two 32 px tiles, 2 px gaps
  np.testing.assert_array_equal(png[2:34, 2:34], png[2:34, 36:68])


def test_a_run_with_a_holdout_is_compared_with_its_own_training_images(
    tiny_run, tmp_path, capsys):
  workdir, _, copied = tiny_run
  config = json.loads((workdir / "config.json").read_text())
  config["data"]["holdout"] = 6
  (workdir / "config.json").write_text(json.dumps(config))
  out = tmp_path / "memo.json"
  assert memorisation.main([f"--workdir={workdir}", "--num_samples=8", "--train_limit=3",
                            f"--out={out}"]) == 0
  report = json.loads(out.read_text())
  assert (report["holdout_from"], report["holdout_seen_in_training"]) == (
      "config.data.holdout", False)
  assert (report["train_images"], report["holdout_images"], report["train_limit"]) == (3, 6, 3)
  train, _ = split_holdout(30, 6)
  assert report["closest"][0]["train_index"] == copied and copied in train[:3]
  assert report["closest"][0]["distance"] < 1e-5
  capsys.readouterr()
  assert memorisation.cli([f"--workdir={workdir}", "--holdout_count=5",
                           f"--out={out}"]) == exit_codes.BAD_INPUT
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1] == ("error: the run held out 6 images (config.data.holdout): drop "
                     "--holdout_count=5")
  assert not any("decoded images" in line for line in err)  # refused before any work
