"""data.holdout (issue #35): images held out of training, and the critic's mean score on
them against as many training images at each evaluation."""

import json
import math
import types

import numpy as np
import pytest
from PIL import Image

from conftest import CONFIGS
from wgan_gp import data
from wgan_gp.config import base_config, load_config
from wgan_gp.data import DataError
from wgan_gp.data.holdout import HOLDOUT_SEED, comparison_indices, split_holdout
from wgan_gp.validation import IncompatibleCheckpointError, check_workdir, save_config

NUM_IMAGES = 24
IMAGE_SIZE = 32


def _color(i):
  """Image i's mean colour: 9 apart from every other's in the red channel, and in
  [16, 239], so that its ±8 texture never clips."""
  return (16 + 9 * i, 239 - 9 * i, 16 + (97 * i) % 224)


def _write_colour_folder(folder, count=NUM_IMAGES):
  """`count` 36 px PNGs (lossless), each one colour (`_color`) with a ±8 texture (flat
  images would leave the evaluation's SWD undefined): the mean colour of a decoded image
  names the file it came from."""
  folder.mkdir()
  rng = np.random.default_rng(0)
  for i in range(count):
    texture = rng.integers(-8, 9, (36, 36, 3))
    pixels = (np.array(_color(i)) + texture - texture.mean(axis=(0, 1))).round()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{i:04d}.png")
  return folder


def _image_ids(images):
  """The file index of each decoded image ([..., S, S, 3]), from its mean colour."""
  colors = np.array([_color(i) for i in range(NUM_IMAGES)], np.float64)
  means = np.asarray(images, np.float64).reshape(-1, IMAGE_SIZE * IMAGE_SIZE, 3).mean(axis=1)
  distances = np.abs(means[:, None, :] - colors[None]).max(axis=-1)
  assert distances.min(axis=1).max() < 2.0  # every image is one file's colour
  return distances.argmin(axis=1)


@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory):
  return _write_colour_folder(tmp_path_factory.mktemp("holdout") / "images")


def _data_config(folder, cache_dir, holdout):
  config = base_config().data
  config.update(source="images", path=str(folder), image_size=IMAGE_SIZE, crop_fraction=0.0,
                crop_size=0, cache_dir=str(cache_dir), decode_workers=1, holdout=holdout)
  return config


def test_split_is_fixed_disjoint_and_nested():
  train, held = split_holdout(100, 10)
  again_train, again_held = split_holdout(100, 10)
  np.testing.assert_array_equal(train, again_train)
  np.testing.assert_array_equal(held, again_held)
  assert len(held) == 10 and len(train) == 90
  assert not set(train) & set(held) and sorted({*train, *held}) == list(range(100))
  assert list(held) == sorted(held) and list(train) == sorted(train)
  # A fixed permutation of the rows, not the first or last ones.
  np.testing.assert_array_equal(
      held, np.sort(np.random.default_rng(HOLDOUT_SEED).permutation(100)[:10]))
  assert list(held) != list(range(10)) and list(held) != list(range(90, 100))
  # A larger holdout contains a smaller one; the training side it is compared with is
  # as large, training images only.
  assert set(held) < set(split_holdout(100, 20)[1])
  compared = comparison_indices(100, 10)
  assert len(compared) == 10 and set(compared) <= set(train)
  assert len(comparison_indices(100, 70)) == 30  # all the training images, when fewer


def test_the_same_images_are_held_out_for_every_seed(colour_folder, tmp_path):
  sources = [data.create_source(_data_config(colour_folder, tmp_path / "cache", 5), seed)
             for seed in (0, 7)]
  held = [sorted(_image_ids(s.holdout_images())) for s in sources]
  assert held[0] == held[1] and len(held[0]) == 5
  assert held[0] == sorted(split_holdout(NUM_IMAGES, 5)[1])  # rows in listing order
  compared = sorted(_image_ids(sources[0].comparison_images()))
  assert len(compared) == 5 and not set(compared) & set(held[0])
  # The decoded cache is the one a run without a holdout reads: one file, one identity.
  whole = data.create_source(_data_config(colour_folder, tmp_path / "cache", 0), 0)
  assert whole.identity == sources[0].identity == sources[1].identity
  assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
  assert len(whole.holdout_images()) == 0 and whole.train_indices is None


