"""CelebA faces at 64×64 with the paper's 64×64 WGAN-GP setting (gan_64x64.py).

λ = 10, n_critic = 5, Adam(1e-4, β1 = 0, β2 = 0.9), batch 64, z of size 128, the ResNet
pair with LayerNorm in the critic.

Arguments (comma-separated, after a colon):
  cpu        the CPU face recipe: FID@5k 36.1 ± 2.6 over 3 seeds after 60 minutes on
             2 cores (the shipped celeba64-cpu generator); the best found so far
  gpu        the GPU face recipe for a 6-minute budget on one H100/H200: not yet run on a
             GPU, so it has no result (experiments/faces64/gpu_faces.sh)
  dcgan      the DCGAN pair instead of the ResNet pair
  halfsize   no effect, kept for old command lines: the crop is a fraction of the short
             side (data.crop_fraction), which frames the face the same on the 89×109
             half-size CelebA copy (54 px) as on the 178×218 original (108 px)
  smoke      a tiny model, n_critic 2 and a few steps, for tests (with a recipe: that
             recipe's optimisation settings and n_critic, on the tiny model)
  cpu_round1, cpu_round2, cpu_round3
             the superseded CPU recipes, kept for the record (experiments/faces64/README.md):
             each round's best, and each beaten by the next
When a better recipe is confirmed, it becomes `cpu` and the one it replaces takes the
next round name (`cpu_round4`), in the same commit that rewrites every record naming it.
Examples:
  python -m wgan_gp.main --config=configs/celeba64.py --workdir=runs/celeba64   # TFDS celeb_a
  python -m wgan_gp.main --config=configs/celeba64.py --workdir=runs/celeba64 \\
      --config.data.source=images --config.data.path=/data/img_align_celeba.zip
"""

from wgan_gp.config import FACE_CROP_FRACTION, base_config, parse_args

_MODIFIERS = {"dcgan", "halfsize", "smoke"}  # the recipes are _RECIPE_FUNCTIONS, at the end


def get_config(arg: str = ""):
  args = parse_args(arg)
  known = _MODIFIERS | set(_RECIPE_FUNCTIONS) | set(_RENAMED)
  if args - known:
    raise ValueError(f"unknown celeba64.py arguments {sorted(args - known)}; "
                     f"expected some of {sorted(known)}")
  config = base_config()
  # TFDS celeb_a; or --config.data.source=images --config.data.path=<folder, .zip or .tar>.
  config.data.source = "tfds"
  config.data.image_size = 64
  # The face: 108 px of the 178×218 img_align_celeba, 54 px of its 89×109 copy, the same
  # framing at any resolution ('halfsize' is no longer needed; --config.data.crop_size=N
  # with --config.data.crop_fraction=0 crops N pixels instead).
  config.data.crop_fraction = FACE_CROP_FRACTION
  config.data.crop_size = 0

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

  renamed = {a: _RENAMED[a] for a in args & set(_RENAMED)}
  if renamed:
    raise ValueError("celeba64.py: recipes were renamed by what they are: "
                     + ", ".join(f"{old!r} is now {new!r}" for old, new in sorted(renamed.items())))
  recipes = sorted(args & set(_RECIPE_FUNCTIONS))
  if len(recipes) > 1:
    raise ValueError(f"celeba64.py: choose one recipe of {', '.join(map(repr, _RECIPE_FUNCTIONS))}, "
                     f"not {recipes}")
  if recipes:
    _RECIPE_FUNCTIONS[recipes[0]](config)

  if "smoke" in args:
    if not recipes:  # a recipe's smoke variant keeps its n_critic
      # Two critic updates still run the critic loop, at 2/5 of the paper's compilation.
      config.n_critic = 2
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


def _cpu_round1_recipe(config):
  """Round 1 of the CPU recipe (superseded by cpu_round2).

    python -m wgan_gp.main --config=configs/celeba64.py:cpu_round1 --workdir=runs/faces \\
        --config.data.source=images --config.data.path=celeba_align_10k_89x109.tar
  Hardware: 2-core AMD EPYC, 60 minutes, 9,647 steps. Result: FID@5k 61.7 (one seed).
  Data: the 10,000-face 89×109 CelebA sample (wgan_gp.data.celeba_sample).

  Found by experiments/faces64/sweeps/faces_cpu_screen.py (a 6-minute screen on one core
  per trial) and confirmed at 60 minutes.
  """
  # The face as the recipe was tuned on it: 54 px of the 89×109 CelebA sample, 108 px of
  # the 178×218 original (the runs' config.json say crop_size 54: the same pixels there).
  config.data.crop_fraction = FACE_CROP_FRACTION
  config.data.crop_size = 0
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
  """Round 2 of the CPU recipe (superseded by cpu_round3).

    python -m wgan_gp.main --config=configs/celeba64.py:cpu_round2 --workdir=runs/faces \\
        --config.data.source=images --config.data.path=celeba_align_10k_89x109.tar
  Hardware: 2-core Intel Xeon (AMX), 60 minutes, 15,248 steps. Result: FID@5k 54.7 (one
  seed). Data: the 10,000-face 89×109 CelebA sample.

  The best of a 24-trial random search (experiments/faces64/sweeps/faces_cpu_round2.py,
  2.5 CPU-minutes per trial on one pinned core; SWD 85.7 against round 1's 121.5).

  Round 1 with translation and cutout for the critic, two critic updates per step at
  batch 32, equal and 2× higher learning rates that decay linearly to 0 over the second
  half of the budget, and the ε-drift term.
  """
  _cpu_round1_recipe(config)
  config.batch_size = 32
  config.n_critic = 2
  config.augment = "translation,cutout"
  config.loss.drift_weight = 0.001
  # Every strided layer folded: ~5% more steps at this shape (batch 32, n_critic 2), the
  # same values (experiments/speed/results/speed_levers_cpu_xeon_w16_b32_nc2*.md).
  config.model.conv_fold = "all"
  _adam(config, critic_lr=8e-4, generator_lr=8e-4, b1=0.0, b2=0.9)
  for name in ("critic", "generator"):
    config.optim[name].update(schedule="budget-linear", decay_start=0.5, final_scale=0.0)
  config.ema_decay = 0.999


