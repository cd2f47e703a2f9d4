"""The convolutions every model layer runs: `conv2d` and `conv2d_transpose`.

The formulation is chosen in one place (`impl`, from `model.conv_impl`):
- "xla": the plain `lax.conv_general_dilated` / `lax.conv_transpose` reference;
- "fast": stride-1 convolutions only, in every derivative up to the penalty's double
  backward (see below); the same values, and on XLA:CPU the penalty's gradient of the
  DCGAN-64 critic runs ~6x faster;
- "auto": "fast" when the default backend is the CPU, "xla" elsewhere.
Every formulation matches "xla" (tests/test_layers.py). The Flax layers that use them
are in `wgan_gp.layers`.

Layout: activations NHWC, kernels HWIO (for the transpose: I = input channels).
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")

CONV_IMPLS = ("xla", "fast", "auto")


def resolve_impl(impl: str) -> str:
  """The formulation `impl` stands for on this process's default backend."""
  if impl == "auto":
    return "fast" if jax.default_backend() == "cpu" else "xla"
  if impl not in CONV_IMPLS:
    raise ValueError(f"unknown conv impl {impl!r}; expected one of {CONV_IMPLS}")
  return impl


def conv2d(x, kernel, stride: int = 1, impl: str = "xla", fold: str = "thin"):
  """'SAME'-padded 2-D convolution, output spatial size = input size / stride. `fold`
  picks the fast formulation's stride-1 forms (`FOLDS`)."""
  impl = resolve_impl(impl)
  if impl == "xla":
    return lax.conv_general_dilated(
        x, kernel, (stride, stride), "SAME", dimension_numbers=_DIMENSION_NUMBERS)
  check_fold(fold)
  return _conv2d_fast(x, kernel, stride, fold)


def conv2d_transpose(x, kernel, stride: int = 2, impl: str = "xla", fold: str = "thin"):
  """'SAME' transposed convolution (TF `conv2d_transpose`), output = input × stride."""
  impl = resolve_impl(impl)
  if impl == "xla":
    return lax.conv_transpose(
        x, kernel, (stride, stride), "SAME", dimension_numbers=_DIMENSION_NUMBERS)
  check_fold(fold)
  return _conv2d_transpose_fast(x, kernel, stride, fold)


# ------------------------------------------------- the 'fast' formulation
#
# XLA:CPU runs a convolution fast unless it has base (input) dilation or window
# reversal; strides and kernel dilation are fine. JAX's own input gradient of a strided
# convolution is base-dilated, and in the penalty's double backward XLA folds kernel
# flips into window reversals: both run on a naive loop, up to ~50x slower. So the fast
# formulation keeps lax's direct convolution for the forward pass and for every weight
# gradient (JAX's own: a kernel-dilated convolution), and writes the input gradient of a
# strided convolution, and the transposed convolution, as stride-1 convolutions, in one
# of two ways:
# - split by phase: input pixel s·m + r meets only the taps t ≡ r + pad (mod s), so a
#   stride-s convolution is a sum over the s·s input phases of stride-1 convolutions
#   with those taps (3×3, 3×2, 2×3 and 2×2 of a 5×5 kernel at stride 2: exactly its 25
#   taps); a transposed convolution, and the input gradient of a strided one, is one
#   stride-1 convolution per output phase, the phases interleaved;
# - folded: each s×s block of pixels goes into the channels (space-to-depth) and the
#   kernel is zero-padded to a multiple of s taps (6×6 for 5×5: 1.44x the FLOPs), so
#   that each is one stride-1 convolution over s·s times the channels, followed by
#   depth-to-space where it produces phases.
# Splitting does no wasted work and wins where both channel counts are wide; folding
# wins where one side is thin (the image's 3 channels), where the split convolutions'
# matrix products would be too narrow to run near peak (`_prefers_folding`).
# The derivatives are wired by hand: a custom VJP gives the first ones, and inside it
# custom JVPs give the second ones (the penalty differentiates the input gradient once
# more) as the transposes of these same fast forms. Every kernel flip sits behind an
# optimization barrier, so XLA cannot fold it into a convolution. (XLA:CPU also needs
# its convolutions outside while loops: inside one it leaves their layouts
# uncanonicalised and runs weight gradients on the naive loop, whatever the formulation.)

