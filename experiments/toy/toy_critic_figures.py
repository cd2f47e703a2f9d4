"""The paper's Figure 1: what weight clipping does to a WGAN critic, and what the penalty
does instead.

    nice -n 19 python experiments/toy/toy_critic_figures.py fig1a   # value surfaces
    nice -n 19 python experiments/toy/toy_critic_figures.py fig1b   # gradient norms per layer

fig1a (Section 3.2, "capacity underuse"): a critic alone is trained towards optimality
against a fixed "generator", the real data plus unit-variance Gaussian noise, with
weight clipping (c = 0.01) or with the gradient penalty (λ = 0.1), on the three 2-D
distributions; the figure shows its value surface.

fig1b (Section 3.2, "exploding and vanishing gradients"): WGANs whose generator and
critic are 12-layer ReLU MLPs train on the swiss roll with clipping at c ∈ {0.1, 0.01,
0.001} (the three trained together by `wgan_gp.vectorized`) and with the penalty; at
points through training we take the gradient of the critic's Wasserstein loss
E[D(fake)] − E[D(real)] with respect to each hidden layer's activations, on a fixed real
batch and the current generator's samples. Its norm is plotted per layer, as in the
paper, with the critic's weight histograms (clipping pushes them to ±c).

Both write PNGs under experiments/toy/figures/ and print the numbers behind them.
"""

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from wgan_gp import gan_state, losses, vectorized  # noqa: E402
from wgan_gp.config import load_config  # noqa: E402
from wgan_gp.data import create_source  # noqa: E402

FIGURES = os.path.join(REPO, "experiments", "toy", "figures")
TOY_CONFIG = os.path.join(REPO, "configs", "toy2d.py")
DISTRIBUTIONS = ("8gaussians", "25gaussians", "swissroll")


def _adam(learning_rate, b1=0.5, b2=0.9):
  return {f"optim.{net}.{field}": value for net in ("generator", "critic")
          for field, value in (("name", "adam"), ("learning_rate", learning_rate),
                               ("schedule", "constant"), ("b1", b1), ("b2", b2))}


def _rmsprop(learning_rate):
  return {f"optim.{net}.{field}": value for net in ("generator", "critic")
          for field, value in (("name", "rmsprop"), ("learning_rate", learning_rate),
                               ("schedule", "constant"))}


def _save_small(figure, path):
  """PNG with a 256-colour palette: a quarter of the size, the same picture."""
  from PIL import Image
  figure.savefig(path)
  Image.open(path).convert("RGB").quantize(colors=256).save(path, optimize=True)


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


# ------------------------------------------------------------------- Figure 1a


FIG1A_SETTINGS = {
    "wgan-clip": {"loss.name": "wgan-clip", "loss.clip_value": 0.01},
    "wgan-gp": {"loss.name": "wgan-gp", "loss.gp_weight": 0.1},
}


def train_critic_against_noisy_data(config, steps: int, batch: int = 256):
  """A critic alone, trained with config's loss against real data + N(0, I) noise."""
  gan = gan_state.build_gan(config)
  source = create_source(config.data, config.seed)
  _, d_optimizer = gan_state.make_optimizers(config)
  loss = losses.get_loss(config.loss)
  _, d_params = gan.init(config.seed)
  opt_state = d_optimizer.init(d_params)

  @jax.jit
  def update(d_params, opt_state, key):
    real_key, noisy_key, noise_key, eps_key = jax.random.split(key, 4)
    real = source.sample_batch(real_key, batch)
    fake = source.sample_batch(noisy_key, batch) + jax.random.normal(noise_key, (batch, 2))
    eps = jax.random.uniform(eps_key, (batch,))
    grads, metrics = jax.grad(lambda p: loss.critic_loss(gan.criticize, p, real, fake, eps),
                              has_aux=True)(d_params)
    updates, opt_state = d_optimizer.update(grads, opt_state, d_params)
    return loss.constrain_critic(optax.apply_updates(d_params, updates)), opt_state, metrics

  key = jax.random.PRNGKey(config.seed)
  for i in range(steps):
    d_params, opt_state, metrics = update(d_params, opt_state, jax.random.fold_in(key, i))
  return gan, source, d_params, jax.device_get(metrics)