def _cpu_round3_recipe(config):
  """Round 3 of the CPU recipe (superseded by cpu): round 2's re-screen winner.

    python -m wgan_gp.main --config=configs/celeba64.py:cpu_round3 --workdir=runs/faces \\
        --config.data.source=images --config.data.path=celeba_align_10k_89x109.tar
  Hardware: 2-core Intel Xeon (AMX), 60 minutes, ~11,300 steps. Result: FID@5k 42.0 ± 1.9
  over 3 seeds. Data: the 10,000-face 89×109 CelebA sample.

  The re-screen ran the round-2 screen's best six at 3× the length
  (experiments/faces64/results/faces_cpu_round2_rescreen.md).

  A wider pair than round 1 (24), two critic updates per step at batch 32, no
  augmentation, constant two-timescale rates with β2 0.99, an EMA that starts at half
  the budget (the first half's weights are far from the end's) and the drift term.
  """
  _cpu_round1_recipe(config)
  config.model.width = 24
  config.model.conv_fold = "all"  # as cpu2: the same function, a faster step at width 16
  config.batch_size = 32
  config.n_critic = 2
  config.loss.drift_weight = 0.001
  _adam(config, critic_lr=4e-4, generator_lr=2e-4, b1=0.0, b2=0.99)
  config.ema_decay = 0.999
  config.ema_start = 0.5


def _cpu_recipe(config):
  """The CPU face recipe: the best found for 60 minutes of training on 2 CPU cores.

    python -m wgan_gp.main --config=configs/celeba64.py:cpu --workdir=runs/faces \\
        --config.data.source=images --config.data.path=celeba_align_10k_89x109.tar
  Hardware: 2-core Intel Xeon (AMX), 60 minutes, 11,600-13,800 steps (3.2-3.8 steps/s).
  Result: FID@5k 36.1 ± 2.6 over 3 seeds (39.1, 34.8, 34.4); stretched to 140 minutes
  (--config.train_minutes=140) 33.3 and 33.4 over 2 seeds.
  Data: the 10,000-face 89×109 CelebA sample (build it from img_align_celeba.zip with
  `python -m wgan_gp.data.celeba_sample`); the crop frames the face on any resolution.

  cpu_round3 with the generator as fast as the critic: at 2e-4 the generator lags (the
  pair is far from converged at the hour and a late decay made it worse), so it gets more
  progress per step instead.
  """
  _cpu_round3_recipe(config)
  config.optim.generator.learning_rate = 4e-4


def _gpu_recipe(config):
  """The GPU recipe for one H100/H200 and a 6-minute budget: NOT YET RUN ON A GPU.

    bash experiments/faces64/gpu_faces.sh
  Hardware: one H100/H200 (planned). Result: none yet. Data: the 10,000-face 89×109
  CelebA sample, carried to the device.

  The CPU recipe's optimisation, with a batch and width that fill the chip (at batch 64
  one step uses only 3-26% of it) and bf16 activations, and round 2's levers scaled to
  the GPU: at ~20 steps/s of batch 256 a 6-minute run shows each of the 10,000 images
  ~180 times, deep in the regime where the critic memorises them, so the full
  DiffAugment policy; the learning rates decay over the second half of the budget, and
  the EMA starts after the first quarter.
  """
  config.data.crop_fraction = FACE_CROP_FRACTION  # the face: 54 px of 89×109, 108 of 178×218
  config.data.crop_size = 0
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


_RECIPE_FUNCTIONS = {"cpu": _cpu_recipe, "gpu": _gpu_recipe,
                     "cpu_round1": _cpu_round1_recipe, "cpu_round2": _cpu_round2_recipe,
                     "cpu_round3": _cpu_round3_recipe}
# Names the recipes had before they were named by what they are (2026-12-07).
_RENAMED = {"cpu2": "cpu_round2", "cpu3": "cpu_round3", "cpu4": "cpu"}
