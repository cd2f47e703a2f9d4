"""The speed-lever screen (experiments/speed/speed_levers.py): its verdict, and that the levers
that change the computation's form keep its values."""

import argparse
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "experiments" / "speed"))
import speed_levers  # noqa: E402
from wgan_gp import conv, losses, models  # noqa: E402
from wgan_gp.config import base_config  # noqa: E402
from wgan_gp.validation import check_values  # noqa: E402


def test_a_lever_is_faster_only_against_both_controls_in_every_round(tmp_path):
  rounds = {"baseline": [1.0, 1.2, 1.0, 1.0], "baseline_again": [1.0, 1.19, 1.01, 0.97],
            "fold_all": [0.9, 1.1, 0.95, 0.9],     # every round, by ~8%: faster
            "split_all": [0.9, 1.3, 0.9, 0.9],     # one round slower: not
            "fast_math": [0.98, 1.18, 0.98, 0.98],  # beats baseline, not the other control
            "onednn": [0.995, 1.185, 0.995, 0.965]}  # both controls, by < 1%: not
  args = argparse.Namespace(width=16, batch=64, n_critic=1, rounds=4, per_round=2,
                            out=str(tmp_path / "levers"))
  results = speed_levers.write_outputs(rounds, args)
  verdict = {name: v["faster"] for name, v in results["levers"].items()}
  assert verdict == {"baseline": False, "baseline_again": False, "fold_all": True,
                     "split_all": False, "fast_math": False, "onednn": False}
  fold_all = results["levers"]["fold_all"]
  assert fold_all["time_vs_baseline"] == pytest.approx((0.9 + 1.1 / 1.2) / 2)
  assert fold_all["time_vs_faster_control"] == pytest.approx((1.1 / 1.19 + 0.9 / 0.97) / 2)
  saved = json.loads((tmp_path / "levers.json").read_text())
  assert saved["levers"]["fold_all"]["times_s"] == rounds["fold_all"]
  assert "| fold_all:" in (tmp_path / "levers.md").read_text()
  # A saved run re-scored from its JSON gives the same verdict.
  rescored = speed_levers.write_outputs(
      {name: v["times_s"] for name, v in saved["levers"].items()}, args,
      machine=saved["machine"])
  assert {n: v["faster"] for n, v in rescored["levers"].items()} == verdict


def _config():
  config = base_config()
  # Width 16 at 16×16: layer 16->32 is split by phase under 'thin', folded under 'all'.
  config.model.update(arch="dcgan", width=16, conv_impl="fast")
  return config


def _critic_loss_and_grads(config):
  gan = models.build(config.model, (16, 16, 3))
  _, d_params = gan.init(0)
  rng = np.random.default_rng(0)
  real, fake = (jnp.asarray(rng.uniform(-1, 1, (4, 16, 16, 3)), jnp.float32) for _ in "rf")
  eps = jnp.asarray(rng.uniform(size=4), jnp.float32)

  def loss(params):
    return losses.get_loss(config.loss).critic_loss(gan.criticize, params, real, fake, eps)

  return jax.value_and_grad(loss, has_aux=True)(d_params)


@pytest.mark.parametrize("lever", ["merged_critic_batch", "fold_all", "split_all",
                                   "fold_below_32"])
@pytest.mark.slow
def test_levers_that_reshape_the_computation_keep_its_values(lever, monkeypatch):
  (want_loss, want_metrics), want_grads = _critic_loss_and_grads(_config())
  # Restored after the test: some levers replace these in place.
  monkeypatch.setattr(losses, "wgan_gp_critic_loss", losses.wgan_gp_critic_loss)
  monkeypatch.setattr(conv, "_THIN_CHANNELS", conv._THIN_CHANNELS)
  config = _config()
  speed_levers._apply_lever(speed_levers.LEVERS[lever][2], config)
  (loss, metrics), grads = _critic_loss_and_grads(config)
  np.testing.assert_allclose(loss, want_loss, rtol=1e-5, atol=1e-6)
  for key in want_metrics:
    np.testing.assert_allclose(metrics[key], want_metrics[key], rtol=1e-5, atol=1e-6)
  for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_a_config_lever_sets_the_config():
  config = _config()
  speed_levers._apply_lever(speed_levers.LEVERS["fold_all"][2], config)
  assert config.model.conv_fold == "all"
  speed_levers._apply_lever(speed_levers.LEVERS["split_all"][2], config)
  assert config.model.conv_fold == "none"


def test_the_critic_step_levers_set_top_level_and_nested_fields_together():
  config = _config()
  speed_levers._apply_lever(speed_levers.LEVERS["one_to_one_width_32"][2], config)
  assert (config.n_critic, config.model.width, config.loss.gp_every) == (1, 32, 1)
  config = _config()
  speed_levers._apply_lever(speed_levers.LEVERS["lazy_width_32"][2], config)
  assert (config.loss.gp_every, config.model.width) == (2, 32)


@pytest.mark.parametrize("lever, fields", [
    ("lazy_bcr", (2, 1.0, 1.0, 1)), ("lazy_bcr_every_2", (2, 1.0, 1.0, 2)),
    ("lazy_bcr_real", (2, 1.0, 0.0, 1))])
def test_the_bcr_levers_set_configs_that_validation_accepts(lever, fields):
  config = _config()
  config.n_critic = 2  # the recipe's, which the lazy penalty and bCR's spacing divide
  config.data.source = "images"
  speed_levers._apply_lever(speed_levers.LEVERS[lever][2], config)
  loss = config.loss
  assert (loss.gp_every, loss.consistency_real_weight, loss.consistency_fake_weight,
          loss.consistency_every) == fields
  check_values(config)


def test_the_no_penalty_lever_leaves_the_penalty_out(monkeypatch):
  monkeypatch.setattr(losses, "wgan_gp_critic_loss", losses.wgan_gp_critic_loss)
  speed_levers._apply_lever(speed_levers.LEVERS["no_penalty"][2], _config())
  critic = lambda x: jnp.sum(x, axis=1)
  loss, metrics = losses.wgan_gp_critic_loss(critic, jnp.ones((2, 3)), jnp.zeros((2, 3)),
                                             jnp.full((2,), 0.5), 10.0)
  assert float(loss) == -3.0 and "gradient_penalty" not in metrics


def test_unknown_lever_is_refused():
  with pytest.raises(SystemExit, match="unknown levers"):
    speed_levers.main(speed_levers.parse_args(["--levers", "warp_drive"]))