def fig1a(steps: int, width: int):
  plt = _pyplot()
  figure, axes = plt.subplots(2, 3, figsize=(10.5, 7), dpi=80)
  axis = np.linspace(-2.5, 2.5, 120, dtype=np.float32)
  grid_x, grid_y = np.meshgrid(axis, axis)
  grid = np.stack([grid_x.ravel(), grid_y.ravel()], 1)
  results = {}
  for row, (name, loss_settings) in enumerate(FIG1A_SETTINGS.items()):
    for column, distribution in enumerate(DISTRIBUTIONS):
      config = load_config(f"{TOY_CONFIG}:{distribution}", {
          "model.width": width, "model.mlp_depth": 3, **loss_settings, **_adam(1e-4)})
      start = time.time()
      gan, source, d_params, metrics = train_critic_against_noisy_data(config, steps)
      scores = np.asarray(jax.jit(gan.criticize)(d_params, grid)).reshape(grid_x.shape)
      real = np.asarray(source.sample_batch(jax.random.PRNGKey(7), 500))
      fake = real + np.asarray(jax.random.normal(jax.random.PRNGKey(8), real.shape))
      ax = axes[row, column]
      ax.contour(grid_x, grid_y, scores, levels=20, cmap="viridis", linewidths=0.8)
      ax.scatter(*fake.T, s=2, c="green", alpha=0.4)
      ax.scatter(*real.T, s=2, c="orange")
      ax.set_xlim(-2.5, 2.5)
      ax.set_ylim(-2.5, 2.5)
      ax.set_aspect("equal")
      ax.set_xticks([])
      ax.set_yticks([])
      label = ("weight clipping, c = 0.01" if name == "wgan-clip" else "gradient penalty, λ = 0.1")
      ax.set_title(f"{distribution}: {label}\nW estimate {metrics['wasserstein']:.3g}, "
                   f"‖∇D‖ at x̂ {metrics['interp_grad_norm_mean']:.3g}", fontsize=8)
      results[f"{name}/{distribution}"] = {k: float(metrics[k]) for k in (
          "wasserstein", "interp_grad_norm_mean", "interp_grad_norm_max")}
      print(f"{name} {distribution}: {results[f'{name}/{distribution}']} "
            f"({time.time() - start:.0f} s)", flush=True)
  figure.suptitle(f"Critics trained alone ({steps} steps, Adam 1e-4) against real + N(0, I) "
                  "noise (green); real data in orange", fontsize=9)
  figure.tight_layout()
  path = os.path.join(FIGURES, "fig1a_value_surfaces.png")
  _save_small(figure, path)
  plt.close(figure)
  return path, results


# ------------------------------------------------------------------- Figure 1b


def critic_with_taps(d_params, x, taps):
  """The MLP critic written out layer by layer, with `taps[i]` added to hidden layer i's
  activations: the gradient with respect to a zero tap is the gradient with respect to
  that layer's activations."""
  layers = d_params["MLP_0"]
  h = x
  for i in range(len(layers) - 1):
    dense = layers[f"Dense_{i}"]
    h = jax.nn.relu(h @ dense["kernel"] + dense["bias"]) + taps[i]
  dense = layers[f"Dense_{len(layers) - 1}"]
  return (h @ dense["kernel"] + dense["bias"])[:, 0]


def activation_gradient_norms(gan, state, real, z):
  """‖∂(E[D(fake)] − E[D(real)]) / ∂h_i‖ for every hidden layer i of the critic."""
  fake = gan.generate(state.ema_g_params, z)
  x = jnp.concatenate([real, fake])
  n = real.shape[0]
  depth = len(state.d_params["MLP_0"]) - 1
  width = state.d_params["MLP_0"]["Dense_0"]["kernel"].shape[1]
  taps = [jnp.zeros((2 * n, width)) for _ in range(depth)]

  def wasserstein_loss(taps):
    scores = critic_with_taps(state.d_params, x, taps)
    return jnp.mean(scores[n:]) - jnp.mean(scores[:n])

  grads = jax.grad(wasserstein_loss)(taps)
  return jnp.stack([jnp.sqrt(jnp.sum(jnp.square(g))) for g in grads])


