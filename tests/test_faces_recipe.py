"""The face recipes and what shows their results: training-time records and budgets,
the quality-vs-compute plot, and the shipped generator."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import CELEBA_TAR_IMAGE_SIZE, CONFIGS, REPO_ROOT, subprocess_env
from test_main import _checkpoint_steps, _read_jsonl, _run_main, _write_image_folder
from wgan_gp import exit_codes, plot, pretrained
from wgan_gp.config import canonical_config, get_dotted, load_config


@pytest.mark.parametrize("recipe", ["cpu", "gpu", "cpu_round1", "cpu_round2", "cpu_round3"])
@pytest.mark.slow
def test_recipe_smoke_variant_trains_through_main(tmp_path, recipe):
  config = load_config(str(CONFIGS / f"celeba64.py:{recipe}"))
  assert config.loss.name == "wgan-gp" and config.loss.gp_weight > 0
  assert config.train_minutes > 0  # a recipe is a training-time budget
  smoke = load_config(str(CONFIGS / f"celeba64.py:{recipe},smoke"))
  for key in ("n_critic", "optim.critic.learning_rate", "optim.generator.learning_rate",
              "optim.critic.b1", "optim.critic.b2", "optim.generator.b2", "optim.critic.schedule", "optim.generator.schedule",
              "optim.critic.decay_start", "ema_decay", "ema_start", "augment",
              "loss.drift_weight"):
    assert get_dotted(smoke.to_dict(), key) == get_dotted(config.to_dict(), key), key  # the smoke variant keeps the recipe
  folder = _write_image_folder(tmp_path / "faces")
  workdir = tmp_path / "run"
  _run_main(f"celeba64.py:{recipe},smoke", workdir, "--config.data.source=images",
            f"--config.data.path={folder}", "--config.data.crop_size=40",
            "--config.data.crop_fraction=0",
            f"--config.data.cache_dir={tmp_path / 'cache'}")
  assert _checkpoint_steps(workdir)[-1] == smoke.num_train_steps
  saved = json.loads((workdir / "config.json").read_text())
  assert saved["n_critic"] == config.n_critic
  assert (workdir / "samples" / f"step_{smoke.num_train_steps:07d}.png").exists()




@pytest.mark.parametrize("recipe, run, overrides", [
    ("cpu_round3", "faces_cpu3_seed0", {"seed": 0}),
    ("cpu", "faces_cpu3_glr4_seed0", {"seed": 0}),
    ("cpu", "faces_cpu3_glr4_seed1", {"seed": 1}),
    ("cpu", "faces_cpu3_glr4_seed2", {"seed": 2}),
    ("cpu", "faces_cpu4_140_seed0", {"seed": 0, "train_minutes": 140.0}),
    ("cpu", "faces_cpu4_140_seed1", {"seed": 1, "train_minutes": 140.0}),
    # Forks of seed 1's run at minute 132.5, each to 150 minutes with one change.
    ("cpu", "faces_cpu4_140_seed1_forks/constant150", {"seed": 1, "train_minutes": 150.0}),
    ("cpu", "faces_cpu4_140_seed1_forks/decay150",
     {"seed": 1, "train_minutes": 150.0,
      **{f"optim.{net}.{key}": value for net in ("critic", "generator") for key, value in
         (("schedule", "budget-linear"), ("decay_start", 0.8834), ("final_scale", 0.0))}}),
    ("cpu", "faces_cpu4_140_seed1_forks/batch64",
     {"seed": 1, "train_minutes": 150.0, "batch_size": 64}),
    ("cpu", "faces_cpu4_140_seed1_forks/ncritic5",
     {"seed": 1, "train_minutes": 150.0, "n_critic": 5})])
def test_recipe_is_the_config_of_its_confirmation_runs(recipe, run, overrides):
  """The 60-minute runs behind a recipe's rows (and shipped generator) were started before
  the recipe had a name; each saved config is the recipe's apart from the data's location,
  the seed and, for a long run, the budget (and, for a fork, its one change)."""
  saved = json.loads((REPO_ROOT / "experiments" / "faces64" / "results" / run / "config.json").read_text())
  recipe = load_config(str(CONFIGS / f"celeba64.py:{recipe}"),
                       {"data.source": saved["data"]["source"], "data.path": saved["data"]["path"],
                        **overrides})
  # Both whole configs in the canonical framing that resuming uses: the crop as pixels of
  # the runs' images (the 89x109 tar; test_crop_framing.py checks its size), whether
  # written as crop_size 54 (the runs, from before crop_fraction) or as a fraction.
  assert saved["data"]["path"].endswith("celeba_align_10k_89x109.tar")
  assert (canonical_config(json.loads(json.dumps(recipe.to_dict())), CELEBA_TAR_IMAGE_SIZE)
          == canonical_config(saved, CELEBA_TAR_IMAGE_SIZE))


def test_two_recipes_at_once_are_refused():
  with pytest.raises(ValueError, match=r"choose one recipe.*\['cpu_round2', 'cpu_round3'\]"):
    load_config(str(CONFIGS / "celeba64.py:cpu_round3,cpu_round2"))


@pytest.mark.slow
def test_eval_records_carry_training_seconds_and_the_budget_stops_the_run(tmp_path):
  workdir = tmp_path / "toy"
  # Compilation counts as training time: 0.3 minutes leave room for it on a busy host.
  _run_main("toy2d.py:smoke", workdir, "--config.num_train_steps=1000000",
            "--config.train_minutes=0.3", "--config.eval_every=400",
            "--config.checkpoint_every=100000")
  last = _checkpoint_steps(workdir)[-1]
  assert 400 < last < 1_000_000  # stopped by the budget, with a final checkpoint
  evals = _read_jsonl(workdir / "eval.jsonl")
  seconds = [e["eval/training_seconds"] for e in evals]
  assert evals[-1]["step"] == last
  assert all(b > a for a, b in zip(seconds, seconds[1:]))
  assert len(evals) >= 2 and 0.3 * 60 <= seconds[-1] < 0.3 * 60 + 5  # checked every step
  metrics = _read_jsonl(workdir / "metrics.jsonl")
  assert metrics[-1]["training_seconds"] <= seconds[-1] + 1e-6
  # The budget is kept across resumes: a rerun trains nothing and keeps the files.
  result = _run_main("toy2d.py:smoke", workdir, "--config.num_train_steps=1000000",
                     "--config.train_minutes=0.3", "--config.eval_every=400",
                     "--config.checkpoint_every=100000")
  assert "budget of 0.3 min is spent" in result.stderr
  assert _checkpoint_steps(workdir)[-1] == last
  assert len(_read_jsonl(workdir / "eval.jsonl")) == len(evals)


def _fake_run(folder, records):
  folder.mkdir()
  with open(folder / "eval.jsonl", "w") as f:
    for record in records:
      f.write(json.dumps(record) + "\n")
  return folder


def test_plot_draws_each_run_against_training_minutes(tmp_path):
  a = _fake_run(tmp_path / "a", [{"step": s, "eval/swd": 100.0 / s, "eval/fid": 300.0 / s,
                                  "eval/training_seconds": 60.0 * s} for s in (1, 2, 4)])
  b = _fake_run(tmp_path / "b", [{"step": 5, "eval/swd": 30.0},  # no time: left out
                                 {"step": 9, "eval/swd": 20.0, "eval/training_seconds": 90.0}])
  assert plot.read_curve(str(a))["fid"] == [(1.0, 300.0), (2.0, 150.0), (4.0, 75.0)]
  assert plot.read_curve(str(b)) == {"swd": [(1.5, 20.0)]}
  out = tmp_path / "figures" / "curve.png"
  assert plot.main([str(a), str(b), f"--out={out}", "--labels=recipe,baseline"]) == 0
  image = Image.open(out)
  assert image.format == "PNG" and image.size[0] > 2 * image.size[1]  # two panels: fid, swd
  # A sweep's folder plots one curve per trial.
  assert plot.run_workdirs([str(tmp_path)]) == [str(a), str(b)]


def test_plot_of_a_folder_without_evaluations_fails_with_one_line(tmp_path):
  (tmp_path / "empty").mkdir()
  result = subprocess.run([sys.executable, "-m", "wgan_gp.plot", str(tmp_path / "empty"),
                           f"--out={tmp_path / 'x.png'}"], capture_output=True, text=True,
                          cwd=REPO_ROOT, env=subprocess_env())
  assert result.returncode == exit_codes.BAD_INPUT
  assert result.stderr.strip().splitlines() == [
      f"error: {tmp_path / 'empty'} holds no eval.jsonl, nor do its subfolders: give a "
      "run's --workdir or a sweep's"]
  assert not (tmp_path / "x.png").exists()


def _sample(*args):
  result = subprocess.run([sys.executable, "-m", "wgan_gp.sample", *args], cwd=REPO_ROOT,
                          env=subprocess_env(), capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def test_at_most_two_generators_ship_and_a_retired_one_says_how_to_get_it_back():
  shipped = pretrained.available()
  assert 1 <= len(shipped) <= 2, shipped  # every install carries them
  assert "celeba64-cpu" in shipped
  for name in pretrained.RETIRED:
    assert name not in shipped
    with pytest.raises(FileNotFoundError) as error:
      pretrained.resolve(name)
    message = str(error.value)
    assert "\n" not in message and "no longer shipped" in message
    assert f"git archive {pretrained.RETIRED_AT} wgan_gp/weights/" in message
    assert "configs/celeba64.py:cpu" in message
  for name in shipped:  # their statistics record the weights they are for (checked on load)
    folder = pretrained.resolve(name)
    generator = pretrained.load(name)
    with np.load(f"{folder}/{pretrained.STATS_FILE}") as stats:
      assert str(stats[pretrained.HASH_KEY]) == pretrained.weights_hash(generator.params)


@pytest.mark.parametrize("name", [  # the quick tier samples the first one
    name if i == 0 else pytest.param(name, marks=pytest.mark.slow)
    for i, name in enumerate(pretrained.available())])
def test_shipped_generator_samples_faces_without_data(tmp_path, name):
  info = pretrained.load(name).info
  assert info["fid"] > 0 and info["steps"] > 0 and "terms" in info
  paths = [tmp_path / f"{label}.png" for label in ("a", "b", "c")]
  _sample(f"--pretrained={name}", f"--out={paths[0]}")
  _sample(f"--pretrained={name}", f"--out={paths[1]}")
  _sample(f"--pretrained={name}", "--seed=1", f"--out={paths[2]}")
  a, b, c = (np.asarray(Image.open(p)) for p in paths)
  assert a.shape == (8 * 66 + 2, 8 * 66 + 2, 3)  # 64 faces of 64 px, 2 px padding
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert a.std() > 20  # images, not a flat canvas


@pytest.mark.slow
def test_exported_generator_samples_as_its_run_does(tmp_path, image_smoke_run):
  workdir = image_smoke_run[0]  # celeba64.py:smoke on an image folder (read only here)
  from wgan_gp.runs import load_run
  run = load_run(str(workdir))
  exported = tmp_path / "exported"
  pretrained.export(str(exported), run.config, run.state.ema_g_params, {"steps": run.step})
  _sample(f"--workdir={workdir}", "--num=16", f"--out={tmp_path / 'run.png'}")
  _sample(f"--pretrained={exported}", "--num=16", f"--out={tmp_path / 'exported.png'}")
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "run.png")),
                                np.asarray(Image.open(tmp_path / "exported.png")))
  # A parameter file that does not fit its info.json is refused.
  info = json.loads((exported / "info.json").read_text())
  info["model"]["width"] *= 2
  (exported / "info.json").write_text(json.dumps(info))
  with pytest.raises(ValueError, match="does not hold the parameters of the model"):
    pretrained.load(str(exported))
  result = subprocess.run([sys.executable, "-m", "wgan_gp.sample", "--pretrained=nope"],
                          cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True)
  assert result.returncode == exit_codes.BAD_INPUT and "no pretrained generator 'nope'" in result.stderr
