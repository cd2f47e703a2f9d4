"""Convolution primitives and the Flax layers built on them.

Every convolution in the models goes through `conv2d` or `conv2d_transpose`, so the
formulation can be chosen in one place (`impl`). `"xla"` is the plain
`lax.conv_general_dilated` / `lax.conv_transpose` reference; faster formulations
must match it exactly (see tests/test_layers.py).

Layout: activations NHWC, kernels HWIO (for the transpose: I = input channels).
"""

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")

CONV_IMPLS = ("xla", "s2d")


def conv2d(x, kernel, stride: int = 1, impl: str = "xla"):
  """'SAME'-padded 2-D convolution, output spatial size = input size / stride."""
  if impl == "xla" or (impl == "s2d" and stride == 1):
    return lax.conv_general_dilated(
        x, kernel, (stride, stride), "SAME", dimension_numbers=_DIMENSION_NUMBERS)
  if impl == "s2d":
    return _strided_conv_as_space_to_depth(x, kernel, stride)
  raise ValueError(f"unknown conv impl {impl!r}; expected one of {CONV_IMPLS}")


def conv2d_transpose(x, kernel, stride: int = 2, impl: str = "xla"):
  """'SAME' transposed convolution (TF `conv2d_transpose`), output = input × stride."""
  if impl == "xla":
    return lax.conv_transpose(
        x, kernel, (stride, stride), "SAME", dimension_numbers=_DIMENSION_NUMBERS)
  if impl == "s2d":
    return _transposed_conv_as_depth_to_space(x, kernel, stride)
  raise ValueError(f"unknown conv impl {impl!r}; expected one of {CONV_IMPLS}")


# ----------------------------------------------- strides folded into channels
#
# XLA:CPU runs the gradients of strided convolutions as base-dilated convolutions, a
# path ~50x slower than a plain convolution. Folding each s×s block of pixels into the
# channels turns a stride-s convolution into a stride-1 one (and a transposed
# convolution into a stride-1 one followed by the inverse fold), so that every
# derivative JAX takes of it, the penalty's double backward included, is a stride-1,
# undilated convolution. The kernel is zero-padded to a multiple of s taps.