# Channel count under which a phase-split convolution's matrix products run far from
# peak on CPU, so the folded form's 1.44x FLOPs cost less (measured on the DCGAN layers
# at width 64).
_THIN_CHANNELS = 16

# Which strided layers the fast formulation folds (`model.conv_fold`): 'thin' those with
# fewer than _THIN_CHANNELS channels on one side (the others split by phase), 'all' every
# one, 'none' none. At the round-2 CPU recipe's shape (width 16, batch 32, n_critic 2)
# folding every layer ran the step ~5% faster; at batch 64 and n_critic 1, no faster
# beyond the noise (experiments/speed/results/speed_levers_*.md). In the step, XLA runs a
# layer's four phase convolutions at once, and on two cores they run at half their
# speed alone; one folded convolution does not compete with itself.
FOLDS = ("thin", "all", "none")


def check_fold(fold: str) -> None:
  if fold not in FOLDS:
    raise ValueError(f"model.conv_fold={fold!r}; expected one of {FOLDS}")


def _prefers_folding(kernel, fold: str) -> bool:
  if fold == "all":
    return True
  if fold == "none":
    return False
  return min(kernel.shape[2], kernel.shape[3]) < _THIN_CHANNELS


def _flip(x, axes):
  # The barrier keeps XLA from folding this flip into a neighbouring convolution as
  # a window reversal (a slow path), in this function and in its transposes.
  return lax.optimization_barrier(lax.rev(x, axes))


def _conv_stride1(x, kernel, padding):
  """Stride-1 convolution with (before, after) padding per spatial axis; a negative
  amount crops instead."""
  nonnegative = []
  for axis, (before, after) in zip((1, 2), padding):
    x = lax.slice_in_dim(x, max(-before, 0), x.shape[axis] - max(-after, 0), axis=axis)
    nonnegative.append((max(before, 0), max(after, 0)))
  return lax.conv_general_dilated(x, kernel, (1, 1), nonnegative,
                                  dimension_numbers=_DIMENSION_NUMBERS)


