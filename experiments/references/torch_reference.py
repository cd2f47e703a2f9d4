"""PyTorch ports of our 64×64 models and of the WGAN-GP iteration, for cross-checks and speed.

The torch modules mirror the Flax ones name for name (`Conv_0`, `LayerNorm_1`, ...), so
weights convert both ways by path (`params_to_torch`, `params_from_torch`). The iteration
is the usual PyTorch WGAN-GP: n_critic critic updates, each with the penalty from
`torch.autograd.grad(..., create_graph=True)` and a per-sample norm, then one generator
update, Adam on both, and an EMA of the generator as our step keeps.

  python experiments/references/torch_reference.py [--conv-impl fast]   # dcgan and resnet, batch 8

prints, for the critic loss, the penalty, the generator loss and the worst parameter
gradient, the relative differences between the two frameworks (float32, same weights
and inputs) and of each against PyTorch in float64. torch is an optional dependency:
`pip install -e .[bench]`.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
  sys.path.insert(0, str(REPO_ROOT))

# ----------------------------------------------------------------------- layers
#
# Parameters keep the Flax names (kernel, bias, scale, offset); their layouts are
# PyTorch's (OIHW kernels, NCHW activations). `tf_padding=False` swaps TF's 'SAME'
# padding of strided layers for PyTorch's symmetric one: the same FLOPs with the grid
# shifted by one pixel, for timing PyTorch as its users write it.


class Conv(nn.Module):

  def __init__(self, c_in, c_out, k, stride=1, bias=True, tf_padding=True):
    super().__init__()
    self.stride, self.tf_padding = stride, tf_padding
    self.kernel = nn.Parameter(torch.empty(c_out, c_in, k, k))
    self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None

  def forward(self, x):
    k, s = self.kernel.shape[-1], self.stride
    if s == 1 or not self.tf_padding:
      return F.conv2d(x, self.kernel, self.bias, s, (k - 1) // 2)
    pads = []
    for size in (x.shape[3], x.shape[2]):  # F.pad wants (left, right, top, bottom)
      total = max((-(-size // s) - 1) * s + k - size, 0)
      pads += [total // 2, total - total // 2]
    return F.conv2d(F.pad(x, pads), self.kernel, self.bias, s)


class ConvTranspose(nn.Module):
  """`lax.conv_transpose(..., 'SAME')`: PyTorch's scatter form with the kernel flipped."""

  def __init__(self, c_in, c_out, k, stride=2, bias=True, tf_padding=True):
    super().__init__()
    self.stride, self.tf_padding = stride, tf_padding
    self.kernel = nn.Parameter(torch.empty(c_in, c_out, k, k))
    self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None

  def forward(self, x):
    k, s = self.kernel.shape[-1], self.stride
    if not self.tf_padding:
      return F.conv_transpose2d(x, self.kernel, self.bias, s, (k - 1) // 2, s - 1)
    pad_before = k - 1 if s > k - 1 else -(-(k + s - 2) // 2)  # lax's 'SAME' choice
    y = F.conv_transpose2d(x, self.kernel, self.bias, s, k - 1 - pad_before)
    return y[:, :, :x.shape[2] * s, :x.shape[3] * s]


class Dense(nn.Module):

  def __init__(self, c_in, c_out, bias=True):
    super().__init__()
    self.kernel = nn.Parameter(torch.empty(c_out, c_in))
    self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None

  def forward(self, x):
    return F.linear(x, self.kernel, self.bias)


class LayerNorm(nn.Module):
  """Per sample over (C, H, W), per-channel affine: GroupNorm with one group."""

  def __init__(self, c):
    super().__init__()
    self.scale, self.offset = nn.Parameter(torch.ones(c)), nn.Parameter(torch.zeros(c))

  def forward(self, x):
    return F.group_norm(x, 1, self.scale, self.offset, eps=1e-5)


class BatchNorm(nn.Module):
  """Statistics of the current batch, no running averages (as ours)."""

  def __init__(self, c):
    super().__init__()
    self.scale, self.offset = nn.Parameter(torch.ones(c)), nn.Parameter(torch.zeros(c))

  def forward(self, x):
    return F.batch_norm(x, None, None, self.scale, self.offset, training=True, eps=1e-5)


def _channel_multipliers(stages):
  return [min(2 ** i, 8) for i in range(stages + 1)]


def _stages(image_size):
  return int(round(math.log2(image_size))) - 2


# ----------------------------------------------------------------------- models


class DCGANCritic(nn.Module):

  def __init__(self, width, image_size=64, channels=3, norm="layernorm", tf_padding=True):
    super().__init__()
    widths = [width * m for m in _channel_multipliers(_stages(image_size) - 1)]
    c_in = channels
    for i, c_out in enumerate(widths):
      self.add_module(f"Conv_{i}", Conv(c_in, c_out, 5, 2, tf_padding=tf_padding))
      if i > 0 and norm == "layernorm":
        self.add_module(f"LayerNorm_{i - 1}", LayerNorm(c_out))
      c_in = c_out
    self.num_convs, self.norm = len(widths), norm
    self.Dense_0 = Dense(4 * 4 * widths[-1], 1)

  def forward(self, x):
    for i in range(self.num_convs):
      x = getattr(self, f"Conv_{i}")(x)
      if i > 0 and self.norm == "layernorm":
        x = getattr(self, f"LayerNorm_{i - 1}")(x)
      x = F.leaky_relu(x, 0.2)
    return self.Dense_0(x.flatten(1))[:, 0]


class DCGANGenerator(nn.Module):

  def __init__(self, width, image_size=64, channels=3, z_dim=128, norm="batchnorm",
               tf_padding=True):
    super().__init__()
    widths = [width * m for m in reversed(_channel_multipliers(_stages(image_size) - 1))]
    self.batchnorm, self.first_width = norm == "batchnorm", widths[0]
    self.Dense_0 = Dense(z_dim, 4 * 4 * widths[0], bias=not self.batchnorm)
    outs = widths[1:] + [channels]
    for i, (c_in, c_out) in enumerate(zip(widths, outs)):
      if self.batchnorm:
        self.add_module(f"BatchNorm_{i}", BatchNorm(c_in))
      is_output = i == len(outs) - 1
      self.add_module(f"ConvTranspose_{i}", ConvTranspose(
          c_in, c_out, 5, bias=is_output or not self.batchnorm, tf_padding=tf_padding))
    self.num_convs = len(outs)

  def forward(self, z):
    x = self.Dense_0(z).view(z.shape[0], self.first_width, 4, 4)
    for i in range(self.num_convs):
      if self.batchnorm:
        x = getattr(self, f"BatchNorm_{i}")(x)
      x = getattr(self, f"ConvTranspose_{i}")(F.relu(x))
    return torch.tanh(x)


class ResidualBlockDown(nn.Module):

  def __init__(self, c_in, c_out, norm):
    super().__init__()
    self.norm = norm == "layernorm"
    self.Conv_0 = Conv(c_in, c_out, 1)
    self.Conv_1 = Conv(c_in, c_in, 3, bias=False)
    self.Conv_2 = Conv(c_in, c_out, 3)
    if self.norm:
      self.LayerNorm_0, self.LayerNorm_1 = LayerNorm(c_in), LayerNorm(c_in)

  def forward(self, x):
    shortcut = self.Conv_0(F.avg_pool2d(x, 2))
    y = F.relu(self.LayerNorm_0(x) if self.norm else x)
    y = self.Conv_1(y)
    y = F.relu(self.LayerNorm_1(y) if self.norm else y)
    return shortcut + F.avg_pool2d(self.Conv_2(y), 2)


class ResidualBlockUp(nn.Module):

  def __init__(self, c_in, c_out, norm):
    super().__init__()
    self.batchnorm = norm == "batchnorm"
    self.Conv_0 = Conv(c_in, c_out, 1, bias=not self.batchnorm)
    self.Conv_1 = Conv(c_in, c_out, 3, bias=False)
    self.Conv_2 = Conv(c_out, c_out, 3, bias=not self.batchnorm)
    if self.batchnorm:
      self.BatchNorm_0, self.BatchNorm_1 = BatchNorm(c_in), BatchNorm(c_out)

  def forward(self, x):
    up = functools.partial(F.interpolate, scale_factor=2, mode="nearest")
    shortcut = self.Conv_0(up(x))
    y = F.relu(self.BatchNorm_0(x) if self.batchnorm else x)
    y = self.Conv_1(up(y))
    y = F.relu(self.BatchNorm_1(y) if self.batchnorm else y)
    return shortcut + self.Conv_2(y)


class ResNetCritic(nn.Module):

  def __init__(self, width, image_size=64, channels=3, norm="layernorm"):
    super().__init__()
    widths = [width * m for m in _channel_multipliers(_stages(image_size))]
    self.Conv_0 = Conv(channels, widths[0], 3)
    for i, (c_in, c_out) in enumerate(zip(widths, widths[1:])):
      self.add_module(f"ResidualBlockDown_{i}", ResidualBlockDown(c_in, c_out, norm))
    self.num_blocks = len(widths) - 1
    self.Dense_0 = Dense(4 * 4 * widths[-1], 1)

  def forward(self, x):
    x = self.Conv_0(x)
    for i in range(self.num_blocks):
      x = getattr(self, f"ResidualBlockDown_{i}")(x)
    return self.Dense_0(x.flatten(1))[:, 0]


class ResNetGenerator(nn.Module):

  def __init__(self, width, image_size=64, channels=3, z_dim=128, norm="batchnorm"):
    super().__init__()
    widths = [width * m for m in reversed(_channel_multipliers(_stages(image_size)))]
    self.batchnorm, self.first_width = norm == "batchnorm", widths[0]
    self.Dense_0 = Dense(z_dim, 4 * 4 * widths[0], bias=not self.batchnorm)
    for i, (c_in, c_out) in enumerate(zip(widths, widths[1:])):
      self.add_module(f"ResidualBlockUp_{i}", ResidualBlockUp(c_in, c_out, norm))
    self.num_blocks = len(widths) - 1
    if self.batchnorm:
      self.BatchNorm_0 = BatchNorm(widths[-1])
    self.Conv_0 = Conv(widths[-1], channels, 3)

  def forward(self, z):
    x = self.Dense_0(z).view(z.shape[0], self.first_width, 4, 4)
    for i in range(self.num_blocks):
      x = getattr(self, f"ResidualBlockUp_{i}")(x)
    x = self.BatchNorm_0(x) if self.batchnorm else x
    return torch.tanh(self.Conv_0(F.relu(x)))


def build_torch_gan(model_config, data_shape, tf_padding=True):
  """(generator, critic) ported from `model_config`, as `wgan_gp.models.build`."""
  image_size, _, channels = data_shape
  c = model_config
  if c.arch == "dcgan":
    return (DCGANGenerator(c.width, image_size, channels, c.z_dim, c.generator_norm, tf_padding),
            DCGANCritic(c.width, image_size, channels, c.critic_norm, tf_padding))
  if c.arch == "resnet":
    return (ResNetGenerator(c.width, image_size, channels, c.z_dim, c.generator_norm),
            ResNetCritic(c.width, image_size, channels, c.critic_norm))
  raise ValueError(f"no PyTorch port of model.arch={c.arch!r}")


# ---------------------------------------------------------- weight conversion


def _flat(tree, prefix=()):
  for key, value in tree.items():
    if isinstance(value, dict) or hasattr(value, "items"):
      yield from _flat(value, prefix + (key,))
    else:
      yield prefix + (key,), value


def _dense_role(module: nn.Module, path) -> str:
  """'flatten_in' for a critic's last Dense (input flattened from NHWC vs NCHW),
  'reshape_out' for a generator's first Dense (output reshaped into 4×4 maps)."""
  if path[-2] != "Dense_0" or len(path) != 2:
    return "plain"
  return "reshape_out" if isinstance(module, (DCGANGenerator, ResNetGenerator)) else "flatten_in"


def _to_torch_layout(module, path, value: np.ndarray) -> np.ndarray:
  leaf, owner = path[-1], getattr(_submodule(module, path[:-1]), "__class__")
  role = _dense_role(module, path) if owner is Dense else "plain"
  if leaf == "kernel" and owner is Conv:
    return value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
  if leaf == "kernel" and owner is ConvTranspose:
    return value[::-1, ::-1].transpose(2, 3, 0, 1)  # flipped, HW(in)(out) -> (in)(out)HW
  if leaf == "kernel" and owner is Dense:
    c_in, c_out = value.shape
    if role == "flatten_in":  # rows (h, w, c) -> columns (c, h, w)
      c = c_in // 16
      return value.reshape(4, 4, c, c_out).transpose(3, 2, 0, 1).reshape(c_out, c_in)
    if role == "reshape_out":  # columns (h, w, c) -> rows (c, h, w)
      c = c_out // 16
      return value.reshape(c_in, 4, 4, c).transpose(3, 1, 2, 0).reshape(c_out, c_in)
    return value.T
  if leaf == "bias" and role == "reshape_out":
    return value.reshape(4, 4, -1).transpose(2, 0, 1).reshape(-1)
  return value


def _from_torch_layout(module, path, value: np.ndarray) -> np.ndarray:
  leaf, owner = path[-1], getattr(_submodule(module, path[:-1]), "__class__")
  role = _dense_role(module, path) if owner is Dense else "plain"
  if leaf == "kernel" and owner is Conv:
    return value.transpose(2, 3, 1, 0)
  if leaf == "kernel" and owner is ConvTranspose:
    return value.transpose(2, 3, 0, 1)[::-1, ::-1]
  if leaf == "kernel" and owner is Dense:
    c_out, c_in = value.shape
    if role == "flatten_in":
      c = c_in // 16
      return value.reshape(c_out, c, 4, 4).transpose(2, 3, 1, 0).reshape(c_in, c_out)
    if role == "reshape_out":
      c = c_out // 16
      return value.reshape(c, 4, 4, c_in).transpose(3, 1, 2, 0).reshape(c_in, c_out)
    return value.T
  if leaf == "bias" and role == "reshape_out":
    return value.reshape(-1, 4, 4).transpose(1, 2, 0).reshape(-1)
  return value


def _submodule(module, path):
  for name in path:
    module = getattr(module, name)
  return module


def params_to_torch(params, module: nn.Module) -> None:
  """Copies a Flax params tree into `module` (every parameter must be covered)."""
  torch_params = dict(module.named_parameters())
  seen = set()
  for path, value in _flat(params):
    name = ".".join(path)
    if name not in torch_params:
      raise KeyError(f"Flax parameter {name} has no PyTorch counterpart")
    converted = np.array(_to_torch_layout(module, path, np.asarray(value, np.float32)))
    with torch.no_grad():
      torch_params[name].copy_(torch.from_numpy(converted))
    seen.add(name)
  missing = set(torch_params) - seen
  if missing:
    raise KeyError(f"PyTorch parameters without a Flax counterpart: {sorted(missing)}")


def params_from_torch(module: nn.Module, like=None, tensors=None):
  """The Flax params tree of `module` (or of `tensors`, e.g. gradients, keyed by the
  parameter names), nested as `like` is if given."""
  tensors = tensors if tensors is not None else dict(module.named_parameters())
  tree = {}
  for name, tensor in tensors.items():
    path = tuple(name.split("."))
    node = tree
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = np.array(  # a copy: .numpy() would alias a .grad that later accumulates
        _from_torch_layout(module, path, tensor.detach().float().cpu().numpy()))
  return tree


# ----------------------------------------------------------- the WGAN-GP iteration


def to_nchw(images_nhwc):
  return images_nhwc.permute(0, 3, 1, 2)


def gradient_penalty(critic, real, fake, eps):
  """E[(‖∇D(x̂)‖₂ − 1)²] with one ε per sample and the norm over (C, H, W)."""
  eps = eps.view(-1, 1, 1, 1).to(real.dtype)
  interpolates = (eps * real + (1 - eps) * fake).requires_grad_(True)
  (grads,) = torch.autograd.grad(critic(interpolates).sum(), interpolates, create_graph=True)
  norms = torch.sqrt(grads.float().square().sum(dim=(1, 2, 3)) + 1e-12)
  return torch.mean((norms - 1.0) ** 2), norms


def critic_loss(critic, real, fake, eps, gp_weight):
  """(loss, penalty) as `wgan_gp.losses.wgan_gp_critic_loss`."""
  wasserstein = critic(real).float().mean() - critic(fake).float().mean()
  penalty, _ = gradient_penalty(critic, real, fake, eps)
  return -wasserstein + gp_weight * penalty, penalty


class WGANGP:
  """One object per run: models, Adam states, EMA generator; `step()` = one iteration."""

  def __init__(self, generator, critic, config, device="cpu", autocast_dtype=None,
               compile_mode=None):
    self.generator, self.critic = generator.to(device), critic.to(device)
    self.device, self.config, self.autocast_dtype = device, config, autocast_dtype
    adam = lambda params, opt: torch.optim.Adam(
        params, lr=opt.learning_rate, betas=(opt.b1, opt.b2), eps=opt.eps)
    self.g_optimizer = adam(self.generator.parameters(), config.optim.generator)
    self.d_optimizer = adam(self.critic.parameters(), config.optim.critic)
    self.ema = [p.detach().clone() for p in self.generator.parameters()]
    self.step_count = 0
    # torch.compile has no double backward (AOTAutograd), so a compiled critic cannot
    # carry the penalty: compiled modules serve the Wasserstein terms and the generator
    # update, the eager critic (same parameters) the penalty.
    compiled = (lambda m: m) if compile_mode is None else functools.partial(
        torch.compile, mode=compile_mode)
    self.fast_generator, self.fast_critic = compiled(self.generator), compiled(self.critic)

  def _autocast(self):
    return torch.autocast(self.device.split(":")[0], dtype=self.autocast_dtype,
                          enabled=self.autocast_dtype is not None)

  def _critic_update(self, real_uint8):
    batch = real_uint8.shape[0]
    real = to_nchw(real_uint8).float() * (2.0 / 255.0) - 1.0
    z = torch.randn(batch, self.config.model.z_dim, device=self.device)
    eps = torch.rand(batch, device=self.device)
    with self._autocast():
      with torch.no_grad():
        fake = self.fast_generator(z)
      wasserstein = self.fast_critic(real).float().mean() - self.fast_critic(fake).float().mean()
      penalty, _ = gradient_penalty(self.critic, real, fake, eps)
      loss = -wasserstein + self.config.loss.gp_weight * penalty
    self.d_optimizer.zero_grad(set_to_none=True)
    loss.backward()
    self.d_optimizer.step()
    return loss.detach(), penalty.detach()

  def _generator_update(self, batch):
    z = torch.randn(batch, self.config.model.z_dim, device=self.device)
    with self._autocast():
      loss = -self.fast_critic(self.fast_generator(z)).float().mean()
    self.g_optimizer.zero_grad(set_to_none=True)
    loss.backward()
    self.g_optimizer.step()
    return loss.detach()

  def step(self, real_batches_uint8):
    """real_batches_uint8: [n_critic, batch, H, W, C] uint8 on the device."""
    for real in real_batches_uint8:
      critic_loss_value, penalty = self._critic_update(real)
    # The critic is frozen during the generator update, as our step (grads only for G).
    for p in self.critic.parameters():
      p.requires_grad_(False)
    g_loss = self._generator_update(real_batches_uint8.shape[1])
    for p in self.critic.parameters():
      p.requires_grad_(True)
    decay = min(self.config.ema_decay, (1.0 + self.step_count) / (10.0 + self.step_count))
    with torch.no_grad():
      torch._foreach_lerp_(self.ema, [p.detach() for p in self.generator.parameters()],
                           1.0 - decay)
    self.step_count += 1
    return {"critic_loss": critic_loss_value, "gradient_penalty": penalty,
            "generator_loss": g_loss}


# --------------------------------------------------------------- the cross-check


def cross_check(arch: str, batch: int = 8, width: int = 64, image_size: int = 64,
                seed: int = 0, conv_impl: str = "xla",
                conv_fold: str = "thin") -> dict[str, dict[str, float]]:
  """Relative errors of JAX and PyTorch, same float32 weights and inputs.

  For each quantity (the critic loss, the penalty, the generator loss, and the gradient
  of every parameter: the critic loss w.r.t. the critic's, the generator loss w.r.t.
  the generator's) returns max|a − b| / max|b| for three pairs: 'jax_vs_torch' (both
  float32), and 'jax_vs_f64' and 'torch_vs_f64' against the same PyTorch model run in
  float64, which tells rounding (both frameworks off the float64 value alike) from a
  real disagreement. A gradient is scaled by at least 1e-4 of its model's largest one:
  the critic's output bias cancels out of the loss, so its gradient is rounding noise.
  The critic sees the same generated images in every run, so that its check does not
  inherit the generator's differences.
  """
  import jax
  from wgan_gp import losses
  from wgan_gp.config import base_config
  from wgan_gp import models

  config = base_config()
  config.model.arch, config.model.width, config.model.conv_impl = arch, width, conv_impl
  config.model.conv_fold = conv_fold
  data_shape = (image_size, image_size, 3)
  gan = models.build(config.model, data_shape)
  g_params, d_params = gan.init(seed)
  rng = np.random.default_rng(seed)
  real = rng.uniform(-1, 1, (batch, *data_shape)).astype(np.float32)
  z = rng.standard_normal((batch, config.model.z_dim)).astype(np.float32)
  eps = rng.uniform(0, 1, batch).astype(np.float32)
  gp_weight = config.loss.gp_weight

  fake = np.asarray(jax.jit(gan.generate)(g_params, z))
  @jax.jit
  def jax_side(g_params, d_params):
    def critic_loss_fn(d_params):
      return losses.wgan_gp_critic_loss(functools.partial(gan.criticize, d_params), real,
                                        fake, eps, gp_weight)
    (loss, metrics), d_grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(d_params)
    g_loss, g_grads = jax.value_and_grad(lambda g: losses.wgan_generator_loss(
        gan.criticize(d_params, gan.generate(g, z))))(g_params)
    return loss, metrics["gradient_penalty"], g_loss, d_grads, g_grads

  results = {"jax": _flatten_results(*jax.tree.map(np.asarray, jax_side(g_params, d_params)))}
  for name, dtype in (("torch", torch.float32), ("f64", torch.float64)):
    generator, critic = build_torch_gan(config.model, data_shape)
    params_to_torch(g_params, generator)
    params_to_torch(d_params, critic)
    generator.to(dtype), critic.to(dtype)
    t = lambda a: torch.from_numpy(np.array(a)).to(dtype)
    loss, penalty = critic_loss(critic, to_nchw(t(real)), to_nchw(t(fake)), t(eps), gp_weight)
    loss.backward()
    d_grads = params_from_torch(critic, tensors={n: p.grad for n, p in critic.named_parameters()})
    critic.requires_grad_(False)
    g_loss = -critic(generator(t(z))).mean()
    g_loss.backward()
    g_grads = params_from_torch(
        generator, tensors={n: p.grad for n, p in generator.named_parameters()})
    results[name] = _flatten_results(loss.item(), penalty.item(), g_loss.item(), d_grads, g_grads)

  def relative_errors(ours, truth):
    errors = {}
    for group in ("critic grad ", "generator grad "):
      floor = 1e-4 * max(float(np.max(np.abs(v))) for k, v in truth.items() if k.startswith(group))
      errors.update({k: _relative_error(ours[k], v, floor)
                     for k, v in truth.items() if k.startswith(group)})
    errors.update({k: _relative_error(ours[k], v, 1e-30)
                   for k, v in truth.items() if not k.endswith(("kernel", "bias", "scale", "offset"))})
    return errors

  return {"jax_vs_torch": relative_errors(results["jax"], results["torch"]),
          "jax_vs_f64": relative_errors(results["jax"], results["f64"]),
          "torch_vs_f64": relative_errors(results["torch"], results["f64"])}


def _flatten_results(loss, penalty, g_loss, d_grads, g_grads) -> dict[str, np.ndarray]:
  flat = {"critic loss": loss, "gradient penalty": penalty, "generator loss": g_loss}
  for prefix, grads in (("critic grad ", d_grads), ("generator grad ", g_grads)):
    flat.update({prefix + "/".join(path): np.asarray(v, np.float64) for path, v in _flat(grads)})
  return flat


def _relative_error(value, truth, floor: float) -> float:
  value, truth = np.asarray(value, np.float64), np.asarray(truth, np.float64)
  return float(np.max(np.abs(value - truth)) / max(float(np.max(np.abs(truth))), floor))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--archs", default="dcgan,resnet")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--conv-impl", default="xla")
  args = parser.parse_args()
  for arch in args.archs.split(","):
    report = cross_check(arch, args.batch, conv_impl=args.conv_impl)
    for pair, errors in report.items():
      scalars = ", ".join(f"{k} {errors[k]:.1e}" for k in
                          ("critic loss", "gradient penalty", "generator loss"))
      worst = max((k for k in errors if " grad " in k), key=errors.get)
      print(f"{arch:6s} {pair:12s}: {scalars}; worst of {len(errors) - 3} gradients "
            f"{errors[worst]:.1e} ({worst})")


if __name__ == "__main__":
  main()