def _tf_same_padding(size: int, k: int, s: int) -> tuple[int, int]:
  """(output size, padding before) of TF 'SAME' for one spatial axis."""
  out = -(-size // s)
  return out, max((out - 1) * s + k - size, 0) // 2


def space_to_depth(x, s: int):
  """[N, H·s, W·s, C] -> [N, H, W, s·s·C], channels ordered (row phase, column phase, C)."""
  n, h, w, c = x.shape
  x = x.reshape(n, h // s, s, w // s, s, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, h // s, w // s, s * s * c)


def depth_to_space(x, s: int):
  """Inverse of `space_to_depth`."""
  n, h, w, c = x.shape
  x = x.reshape(n, h, w, s, s, c // (s * s)).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, h * s, w * s, c // (s * s))


def _strided_conv_as_space_to_depth(x, kernel, s: int):
  kh, kw, c, f = kernel.shape
  (out_h, lo_h), (out_w, lo_w) = (_tf_same_padding(x.shape[1], kh, s),
                                  _tf_same_padding(x.shape[2], kw, s))
  taps_h, taps_w = -(-kh // s), -(-kw // s)
  # Pad to exactly s·(out + taps − 1) pixels; rows past TF's own padding only ever
  # meet the kernel's zero taps.
  x = jnp.pad(x, ((0, 0), (lo_h, s * (out_h + taps_h - 1) - x.shape[1] - lo_h),
                  (lo_w, s * (out_w + taps_w - 1) - x.shape[2] - lo_w), (0, 0)))
  kernel = jnp.pad(kernel, ((0, s * taps_h - kh), (0, s * taps_w - kw), (0, 0), (0, 0)))
  kernel = kernel.reshape(taps_h, s, taps_w, s, c, f).transpose(0, 2, 1, 3, 4, 5)
  kernel = kernel.reshape(taps_h, taps_w, s * s * c, f)
  return lax.conv_general_dilated(space_to_depth(x, s), kernel, (1, 1), "VALID",
                                  dimension_numbers=_DIMENSION_NUMBERS)


def _subpixel_taps(k: int, s: int) -> tuple[int, int, list[list[int]]]:
  """How `lax.conv_transpose(..., 'SAME')` maps onto a stride-1 conv per output phase.

  Output pixel s·m + r sums input pixels m + d − before (d = 0 .. window−1) against
  kernel tap table[r][d] (−1: none). Returns (before, window, table).
  """
  pad_len = k + s - 2
  pad_a = k - 1 if s > k - 1 else -(-pad_len // 2)  # lax's 'SAME' transpose padding
  before = pad_a // s
  window = (k - 1 + s - 1 - pad_a) // s + before + 1
  table = []
  for r in range(s):
    taps = [s * (d - before) + pad_a - r for d in range(window)]
    table.append([t if 0 <= t < k else -1 for t in taps])
  return before, window, table


def _subpixel_kernel(kernel, s: int):
  """[k, k, C, F] -> [window, window, C, s·s·F] for the phases (r, q, F) of the output."""
  k, _, c, f = kernel.shape
  _, window, table = _subpixel_taps(k, s)
  # Index k selects an appended zero tap for the (phase, offset) pairs with no tap.
  padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
  rows = jnp.array([[t if t >= 0 else k for t in row] for row in table])  # [s, window]
  sub = padded[rows[:, :, None, None], rows[None, None, :, :]]  # [s(r), w(d), s(q), w(e), C, F]
  return sub.transpose(1, 3, 4, 0, 2, 5).reshape(window, window, c, s * s * f)


def _transposed_conv_as_depth_to_space(x, kernel, s: int):
  before, window, _ = _subpixel_taps(kernel.shape[0], s)
  after = window - 1 - before
  y = lax.conv_general_dilated(x, _subpixel_kernel(kernel, s), (1, 1),
                               ((before, after), (before, after)),
                               dimension_numbers=_DIMENSION_NUMBERS)
  return depth_to_space(y, s)


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

  @nn.compact
  def __call__(self, x):
    k, c_in = self.kernel_size, x.shape[-1]
    stdev = fan_stdev(self.init, c_in * k * k, self.features * k * k / self.stride ** 2)
    kernel = self.param("kernel", uniform_with_stdev(stdev), (k, k, c_in, self.features))
    x, kernel = _cast(self.dtype, x, kernel)
    y = conv2d(x, kernel, self.stride, self.impl)
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

  @nn.compact
  def __call__(self, x):
    k, c_in = self.kernel_size, x.shape[-1]
    stdev = fan_stdev(self.init, c_in * k * k / self.stride ** 2, self.features * k * k)
    kernel = self.param("kernel", uniform_with_stdev(stdev), (k, k, c_in, self.features))
    x, kernel = _cast(self.dtype, x, kernel)
    y = conv2d_transpose(x, kernel, self.stride, self.impl)
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


class BatchNorm(nn.Module):
  """Normalisation by the statistics of the current batch (the paper's generator).

  No running averages: the generator stays a pure function of (params, z). With
  `axis_name` set inside pmap, statistics are those of the global batch, so the result
  does not depend on how the batch is split across devices.
  """
  axis_name: str | None = None
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x):
    axes = tuple(range(x.ndim - 1))
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axes)
    mean_of_squares = jnp.mean(jnp.square(x32), axes)
    if self.axis_name is not None and not self.is_initializing():  # init runs outside pmap
      mean, mean_of_squares = lax.pmean((mean, mean_of_squares), self.axis_name)
    var = jnp.maximum(mean_of_squares - jnp.square(mean), 0.0)
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