@pytest.mark.parametrize("process_count", [1, 2])
def test_training_batches_never_hold_a_held_out_image(colour_folder, tmp_path, process_count):
  source = data.create_source(_data_config(colour_folder, tmp_path / "cache", 6), seed=3,
                              batch_size=4)
  held = set(_image_ids(source.holdout_images()))
  steps = 12  # 12 steps x 2 critic batches x 4 images: four epochs of the 18 left
  seen = []
  for p in range(process_count):
    batches = source.batches(0, 2, 4, process_index=p, process_count=process_count)
    seen.extend(_image_ids(np.concatenate([next(batches) for _ in range(steps)])))
  assert len(seen) == steps * 2 * 4
  assert not set(seen) & held
  assert set(seen) == set(range(NUM_IMAGES)) - held  # every training image is trained on
  # Without a holdout the same stream reaches every image (so the check above can fail).
  whole = data.create_source(_data_config(colour_folder, tmp_path / "cache", 0), seed=3)
  batches = whole.batches(0, 2, 4)
  assert set(_image_ids(np.concatenate([next(batches) for _ in range(steps)]))) == set(
      range(NUM_IMAGES))


@pytest.mark.parametrize("holdout,batch,message", [
    (24, 1, r"--config\.data\.holdout=24 leaves 0 of the 24 images to train on, fewer than "
            r"a batch of 1: set --config\.data\.holdout to at most 23"),
    (30, 8, r"--config\.data\.holdout=30 leaves 0 of the 24 images .* at most 16"),
    (21, 4, r"--config\.data\.holdout=21 leaves 3 of the 24 images to train on, fewer than "
            r"a batch of 4: set --config\.data\.holdout to at most 20 \(0: no holdout\)")])
def test_a_holdout_that_leaves_less_than_a_batch_is_refused(colour_folder, tmp_path, holdout,
                                                            batch, message):
  with pytest.raises(DataError, match=message):
    data.create_source(_data_config(colour_folder, tmp_path / "cache", holdout), 0, batch)


def test_the_cli_refuses_a_too_large_holdout_in_one_line(colour_folder, tmp_path,
                                                         cli_in_process):
  result = cli_in_process("wgan_gp.main", f"--config={CONFIGS / 'celeba64.py'}:smoke",
                          f"--workdir={tmp_path / 'run'}", "--config.data.source=images",
                          f"--config.data.path={colour_folder}", "--config.data.crop_fraction=0",
                          f"--config.data.cache_dir={tmp_path / 'cache'}",
                          "--config.data.holdout=20")
  assert result.returncode != 0
  errors = [line for line in result.stderr.splitlines() if "--config.data.holdout=20" in line]
  assert len(errors) == 1 and "fewer than a batch of 8" in errors[0]
  assert "set --config.data.holdout to at most 16" in errors[0]


def test_toy_data_refuses_a_holdout():
  config = base_config().data
  config.update(source="8gaussians", holdout=3)
  with pytest.raises(DataError, match=r"--config\.data\.holdout=3 .* 2-D toy data .* "
                                      r"set --config\.data\.holdout=0"):
    data.create_source(config, 0)


def test_critic_scores_are_means_over_the_two_sets_in_unit_range(colour_folder, tmp_path):
  from wgan_gp.evaluators import CriticScores
  source = data.create_source(_data_config(colour_folder, tmp_path / "cache", 5), 0)
  shapes = []

  def criticize(d_params, x):
    """A stand-in critic: an image's mean value times d_params; records what it traces."""
    shapes.append(x.shape)
    return x.mean(axis=(1, 2, 3)) * d_params

  gan = types.SimpleNamespace(criticize=criticize)
  scores = CriticScores(source, gan, batch_size=4)(2.0)
  expected = {name: 2.0 * np.mean(images.astype(np.float64) * (2 / 255) - 1)
              for name, images in (("train", source.comparison_images()),
                                   ("holdout", source.holdout_images()))}
  assert scores["critic_score_train"] == pytest.approx(expected["train"], abs=1e-5)
  assert scores["critic_score_holdout"] == pytest.approx(expected["holdout"], abs=1e-5)
  assert scores["critic_score_gap"] == scores["critic_score_train"] - scores[
      "critic_score_holdout"]
  assert abs(scores["critic_score_gap"]) > 0.01  # the two sets differ in colour
  # One shape, traced once: 5 images are two batches of 4.
  assert shapes == [(4, IMAGE_SIZE, IMAGE_SIZE, 3)]