FIG1B_CLIP_VALUES = (0.1, 0.01, 0.001)
ZERO_SHOWN_AT = 1e-30
FIG1B_RAW = os.path.join(REPO, "runs", "fig1b_measurements.npz")


def replot_fig1b():
  raw = np.load(FIG1B_RAW)
  labels = [str(label) for label in raw["labels"]]
  norms = {label: {int(step): values for step, values in by_step.items()}
           for label, by_step in json.loads(str(raw["norms"])).items()}
  kernels = {label: raw[f"kernels_{i}"] for i, label in enumerate(labels)}
  return plot_fig1b(norms, kernels, labels, int(raw["steps"]), int(raw["depth"]),
                    int(raw["width"]))


def fig1b(steps: int, width: int, depth: int, record_at: list[int]):
  common = {"model.width": width, "model.mlp_depth": depth, "batch_size": 256,
            "n_critic": 5, "num_train_steps": steps}
  runs = {
      "clip": (load_config(f"{TOY_CONFIG}:swissroll", {
          **common, "loss.name": "wgan-clip", **_rmsprop(5e-5)}),
          [{"loss.clip_value": c} for c in FIG1B_CLIP_VALUES]),
      "gp": (load_config(f"{TOY_CONFIG}:swissroll", {
          **common, "loss.name": "wgan-gp", "loss.gp_weight": 0.1, **_adam(1e-4)}),
          [{"loss.gp_weight": 0.1}]),
  }
  labels = [f"weight clipping, c = {c:g}" for c in FIG1B_CLIP_VALUES] + ["gradient penalty"]
  norms = {label: {} for label in labels}
  final_kernels = {}
  real = None
  for run, (config, trials) in runs.items():
    vec = vectorized.VectorizedTrials(config, trials)
    if real is None:
      real = vec.source.sample_batch(jax.random.PRNGKey(123), 256)
      z = jax.random.normal(jax.random.PRNGKey(124), (256, vec.gan.z_dim))
      sampler = gan_state.build_gan(config)
      measure = jax.jit(lambda state: activation_gradient_norms(sampler, state, real, z))
      # The written-out critic is the model's critic.
      _, d_params = sampler.init(0)
      taps = [0.0] * depth
      np.testing.assert_allclose(critic_with_taps(d_params, real, taps),
                                 sampler.criticize(d_params, real), rtol=1e-4, atol=1e-5)
    run_labels = labels[:3] if run == "clip" else labels[3:]
    states = vec.init()
    start = time.time()
    for step in range(steps + 1):
      if step in record_at:
        for k, label in enumerate(run_labels):
          norms[label][step] = np.asarray(measure(vec.trial_state(states, k))).tolist()
        print(f"{run} step {step} ({time.time() - start:.0f} s): " + "; ".join(
            f"{label}: layer 1 {norms[label][step][0]:.3g}, layer {depth} "
            f"{norms[label][step][-1]:.3g}" for label in run_labels), flush=True)
      if step < steps:
        states, _ = vec.step(states)
    for k, label in enumerate(run_labels):
      layers = vec.trial_state(states, k).d_params["MLP_0"]
      final_kernels[label] = np.concatenate(
          [np.asarray(layers[f"Dense_{i}"]["kernel"]).ravel() for i in range(depth + 1)])

  # The measurements, so that the figure can be redrawn without training (--replot).
  os.makedirs(os.path.dirname(FIG1B_RAW), exist_ok=True)
  np.savez(FIG1B_RAW, norms=json.dumps(norms), labels=labels, steps=steps, depth=depth,
           width=width, **{f"kernels_{i}": final_kernels[label] for i, label in enumerate(labels)})
  path = plot_fig1b(norms, final_kernels, labels, steps, depth, width)
  weights_at_bound = {label: float(np.mean(np.isclose(np.abs(final_kernels[label]), c)))
                      for label, c in zip(labels[:3], FIG1B_CLIP_VALUES)}
  return path, {"norms": norms, "fraction_of_weights_at_±c": weights_at_bound}


