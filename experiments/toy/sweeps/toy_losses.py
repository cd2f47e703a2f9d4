"""WGAN-GP vs the original WGAN (weight clipping) vs the standard GAN on the paper's three
2-D distributions, 3 seeds each: the mode-coverage table of experiments/toy/README.md.

    nice -n 19 python -m wgan_gp.sweep experiments/toy/sweeps/toy_losses.py \\
        --workdir=runs/toy_losses --vectorize

Every setting is stated here, so the trials do not move with configs/toy2d.py's defaults.
The MLP pair is 128 wide (the paper's is 512) and trains 2000 generator steps, sized for
a 2-core CPU. --vectorize trains the 3 seeds of each (loss, distribution) together.
"""

from wgan_gp.sweep import product

BASE_CONFIG = "configs/toy2d.py"


def _optimizers(name, learning_rate, schedule, b1=0.5, b2=0.9):
  return {f"optim.{net}.{field}": value
          for net in ("generator", "critic")
          for field, value in (("name", name), ("learning_rate", learning_rate),
                               ("schedule", schedule), ("b1", b1), ("b2", b2))}


FIXED = {
    "model.arch": "mlp", "model.width": 128, "model.mlp_depth": 3, "model.z_dim": 2,
    "batch_size": 256, "num_train_steps": 2000, "ema_decay": 0.999,
    "log_every": 100, "checkpoint_every": 500, "sample_every": 2000, "eval_every": 0,
    "toy_eval_samples": 2500,
}
LOSSES = [
    # Ours, with Adam(5e-4 decaying linearly to 0, β = 0.5, 0.9) and λ = 1.
    {"loss.name": "wgan-gp", "loss.gp_weight": 1.0, "n_critic": 5,
     **_optimizers("adam", 5e-4, "linear")},
    # Arjovsky et al.: every critic weight clipped to ±0.01, RMSProp(5e-5), n_critic = 5.
    {"loss.name": "wgan-clip", "loss.clip_value": 0.01, "n_critic": 5,
     **_optimizers("rmsprop", 5e-5, "constant")},
    # Non-saturating GAN, one discriminator update per generator update.
    {"loss.name": "gan", "n_critic": 1, **_optimizers("adam", 5e-4, "linear")},
]
TRIALS = product(LOSSES, {"data.source": ["8gaussians", "25gaussians", "swissroll"]},
                 {"seed": [0, 1, 2]})
NAME_KEYS = ["loss.name", "data.source", "seed"]
SORT_BY = "-eval/high_quality_pct"
COLUMNS = ["eval/modes_captured", "eval/high_quality_pct", "wasserstein",
           "interp_grad_norm_mean", "steps_per_sec"]
