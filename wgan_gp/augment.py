"""Differentiable augmentation for the critic (DiffAugment, Zhao et al. 2020).

With 10,000 training images seen 60-120 times an hour, the critic memorises the reals
and its gradient stops teaching the generator. Augmenting everything the critic sees,
reals and fakes alike, with transforms the generator's loss backpropagates through,
keeps the critic from memorising without putting augmented images into the generator's
distribution.

`config.augment` is a comma-separated subset of the policies, applied in this order:
  flip         a horizontal mirror, with probability 1/2
  color        brightness + U[-0.5, 0.5), saturation ×U[0, 2), contrast ×U[0.5, 1.5)
  translation  a shift of up to 1/8 of the side in each axis, zero padding
  cutout       a zeroed square of half the side, centred anywhere in the image
Every parameter is drawn per sample from that sample's key (`draw`), and `apply` is a
pure, differentiable function of the images and those parameters. Images are NHWC in
[-1, 1]; zero is mid-grey.

The penalty sees the critic's own input: the interpolates are taken between augmented
reals and augmented fakes (see `wgan_gp.losses` and experiments/faces64/README.md).
The consistency regularisation (`config.loss.consistency_*`) draws its transforms from
the same policies, for images the critic is asked to score alike instead.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

POLICIES = ("flip", "color", "translation", "cutout")
TRANSLATION_RATIO = 1 / 8
CUTOUT_RATIO = 1 / 2


def parse_policy(text: str, field: str = "config.augment") -> tuple[str, ...]:
  """'translation,cutout,color' -> the policies in their order of application; an
  unknown name is an error that names `field`, the setting it came from."""
  names = {name.strip() for name in (text or "").split(",") if name.strip()}
  unknown = sorted(names - set(POLICIES))
  if unknown:
    raise ValueError(f"{field}: unknown augmentation {unknown}; expected a "
                     f"comma-separated subset of {','.join(POLICIES)} (empty: none)")
  return tuple(name for name in POLICIES if name in names)


class Params(NamedTuple):
  """One sample's augmentation (batched: a leading axis on each field)."""
  brightness: jax.Array  # added, in [-0.5, 0.5)
  saturation: jax.Array  # factor on the deviation from the pixel's channel mean, [0, 2)
  contrast: jax.Array  # factor on the deviation from the image mean, [0.5, 1.5)
  shift: jax.Array  # int32 [2]: rows, columns; |shift| <= round(side / 8)
  cutout_centre: jax.Array  # int32 [2]: rows, columns, in [0, side]
  flip: jax.Array  # bool: mirror the columns


def _max_shift(side: int) -> int:
  return int(side * TRANSLATION_RATIO + 0.5)


def draw(key, image_shape) -> Params:
  """The augmentation parameters of one sample (vmap over keys for a batch)."""
  height, width = image_shape[0], image_shape[1]
  keys = jax.random.split(key, 5)
  max_shift = jnp.array([_max_shift(height), _max_shift(width)])
  # randint's upper bound is exclusive: shifts in [-s, s], centres in [0, side].
  shift = jax.random.randint(keys[3], (2,), -max_shift, max_shift + 1)
  cutout_centre = jax.random.randint(keys[4], (2,), 0, jnp.array([height, width]) + 1)
  return Params(brightness=jax.random.uniform(keys[0]) - 0.5,
                saturation=2.0 * jax.random.uniform(keys[1]),
                contrast=jax.random.uniform(keys[2]) + 0.5,
                shift=shift, cutout_centre=cutout_centre,
                # A stream of its own: the other fields draw what they drew before it.
                flip=jax.random.bernoulli(jax.random.fold_in(key, len(keys))))


def _per_image(values, images):
  return values.reshape((-1,) + (1,) * (images.ndim - 1)).astype(images.dtype)


def flip(images, params: Params):
  return jnp.where(_per_image(params.flip, images) > 0, images[:, :, ::-1], images)


def color(images, params: Params):
  x = images + _per_image(params.brightness, images)
  mean = jnp.mean(x, axis=-1, keepdims=True)
  x = (x - mean) * _per_image(params.saturation, images) + mean
  mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  return (x - mean) * _per_image(params.contrast, images) + mean


def _shift_matrices(shifts, side: int, dtype):
  """[N, side, side] one-hot matrices M with (M @ v)[i] = v[i - shift], 0 outside."""
  rows = jnp.arange(side)
  return (rows[None, :, None] - shifts[:, None, None] == rows[None, None, :]).astype(dtype)


def translation(images, params: Params):
  """Each image shifted by its own (rows, columns), the uncovered border zero.

  A shift is a product with one-hot matrices, so it and its gradient are matmuls that
  XLA fuses well on every backend, instead of per-sample gathers; multiplying by 1 and
  adding zeros is exact, so the shifted pixels are the originals bit for bit.
  """
  height, width = images.shape[1], images.shape[2]
  shift_rows = _shift_matrices(params.shift[:, 0], height, images.dtype)
  shift_cols = _shift_matrices(params.shift[:, 1], width, images.dtype)
  x = jnp.einsum("nij,njwc->niwc", shift_rows, images, precision="highest")
  return jnp.einsum("nij,nhjc->nhic", shift_cols, x, precision="highest")


def cutout_mask(params: Params, height: int, width: int, dtype):
  """[N, H, W, 1]: 0 inside each sample's square (half the side, clipped at the border)."""
  size_rows, size_cols = int(height * CUTOUT_RATIO + 0.5), int(width * CUTOUT_RATIO + 0.5)
  top = params.cutout_centre[:, 0] - size_rows // 2
  left = params.cutout_centre[:, 1] - size_cols // 2
  rows, cols = jnp.arange(height), jnp.arange(width)
  in_rows = (rows[None] >= top[:, None]) & (rows[None] < top[:, None] + size_rows)
  in_cols = (cols[None] >= left[:, None]) & (cols[None] < left[:, None] + size_cols)
  inside = in_rows[:, :, None] & in_cols[:, None, :]
  return (~inside).astype(dtype)[..., None]


def cutout(images, params: Params):
  return images * cutout_mask(params, images.shape[1], images.shape[2], images.dtype)


_TRANSFORMS = {"flip": flip, "color": color, "translation": translation, "cutout": cutout}


def apply(images, params: Params, policy: tuple[str, ...]):
  """The policy's transforms, in order, each with each sample's own parameters."""
  for name in policy:
    images = _TRANSFORMS[name](images, params)
  return images


def augment(images, keys, policy: tuple[str, ...]):
  """`apply` with parameters drawn from one key per sample; the identity for no policy."""
  if not policy:
    return images
  params = jax.vmap(lambda key: draw(key, images.shape[1:]))(keys)
  return apply(images, params, policy)