def plot_fig1b(norms, final_kernels, labels, steps, depth, width):
  plt = _pyplot()
  figure = plt.figure(figsize=(14, 4.2), dpi=80)
  grid = figure.add_gridspec(2, 3, width_ratios=[1.2, 1.2, 1])
  by_layer, by_step = figure.add_subplot(grid[:, 0]), figure.add_subplot(grid[:, 1])
  colors = ["tab:red", "tab:orange", "tab:purple", "tab:blue"]
  layer_index = np.arange(1, depth + 1)
  # A gradient that vanished to exactly 0 (dead ReLUs, float32 underflow) is drawn at
  # ZERO_SHOWN_AT rather than dropped by the log axis.
  shown = lambda values: np.maximum(np.asarray(values, np.float64), ZERO_SHOWN_AT)
  for label, color in zip(labels, colors):
    by_layer.semilogy(layer_index, shown(norms[label][steps]), "o-", color=color, label=label,
                      ms=3)
    recorded = sorted(norms[label])
    by_step.semilogy(recorded, shown([norms[label][s][0] for s in recorded]), "o-", color=color,
                     ms=3)
  by_layer.axhline(ZERO_SHOWN_AT, color="gray", lw=0.5, ls=":")
  by_layer.text(1, ZERO_SHOWN_AT * 3, "exactly 0", fontsize=7, color="gray")
  by_layer.set_xlabel("critic layer (hidden activations, input side first)")
  by_layer.set_ylabel("‖∂ loss / ∂ activations‖")
  by_layer.set_title(f"after {steps} steps", fontsize=9)
  by_layer.legend(fontsize=7)
  by_step.set_xlabel("generator step")
  by_step.set_title("layer 1 through training", fontsize=9)
  # As the paper's Figure 1b (right): clipping piles the weights up at ±c.
  for row, (label, color) in enumerate(((labels[1], colors[1]), (labels[3], colors[3]))):
    ax = figure.add_subplot(grid[row, 2])
    limit = np.percentile(np.abs(final_kernels[label]), 99.9)  # a few outliers aside
    ax.hist(np.clip(final_kernels[label], -limit, limit), bins=60, color=color)
    ax.set_yticks([])
    ax.set_title(f"critic weights at the end: {label}", fontsize=8)
  figure.suptitle(f"Swiss roll, {depth}-layer ReLU MLPs of width {width}: gradient of the "
                  "critic's loss w.r.t. each layer's activations", fontsize=10)
  figure.tight_layout()
  path = os.path.join(FIGURES, "fig1b_gradient_norms.png")
  _save_small(figure, path)
  plt.close(figure)
  return path


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("figure", choices=["fig1a", "fig1b"])
  parser.add_argument("--steps", type=int, default=None,
                      help="critic steps (fig1a, default 3000) or generator steps (fig1b, "
                      "default 1000)")
  parser.add_argument("--width", type=int, default=128)
  parser.add_argument("--depth", type=int, default=12, help="fig1b: hidden layers")
  parser.add_argument("--replot", action="store_true",
                      help=f"fig1b: redraw from the last run's measurements ({FIG1B_RAW})")
  args = parser.parse_args()
  os.makedirs(FIGURES, exist_ok=True)
  if args.replot:
    print(f"wrote {replot_fig1b()}")
    return
  if args.figure == "fig1a":
    path, results = fig1a(args.steps or 3000, args.width)
  else:
    steps = args.steps or 1000
    record_at = sorted({0, steps // 10, steps // 4, steps // 2, steps})
    path, results = fig1b(steps, args.width, args.depth, record_at)
  print(f"wrote {path}")
  print(json.dumps(results, indent=1))


if __name__ == "__main__":
  main()
