"""Round 2 of the CPU face search (#18): a random search of 24 trials over this round's
levers, screened short, then the best quarter re-screened at 3× the length.

    # screen: 24 trials × 2.5 minutes of training, one pinned core each
    python -m wgan_gp.sweep experiments/faces64/sweeps/faces_cpu_round2.py \\
        --workdir=runs/faces_cpu_round2 --cpus=0,1
    # re-screen: the best 6 by SWD, 7.5 minutes each
    FACES_ROUND2_STAGE=rescreen python -m wgan_gp.sweep experiments/faces64/sweeps/faces_cpu_round2.py \\
        --workdir=runs/faces_cpu_round2_rescreen --cpus=0,1

Trial 0 is the round-1 recipe (`configs/celeba64.py:cpu_round1`) as the control; trials 1-23
are drawn uniformly from the space below with a fixed seed, so the list is reproducible
and readable with `--dry_run`. Budget schedules end with each trial's own budget, so a
short trial runs its schedule compressed. The budget is in CPU minutes of the trial's
process (`train_clock='cpu'`), each trial pinned to one core: the machine was shared with
test runs, and a busy core would otherwise cut a trial's steps. Score: SWD of 1000 EMA samples against 1000
training images (×10³, lower is better), as in round 1; FID only for the confirmation.
"""

import os
import pathlib
import random

DATA = str(pathlib.Path(__file__).resolve().parents[4] / "shared" / "data" /
           "celeba_align_10k_89x109.tar")
STAGE = os.environ.get("FACES_ROUND2_STAGE", "screen")
MINUTES = {"screen": 2.5, "rescreen": 7.5}[STAGE]
BASE_CONFIG = "configs/celeba64.py:cpu_round1"
FIXED = {
    "data.source": "images", "data.path": DATA, "train_minutes": MINUTES, "train_clock": "cpu",
    "log_every": 50, "sample_every": 1_000_000, "checkpoint_every": 500, "eval_every": 0,
    "eval_metrics": "swd", "eval_samples": 1000,
}

SPACE = {
    "augment": ["", "translation", "translation,cutout", "color,translation",
                "color,translation,cutout"],
    # (schedule of both optimisers, decay_start)
    "schedule": [("constant", 0.0), ("budget-cosine", 0.0), ("budget-linear", 0.5)],
    "model.width": [16, 24, 32],
    "batch_size": [32, 64, 128],
    "n_critic": [1, 2],
    "optim.critic.learning_rate": [2e-4, 4e-4, 8e-4],
    "lr_ratio": [1, 2, 4],  # critic rate / generator rate
    "b2": [0.9, 0.99],
    "ema": [(0.999, 0.0), (0.9995, 0.25), (0.999, 0.5)],  # (decay, start)
    "loss.drift_weight": [0.0, 0.001],
}
CONTROL = {"augment": "", "schedule": ("constant", 0.0), "model.width": 16,
           "batch_size": 64, "n_critic": 1, "optim.critic.learning_rate": 4e-4,
           "lr_ratio": 4, "b2": 0.9, "ema": (0.999, 0.0), "loss.drift_weight": 0.0}


def overrides(point: dict) -> dict:
  """A point of the space as config overrides."""
  schedule, decay_start = point["schedule"]
  decay, start = point["ema"]
  critic_lr = point["optim.critic.learning_rate"]
  result = {k: point[k] for k in ("augment", "model.width", "batch_size", "n_critic",
                                  "optim.critic.learning_rate", "loss.drift_weight")}
  result.update({"optim.generator.learning_rate": critic_lr / point["lr_ratio"],
                 "ema_decay": decay, "ema_start": start})
  for name in ("critic", "generator"):
    result.update({f"optim.{name}.schedule": schedule, f"optim.{name}.decay_start": decay_start,
                   f"optim.{name}.b2": point["b2"]})
  return result


def _screen_points() -> list[dict]:
  rng = random.Random(2026_12_04)
  points = [CONTROL]
  while len(points) < 24:
    point = {k: rng.choice(v) for k, v in SPACE.items()}
    if point not in points:  # a repeat would only re-measure the noise
      points.append(point)
  return points


SCREEN = [overrides(p) for p in _screen_points()]
# The best quarter of the screen by SWD (experiments/faces64/results/faces_cpu_round2_screen.md),
# in its order: indices into SCREEN (the screen's ranks 1-6; index 0 is the control).
RESCREEN = [18, 17, 1, 2, 0, 15]
TRIALS = SCREEN if STAGE == "screen" else [SCREEN[i] for i in RESCREEN]

NAME_KEYS = ["augment", "optim.critic.schedule", "model.width", "batch_size", "n_critic",
             "optim.critic.learning_rate", "optim.generator.learning_rate",
             "optim.critic.b2", "ema_decay", "ema_start", "loss.drift_weight"]
SORT_BY = "eval/swd"
COLUMNS = ["eval/swd", "steps_per_sec", "training_seconds", "wasserstein",
           "gradient_penalty"]
