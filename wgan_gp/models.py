"""Generators and critics of the WGAN-GP paper, exposed as pure functions.

`build(model_config, data_shape)` returns a `GAN` whose `generate(g_params, z)`
and `criticize(d_params, x)` are pure functions of (params, input). Architectures:

- `dcgan`: the DCGAN pair of the paper's 64×64 code (5×5 stride-2 convolutions,
  LayerNorm or nothing in the critic, BatchNorm or nothing in the generator);
  any power-of-two image size ≥ 8 (64×64, 32×32, ...).
- `resnet`: the paper's 64×64 ResNet pair (critic: residual blocks that downsample by
  conv + mean-pool; generator: nearest upsampling + conv).
- `mlp`: the 2-D toy pair (ReLU MLPs).

No critic has BatchNorm: the gradient penalty is defined per input sample. The one
batch statistic a critic may read, `model.minibatch_stddev`, is a constant of both the
loss and the penalty (`minibatch_stddev` below).
"""

import dataclasses
import functools
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from wgan_gp import conv, layers

CRITIC_NORMS = ("layernorm", "none")
GENERATOR_NORMS = ("batchnorm", "none")


def _num_resolution_stages(image_size: int) -> int:
  """Number of 2× resampling stages between 4×4 and `image_size`."""
  stages = int(round(math.log2(image_size))) - 2
  if image_size < 8 or 2 ** (stages + 2) != image_size:
    raise ValueError(
        f"image_size={image_size} is not supported: convolutional models need a power "
        "of two >= 8 (e.g. 32 or 64); set --config.data.image_size accordingly")
  return stages


def _channel_multipliers(stages: int) -> list[int]:
  """Critic widths (× model.width) from the image up to 4×4, capped at 8 as in the paper."""
  return [min(2 ** i, 8) for i in range(stages + 1)]


def _critic_norm(kind: str):
  return layers.LayerNorm() if kind == "layernorm" else (lambda x: x)


# Inside the square root of the minibatch standard deviation (PGGAN's value).
STDDEV_EPSILON = 1e-8


def minibatch_stddev(features, axis_name: str | None = None):
  """Karras et al. (2018)'s minibatch standard deviation, with one group (the whole batch):
  the standard deviation over the batch of each feature of `features` [N, H, W, C],
  averaged over positions and channels. A scalar, float32, with no gradient.

  With `axis_name` (inside pmap) the batch is the global one, as for the generator's
  BatchNorm, so the value does not depend on how many devices share the batch.
  """
  x = features.astype(jnp.float32)
  mean = jnp.mean(x, axis=0)
  if axis_name is not None:
    mean = jax.lax.pmean(mean, axis_name)
  # Two passes, as layers.BatchNorm: E[(x - mean)²] keeps the precision E[x²] - mean² loses.
  var = jnp.mean(jnp.square(x - mean), axis=0)
  if axis_name is not None:
    var = jax.lax.pmean(var, axis_name)
  return jax.lax.stop_gradient(jnp.mean(jnp.sqrt(var + STDDEV_EPSILON)))


def _with_minibatch_stddev(module: nn.Module, x, statistic, return_statistic: bool):
  """The features x [N, H, W, C] that enter the critic's final block (8×8, to be brought
  to 4×4) with the batch statistic appended as one more channel (returned alone with
  `return_statistic`), as PGGAN appends it to its final block's input.

  Not after that block, right before the final Dense layer: there the statistic would
  only add v·s, one constant per batch, to every score, whatever the weights: it would
  change no input gradient (the penalty and the generator would never see it) while the
  loss pushed v along s(real) − s(fake) unchecked. Through a convolution, a
  normalisation and a nonlinearity it can modulate how each sample is scored.

  The statistic is `statistic` when given (the penalty passes the whole interpolate
  batch's while it differentiates one sample at a time), else that of x's batch. It is
  stop_gradient'ed either way: a constant of the scores, so the per-sample penalty
  differentiates exactly the function the loss scores for that batch (losses.py).
  """
  if not module.minibatch_stddev:
    if statistic is not None or return_statistic:
      raise ValueError("this critic reads no batch statistic (model.minibatch_stddev is off)")
    return x
  if statistic is None:
    synced = module.axis_name is not None and not module.is_initializing()  # init: no pmap
    statistic = minibatch_stddev(x, module.axis_name if synced else None)
  statistic = jax.lax.stop_gradient(jnp.asarray(statistic, jnp.float32))
  if return_statistic:
    return statistic
  channel = jnp.broadcast_to(statistic.astype(x.dtype), (*x.shape[:-1], 1))
  return jnp.concatenate([x, channel], axis=-1)