def _split_phases(x, s: int):
  """[N, H·s, W·s, C] -> [N, H, s, W, s, C]: x[:, :, r, :, q] is phase (r, q)."""
  n, h, w, c = x.shape
  return x.reshape(n, h // s, s, w // s, s, c)


def _interleave_phases(phases, s: int):
  """phases[r][q] of [N, H, W, C] -> [N, H·s, W·s, C], phase (r, q) at (s·i + r, s·j + q)."""
  y = jnp.stack([jnp.stack(row, axis=3) for row in phases], axis=2)
  n, h, _, w, _, c = y.shape
  return y.reshape(n, h * s, w * s, c)


def _taps(kernel, first_h: int, first_w: int, s: int):
  """The kernel's taps first + s·j along each spatial axis."""
  return kernel[first_h::s, first_w::s]


def _reversed_taps(flipped, first_h: int, count_h: int, first_w: int, count_w: int, s: int):
  """`_taps` of the kernel, in reverse order, read from the flipped kernel."""
  k_h, k_w = flipped.shape[:2]
  last_h, last_w = first_h + s * (count_h - 1), first_w + s * (count_w - 1)
  return flipped[k_h - 1 - last_h::s, k_w - 1 - last_w::s][:count_h, :count_w]


def _tf_same_padding(size: int, k: int, s: int) -> tuple[int, int]:
  """(output size, padding before) of TF 'SAME' along one spatial axis."""
  out = -(-size // s)
  return out, max((out - 1) * s + k - size, 0) // 2


def _lax_transpose_padding(k: int, s: int) -> int:
  """Padding before the s-dilated input of `lax.conv_transpose(..., 'SAME')`."""
  return k - 1 if s > k - 1 else -(-(k + s - 2) // 2)


def _strided_geometry(size: int, k: int, s: int):
  """TF 'SAME' stride-s convolution along one axis, as (output size, per input phase r:
  (first tap, tap count, offset)). Output pixel i gets phase-r pixels i + offset + j
  against taps first + s·j. Each phase has as many pixels as the output."""
  out, lo = _tf_same_padding(size, k, s)
  phases = []
  for r in range(s):
    first = (r + lo) % s
    phases.append((first, len(range(first, k, s)), (first - lo - r) // s))
  return out, phases


def _conv2d_split(x, kernel, s: int):
  """Sum over input phases of stride-1 convolutions with that phase's taps."""
  k_h, k_w = kernel.shape[:2]
  out_h, phases_h = _strided_geometry(x.shape[1], k_h, s)
  out_w, phases_w = _strided_geometry(x.shape[2], k_w, s)
  # Sizes that are not a multiple of s get zero pixels that meet only zero taps.
  x = jnp.pad(x, ((0, 0), (0, out_h * s - x.shape[1]), (0, out_w * s - x.shape[2]), (0, 0)))
  x = _split_phases(x, s)
  y = 0
  for r, (first_h, count_h, offset_h) in enumerate(phases_h):
    for q, (first_w, count_w, offset_w) in enumerate(phases_w):
      if count_h and count_w:
        padding = ((-offset_h, count_h + offset_h - 1), (-offset_w, count_w + offset_w - 1))
        y = y + _conv_stride1(x[:, :, r, :, q], _taps(kernel, first_h, first_w, s), padding)
  return y


def _conv2d_split_input_grad(grad, kernel, s: int, in_h: int, in_w: int):
  """Input gradient of `_conv2d_split`: per input phase, the transposed stride-1
  convolution (flipped taps) of the output gradient; the phases interleaved."""
  k_h, k_w, c, _ = kernel.shape
  out_h, phases_h = _strided_geometry(in_h, k_h, s)
  out_w, phases_w = _strided_geometry(in_w, k_w, s)
  flipped = _flip(kernel.swapaxes(2, 3), (0, 1))
  phases = []
  for first_h, count_h, offset_h in phases_h:
    row = []
    for first_w, count_w, offset_w in phases_w:
      if not (count_h and count_w):
        row.append(jnp.zeros((grad.shape[0], out_h, out_w, c), grad.dtype))
        continue
      padding = ((offset_h + count_h - 1, -offset_h), (offset_w + count_w - 1, -offset_w))
      taps = _reversed_taps(flipped, first_h, count_h, first_w, count_w, s)
      row.append(_conv_stride1(grad, taps, padding))
    phases.append(row)
  return _interleave_phases(phases, s)[:, :in_h, :in_w]


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


def _fold_kernel(kernel, s: int, pad_h, pad_w):
  """Zero-pads the taps ((before, after) per axis) to a multiple of s and splits them:
  [k_h, k_w, C, F] -> [taps_h, s, taps_w, s, C, F] with tap s·u + p at (u, p)."""
  kernel = jnp.pad(kernel, (pad_h, pad_w, (0, 0), (0, 0)))
  k_h, k_w, c, f = kernel.shape
  return kernel.reshape(k_h // s, s, k_w // s, s, c, f)


def _conv2d_folded(x, kernel, s: int):
  """Space-to-depth and one stride-1 convolution with the folded kernel."""
  if s == 1:
    return lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                    dimension_numbers=_DIMENSION_NUMBERS)
  k_h, k_w, c, f = kernel.shape
  geometry = []
  for axis, k in ((1, k_h), (2, k_w)):
    out, lo = _tf_same_padding(x.shape[axis], k, s)
    front = -lo % s  # zero taps in front of the kernel make the input's padding whole cells
    taps = -(-(k + front) // s)
    cells = -(-x.shape[axis] // s)
    before = (lo + front) // s
    geometry.append((front, taps, (before, out + taps - 1 - before - cells), cells * s))
  (front_h, taps_h, pad_h, size_h), (front_w, taps_w, pad_w, size_w) = geometry
  # Input sizes that are not a multiple of s get zero pixels that meet only zero taps.
  x = jnp.pad(x, ((0, 0), (0, size_h - x.shape[1]), (0, size_w - x.shape[2]), (0, 0)))
  folded = _fold_kernel(kernel, s, (front_h, s * taps_h - k_h - front_h),
                        (front_w, s * taps_w - k_w - front_w))
  folded = folded.transpose(0, 2, 1, 3, 4, 5).reshape(taps_h, taps_w, s * s * c, f)
  # Padding inside the convolution rather than on x: XLA:CPU (YNNPACK) runs this form
  # several times faster than a 'VALID' convolution of a padded input.
  return lax.conv_general_dilated(space_to_depth(x, s), folded, (1, 1), (pad_h, pad_w),
                                  dimension_numbers=_DIMENSION_NUMBERS)


def _subpixel_conv(x, phase_kernel, s: int, before_h: int, before_w: int,
                   out_h: int, out_w: int):
  """Stride-1 conv of x (padded `before` in front) into s·s output phases, interleaved
  by depth_to_space and cropped to (out_h, out_w)."""
  window_h, window_w = phase_kernel.shape[:2]
  padding = []
  for axis, before, window, out in ((1, before_h, window_h, out_h),
                                    (2, before_w, window_w, out_w)):
    after = -(-out // s) + window - 1 - before - x.shape[axis]
    if after < 0:  # more input than the cropped output needs
      x = lax.slice_in_dim(x, 0, x.shape[axis] + after, axis=axis)
      after = 0
    padding.append((before, after))
  y = lax.conv_general_dilated(x, phase_kernel, (1, 1), padding,
                               dimension_numbers=_DIMENSION_NUMBERS)
  return depth_to_space(y, s)[:, :out_h, :out_w]


def _conv2d_folded_input_grad(grad, kernel, s: int, in_h: int, in_w: int):
  """Input gradient of `_conv2d_folded`: input pixel s·m + r gets output pixels
  m − before + d against tap s·(before − d) + r + lo, for d over a window."""
  k_h, k_w, c, f = kernel.shape
  geometry = []
  for size, k in ((in_h, k_h), (in_w, k_w)):
    _, lo = _tf_same_padding(size, k, s)
    before = (k - 1 - lo) // s
    window = before + (s - 1 + lo) // s + 1
    front = -lo % s  # tap t sits at s·(before − d + ⌈lo/s⌉) + r of the padded kernel
    geometry.append((before, window, (front, s * window - k - front)))
  (before_h, window_h, pad_h), (before_w, window_w, pad_w) = geometry
  folded = _flip(_fold_kernel(kernel, s, pad_h, pad_w), (0, 2))  # d runs against u
  phase_kernel = folded.transpose(0, 2, 5, 1, 3, 4).reshape(window_h, window_w, f, s * s * c)
  return _subpixel_conv(grad, phase_kernel, s, before_h, before_w, in_h, in_w)


def _conv2d_strided(x, kernel, s: int, fold: str):
  """Stride-1 form of the strided convolution: never run, only transposed (the input
  gradient's own input gradient, in the penalty's double backward)."""
  if _prefers_folding(kernel, fold):
    return _conv2d_folded(x, kernel, s)
  return _conv2d_split(x, kernel, s)


def _conv2d_strided_input_grad(grad, kernel, s: int, in_h: int, in_w: int, fold: str):
  if _prefers_folding(kernel, fold):
    return _conv2d_folded_input_grad(grad, kernel, s, in_h, in_w)
  return _conv2d_split_input_grad(grad, kernel, s, in_h, in_w)


def _same_padding(size: int, k: int, s: int) -> tuple[int, int]:
  """TF 'SAME' (before, after) padding along one axis."""
  out, before = _tf_same_padding(size, k, s)
  return before, max((out - 1) * s + k - size, 0) - before


def _conv_direct(x, kernel, s: int, padding):
  """lax's stride-s convolution with (before, after) padding per axis; negative crops."""
  nonnegative = []
  for axis, (before, after) in zip((1, 2), padding):
    x = lax.slice_in_dim(x, max(-before, 0), x.shape[axis] - max(-after, 0), axis=axis)
    nonnegative.append((max(before, 0), max(after, 0)))
  return lax.conv_general_dilated(x, kernel, (s, s), nonnegative,
                                  dimension_numbers=_DIMENSION_NUMBERS)


def _direct_weight_grad(x, grad, kernel_shape, s: int, padding):
  """∂/∂kernel <_conv_direct(x, kernel), grad>: JAX's own weight gradient, one
  kernel-dilated convolution."""
  _, kernel_vjp = jax.vjp(lambda k: _conv_direct(x, k, s, padding),
                          jnp.zeros(kernel_shape, x.dtype))
  return kernel_vjp(grad)[0]


def _direct_input_grad(grad, kernel, s: int, x_shape):
  """JAX's own input gradient of `_conv2d_fast`: base-dilated, so never run, only
  transposed (back into the direct strided convolution)."""
  padding = _down_padding(x_shape, kernel.shape, s)
  _, x_vjp = jax.vjp(lambda x: _conv_direct(x, kernel, s, padding),
                     jnp.zeros(x_shape, grad.dtype))
  return x_vjp(grad)[0]


def _down_padding(x_shape, kernel_shape, s: int):
  return tuple(_same_padding(x_shape[axis], kernel_shape[axis - 1], s) for axis in (1, 2))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv2d_fast(x, kernel, s: int, fold: str):
  return _conv_direct(x, kernel, s, _down_padding(x.shape, kernel.shape, s))


def _conv2d_fast_fwd(x, kernel, s, fold):
  return _conv2d_value(x, kernel, s, fold), (x, kernel)


def _conv2d_fast_bwd(s, fold, residuals, grad):
  x, kernel = residuals
  return (_conv2d_input_grad(grad, kernel, s, fold, x.shape),
          _direct_weight_grad(x, grad, kernel.shape, s, _down_padding(x.shape, kernel.shape, s)))


_conv2d_fast.defvjp(_conv2d_fast_fwd, _conv2d_fast_bwd)

# The penalty's outer gradient differentiates what these rules compute as ordinary JAX
# code, under the per-sample vmap. Custom VJPs there would make every weight gradient
# per sample, so the forward value and the input gradient carry custom JVPs instead:
# JAX transposes their tangents, each written so that its transpose is a fast form.
# The tangents themselves are never run in reverse mode.


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _conv2d_value(x, kernel, s: int, fold: str):
  return _conv_direct(x, kernel, s, _down_padding(x.shape, kernel.shape, s))


@functools.partial(_conv2d_value.defjvp, symbolic_zeros=True)
def _conv2d_value_jvp(s, fold, primals, tangents):
  x, kernel = primals
  x_dot, kernel_dot = tangents
  y = _conv2d_value(x, kernel, s, fold)
  y_dot = jnp.zeros_like(y)
  if not isinstance(x_dot, SymbolicZero):  # transposes to the stride-1 input gradient
    y_dot = y_dot + _conv2d_strided(x_dot, kernel, s, fold)
  if not isinstance(kernel_dot, SymbolicZero):  # transposes to the direct weight gradient
    y_dot = y_dot + _conv_direct(x, kernel_dot, s, _down_padding(x.shape, kernel.shape, s))
  return y, y_dot


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4))
def _conv2d_input_grad(grad, kernel, s: int, fold: str, x_shape):
  return _conv2d_strided_input_grad(grad, kernel, s, *x_shape[1:3], fold)


@functools.partial(_conv2d_input_grad.defjvp, symbolic_zeros=True)
def _conv2d_input_grad_jvp(s, fold, x_shape, primals, tangents):
  grad, kernel = primals
  grad_dot, kernel_dot = tangents
  y = _conv2d_input_grad(grad, kernel, s, fold, x_shape)
  y_dot = jnp.zeros_like(y)
  if not isinstance(grad_dot, SymbolicZero):  # transposes to the direct strided convolution
    y_dot = y_dot + _direct_input_grad(grad_dot, kernel, s, x_shape)
  if not isinstance(kernel_dot, SymbolicZero):
    # Transposes to stride-1 weight gradients per phase (JAX's own input gradient here
    # would transpose to a window-reversed convolution, the slow path).
    y_dot = y_dot + _conv2d_strided_input_grad(grad, kernel_dot, s, *x_shape[1:3], fold)
  return y, y_dot


def _transpose_geometry(k: int, s: int):
  """`lax.conv_transpose(..., 'SAME')` along one axis, per output phase r: (first tap,
  tap count, offset). Output pixel s·i + r gets input pixels i + offset + j against
  taps first + s·j."""
  before = _lax_transpose_padding(k, s)
  phases = []
  for r in range(s):
    first = (before - r) % s
    phases.append((first, len(range(first, k, s)), (r + first - before) // s))
  return phases


def _conv2d_transpose_split_forward(x, kernel, s: int):
  """Per output phase, a stride-1 convolution with that phase's taps; interleaved."""
  n, h, w, _ = x.shape
  k_h, k_w, _, f = kernel.shape
  phases = []
  for first_h, count_h, offset_h in _transpose_geometry(k_h, s):
    row = []
    for first_w, count_w, offset_w in _transpose_geometry(k_w, s):
      if not (count_h and count_w):
        row.append(jnp.zeros((n, h, w, f), x.dtype))
        continue
      padding = ((-offset_h, count_h - 1 + offset_h), (-offset_w, count_w - 1 + offset_w))
      row.append(_conv_stride1(x, _taps(kernel, first_h, first_w, s), padding))
    phases.append(row)
  return _interleave_phases(phases, s)


def _conv2d_transpose_folded(x, kernel, s: int):
  """`lax.conv_transpose(..., 'SAME')`: output pixel s·m + r gets input pixels
  m − before + d against tap s·(d − before) + pad_before − r."""
  k_h, k_w, c, f = kernel.shape
  geometry = []
  for k in (k_h, k_w):
    pad_before = _lax_transpose_padding(k, s)
    before = pad_before // s
    window = before + (k + s - 2 - pad_before) // s + 1
    front = s - 1 - pad_before % s  # tap t sits at s·d + (s − 1 − r) of the padded kernel
    geometry.append((before, window, (front, s * window - k - front)))
  (before_h, window_h, pad_h), (before_w, window_w, pad_w) = geometry
  folded = _flip(_fold_kernel(kernel, s, pad_h, pad_w), (1, 3))  # r runs against p
  phase_kernel = folded.transpose(0, 2, 4, 1, 3, 5).reshape(window_h, window_w, c, s * s * f)
  return _subpixel_conv(x, phase_kernel, s, before_h, before_w,
                        x.shape[1] * s, x.shape[2] * s)


def _conv2d_transpose_formulated(x, kernel, s: int, fold: str):
  if _prefers_folding(kernel, fold):
    return _conv2d_transpose_folded(x, kernel, s)
  return _conv2d_transpose_split_forward(x, kernel, s)


def _up_adjoint_padding(kernel_shape, s: int):
  """(before, after) per axis of the direct stride-s convolution, with the flipped
  kernel, that is the adjoint of `lax.conv_transpose(..., 'SAME')`: output pixel i
  reads input pixel s·i − before + u against flipped tap u."""
  padding = []
  for k in kernel_shape[:2]:
    before = k - 1 - _lax_transpose_padding(k, s)
    padding.append((before, k - s - before))
  return tuple(padding)


def _flip_io(kernel):
  return _flip(kernel.swapaxes(2, 3), (0, 1))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv2d_transpose_fast(x, kernel, s: int, fold: str):
  return _conv2d_transpose_formulated(x, kernel, s, fold)


def _conv2d_transpose_fast_fwd(x, kernel, s, fold):
  return _conv2d_transpose_formulated(x, kernel, s, fold), (x, kernel)


def _conv2d_transpose_fast_bwd(s, fold, residuals, grad):
  # Both gradients are direct strided convolutions: the input gradient is the adjoint
  # convolution, and the weight gradient is that convolution's own, read back through
  # the flip. (No critic uses a transposed convolution, so these are never
  # differentiated again where speed matters; they stay exact if they are.)
  x, kernel = residuals
  padding = _up_adjoint_padding(kernel.shape, s)
  k_h, k_w, c, f = kernel.shape
  adjoint_kernel_grad = _direct_weight_grad(grad, x, (k_h, k_w, f, c), s, padding)
  return _conv_direct(grad, _flip_io(kernel), s, padding), _flip_io(adjoint_kernel_grad)


_conv2d_transpose_fast.defvjp(_conv2d_transpose_fast_fwd, _conv2d_transpose_fast_bwd)
