"""Wasserstein losses and the gradient penalty, and the losses WGAN-GP is compared with.

The penalty follows the paper exactly: interpolates x̂ = ε·real + (1−ε)·fake with one
ε ~ U[0, 1] per sample, the critic's input gradient taken per sample
(`jax.vmap(jax.grad(critic_of_one_sample))`), its norm over every non-batch axis
(all of H, W, C for images), and the penalty E[(‖∇D(x̂)‖₂ − 1)²]. Public ports often
get one of these wrong: the norm over the whole batch or over channels only, ε per
pixel, or a bare sqrt whose gradient is NaN at a zero gradient.

`get_loss(config.loss)` returns the loss named by `loss.name`: `wgan-gp` (ours),
`wgan-clip` (the original WGAN, weights clipped to ±c) or `gan` (non-saturating).
"""

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp

# Inside the square root, so that a critic with zero input gradient (e.g. dead ReLUs)
# gives a finite penalty and a finite gradient instead of NaN.
NORM_EPSILON = 1e-12


def interpolate(real, fake, eps):
  """x̂ = ε·real + (1−ε)·fake with one ε per sample (eps has shape [N])."""
  eps = eps.reshape((-1,) + (1,) * (real.ndim - 1)).astype(real.dtype)
  return eps * real + (1.0 - eps) * fake


def _batch_statistic_split(critic_fn: Callable):
  """(statistic(x), scores(x, statistic)) for a `critic_fn` that is
  `functools.partial(gan.criticize, d_params)` (as the losses, the step and the tests
  bind it) of a GAN whose critic reads a statistic of its batch (model.minibatch_stddev,
  `GAN.critic_statistic_split`); None for any other critic_fn."""
  if not (isinstance(critic_fn, functools.partial) and len(critic_fn.args) == 1
          and not critic_fn.keywords):
    return None
  split = getattr(getattr(critic_fn.func, "__self__", None), "critic_statistic_split", None)
  return split(critic_fn.args[0]) if split is not None else None


def per_sample_gradient_norms(critic_fn: Callable, x):
  """‖∇ₓ D(x_i)‖₂ for each sample, over all non-batch axes.

  `critic_fn` maps a batch [N, ...] to scores [N]. Each sample is differentiated on its
  own (grad under vmap), so no term couples two samples.

  A critic that reads a statistic of its batch (model.minibatch_stddev) would see a batch
  of one sample here (a standard deviation of 0), a function the loss never scores. So
  the statistic is taken once on the whole batch x, outside the per-sample
  differentiation, with no gradient, and each sample is scored with it held fixed: for
  every sample the penalty differentiates exactly the function that scores it in x's
  batch (where the statistic is the same stop_gradient'ed constant), so the penalty
  stays exact. Its cost: the critic's trunk runs once more, forward only, on x.
  """
  split = _batch_statistic_split(critic_fn)
  if split is not None:
    statistic_of, scores_with = split
    statistic = jax.lax.stop_gradient(statistic_of(x))
    critic_fn = lambda batch: scores_with(batch, statistic)

  def critic_of_one_sample(sample):
    return critic_fn(sample[None])[0]

  grads = jax.vmap(jax.grad(critic_of_one_sample))(x)
  squared = jnp.sum(jnp.square(grads.astype(jnp.float32)), axis=tuple(range(1, grads.ndim)))
  return jnp.sqrt(squared + NORM_EPSILON)


def gradient_penalty(critic_fn: Callable, real, fake, eps):
  """Returns (E[(‖∇D(x̂)‖ − 1)²], per-sample norms) at the interpolates."""
  norms = per_sample_gradient_norms(critic_fn, interpolate(real, fake, eps))
  return jnp.mean(jnp.square(norms - 1.0)), norms


def consistency_penalty(critic_fn: Callable, scores, transformed):
  """E[(D(x) − D(T(x)))²], given the scores D(x) and the transformed batch T(x): the
  consistency regularisation of Zhang et al. (2020), asking the critic to score an image
  and its transform alike."""
  return jnp.mean(jnp.square(scores - critic_fn(transformed)))