# ------------------------------------------------------------------------ DCGAN


class DCGANGenerator(nn.Module):
  image_size: int
  channels: int
  width: int
  norm: str = "batchnorm"
  axis_name: str | None = None
  impl: str = "xla"
  dtype: Any = None
  fold: str = "thin"  # which strided layers the fast formulation folds (conv.FOLDS)

  @nn.compact
  def __call__(self, z):
    stages = _num_resolution_stages(self.image_size)
    widths = [self.width * m for m in reversed(_channel_multipliers(stages - 1))]
    batchnorm = self.norm == "batchnorm"
    # A bias right before BatchNorm is cancelled by it: its gradient is pure rounding
    # noise, which Adam would amplify into a random walk. Such layers get none.
    x = layers.Dense(4 * 4 * widths[0], init="dcgan", use_bias=not batchnorm,
                     dtype=self.dtype)(z)
    x = x.reshape(z.shape[0], 4, 4, widths[0])
    for out_width in widths[1:] + [None]:
      if batchnorm:
        x = layers.BatchNorm(axis_name=self.axis_name)(x)
      x = nn.relu(x)
      is_output = out_width is None
      x = layers.ConvTranspose(self.channels if is_output else out_width, 5, init="dcgan",
                               use_bias=is_output or not batchnorm, impl=self.impl,
                               dtype=self.dtype, fold=self.fold)(x)
    return jnp.tanh(x.astype(jnp.float32))


class DCGANCritic(nn.Module):
  """`__call__(x, statistic=None, return_statistic=False)`: scores [N]. With
  `minibatch_stddev`, the input of the last convolution (the 8×8 features) gets the batch
  statistic as one more channel (`_with_minibatch_stddev`); `return_statistic` returns
  that statistic of x's batch instead of scores. Off, both arguments are refused."""
  width: int
  norm: str = "layernorm"
  impl: str = "xla"
  dtype: Any = None
  fold: str = "thin"
  minibatch_stddev: bool = False
  axis_name: str | None = None  # the pmap axis the statistic is taken over

  @nn.compact
  def __call__(self, x, statistic=None, return_statistic: bool = False):
    stages = _num_resolution_stages(x.shape[1])
    multipliers = _channel_multipliers(stages - 1)
    for i, mult in enumerate(multipliers):
      if i == len(multipliers) - 1:  # PGGAN's place: the input of the final block
        x = _with_minibatch_stddev(self, x, statistic, return_statistic)
        if return_statistic:
          return x
      x = layers.Conv(self.width * mult, 5, stride=2, init="dcgan", impl=self.impl,
                      dtype=self.dtype, fold=self.fold)(x)
      if i > 0:  # the paper's critic leaves its first layer unnormalised
        x = _critic_norm(self.norm)(x)
      x = nn.leaky_relu(x, 0.2)
    x = x.reshape(x.shape[0], -1)
    return layers.Dense(1, init="dcgan", dtype=self.dtype)(x)[:, 0].astype(jnp.float32)


# ----------------------------------------------------------------------- ResNet


