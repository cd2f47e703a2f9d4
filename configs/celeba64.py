"""CelebA faces at 64×64 with the paper's 64×64 WGAN-GP setting (gan_64x64.py).

λ = 10, n_critic = 5, Adam(1e-4, β1 = 0, β2 = 0.9), batch 64, z of size 128, the ResNet
pair with LayerNorm in the critic.

Arguments (comma-separated, after a colon):
  dcgan      the DCGAN pair instead of the ResNet pair
  halfsize   crop for the 89×109 half-size CelebA copy (54 px instead of 108 px)
  smoke      a tiny model and a few steps, for tests
Examples:
  python -m wgan_gp.main --config=configs/celeba64.py --workdir=runs/celeba64   # TFDS celeb_a
  python -m wgan_gp.main --config=configs/celeba64.py --workdir=runs/celeba64 \\
      --config.data.source=images --config.data.path=/data/img_align_celeba.zip
"""

from wgan_gp.config import base_config, parse_args

_ARGS = {"dcgan", "halfsize", "smoke"}


def get_config(arg: str = ""):
  args = parse_args(arg)
  if args - _ARGS:
    raise ValueError(f"unknown celeba64.py arguments {sorted(args - _ARGS)}; "
                     f"expected some of {sorted(_ARGS)}")
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
  return config
