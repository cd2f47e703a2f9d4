"""CelebA faces at 64×64 with the paper's 64×64 WGAN-GP setting (gan_64x64.py).

λ = 10, n_critic = 5, Adam(1e-4, β1 = 0, β2 = 0.9), batch 64, z of size 128, the ResNet
pair with LayerNorm in the critic.

Arguments (comma-separated, after a colon):
  dcgan      the DCGAN pair instead of the ResNet pair
  halfsize   crop for the 89×109 half-size CelebA copy (54 px instead of 108 px)
  cpu        the round-1 CPU face recipe (the shipped celeba64-cpu generator): the best
             FID found for 60 minutes of training on a 2-core CPU in round 1
  cpu2       round 2's screen winner: round 1 with augmentation for the critic, a budget
             schedule, n_critic 2 at batch 32 and the drift term
             (experiments/sweeps/faces_cpu_round2.py)
  cpu3       round 2's re-screen winner (the shipped celeba64-cpu3 generator): width 24,
             n_critic 2 at batch 32, no augmentation, constant rates, β2 0.99, a late EMA
             and the drift term
  cpu4       cpu3 with the generator at the critic's rate (4e-4 for both), the best CPU
             recipe: FID@5k 36.1 ± 2.6 over 3 seeds at 60 minutes (the shipped
             celeba64-cpu4 generator)
  gpu        the GPU face recipe: 6 minutes on one H100/H200 (experiments/gpu_faces.sh)
  smoke      a tiny model and a few steps, for tests (with cpu/gpu: that recipe's
             optimisation settings, on the tiny model)
Examples:
  python -m wgan_gp.main --config=configs/celeba64.py --workdir=runs/celeba64   # TFDS celeb_a
  python -m wgan_gp.main --config=configs/celeba64.py --workdir=runs/celeba64 \\
      --config.data.source=images --config.data.path=/data/img_align_celeba.zip
"""

from wgan_gp.config import base_config, parse_args

_MODIFIERS = {"dcgan", "halfsize", "smoke"}  # the recipes are _RECIPE_FUNCTIONS, at the end


def get_config(arg: str = ""):
  args = parse_args(arg)
  known = _MODIFIERS | set(_RECIPE_FUNCTIONS)
  if args - known:
    raise ValueError(f"unknown celeba64.py arguments {sorted(args - known)}; "
                     f"expected some of {sorted(known)}")
  config = base_config()
  # TFDS celeb_a; or --config.data.source=images --config.data.path=<folder, .zip or .tar>.
  config.data.source = "tfds"
  config.data.image_size = 64
  config.data.crop_size = 54 if "halfsize" in args else 108

  config.model.arch = "dcgan" if "dcgan" in args else "resnet"
  config.model.width = 64
  config.model.z_dim = 128
  config.loss.gp_weight = 10.0
  config.batch_size = 64
  config.n_critic = 5
  config.num_train_steps = 100_000
  config.eval_every = 10_000
  config.eval_metrics = "fid,kid"  # on 10,000 samples; the best-FID checkpoint is kept
  config.eval_samples = 10_000

  recipes = sorted(args & set(_RECIPE_FUNCTIONS))
  if len(recipes) > 1:
    raise ValueError(f"celeba64.py: choose one recipe of {', '.join(map(repr, _RECIPE_FUNCTIONS))}, "
                     f"not {recipes}")
  if recipes:
    _RECIPE_FUNCTIONS[recipes[0]](config)

  if "smoke" in args:
    config.model.arch = "dcgan"
    config.model.width = 8
    config.data.image_size = 32
    config.batch_size = 8
    config.num_train_steps = 10
    config.log_every = 5
    config.sample_every = 5
    config.checkpoint_every = 5
    config.num_sample_images = 16
    config.eval_metrics = "swd"  # needs no weights, and is quick on a few images
    config.eval_samples = 64
    config.train_minutes = min(config.train_minutes, 5.0) if config.train_minutes else 0.0
  return config


def _adam(config, critic_lr: float, generator_lr: float, b1: float, b2: float):
  for name, lr in (("critic", critic_lr), ("generator", generator_lr)):
    config.optim[name].update(name="adam", learning_rate=lr, b1=b1, b2=b2,
                              schedule="constant")


def _cpu_recipe(config):
  """The CPU recipe, found by experiments/sweeps/faces_cpu_screen.py (a 6-minute screen
  on one core per trial) and confirmed at 60 minutes; see experiments/README.md."""
  config.data.crop_size = 54  # the 89×109 CelebA sample that the recipe was tuned on
  config.model.arch = "dcgan"
  config.model.width = 16  # on a CPU, more steps of a narrow pair beat fewer of a wide one
  config.batch_size = 64
  config.n_critic = 1
  _adam(config, critic_lr=4e-4, generator_lr=1e-4, b1=0.0, b2=0.9)  # two timescales
  config.ema_decay = 0.999
  config.train_minutes = 60.0
  config.num_train_steps = 1_000_000  # the budget ends the run
  config.log_every = 50
  config.sample_every = 500
  config.checkpoint_every = 500
  # The curve: SWD of 1000 samples (seconds); the final number: the face protocol.
  config.eval_every = 500
  config.eval_metrics = "swd"
  config.eval_samples = 1000


