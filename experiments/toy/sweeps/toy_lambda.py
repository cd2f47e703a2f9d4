"""The gradient-penalty weight λ ∈ {0.1, 1, 10, 100} × n_critic ∈ {1, 5} × 2 seeds on
25 Gaussians: the toy λ table of experiments/toy/README.md.

    nice -n 19 python -m wgan_gp.sweep experiments/toy/sweeps/toy_lambda.py \\
        --workdir=runs/toy_lambda --vectorize

Every setting is stated here, so the trials do not move with configs/toy2d.py's defaults.
λ and the seed are array-valued: --vectorize trains the 8 trials of each n_critic in one
compiled program.
"""

from wgan_gp.sweep import product

BASE_CONFIG = "configs/toy2d.py:25gaussians"
FIXED = {
    "model.arch": "mlp", "model.width": 128, "model.mlp_depth": 3, "model.z_dim": 2,
    "loss.name": "wgan-gp", "batch_size": 256, "num_train_steps": 2000, "ema_decay": 0.999,
    "log_every": 100, "checkpoint_every": 500, "sample_every": 2000, "eval_every": 0,
    "toy_eval_samples": 2500,
    **{f"optim.{net}.{field}": value for net in ("generator", "critic")
       for field, value in (("name", "adam"), ("learning_rate", 5e-4), ("schedule", "linear"),
                            ("b1", 0.5), ("b2", 0.9))},
}
TRIALS = product({"loss.gp_weight": [0.1, 1.0, 10.0, 100.0]}, {"n_critic": [1, 5]},
                 {"seed": [0, 1]})
SORT_BY = "-eval/high_quality_pct"
COLUMNS = ["eval/modes_captured", "eval/high_quality_pct", "wasserstein", "gradient_penalty",
           "interp_grad_norm_mean", "interp_grad_norm_max"]
