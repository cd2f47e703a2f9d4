"""The screen of #35: a cheaper critic step, and capacity bought with the time it saves,
against the `cpu` recipe at one equal budget.

    python -m wgan_gp.sweep experiments/faces64/sweeps/faces_critic_step_screen.py \\
        --workdir=runs/faces_critic_step_screen --cpus=0,1
    FACES_SCREEN_MINUTES=40 python -m wgan_gp.sweep ...   # the budget (CPU minutes)
    FACES_SCREEN_SEED=1 python -m wgan_gp.sweep experiments/faces64/sweeps/faces_critic_step_screen.py \
        --workdir=runs/faces_critic_step_screen_seed1 --cpus=0,1  # seed 1 of the first two

Each trial trains for FACES_SCREEN_MINUTES minutes of its own CPU time (default 20;
`train_clock='cpu'`) pinned to one core, two at a time on a 2-core host, in the order
listed (so the recipe and each lever share the machine with a different neighbour); it
is scored by the SWD of 1000 EMA samples (×10³) along the way and by the face protocol
at the end (`python -m wgan_gp.face_protocol --workdir=<trial>`). Every trial holds out
the same 500 images (`data.holdout`), whose critic scores against 500 training images'
show whether the critic memorises. Budget schedules and the late EMA end with each
trial's own budget.
"""

import os
import pathlib

DATA = str(pathlib.Path(__file__).resolve().parents[4] / "shared" / "data" /
           "celeba_align_10k_89x109.tar")
MINUTES = float(os.environ.get("FACES_SCREEN_MINUTES", "20"))
BASE_CONFIG = "configs/celeba64.py:cpu"
FIXED = {
    "data.source": "images", "data.path": DATA, "data.holdout": 500,
    "train_minutes": MINUTES, "train_clock": "cpu",
    "log_every": 50, "sample_every": 1_000_000, "checkpoint_every": 500, "eval_every": 500,
    "eval_metrics": "swd", "eval_samples": 1000,
}
_LAZY = {"loss.gp_every": 2}
_ONE_TO_ONE = {"n_critic": 1}
_RAMPED_EMA = {"ema_halflife_images": 10_000.0, "ema_start": 0.0}

# Per generator step on 2 cores of an AMD EPYC, against the recipe's 0.46 s
# (experiments/speed/results/critic_step_levers_cpu_epyc_w24_b32_nc2.md): the penalty
# costs 36%; the lazy penalty saves 18%, 1:1 updates 38%; width 32 costs 58%, 28% with
# the lazy penalty and nothing with 1:1 updates.
TRIALS = [
    {},                                               # the recipe: named 'base'
    _LAZY,                                            # the lazy penalty at width 24
    {**_LAZY, "model.width": 32},                     # its time spent on width
    {**_ONE_TO_ONE, "model.width": 32},               # 1:1 updates' time spent on width
    {**_ONE_TO_ONE, "model.width": 32,                # ... with the critic's rate doubled
     "optim.critic.learning_rate": 8e-4},
    _RAMPED_EMA,                                      # the EMA from the first step, ramped
    # Added after the 60-minute bCR run (#35): the two levers that cost little or were
    # only judged at 60 minutes, each on the screen's winner.
    {**_LAZY, "model.minibatch_stddev": True},        # PGGAN's minibatch stddev
    {**_LAZY, "loss.consistency_real_weight": 1.0,    # bCR at the short budget
     "loss.consistency_fake_weight": 1.0},
]
# Another seed of the recipe and the screen's best (the lazy penalty), in a workdir of
# its own: FACES_SCREEN_SEED=1 python -m wgan_gp.sweep ... --workdir=runs/..._seed1
SEED = int(os.environ.get("FACES_SCREEN_SEED", "0"))
if SEED:
  TRIALS = [{**trial, "seed": SEED} for trial in TRIALS[:2]]
NAME_KEYS = ["loss.gp_every", "n_critic", "model.width", "optim.critic.learning_rate",
             "ema_halflife_images", "model.minibatch_stddev", "loss.consistency_real_weight"]
SORT_BY = "eval/swd"
COLUMNS = ["eval/swd", "eval/critic_score_gap", "step", "steps_per_sec", "training_seconds",
           "wasserstein", "gradient_penalty", "interp_grad_norm_mean"]