def _cpu_round2_recipe(config):
  """Round 2 of the CPU recipe: the best of a 24-trial random search
  (experiments/sweeps/faces_cpu_round2.py, 2.5 CPU-minutes per trial on one pinned
  core; SWD 85.7 against round 1's 121.5), then trained for 60 minutes
  (experiments/README.md §8).

  Round 1 with translation and cutout for the critic, two critic updates per step at
  batch 32, equal and 2× higher learning rates that decay linearly to 0 over the second
  half of the budget, and the ε-drift term.
  """
  _cpu_recipe(config)
  config.batch_size = 32
  config.n_critic = 2
  config.augment = "translation,cutout"
  config.loss.drift_weight = 0.001
  # Every strided layer folded: ~5% more steps at this shape (batch 32, n_critic 2), the
  # same values (experiments/results/speed_levers_cpu_xeon_w16_b32_nc2*.md).
  config.model.conv_fold = "all"
  _adam(config, critic_lr=8e-4, generator_lr=8e-4, b1=0.0, b2=0.9)
  for name in ("critic", "generator"):
    config.optim[name].update(schedule="budget-linear", decay_start=0.5, final_scale=0.0)
  config.ema_decay = 0.999


def _cpu_rescreen_recipe(config):
  """The winner of round 2's re-screen (the screen's best six at 3× the length,
  experiments/results/faces_cpu_round2_rescreen.md), confirmed at 60 minutes
  (experiments/README.md §8).

  A wider pair than round 1 (24), two critic updates per step at batch 32, no
  augmentation, constant two-timescale rates with β2 0.99, an EMA that starts at half
  the budget (the first half's weights are far from the end's) and the drift term.
  """
  _cpu_recipe(config)
  config.model.width = 24
  config.model.conv_fold = "all"  # as cpu2: the same function, a faster step at width 16
  config.batch_size = 32
  config.n_critic = 2
  config.loss.drift_weight = 0.001
  _adam(config, critic_lr=4e-4, generator_lr=2e-4, b1=0.0, b2=0.99)
  config.ema_decay = 0.999
  config.ema_start = 0.5


def _cpu_equal_rates_recipe(config):
  """cpu3 with the generator as fast as the critic, confirmed at 60 minutes with 3 seeds
  (experiments/README.md §8).

  At cpu3's 2e-4 the generator lags: the pair is far from converged at the hour and a
  late decay made it worse, so the generator gets more progress per step instead.
  """
  _cpu_rescreen_recipe(config)
  config.optim.generator.learning_rate = 4e-4


def _gpu_recipe(config):
  """The GPU recipe for one H100/H200 and a 6-minute budget (experiments/gpu_faces.sh);
  not yet run on a GPU.

  The CPU recipe's optimisation, with a batch and width that fill the chip (at batch 64
  one step uses only 3-26% of it) and bf16 activations, and round 2's levers scaled to
  the GPU: at ~20 steps/s of batch 256 a 6-minute run shows each of the 10,000 images
  ~180 times, deep in the regime where the critic memorises them, so the full
  DiffAugment policy; the learning rates decay over the second half of the budget, and
  the EMA starts after the first quarter.
  """
  config.data.crop_size = 54
  config.model.arch = "dcgan"
  config.model.width = 64
  config.model.compute_dtype = "bfloat16"
  config.batch_size = 256
  config.n_critic = 1
  _adam(config, critic_lr=4e-4, generator_lr=1e-4, b1=0.0, b2=0.9)
  for name in ("critic", "generator"):
    config.optim[name].update(schedule="budget-cosine", decay_start=0.5, final_scale=0.0)
  config.augment = "color,translation,cutout"
  config.ema_decay = 0.999
  config.ema_start = 0.25
  config.train_minutes = 6.0
  config.num_train_steps = 1_000_000
  config.log_every = 200
  config.sample_every = 2000
  config.checkpoint_every = 2000
  # The curve: SWD of 2000 samples (seconds on a GPU; no FID weights travel to the
  # device); the final number: the protocol, on the CPU, from the exported generator.
  config.eval_every = 2000
  config.eval_metrics = "swd"
  config.eval_samples = 2000


_RECIPE_FUNCTIONS = {"cpu": _cpu_recipe, "cpu2": _cpu_round2_recipe,
                     "cpu3": _cpu_rescreen_recipe, "cpu4": _cpu_equal_rates_recipe,
                     "gpu": _gpu_recipe}
