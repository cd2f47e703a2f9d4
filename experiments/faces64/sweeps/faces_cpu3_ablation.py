"""The ablation of the cpu3 face recipe (#18): the recipe, then the recipe with each of
its levers (batch with n_critic, and the rates with β2, as pairs) set back to round 1's
value in turn, and the two round-2 levers that it does not use (augmentation, a budget
schedule) added in turn; all at one equal budget.

    python -m wgan_gp.sweep experiments/faces64/sweeps/faces_cpu3_ablation.py \\
        --workdir=runs/faces_cpu3_ablation --cpus=0,1
    FACES_ABLATION_MINUTES=60 python -m wgan_gp.sweep ...   # the budget (CPU minutes)

Each trial trains for FACES_ABLATION_MINUTES minutes of its own CPU time (default 20;
`train_clock='cpu'`) pinned to one core, two at a time on a 2-core host, and is scored by
the SWD of 1000 EMA samples (×10³) as the searches were; its FID is the face protocol
on its workdir (`python -m wgan_gp.face_protocol --workdir=...`). Budget schedules and the
late EMA end with each trial's own budget.
"""

import os
import pathlib

DATA = str(pathlib.Path(__file__).resolve().parents[4] / "shared" / "data" /
           "celeba_align_10k_89x109.tar")
MINUTES = float(os.environ.get("FACES_ABLATION_MINUTES", "20"))
BASE_CONFIG = "configs/celeba64.py:cpu_round3"
FIXED = {
    "data.source": "images", "data.path": DATA, "train_minutes": MINUTES, "train_clock": "cpu",
    "log_every": 50, "sample_every": 1_000_000, "checkpoint_every": 500, "eval_every": 1000,
    "eval_metrics": "swd", "eval_samples": 1000,
}


def _rates(critic: float, generator: float, b2: float) -> dict:
  return {"optim.critic.learning_rate": critic, "optim.generator.learning_rate": generator,
          "optim.critic.b2": b2, "optim.generator.b2": b2}


def _budget_linear(decay_start: float) -> dict:
  return {f"optim.{name}.{key}": value for name in ("critic", "generator")
          for key, value in (("schedule", "budget-linear"), ("decay_start", decay_start),
                             ("final_scale", 0.0))}


# The decay second, beside the recipe: the lever most likely to pay (cpu3 is flat late).
TRIALS = [
    {},                                          # the recipe: named 'base'
    _budget_linear(decay_start=0.5),             # + a decay to 0 over the last half
    {"model.width": 16},                         # round 1's width
    {"batch_size": 64, "n_critic": 1},           # round 1's batch and critic updates
    _rates(4e-4, 1e-4, b2=0.9),                  # round 1's rates and β2
    {"ema_start": 0.0},                          # the EMA from the first step
    {"loss.drift_weight": 0.0},                  # no drift term
    {"augment": "translation,cutout"},           # + cpu2's augmentation
]
# Trial names: the keys that say what changed (a schedule once, not per optimiser).
NAME_KEYS = ["model.width", "batch_size", "n_critic", "optim.critic.learning_rate",
             "optim.generator.learning_rate", "optim.critic.b2", "ema_start",
             "loss.drift_weight", "augment", "optim.critic.schedule"]
SORT_BY = "eval/swd"
COLUMNS = ["eval/swd", "step", "steps_per_sec", "training_seconds", "wasserstein",
           "gradient_penalty"]
