"""A short λ sweep on faces: 32×32 DCGAN on the 10k-image CelebA sample, λ ∈ {1, 10, 100}.

    nice -n 19 python -m wgan_gp.sweep experiments/faces64/sweeps/faces_lambda.py \\
        --workdir=runs/faces_lambda

Sized to finish on a busy 2-core CPU (a DCGAN of width 16, batch 16, 150 generator
steps, about 10 minutes a trial): it compares the early training of the three λ, not
converged models. Every setting is stated here. The table's `eval/swd` is the sliced
Wasserstein distance (×10³, averaged over the 32 and 16 px pyramid levels; lower is
better) of 1000 samples of the EMA generator against 1000 training images.
"""

import pathlib

from wgan_gp.sweep import product

# The 10k-image sample beside the checkout (../shared); --config.data.path elsewhere.
DATA = str(pathlib.Path(__file__).resolve().parents[4] / "shared" / "data" /
           "celeba_align_10k_89x109.tar")
BASE_CONFIG = "configs/celeba64.py:dcgan,halfsize"
FIXED = {
    "data.source": "images", "data.path": DATA, "data.image_size": 32, "data.crop_size": 54,
    "data.crop_fraction": 0.0,
    "model.arch": "dcgan", "model.width": 16, "model.z_dim": 128, "model.conv_impl": "auto",
    "loss.name": "wgan-gp",
    "batch_size": 16, "n_critic": 5, "num_train_steps": 150, "ema_decay": 0.98,
    "log_every": 10, "sample_every": 150, "checkpoint_every": 50, "num_sample_images": 64,
    # The end-of-run evaluation: SWD of 1000 samples of the EMA generator against 1000
    # training images (FID would need the Inception weights and hours on this CPU).
    "eval_every": 0, "eval_metrics": "swd", "eval_samples": 1000,
    **{f"optim.{net}.{field}": value for net in ("generator", "critic")
       for field, value in (("name", "adam"), ("learning_rate", 2e-4), ("b1", 0.0),
                            ("b2", 0.9), ("schedule", "constant"))},
}
TRIALS = product({"loss.gp_weight": [1.0, 10.0, 100.0]})
SORT_BY = "eval/swd"
COLUMNS = ["eval/swd", "wasserstein", "gradient_penalty", "interp_grad_norm_mean",
           "critic_grad_norm"]
