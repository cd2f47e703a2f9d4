"""The Flax layers of the models: dense, convolution, normalisation, resampling.

Their convolutions run through `wgan_gp.conv` (`impl` picks the formulation).
Layout: activations NHWC, kernels HWIO (for the transpose: I = input channels).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from wgan_gp.conv import conv2d, conv2d_transpose


# Initialisers of the paper's code (tflib): uniform with a chosen standard deviation.
def uniform_with_stdev(stdev: float):
  bound = stdev * 3 ** 0.5

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def fan_stdev(scheme: str, fan_in: float, fan_out: float) -> float:
  """tflib's schemes: 'he' and 'glorot' on (fan_in + fan_out); 'dcgan' fixed at 0.02."""
  if scheme == "dcgan":
    return 0.02
  if scheme == "he":
    return (4.0 / (fan_in + fan_out)) ** 0.5
  if scheme == "glorot":
    return (2.0 / (fan_in + fan_out)) ** 0.5
  if scheme == "he_fan_in":
    return (2.0 / fan_in) ** 0.5
  raise ValueError(f"unknown init scheme {scheme!r}")


class Dense(nn.Module):
  features: int
  init: str = "glorot"
  use_bias: bool = True
  dtype: Any = None

  @nn.compact
  def __call__(self, x):
    fan_in = x.shape[-1]
    stdev = fan_stdev(self.init, fan_in, self.features)
    kernel = self.param("kernel", uniform_with_stdev(stdev), (fan_in, self.features))
    x, kernel = _cast(self.dtype, x, kernel)
    y = x @ kernel
    if self.use_bias:
      y = y + _cast(self.dtype, self.param("bias", nn.initializers.zeros_init(), (self.features,)))[0]
    return y


class Conv(nn.Module):
  """'SAME' convolution; stride > 1 downsamples."""
  features: int
  kernel_size: int
  stride: int = 1
  use_bias: bool = True
  init: str = "he"
  impl: str = "xla"
  dtype: Any = None
  fold: str = "thin"  # the fast formulation's forms (wgan_gp.conv.FOLDS)

  @nn.compact
  def __call__(self, x):
    k, c_in = self.kernel_size, x.shape[-1]
    stdev = fan_stdev(self.init, c_in * k * k, self.features * k * k / self.stride ** 2)
    kernel = self.param("kernel", uniform_with_stdev(stdev), (k, k, c_in, self.features))
    x, kernel = _cast(self.dtype, x, kernel)
    y = conv2d(x, kernel, self.stride, self.impl, self.fold)
    if self.use_bias:
      y = y + _cast(self.dtype, self.param("bias", nn.initializers.zeros_init(), (self.features,)))[0]
    return y


class ConvTranspose(nn.Module):
  """'SAME' transposed convolution; output spatial size = input × stride."""
  features: int
  kernel_size: int
  stride: int = 2
  use_bias: bool = True
  init: str = "he"
  impl: str = "xla"
  dtype: Any = None
  fold: str = "thin"

  @nn.compact
  def __call__(self, x):
    k, c_in = self.kernel_size, x.shape[-1]
    stdev = fan_stdev(self.init, c_in * k * k / self.stride ** 2, self.features * k * k)
    kernel = self.param("kernel", uniform_with_stdev(stdev), (k, k, c_in, self.features))
    x, kernel = _cast(self.dtype, x, kernel)
    y = conv2d_transpose(x, kernel, self.stride, self.impl, self.fold)
    if self.use_bias:
      y = y + _cast(self.dtype, self.param("bias", nn.initializers.zeros_init(), (self.features,)))[0]
    return y


class LayerNorm(nn.Module):
  """Per-sample normalisation over (H, W, C) with a per-channel affine, as the paper's critic.

  Unlike BatchNorm it couples no two samples, so the per-sample gradient penalty stays valid.
  """
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x):
    axes = tuple(range(1, x.ndim))
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axes, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axes, keepdims=True)
    scale = self.param("scale", nn.initializers.ones_init(), (x.shape[-1],))
    offset = self.param("offset", nn.initializers.zeros_init(), (x.shape[-1],))
    y = (x32 - mean) * lax.rsqrt(var + self.epsilon) * scale + offset
    return y.astype(x.dtype)


NORM_STATS = "norm_stats"  # the variable collection of BatchNorm's fixed statistics


class BatchNorm(nn.Module):
  """Normalisation by the statistics of the current batch (the paper's generator), or
  by fixed ones.

  No running averages: the generator stays a pure function of (params, z). With
  `axis_name` set inside pmap, statistics are those of the global batch, so the result
  does not depend on how the batch is split across devices.

  Given a `NORM_STATS` collection ({"mean", "var"} per layer: standing statistics,
  `wgan_gp.standing_stats`), the layer normalises by those instead, so a sample no
  longer depends on its batch-mates. With that collection mutable, it normalises by the
  batch and records the batch's statistics there. Training passes neither.
  """
  axis_name: str | None = None
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x):
    axes = tuple(range(x.ndim - 1))
    x32 = x.astype(jnp.float32)
    recording = self.is_mutable_collection(NORM_STATS) and not self.is_initializing()
    if self.has_variable(NORM_STATS, "mean") and not recording:
      mean = self.get_variable(NORM_STATS, "mean")
      var = self.get_variable(NORM_STATS, "var")
    else:
      synced = self.axis_name is not None and not self.is_initializing()  # init: no pmap
      mean = jnp.mean(x32, axes)
      if synced:
        mean = lax.pmean(mean, self.axis_name)
      # Two passes: E[(x - mean)²] keeps the precision that E[x²] - mean² loses in float32.
      var = jnp.mean(jnp.square(x32 - mean), axes)
      if synced:
        var = lax.pmean(var, self.axis_name)
      if recording:
        self.put_variable(NORM_STATS, "mean", mean)
        self.put_variable(NORM_STATS, "var", var)
    scale = self.param("scale", nn.initializers.ones_init(), (x.shape[-1],))
    offset = self.param("offset", nn.initializers.zeros_init(), (x.shape[-1],))
    y = (x32 - mean) * lax.rsqrt(var + self.epsilon) * scale + offset
    return y.astype(x.dtype)


def mean_pool(x):
  """2×2 average pooling, stride 2 (NHWC)."""
  n, h, w, c = x.shape
  return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def upsample_nearest(x):
  """2× nearest-neighbour upsampling (the paper's tile-channels + depth-to-space)."""
  n, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, 2, w, 2, c))
  return x.reshape(n, 2 * h, 2 * w, c)


def _cast(dtype, *arrays):
  if dtype is None:
    return arrays
  return tuple(a.astype(dtype) for a in arrays)
