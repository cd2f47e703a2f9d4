"""Standing statistics: a sample depends on its own latent only (issue 19 §2), and the
sampling CLI's one-line errors (§4)."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import REPO_ROOT, subprocess_env
from wgan_gp import exit_codes, latents, models, pretrained, standing_stats, visualize
from wgan_gp.config import base_config
from wgan_gp.evaluators import generate_from_noise


def _tiny_config(arch="dcgan"):
  config = base_config()
  config.model.update(arch=arch, width=4, z_dim=8)
  config.data.image_size = 8
  config.batch_size = 8
  return config


def _tiny_gan(arch="dcgan"):
  config = _tiny_config(arch)
  gan = models.build(config.model, (8, 8, 3))
  return config, gan, gan.init(0)[0]


@pytest.mark.parametrize("arch", ["dcgan", "resnet"])
def test_a_sample_does_not_depend_on_its_batch_mates(arch):
  _, gan, params = _tiny_gan(arch)
  stats = standing_stats.compute(gan, params, batch_size=8, num_batches=3).stats
  a, b, c, d, x, y = np.random.default_rng(0).standard_normal((6, 8), np.float32)
  generate = jax.jit(gan.generate)
  first = np.asarray(generate(params, np.stack([a, b, c, d]), stats))
  second = np.asarray(generate(params, np.stack([x, y, b, a]), stats))
  np.testing.assert_array_equal(first[1], second[2])  # bit for bit, at another position
  np.testing.assert_array_equal(first[0], second[3])
  # With batch statistics (training's, the paper's sampling) the batch-mates show.
  assert not np.array_equal(np.asarray(generate(params, np.stack([a, b, c, d])))[1],
                            np.asarray(generate(params, np.stack([x, y, b, a])))[2])


def test_standing_statistics_average_the_batch_statistics():
  _, gan, params = _tiny_gan()
  computed = standing_stats.compute(gan, params, batch_size=8, num_batches=3, seed=5)
  key = jax.random.PRNGKey(5)
  batches = [gan.norm_batch_stats(params, jax.random.normal(jax.random.fold_in(key, b), (8, 8)))
             for b in range(3)]
  expected = jax.tree.map(lambda *s: np.mean(np.stack(s), 0), *batches)
  assert set(computed.stats) == set(expected) == {"BatchNorm_0"}  # 8×8: one BatchNorm
  jax.tree.map(lambda got, want: np.testing.assert_allclose(got, want, rtol=1e-6),
               computed.stats, expected)
  again = standing_stats.compute(gan, params, batch_size=8, num_batches=3, seed=5)
  jax.tree.map(np.testing.assert_array_equal, computed.stats, again.stats)  # seeded
  # A generator without BatchNorm has none to fix.
  config = _tiny_config()
  config.model.generator_norm = "none"
  plain = models.build(config.model, (8, 8, 3))
  assert standing_stats.compute(plain, plain.init(0)[0], 8).stats == {}


def test_batch_statistics_are_those_of_the_batch():
  """Without norm_stats the generator computes what training computes."""
  _, gan, params = _tiny_gan()
  z = np.random.default_rng(1).standard_normal((5, 8), np.float32)
  np.testing.assert_allclose(gan.generate(params, z),
                             gan.generate(params, z, gan.norm_batch_stats(params, z)),
                             atol=1e-6)


def test_padding_keeps_samples_fixed_whatever_their_number():
  _, gan, params = _tiny_gan()
  stats = standing_stats.compute(gan, params, batch_size=8, num_batches=2).stats
  z = latents.noise(0, 20, 8)
  generate = jax.jit(gan.generate)
  many = generate_from_noise(generate, params, z, batch_size=16, norm_stats=stats)
  one = generate_from_noise(generate, params, latents.noise(0, 1, 8), batch_size=16,
                            norm_stats=stats)
  np.testing.assert_array_equal(one[0], many[0])
  np.testing.assert_array_equal(many[:3], generate_from_noise(
      generate, params, z[:3], batch_size=16, norm_stats=stats))


def test_latent_i_depends_on_seed_and_i_only():
  np.testing.assert_array_equal(latents.noise(3, 1, 8)[0], latents.noise(3, 64, 8)[0])
  z0, z1 = latents.endpoint_pairs(3, 2, 8)
  w0, w1 = latents.endpoint_pairs(3, 9, 8)
  np.testing.assert_array_equal(z0, w0[:2])
  np.testing.assert_array_equal(z1, w1[:2])
  assert not np.array_equal(z0, z1)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  config, gan, params = _tiny_gan()
  folder = tmp_path_factory.mktemp("export") / "tiny"
  pretrained.export(str(folder), config, params, {"name": "tiny"})
  return folder, gan, params


def test_export_stores_and_reloads_the_statistics(exported, tmp_path):
  folder, gan, params = exported
  info = json.loads((folder / "info.json").read_text())
  info_stats = {"file": pretrained.STATS_FILE, "batch_size": 8,
                "num_batches": standing_stats.NUM_BATCHES, "seed": standing_stats.SEED}
  assert info["standing_stats"] == info_stats
  loaded = pretrained.load(str(folder))
  fresh = standing_stats.compute(gan, params, 8)
  jax.tree.map(np.testing.assert_array_equal, loaded.norm_stats.stats, fresh.stats)
  assert loaded.norm_stats.describe() == fresh.describe()
  z = latents.noise(0, 3, 8)  # a notebook's one latent is the image of a batch of them
  np.testing.assert_allclose(loaded.sample(z[:1])[0], loaded.sample(z)[0], atol=1e-5)
  # An export from before standing statistics gets them computed on load, seeded.
  legacy = tmp_path / "legacy"
  legacy.mkdir()
  (legacy / pretrained.PARAMS_FILE).write_bytes((folder / pretrained.PARAMS_FILE).read_bytes())
  del info["standing_stats"]
  (legacy / "info.json").write_text(json.dumps(info))
  jax.tree.map(np.testing.assert_array_equal, pretrained.load(str(legacy)).norm_stats.stats,
               standing_stats.compute(gan, params, pretrained.LEGACY_BATCH_SIZE).stats)
  # ... or stored in its folder, at its run's batch size (how the shipped ones got theirs).
  assert pretrained.add_standing_stats(str(legacy), 8)["standing_stats"] == info_stats
  jax.tree.map(np.testing.assert_array_equal, pretrained.load(str(legacy)).norm_stats.stats,
               fresh.stats)


@pytest.mark.parametrize("damaged", [pretrained.PARAMS_FILE, pretrained.STATS_FILE])
def test_a_truncated_file_is_named(exported, tmp_path, damaged):
  folder = tmp_path / "copy"
  folder.mkdir()
  for path in exported[0].iterdir():
    (folder / path.name).write_bytes(path.read_bytes())
  data = (folder / damaged).read_bytes()
  (folder / damaged).write_bytes(data[:len(data) // 2])
  with pytest.raises(ValueError, match=f"{folder / damaged} is damaged or truncated"):
    pretrained.load(str(folder))


def _sample(*args):
  return subprocess.run([sys.executable, "-m", "wgan_gp.sample", *args], cwd=REPO_ROOT,
                        env=subprocess_env(), capture_output=True, text=True, timeout=300)


def _first_samples(folder, tmp_path, *args):
  out = tmp_path / f"s{len(list(tmp_path.iterdir()))}.npz"
  result = _sample(f"--pretrained={folder}", "--mode=export", "--format=npz",
                   f"--out={out}", *args)
  assert result.returncode == 0, result.stderr[-3000:]
  return np.load(out)["samples"], result.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_sample_num_1_and_64_agree_on_the_first_image(exported, tmp_path):
  folder = exported[0]
  one, line = _first_samples(folder, tmp_path, "--num=1")
  many, _ = _first_samples(folder, tmp_path, "--num=64")
  np.testing.assert_array_equal(one[0], many[0])
  assert line == "BatchNorm statistics: standing (100 batches of 8, seed 0)"
  # The paper's sampling, still there and stated: each batch's own statistics, computed
  # as before standing statistics (the seed's noise stream, in batches of 50).
  batch_many, line = _first_samples(folder, tmp_path, "--num=64", "--norm_stats=batch",
                                    "--batch_size=50")
  assert line == "BatchNorm statistics: batch (50 per batch), the last batch of 14"
  generator = pretrained.load(str(folder))
  z = np.random.default_rng(0).standard_normal((64, 8), np.float32)
  before = generate_from_noise(jax.jit(generator.gan.generate), generator.params, z, 50)
  np.testing.assert_array_equal(batch_many, visualize.to_uint8(before))


def test_sample_refuses_bad_counts_and_damaged_files_in_one_line(exported, tmp_path):
  for num in ("0", "-5"):
    result = _sample(f"--pretrained={exported[0]}", f"--num={num}")
    assert result.returncode == exit_codes.BAD_INPUT
    assert result.stderr.strip().splitlines() == [
        f"error: --num={num}: give at least 1 (images, pairs or samples)"]
  folder = tmp_path / "truncated"
  folder.mkdir()
  for path in exported[0].iterdir():
    (folder / path.name).write_bytes(path.read_bytes())
  damaged = folder / pretrained.PARAMS_FILE
  damaged.write_bytes(damaged.read_bytes()[:100])
  result = _sample(f"--pretrained={folder}")
  assert result.returncode == exit_codes.BAD_INPUT
  [line] = result.stderr.strip().splitlines()
  assert line.startswith(f"error: {damaged} is damaged or truncated")


def test_face_protocol_records_how_samples_were_normalised(tmp_path, monkeypatch):
  from test_face_protocol import _image_folder, _StandInExtractor
  from wgan_gp import face_protocol
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
  monkeypatch.setattr(face_protocol, "default_extractor", _StandInExtractor)
  shipped = tmp_path / "tiny"
  shipped.mkdir()
  config, gan, params = _tiny_gan()
  config.data.crop_size, config.data.crop_fraction = 0, 0.0
  pretrained.export(str(shipped), config, params, {"name": "tiny"})
  folder = _image_folder(tmp_path / "faces", 24, (8, 8))
  before = {p.name: p.read_bytes() for p in shipped.iterdir()}
  rows = {}
  for mode in ("batch", "standing"):
    table = tmp_path / f"{mode}.json"
    assert face_protocol.main([f"--pretrained={shipped}", f"--data_path={folder}",
                               "--num_samples=12", f"--norm_stats={mode}", f"--out={table}"]) == 0
    [rows[mode]] = json.loads(table.read_text())
  assert {p.name: p.read_bytes() for p in shipped.iterdir()} == before  # measured, not written
  assert rows["batch"]["norm_stats"] == "batch (256 per batch)"
  assert rows["standing"]["norm_stats"] == "standing (100 batches of 8, seed 0)"
  assert rows["batch"]["fid"] != rows["standing"]["fid"]


def _copy(folder, to):
  to.mkdir()
  for path in folder.iterdir():
    (to / path.name).write_bytes(path.read_bytes())
  return to


def test_an_export_is_written_whole_or_not_at_all(exported, tmp_path, monkeypatch):
  """A failure midway (here: writing info.json) leaves the old export as it was and no
  half-written folder beside it; new weights never sit beside old statistics."""
  config, gan, _ = _tiny_gan()
  folder = _copy(exported[0], tmp_path / "tiny")
  before = {p.name: p.read_bytes() for p in folder.iterdir()}

  def fail(path, info):
    raise OSError("disk full")

  monkeypatch.setattr(pretrained, "_write_info", fail)
  with pytest.raises(OSError, match="disk full"):
    pretrained.export(str(folder), config, gan.init(1)[0], {"name": "new"})
  assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
  assert [p.name for p in tmp_path.iterdir()] == ["tiny"]
  monkeypatch.undo()
  (folder / "notes.txt").write_text("mine")  # a user's file in the folder is kept
  pretrained.export(str(folder), config, gan.init(1)[0], {"name": "new"})
  assert pretrained.load(str(folder)).info["name"] == "new"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]
  assert (folder / "notes.txt").read_text() == "mine"


def test_statistics_are_refused_beside_other_weights(exported, tmp_path, caplog):
  """Statistics carry the hash of the weights they were made for: another generator's
  (same shapes) is refused in one line, by load and by the sampling CLI; one from before
  the hash is used with one warning line, and stamping it keeps its values."""
  folder, gan, params = exported
  config = _tiny_config()
  other = tmp_path / "other"
  pretrained.export(str(other), config, gan.init(1)[0], {"name": "other"})
  swapped = _copy(folder, tmp_path / "swapped")
  (swapped / pretrained.STATS_FILE).write_bytes((other / pretrained.STATS_FILE).read_bytes())
  result = _sample(f"--pretrained={swapped}", f"--out={tmp_path / 'refused.png'}")
  assert result.returncode == exit_codes.BAD_INPUT, result.stderr[-2000:]
  assert not (tmp_path / "refused.png").exists()
  [line] = result.stderr.strip().splitlines()
  assert line.startswith(f"error: {swapped / pretrained.STATS_FILE} holds the statistics "
                         "of other weights")
  assert line.endswith("re-export the generator, or sample with --norm_stats=batch")
  assert pretrained.load(str(swapped), standing=False).norm_stats is None  # what batch reads
  # New weights beside the old statistics (and the old info.json): refused too.
  replaced = _copy(folder, tmp_path / "replaced")
  (replaced / pretrained.PARAMS_FILE).write_bytes((other / pretrained.PARAMS_FILE).read_bytes())
  with pytest.raises(ValueError, match="statistics of other weights"):
    pretrained.load(str(replaced))
  # A statistics file from before the hash: used, with one warning; then stamped.
  legacy = _copy(folder, tmp_path / "legacy")
  with np.load(legacy / pretrained.STATS_FILE) as arrays:
    values = {k: arrays[k] for k in arrays.files if k != pretrained.HASH_KEY}
  np.savez_compressed(legacy / pretrained.STATS_FILE, **values)
  with caplog.at_level("WARNING"):
    loaded = pretrained.load(str(legacy))
  [warning] = [r.getMessage() for r in caplog.records]
  assert "records no weights hash" in warning and "\n" not in warning
  assert pretrained.stamp_weights_hash(str(legacy)) == pretrained.weights_hash(params)
  caplog.clear()
  with np.load(legacy / pretrained.STATS_FILE) as arrays:
    assert str(arrays[pretrained.HASH_KEY]) == pretrained.weights_hash(params)
    for k, v in values.items():
      np.testing.assert_array_equal(arrays[k], v)
  jax.tree.map(np.testing.assert_array_equal, pretrained.load(str(legacy)).norm_stats.stats,
               loaded.norm_stats.stats)
  assert not caplog.records


def test_legacy_statistics_use_the_runs_batch_size(exported, tmp_path):
  """An export from before standing statistics gets them at its run's batch size where
  its info.json records the run's config, not at the paper's 64."""
  folder, gan, params = exported
  legacy = _copy(folder, tmp_path / "legacy")
  (legacy / pretrained.STATS_FILE).unlink()
  info = json.loads((legacy / "info.json").read_text())
  del info["standing_stats"]
  info["run_config"] = {"batch_size": 8}
  (legacy / "info.json").write_text(json.dumps(info))
  loaded = pretrained.load(str(legacy))
  assert loaded.norm_stats.batch_size == 8
  jax.tree.map(np.testing.assert_array_equal, loaded.norm_stats.stats,
               standing_stats.compute(gan, params, 8).stats)
  assert pretrained.add_standing_stats(str(legacy))["standing_stats"]["batch_size"] == 8
  assert pretrained.load(str(legacy)).norm_stats.describe() == loaded.norm_stats.describe()
