"""Screening for the CPU face recipe: 64×64 DCGAN-style WGAN-GP on the 10k CelebA sample.

    python -m wgan_gp.sweep experiments/faces64/sweeps/faces_cpu_screen.py \\
        --workdir=runs/faces_cpu_screen --cpus=1

Each trial trains for a fixed 6 minutes of training time (`train_minutes`, compilation
included) on one pinned core of the 2-core host, and is scored by the SWD of 1000 EMA
samples against 1000 training images (×10³, lower is better; FID on a CPU costs minutes
per evaluation). The loss is always WGAN-GP with the per-sample penalty, λ = 10; what
varies is the width, n_critic, the learning rates (two-timescale or not), β1 and the
batch. The paper's settings (width 64, n_critic 5, Adam 1e-4, β = (0, 0.9)) run at full
length as the baseline instead.
"""

import pathlib

from wgan_gp.sweep import product

DATA = str(pathlib.Path(__file__).resolve().parents[4] / "shared" / "data" /
           "celeba_align_10k_89x109.tar")
BASE_CONFIG = "configs/celeba64.py:dcgan,halfsize"
FIXED = {
    "data.source": "images", "data.path": DATA, "model.z_dim": 128,
    "loss.gp_weight": 10.0, "ema_decay": 0.999, "train_minutes": 6.0,
    "num_train_steps": 100_000, "log_every": 20, "sample_every": 100_000,
    "checkpoint_every": 200, "eval_every": 0, "eval_metrics": "swd", "eval_samples": 1000,
}


def _adam(lr_critic, lr_generator, b1=0.0, b2=0.9):
  return {"optim.critic.learning_rate": lr_critic, "optim.generator.learning_rate": lr_generator,
          "optim.critic.b1": b1, "optim.generator.b1": b1,
          "optim.critic.b2": b2, "optim.generator.b2": b2}


TRIALS = product([
    {"model.width": 32, "n_critic": 1, "batch_size": 64, **_adam(4e-4, 1e-4)},
    {"model.width": 32, "n_critic": 1, "batch_size": 64, **_adam(2e-4, 2e-4, b1=0.5)},
    {"model.width": 32, "n_critic": 2, "batch_size": 64, **_adam(2e-4, 2e-4)},
    {"model.width": 64, "n_critic": 1, "batch_size": 64, **_adam(4e-4, 1e-4)},
    {"model.width": 32, "n_critic": 1, "batch_size": 32, **_adam(4e-4, 1e-4)},
    {"model.width": 16, "n_critic": 1, "batch_size": 64, **_adam(4e-4, 1e-4)},
])
NAME_KEYS = ["model.width", "n_critic", "batch_size", "optim.critic.learning_rate",
             "optim.generator.learning_rate", "optim.critic.b1"]
SORT_BY = "eval/swd"
COLUMNS = ["eval/swd", "steps_per_sec", "training_seconds", "wasserstein",
           "gradient_penalty"]