class ResidualBlockUp(nn.Module):
  features: int
  norm: str
  axis_name: str | None
  impl: str
  dtype: Any

  @nn.compact
  def __call__(self, x):
    conv = lambda f, k, **kw: layers.Conv(f, k, impl=self.impl, dtype=self.dtype, **kw)
    batchnorm = self.norm == "batchnorm"
    norm = ((lambda: layers.BatchNorm(axis_name=self.axis_name))
            if batchnorm else (lambda: (lambda y: y)))
    # With BatchNorm, every per-channel constant added here is removed by a later
    # BatchNorm (the generator's last one at the latest): biases would be dead weight.
    shortcut = conv(self.features, 1, init="glorot", use_bias=not batchnorm)(
        layers.upsample_nearest(x))
    y = nn.relu(norm()(x))
    y = conv(self.features, 3, use_bias=False)(layers.upsample_nearest(y))
    y = nn.relu(norm()(y))
    y = conv(self.features, 3, use_bias=not batchnorm)(y)
    return shortcut + y


class ResidualBlockDown(nn.Module):
  features: int
  norm: str
  impl: str
  dtype: Any

  @nn.compact
  def __call__(self, x):
    conv = lambda f, k, **kw: layers.Conv(f, k, impl=self.impl, dtype=self.dtype, **kw)
    shortcut = conv(self.features, 1, init="glorot")(layers.mean_pool(x))
    y = nn.relu(_critic_norm(self.norm)(x))
    y = conv(x.shape[-1], 3, use_bias=False)(y)
    y = nn.relu(_critic_norm(self.norm)(y))
    y = layers.mean_pool(conv(self.features, 3)(y))
    return shortcut + y


class ResNetGenerator(nn.Module):
  image_size: int
  channels: int
  width: int
  norm: str = "batchnorm"
  axis_name: str | None = None
  impl: str = "xla"
  dtype: Any = None

  @nn.compact
  def __call__(self, z):
    stages = _num_resolution_stages(self.image_size)
    widths = [self.width * m for m in reversed(_channel_multipliers(stages))]
    x = layers.Dense(4 * 4 * widths[0], init="glorot", use_bias=self.norm != "batchnorm",
                     dtype=self.dtype)(z)
    x = x.reshape(z.shape[0], 4, 4, widths[0])
    for out_width in widths[1:]:
      x = ResidualBlockUp(out_width, self.norm, self.axis_name, self.impl, self.dtype)(x)
    if self.norm == "batchnorm":
      x = layers.BatchNorm(axis_name=self.axis_name)(x)
    x = layers.Conv(self.channels, 3, init="he", impl=self.impl, dtype=self.dtype)(nn.relu(x))
    return jnp.tanh(x.astype(jnp.float32))


class ResNetCritic(nn.Module):
  """As DCGANCritic's `__call__`, the statistic appended to the last residual block's
  input (the 8×8 features)."""
  width: int
  norm: str = "layernorm"
  impl: str = "xla"
  dtype: Any = None
  minibatch_stddev: bool = False
  axis_name: str | None = None  # the pmap axis the statistic is taken over

  @nn.compact
  def __call__(self, x, statistic=None, return_statistic: bool = False):
    stages = _num_resolution_stages(x.shape[1])
    widths = [self.width * m for m in _channel_multipliers(stages)]
    x = layers.Conv(widths[0], 3, init="glorot", impl=self.impl, dtype=self.dtype)(x)
    for i, out_width in enumerate(widths[1:]):
      if i == len(widths) - 2:  # PGGAN's place: the input of the final block
        x = _with_minibatch_stddev(self, x, statistic, return_statistic)
        if return_statistic:
          return x
      x = ResidualBlockDown(out_width, self.norm, self.impl, self.dtype)(x)
    x = x.reshape(x.shape[0], -1)
    return layers.Dense(1, init="glorot", dtype=self.dtype)(x)[:, 0].astype(jnp.float32)


# -------------------------------------------------------------------------- MLP