def _smoke_config(folder, cache_dir, **overrides):
  """celeba64.py:smoke on the colour folder, 4 of its 24 images held out."""
  return load_config(str(CONFIGS / "celeba64.py:smoke"), {
      "data.source": "images", "data.path": str(folder), "data.crop_fraction": 0.0,
      "data.cache_dir": str(cache_dir), "data.holdout": 4, "n_critic": 1, **overrides})


@pytest.mark.slow  # a training run: its step compiles for about 10 s on 2 cores
def test_each_evaluation_records_the_critic_on_held_out_and_training_images(colour_folder,
                                                                            tmp_path):
  from wgan_gp import models, train
  from wgan_gp.evaluators import CriticScores
  config = _smoke_config(colour_folder, tmp_path / "cache", num_train_steps=2, eval_every=1,
                         eval_samples=8, checkpoint_every=2)
  workdir = tmp_path / "run"
  state = train.train_and_evaluate(config, str(workdir))  # in this process: two steps
  records = [json.loads(line) for line in (workdir / "eval.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records] == [1, 2]
  for record in records:
    train, held = record["eval/critic_score_train"], record["eval/critic_score_holdout"]
    assert math.isfinite(train) and math.isfinite(held)
    assert record["eval/critic_score_gap"] == train - held
    assert "eval/swd" in record and "eval/norm_stats" in record  # beside the other metrics
  assert records[0]["eval/critic_score_gap"] != records[1]["eval/critic_score_gap"]
  # The last record is the final critic's mean score on exactly those images, as the step
  # sees real ones: uint8 to [-1, 1], no flip, no augmentation.
  source = data.create_source(config.data, config.seed, config.batch_size)
  gan = models.build(config.model, source.data_shape)
  for images, key in ((source.holdout_images(), "holdout"),
                      (source.comparison_images(), "train")):
    expected = np.mean(np.asarray(gan.criticize(
        state.d_params, images.astype(np.float32) / 127.5 - 1.0), np.float64))
    assert records[-1][f"eval/critic_score_{key}"] == pytest.approx(expected, rel=1e-4,
                                                                    abs=1e-5)
  scores = CriticScores(source, gan, config.batch_size)(state.d_params)
  assert scores == {k.removeprefix("eval/"): v for k, v in records[-1].items()
                    if k.startswith("eval/critic_score_")}


def test_a_run_resumes_only_under_its_own_holdout(colour_folder, tmp_path):
  checkpointer = types.SimpleNamespace(latest_step=lambda: 2)  # a checkpoint at step 2
  workdir = tmp_path / "run"
  workdir.mkdir()
  save_config(_smoke_config(colour_folder, tmp_path, num_train_steps=2), str(workdir))
  other = _smoke_config(colour_folder, tmp_path, num_train_steps=4, **{"data.holdout": 0})
  with pytest.raises(IncompatibleCheckpointError, match=r"data\.holdout: 4 -> 0"):
    check_workdir(other, str(workdir), checkpointer)
  assert check_workdir(_smoke_config(colour_folder, tmp_path, num_train_steps=4),
                       str(workdir), checkpointer) is not None
  # A run from before the field held nothing out: it resumes under holdout 0 only.
  saved = json.loads((workdir / "config.json").read_text())
  del saved["data"]["holdout"]
  (workdir / "config.json").write_text(json.dumps(saved))
  assert check_workdir(other, str(workdir), checkpointer) is not None
  with pytest.raises(IncompatibleCheckpointError, match=r"data\.holdout: 0 -> 4"):
    check_workdir(_smoke_config(colour_folder, tmp_path, num_train_steps=4), str(workdir),
                  checkpointer)