def wgan_gp_critic_loss(critic_fn: Callable, real, fake, eps, gp_weight: float | None,
                        drift_weight: float = 0.0, transformed=None,
                        consistency_weights: tuple[float, float] = (0.0, 0.0)):
  """E[D(fake)] − E[D(real)] + λ·penalty (+ drift·E[D(real)²], Karras et al. 2018)
  (+ balanced consistency, below), and the metrics a researcher watches.

  `gp_weight=None` leaves the penalty out of the computation (the lazy penalty's updates
  between penalised ones): no interpolates, no double backward, no penalty metrics.

  `transformed` = (T(real), T(fake)), the same batches under random transforms, adds
  bCR (Zhao et al. 2021): λ_real·E[(D(real) − D(T(real)))²] + λ_fake·E[(D(fake) −
  D(T(fake)))²] with (λ_real, λ_fake) = `consistency_weights`; a weight of 0 leaves its
  term out of the computation. Only the critic sees transformed images, so the generator
  is not taught them. The penalty is unchanged: it interpolates `real` and `fake`.
  """
  real_scores = critic_fn(real)
  fake_scores = critic_fn(fake)
  wasserstein = jnp.mean(real_scores) - jnp.mean(fake_scores)
  loss = -wasserstein
  metrics = {"wasserstein": wasserstein}
  if gp_weight is not None:
    penalty, norms = gradient_penalty(critic_fn, real, fake, eps)
    loss = loss + gp_weight * penalty
    metrics.update(gradient_penalty=penalty, interp_grad_norm_mean=jnp.mean(norms),
                   interp_grad_norm_max=jnp.max(norms))
  if not (isinstance(drift_weight, (int, float)) and drift_weight == 0):
    loss = loss + drift_weight * jnp.mean(jnp.square(real_scores))
  if transformed is not None:
    for name, scores, batch, weight in zip(("real", "fake"), (real_scores, fake_scores),
                                           transformed, consistency_weights):
      if weight:
        term = consistency_penalty(critic_fn, scores, batch)
        loss = loss + weight * term
        metrics[f"consistency_{name}"] = term
  metrics["critic_loss"] = loss
  return loss, metrics


def wgan_generator_loss(fake_scores):
  """−E[D(G(z))]."""
  return -jnp.mean(fake_scores)



# ------------------------------------------------------ The losses chosen by config
#
# `loss.name` picks one; the step keeps its structure for all of them (n_critic critic
# updates, then one generator update) and logs the same metrics. Every loss reports the
# critic's input-gradient norms at the interpolates, so that a clipped or a standard-GAN
# critic can be compared with a penalised one; only wgan-gp trains on the penalty.


@dataclasses.dataclass(frozen=True)
class Loss:
  """The three places where the losses differ.

  critic_loss(criticize, d_params, real, fake, eps, penalize=True, transformed=None)
      -> (loss, metrics), where criticize(d_params, x) -> scores [N] and eps [N] places
      the interpolates; `penalize=False` (a static Python bool) is an update of the lazy
      penalty without it; `transformed` = (T(real), T(fake)) for the consistency terms
  generator_loss(fake_scores) -> loss
  constrain_critic(d_params) -> d_params, applied after every critic update
  """
  critic_loss: Callable
  generator_loss: Callable
  constrain_critic: Callable


def _metrics(criticize, d_params, real, fake, eps, loss, real_scores, fake_scores):
  """The metrics of wgan_gp_critic_loss, for losses that do not train on the penalty.

  The penalty and the norms are measured at stopped parameters: they add no
  second-order term to the gradient of the loss.
  """
  frozen_critic = functools.partial(criticize, jax.lax.stop_gradient(d_params))
  penalty, norms = gradient_penalty(frozen_critic, real, fake, eps)
  return {
      "critic_loss": loss,
      "wasserstein": jnp.mean(real_scores) - jnp.mean(fake_scores),
      "gradient_penalty": penalty,
      "interp_grad_norm_mean": jnp.mean(norms),
      "interp_grad_norm_max": jnp.max(norms),
  }