class MLP(nn.Module):
  """`depth` hidden ReLU layers of `width` units, then a linear output layer."""
  width: int
  depth: int
  out_features: int
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    for _ in range(self.depth):
      x = nn.relu(layers.Dense(self.width, init="he_fan_in", dtype=self.dtype)(x))
    return layers.Dense(self.out_features, init="glorot", dtype=self.dtype)(x).astype(jnp.float32)


class MLPCritic(nn.Module):
  width: int
  depth: int
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    return MLP(self.width, self.depth, 1, self.dtype)(x)[:, 0]


# ---------------------------------------------------------------------- the pair


@dataclasses.dataclass(frozen=True)
class GAN:
  """A generator/critic pair as pure functions of (params, input)."""
  generator: nn.Module
  critic: nn.Module
  z_dim: int
  data_shape: tuple[int, ...]

  def init(self, seed: int) -> tuple[Any, Any]:
    """Returns (generator params, critic params), initialised from `seed`."""
    return _init_params(self, seed)

  def generate(self, g_params, z, norm_stats=None):
    """Samples for latent codes z [N, z_dim]: images in [-1, 1] (NHWC) or 2-D points.

    The generator's BatchNorm normalises by the statistics of the batch z, as in
    training; with `norm_stats` (standing statistics, `wgan_gp.standing_stats`) by
    those, so that each sample depends on its own latent only.
    """
    variables = {"params": g_params}
    if norm_stats:
      variables[layers.NORM_STATS] = norm_stats
    return self.generator.apply(variables, z)

  def norm_batch_stats(self, g_params, z):
    """The per-layer mean and variance the generator's BatchNorm normalises z's batch by,
    as the `norm_stats` of `generate` ({} without BatchNorm)."""
    _, variables = self.generator.apply({"params": g_params}, z, mutable=[layers.NORM_STATS])
    return variables.get(layers.NORM_STATS, {})

  def criticize(self, d_params, x, statistic=None):
    """Critic scores [N] for inputs x [N, *data_shape].

    With `model.minibatch_stddev` the critic also reads a statistic of the batch it
    scores: x's, unless `statistic` (`critic_statistic` of another batch) is given.
    """
    if statistic is None:
      return self.critic.apply({"params": d_params}, x)
    return self.critic.apply({"params": d_params}, x, statistic)

  @property
  def critic_reads_batch(self) -> bool:
    """Whether a sample's score depends on its batch (`model.minibatch_stddev`)."""
    return bool(getattr(self.critic, "minibatch_stddev", False))

  def critic_statistic(self, d_params, x):
    """The batch statistic the critic reads when it scores x (a scalar, no gradient);
    the critic's trunk runs on x for it. Only for a critic that reads one."""
    return self.critic.apply({"params": d_params}, x, return_statistic=True)

  def critic_statistic_split(self, d_params):
    """(statistic(x), scores(x, statistic)) of `criticize(d_params, ·)` when the critic
    reads a batch statistic, for the per-sample penalty (losses.py); else None."""
    if not self.critic_reads_batch:
      return None
    return (functools.partial(self.critic_statistic, d_params),
            functools.partial(self.criticize, d_params))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init_params(gan: GAN, seed: int):
  # One compiled program for all parameters; 'rbg' keys compile ~5x faster than
  # threefry on XLA:CPU, which matters with one random draw per parameter.
  g_key, d_key = jax.random.split(jax.random.key(seed, impl="rbg"))
  z = jnp.zeros((2, gan.z_dim), jnp.float32)
  x = jnp.zeros((2, *gan.data_shape), jnp.float32)
  return gan.generator.init(g_key, z)["params"], gan.critic.init(d_key, x)["params"]


# ------------------------------------------------------------ the architectures
#
# A builder maps (model_config, data_shape, axis_name, dtype) to (generator, critic);
# `ARCHITECTURES` names them for `model.arch`. A new pair is its modules and one entry.