def wgan_critic_loss(criticize, d_params, real, fake, eps, penalize=True,
                     transformed=None):
  """The original WGAN critic loss E[D(fake)] − E[D(real)] (Arjovsky et al. 2017); the
  Lipschitz constraint comes from `clip_weights` after each update."""
  del penalize, transformed  # no penalty, no consistency (validation refuses them here)
  real_scores, fake_scores = criticize(d_params, real), criticize(d_params, fake)
  loss = jnp.mean(fake_scores) - jnp.mean(real_scores)
  return loss, _metrics(criticize, d_params, real, fake, eps, loss, real_scores, fake_scores)


def clip_weights(d_params, clip_value):
  """Every critic parameter clipped to [−c, c], biases and norm scales included, as
  in the original WGAN."""
  return jax.tree.map(lambda p: jnp.clip(p, -clip_value, clip_value), d_params)


def gan_critic_loss(criticize, d_params, real, fake, eps, penalize=True,
                    transformed=None):
  """The standard GAN discriminator loss on logits: −log σ(D(real)) − log(1 − σ(D(fake)))."""
  del penalize, transformed  # no penalty, no consistency (validation refuses them here)
  real_scores, fake_scores = criticize(d_params, real), criticize(d_params, fake)
  loss = jnp.mean(jax.nn.softplus(-real_scores)) + jnp.mean(jax.nn.softplus(fake_scores))
  return loss, _metrics(criticize, d_params, real, fake, eps, loss, real_scores, fake_scores)


def gan_generator_loss(fake_scores):
  """The non-saturating generator loss −E[log σ(D(G(z)))] (Goodfellow et al. 2014)."""
  return jnp.mean(jax.nn.softplus(-fake_scores))


# Each builder makes its Loss from the loss config's values (`hp`, a dict: the config's
# fields, some replaced by arrays in a vectorised sweep); `LOSSES` names them for
# `loss.name`. A new loss is a builder and an entry; a new hyperparameter is a field of
# `config.loss` (wgan_gp/config.py) that its builder reads.


def _unconstrained(d_params):
  return d_params


def _wgan_gp_loss(hp) -> Loss:
  # The lazy penalty weights λ·k on one update in k, the same penalty per update on
  # average. Unlike StyleGAN2's lazy R1 (a separate optimiser step for the regulariser,
  # hence its rate and β scaled by k/(k+1)), the penalty here rides inside the critic's
  # own update: the number of Adam steps and their spacing do not change, so neither do
  # the rate nor the βs.
  penalised_weight = hp["gp_weight"] * hp.get("gp_every", 1)

  # bCR on one update in m (consistency_every) weighs λ·m, likewise.
  consistency_every = hp.get("consistency_every", 1)
  consistency_weights = (hp.get("consistency_real_weight", 0.0) * consistency_every,
                         hp.get("consistency_fake_weight", 0.0) * consistency_every)

  def critic_loss(criticize, d_params, real, fake, eps, penalize=True, transformed=None):
    return wgan_gp_critic_loss(functools.partial(criticize, d_params), real, fake, eps,
                               penalised_weight if penalize else None,
                               hp.get("drift_weight", 0.0), transformed, consistency_weights)
  return Loss(critic_loss, wgan_generator_loss, _unconstrained)  # the penalty, no clipping


def _wgan_clip_loss(hp) -> Loss:
  return Loss(wgan_critic_loss, wgan_generator_loss,
              lambda d_params: clip_weights(d_params, hp["clip_value"]))


def _gan_loss(hp) -> Loss:
  del hp
  return Loss(gan_critic_loss, gan_generator_loss, _unconstrained)


LOSSES: dict[str, Callable[[dict], Loss]] = {
    "wgan-gp": _wgan_gp_loss,
    "wgan-clip": _wgan_clip_loss,
    "gan": _gan_loss,
}


def get_loss(loss_config, overrides: dict | None = None) -> Loss:
  """The loss named by `loss_config.name`.

  `overrides` maps loss fields (e.g. 'gp_weight') to values that replace the config's,
  e.g. arrays that differ per trial of a vectorised sweep.
  """
  if loss_config.name not in LOSSES:
    raise ValueError(f"unknown loss.name {loss_config.name!r}; expected one of "
                     f"{tuple(LOSSES)}")
  return LOSSES[loss_config.name]({**loss_config.to_dict(), **(overrides or {})})