def _mlp_pair(model_config, data_shape, axis_name, dtype):
  del axis_name  # no BatchNorm
  if len(data_shape) != 1:
    raise ValueError(f"model.arch='mlp' needs vector data, got data shape {data_shape}; "
                     "use 'dcgan' or 'resnet' for images")
  width = model_config.width
  return (MLP(width, model_config.mlp_depth, data_shape[0], dtype),
          MLPCritic(width, model_config.mlp_depth, dtype))


def _image_pair(generator_cls, critic_cls, model_config, data_shape, axis_name, dtype):
  if len(data_shape) != 3:
    raise ValueError(f"model.arch={model_config.arch!r} needs image data, got data shape "
                     f"{data_shape}; use 'mlp' for the 2-D toy data")
  image_size, channels = data_shape[0], data_shape[2]
  _num_resolution_stages(image_size)
  width = model_config.width
  generator = generator_cls(image_size, channels, width, model_config.generator_norm,
                            axis_name, model_config.conv_impl, dtype)
  critic = critic_cls(width, model_config.critic_norm, model_config.conv_impl, dtype)
  fold = model_config.get("conv_fold", "thin")
  if generator_cls is DCGANGenerator:  # the ResNet pair has no strided convolution
    conv.check_fold(fold)
    generator, critic = generator.clone(fold=fold), critic.clone(fold=fold)
  if model_config.get("minibatch_stddev", False):
    critic = critic.clone(minibatch_stddev=True, axis_name=axis_name)
  return generator, critic


ARCHITECTURES: dict[str, Callable] = {
    "dcgan": functools.partial(_image_pair, DCGANGenerator, DCGANCritic),
    "resnet": functools.partial(_image_pair, ResNetGenerator, ResNetCritic),
    "mlp": _mlp_pair,
}
ARCHS = tuple(ARCHITECTURES)
MINIBATCH_STDDEV_ARCHS = ("dcgan", "resnet")  # critics with a final block to feed it to


def build(model_config, data_shape, axis_name: str | None = None) -> GAN:
  """The GAN named by `model_config.arch` for data of shape `data_shape` (no batch axis).

  `axis_name`: the pmap axis over which the generator's BatchNorm shares batch
  statistics; leave None outside pmap (sampling, notebooks).
  """
  arch = model_config.arch
  if arch not in ARCHITECTURES:
    raise ValueError(f"unknown model.arch {arch!r}; expected one of {ARCHS}")
  if model_config.critic_norm not in CRITIC_NORMS:
    raise ValueError(f"model.critic_norm={model_config.critic_norm!r} is not supported; "
                     f"expected one of {CRITIC_NORMS} (BatchNorm would break the per-sample "
                     "gradient penalty)")
  if model_config.generator_norm not in GENERATOR_NORMS:
    raise ValueError(f"unknown model.generator_norm {model_config.generator_norm!r}; "
                     f"expected one of {GENERATOR_NORMS}")
  if model_config.get("minibatch_stddev", False) and arch not in MINIBATCH_STDDEV_ARCHS:
    raise ValueError(f"model.minibatch_stddev applies to the image critics "
                     f"{MINIBATCH_STDDEV_ARCHS}, not model.arch={arch!r}: set "
                     "--config.model.minibatch_stddev=False")
  generator, critic = ARCHITECTURES[arch](model_config, data_shape, axis_name,
                                         compute_dtype(model_config))
  return GAN(generator, critic, model_config.z_dim, tuple(data_shape))


def compute_dtype(model_config):
  """Activation/matmul dtype: None (float32) or bfloat16 for mixed precision."""
  name = model_config.get("compute_dtype", "float32")
  if name == "float32":
    return None
  if name == "bfloat16":
    return jnp.bfloat16
  raise ValueError(f"model.compute_dtype={name!r}; expected 'float32' or 'bfloat16'")
