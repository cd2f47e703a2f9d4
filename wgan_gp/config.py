"""The full set of hyperparameters, with the paper's defaults, and config loading.

Experiment files under configs/ start from `base_config()` and change a few fields.
Every field can be overridden on the command line (`--config.loss.gp_weight=1`);
unknown keys are rejected because the config is locked.
"""

import importlib.util
import json
import math
import os

import ml_collections

# CelebA's face framing as a fraction of the short side: 108 px of the 178×218
# img_align_celeba, exactly 54 px of the 89×109 half-size copy (54/89 == 108/178).
FACE_CROP_FRACTION = 54 / 89
# A crop under this share of the short side is named in a warning: on CelebA it is a
# patch of the face (the 54 px tuned on the 89×109 copy, given to 178×218 images).
MIN_CROP_SHARE = 1 / 3


def base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.data = ml_collections.ConfigDict()
  # 'images' (folder / .zip / .tar of JPEG or PNG files at `path`), 'tfds' (celeb_a),
  # or a 2-D toy distribution: '25gaussians', '8gaussians', 'swissroll'.
  config.data.source = "images"
  config.data.path = ""
  config.data.image_size = 64
  # The centred square crop before resizing, as a fraction of the images' short side:
  # CelebA's face framing (FACE_CROP_FRACTION) is 108 px of the 178×218 img_align_celeba
  # and 54 px of its 89×109 half-size copy, the same faces at any uniform rescaling. It is
  # resolved to pixels once per dataset, against the size of its first image (CelebA's
  # all share one): the crop, the decoded cache's key and the checks see those pixels.
  config.data.crop_fraction = FACE_CROP_FRACTION
  # Or the side in pixels of the source images (0: crop_fraction decides). Set one of the
  # two, the other to 0; both 0: the largest centred square.
  config.data.crop_size = 0
  config.data.random_flip = False  # horizontal flips, drawn per sample on the device
  # Images held out of training (image data only; 0: none): issue #35's overfitting
  # check, measured before it is treated. Each evaluation records the critic's mean score
  # on them and on as many fixed training images (eval/critic_score_{train,holdout,gap});
  # a gap that grows over the run is the critic memorising its training images. The same
  # images for every seed and arm: a fixed permutation of the decoded dataset
  # (wgan_gp/data/holdout.py), drawn after the decoded cache, which stays shared.
  config.data.holdout = 0
  # Decoded images are cached here as uint8, keyed by source, crop and size
  # (empty: $XDG_CACHE_HOME/wgan_gp/decoded, else ~/.cache/wgan_gp/decoded).
  config.data.cache_dir = ""
  config.data.tfds_split = "train"
  config.data.tfds_data_dir = ""  # empty: TFDS's default (~/tensorflow_datasets)
  config.data.tfds_manual_dir = ""  # empty: <tfds data dir>/downloads/manual
  config.data.decode_workers = 0  # 0: one per CPU core
  config.data.prefetch = 2  # batches staged on the devices ahead of the step

  config.model = ml_collections.ConfigDict()
  config.model.arch = "dcgan"  # a key of models.ARCHITECTURES, e.g. 'resnet' or 'mlp'
  config.model.z_dim = 128
  config.model.width = 64  # the paper's DIM: channels of the first critic layer
  config.model.mlp_depth = 3  # hidden layers of the 'mlp' pair
  config.model.critic_norm = "layernorm"  # 'layernorm' or 'none' (never BatchNorm)
  config.model.generator_norm = "batchnorm"  # 'batchnorm' or 'none'
  # Convolution formulation (wgan_gp/conv.py): 'auto' is 'fast' on CPU (stride-1
  # rewrites that avoid XLA:CPU's slow paths), 'xla' elsewhere; the maths is the same.
  config.model.conv_impl = "auto"
  # Which strided layers of the DCGAN pair the fast formulation folds by space-to-depth
  # instead of splitting by phase: 'thin' (fewer than 16 channels on one side), 'all',
  # 'none' (wgan_gp/conv.py). The same values, a different speed.
  config.model.conv_fold = "thin"
  config.model.compute_dtype = "float32"  # or 'bfloat16' (params stay float32)
  # PGGAN's minibatch standard deviation ('dcgan', 'resnet'): the critic sees its batch's
  # feature spread, a cue against mode collapse. Its gradient is stopped everywhere (#35),
  # so that the per-sample penalty differentiates exactly the function the loss scores
  # (wgan_gp/losses.py); the generator then feels it only through the critic's scores,
  # not through PGGAN's direct gradient of the spread.
  config.model.minibatch_stddev = False

  config.loss = ml_collections.ConfigDict()
  # 'wgan-gp', 'wgan-clip' (the original WGAN: weights clipped to ±clip_value; use it
  # with RMSProp(5e-5) as Arjovsky et al. did) or 'gan' (the non-saturating GAN loss).
  config.loss.name = "wgan-gp"
  config.loss.gp_weight = 10.0  # λ
  config.loss.clip_value = 0.01  # c, for 'wgan-clip'
  # Weight of Karras et al. (2018)'s ε-drift term, drift_weight·E[D(real)²] (they use
  # 0.001): keeps the critic's scores from drifting far from 0 (WGAN-GP only; 0: off).
  config.loss.drift_weight = 0.0
  # The lazy penalty: the penalty (weighted λ·gp_every) on every gp_every-th critic
  # update only, as StyleGAN2 regularises R1 every 16 minibatches; the updates between
  # skip its double backward. It must divide n_critic, so that which updates carry it is
  # fixed at compile time (wgan_gp/iteration.py). 1: every update (the paper).
  config.loss.gp_every = 1
  # Balanced consistency regularisation (bCR, Zhao et al. 2021), for a critic that starts
  # to memorise the reals (a growing train/held-out gap of its scores, data.holdout):
  # λ_real·E[(D(x) − D(T(x)))²] + λ_fake·E[(D(G(z)) − D(T(G(z))))²], with T drawn per
  # sample from consistency_augment (wgan_gp/augment.py's policies). The generator never
  # trains on T's images. They used 10 and 10 with flips and shifts of 1/8 of the side;
  # on this critic 10 stalls it and 1 holds the gap at 0 (experiments/faces64/README.md).
  # WGAN-GP only; 0 and 0: off, and the step scores no transformed batch.
  config.loss.consistency_real_weight = 0.0
  config.loss.consistency_fake_weight = 0.0
  config.loss.consistency_augment = "flip,translation"
  # bCR (weighted λ·consistency_every) on every consistency_every-th critic update only,
  # the last of each group, so that with gp_every equal to it the penalty and bCR take
  # turns and no update pays for both; the others skip bCR's two extra critic passes. It
  # must divide n_critic. 1: every update.
  config.loss.consistency_every = 1
  # Differentiable augmentation of everything the critic sees (wgan_gp/augment.py): a
  # comma-separated subset of 'flip,color,translation,cutout' (empty: none).
  config.augment = ""

  config.batch_size = 64  # global: split across all devices of all processes
  config.n_critic = 5  # critic updates per generator update, each on its own real batch
  config.num_train_steps = 100_000  # generator updates
  # Stop (with the final samples, evaluation and checkpoint) once this many minutes of
  # training have passed, whichever comes first; 0: no limit. The first compilation
  # counts; the recompilation after a resume, evaluations and checkpoints do not. A run
  # resumes under another value only with `main --change_budget` (wgan_gp/schedules.py).
  config.train_minutes = 0.0
  # The clock of train_minutes and training_seconds: 'wall', or 'cpu' (this process's CPU
  # seconds: a screen's trials, pinned to one core each, get the same work however busy
  # the machine is).
  config.train_clock = "wall"

  config.optim = ml_collections.ConfigDict()
  for name in ("generator", "critic"):
    opt = ml_collections.ConfigDict()
    opt.name = "adam"  # or 'rmsprop'
    opt.learning_rate = 1e-4
    opt.b1 = 0.0
    opt.b2 = 0.9
    opt.eps = 1e-8
    # RMSProp's decay of the squared-gradient average (0.99: torch.optim.RMSprop's, which
    # the original WGAN used).
    opt.rms_decay = 0.99
    # 'constant', 'linear' (decay to 0 over num_train_steps), or a schedule over the
    # fraction of the training budget spent, which ends with a `train_minutes` budget on
    # any machine: 'budget-linear' or 'budget-cosine' (wgan_gp/schedules.py).
    opt.schedule = "constant"
    opt.decay_start = 0.0  # budget schedules: the fraction of the budget before decay
    opt.final_scale = 0.0  # budget schedules: the end rate, as a fraction of the peak
    config.optim[name] = opt
  # EMA of the generator's parameters, used for samples and evaluation.
  config.ema_decay = 0.999
  # Fraction of the training budget before the EMA starts averaging (until then it is
  # the generator itself), so that early weights do not linger in it; 0: from the start.
  config.ema_start = 0.0
  # An EMA whose half-life grows with the images seen (StyleGAN2-ADA): half-life
  # min(ema_halflife_images, ema_rampup × images seen), in generator images, from the
  # first step; it replaces ema_decay and ema_start. 0: off (ema_decay, ema_start).
  config.ema_halflife_images = 0.0
  config.ema_rampup = 0.05  # the half-life's share of the images seen, early on

  config.log_every = 100
  config.sample_every = 1000
  config.num_sample_images = 64  # the sample grid
  config.checkpoint_every = 1000
  config.keep_checkpoints = 3
  config.eval_every = 0  # 0: evaluate only at the end
  # Image metrics, a comma-separated subset of 'fid,kid,swd' (empty: none). With 'fid',
  # the checkpoint of the best FID so far is also kept, under <workdir>/best/.
  config.eval_metrics = "swd"
  config.eval_samples = 10_000  # generated (and as many real) images per evaluation
  config.toy_eval_samples = 2500  # 2-D points for the toy mode-coverage metrics
  return config


_FLOAT32_MAX = 3.4028234663852886e38
_AT_LEAST_1 = (lambda v: v >= 1, ">= 1")
_AT_LEAST_0 = (lambda v: v >= 0, ">= 0")
_POSITIVE = (lambda v: 0 < v <= _FLOAT32_MAX, "> 0 (and finite in float32)")
_FRACTION = (lambda v: 0 <= v < 1, "in [0, 1)")
# Every numeric field and the range in which it means something; `check_ranges` refuses
# values outside them before anything runs (a negative learning rate trains, silently).
NUMERIC_RANGES = {
    "seed": _AT_LEAST_0,
    "data.image_size": _AT_LEAST_1,
    "data.crop_size": (lambda v: v >= 0, ">= 0 (0: data.crop_fraction decides)"),
    "data.crop_fraction": (lambda v: 0 <= v <= 1, "in [0, 1] (0: data.crop_size decides)"),
    "data.decode_workers": (lambda v: v >= 0, ">= 0 (0: one per CPU core)"),
    "data.prefetch": _AT_LEAST_0,
    "data.holdout": (lambda v: v >= 0, ">= 0 (0: no holdout)"),
    "model.z_dim": _AT_LEAST_1,
    "model.width": _AT_LEAST_1,
    "model.mlp_depth": _AT_LEAST_1,
    "loss.gp_weight": (lambda v: 0 <= v <= _FLOAT32_MAX, ">= 0 (0: no gradient penalty)"),
    "loss.clip_value": _POSITIVE,
    "batch_size": _AT_LEAST_1,
    "n_critic": _AT_LEAST_1,
    "num_train_steps": _AT_LEAST_1,
    "train_minutes": (lambda v: v >= 0, ">= 0 (0: no limit)"),
    "ema_decay": _FRACTION,
    "ema_start": _FRACTION,
    "ema_halflife_images": (lambda v: 0 <= v <= _FLOAT32_MAX, ">= 0 (0: ema_decay decides)"),
    "ema_rampup": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "loss.gp_every": _AT_LEAST_1,
    "loss.consistency_every": _AT_LEAST_1,
    "loss.drift_weight": (lambda v: 0 <= v <= _FLOAT32_MAX, ">= 0 (0: no drift term)"),
    "log_every": _AT_LEAST_1,
    "sample_every": _AT_LEAST_1,
    "num_sample_images": _AT_LEAST_1,
    "checkpoint_every": _AT_LEAST_1,
    "keep_checkpoints": _AT_LEAST_1,
    "eval_every": (lambda v: v >= 0, ">= 0 (0: only at the end)"),
    "eval_samples": _AT_LEAST_1,
    "toy_eval_samples": _AT_LEAST_1,
    **{f"optim.{name}.{field}": check for name in ("generator", "critic")
       for field, check in (("learning_rate", _POSITIVE), ("b1", _FRACTION),
                            ("b2", _FRACTION), ("eps", _POSITIVE),
                            ("rms_decay", _FRACTION), ("decay_start", _FRACTION),
                            ("final_scale", (lambda v: 0 <= v <= 1, "in [0, 1]")))},
}


def check_ranges(config) -> None:
  """Raises ValueError naming the first field outside its meaningful range."""
  current = config.to_dict()
  for key, (ok, must_be) in NUMERIC_RANGES.items():
    value = get_dotted(current, key)
    if value is None:  # a config from before the field existed
      continue
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise ValueError(f"config.{key}={value!r} must be a number")
    if not (math.isfinite(value) and ok(value)):
      raise ValueError(f"config.{key}={value} must be {must_be}: set --config.{key}")


def crop_setting(data) -> tuple[int, float]:
  """(crop_size, crop_fraction) of a data config (a ConfigDict or a dict).

  A config from before crop_fraction existed reads as crop_fraction 0: its crop_size was
  the crop, in pixels. Raises ValueError when both are set.
  """
  crop_size, crop_fraction = data.get("crop_size", 0) or 0, data.get("crop_fraction", 0.0) or 0.0
  if crop_size and crop_fraction:
    raise ValueError(
        f"config.data.crop_size={crop_size} and config.data.crop_fraction={crop_fraction} "
        "both set the crop: set --config.data.crop_fraction=0 for a crop in pixels, or "
        "--config.data.crop_size=0 for a fraction of the short side")
  return crop_size, crop_fraction


def resolve_crop(crop_size: int, crop_fraction: float, width: int, height: int) -> int:
  """The crop's side in pixels of width×height images: crop_size when set, else
  crop_fraction of the short side, rounded; 0 (neither set): the largest centred square."""
  if crop_size:
    return int(crop_size)
  if crop_fraction:
    return max(1, int(round(crop_fraction * min(width, height))))
  return 0


def small_crop_warning(crop_size: int, crop_fraction: float, width: int, height: int,
                       flag_prefix: str = "--config.data.") -> str | None:
  """The warning for a crop under MIN_CROP_SHARE of width×height images' short side, or
  None: it names the resolved pixels, the image size and the fix (as flags that start
  with `flag_prefix`)."""
  pixels = resolve_crop(crop_size, crop_fraction, width, height)
  short = min(width, height)
  if not pixels or pixels >= MIN_CROP_SHARE * short:
    return None
  setting = (f"{flag_prefix}crop_size={crop_size}" if crop_size else
             f"{flag_prefix}crop_fraction={crop_fraction:g}")
  face = resolve_crop(0, FACE_CROP_FRACTION, width, height)
  return (f"{setting} crops {pixels} px of the {width}x{height} images, {pixels / short:.0%} "
          f"of their short side: a patch, not a face; for CelebA's face framing at any "
          f"resolution set {flag_prefix}crop_fraction={FACE_CROP_FRACTION:.4f} "
          f"{flag_prefix}crop_size=0 ({face} px here)")


# Fields added after runs were recorded, with the value that does what the code did before
# them: a saved config that lacks one ran with that value (resuming and the recipe tests
# read it so; `with_later_fields`).
LATER_FIELD_DEFAULTS = {
    "data.holdout": 0,
    "model.minibatch_stddev": False,
    "loss.gp_every": 1,
    "ema_halflife_images": 0.0,
    "ema_rampup": 0.05,
    "loss.consistency_real_weight": 0.0,
    "loss.consistency_fake_weight": 0.0,
    "loss.consistency_augment": "flip,translation",
    "loss.consistency_every": 1,
}


def with_later_fields(config_dict: dict) -> dict:
  """A saved config (as a dict) with each of LATER_FIELD_DEFAULTS it lacks filled in."""
  filled = json.loads(json.dumps(config_dict))
  for key, value in LATER_FIELD_DEFAULTS.items():
    *parents, leaf = key.split(".")
    node = filled
    for part in parents:
      node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
      node.setdefault(leaf, value)
  return filled


def canonical_config(config_dict: dict, source_size: tuple[int, int] | None) -> dict:
  """A config (as a dict) with its framing of the data in one form, so that two configs
  that crop the same pixels of the same data compare equal however they express it.

  The crop becomes pixels for `source_size` (width, height of the source images) in
  data.crop_size, with data.crop_fraction 0; a config from before crop_fraction (crop_size
  only, in pixels) gets the field. For 2-D toy data, or no `source_size`, the crop
  frames nothing and reads as unset. Fields added since get the values that the code had
  before them (LATER_FIELD_DEFAULTS). Resuming compares configs in this form
  (wgan_gp/validation.py), and so does tests/test_faces_recipe.py against committed runs.
  """
  canonical = with_later_fields(config_dict)
  data = canonical.get("data")
  if not isinstance(data, dict):
    return canonical
  crop_size, crop_fraction = crop_setting(data)
  data["crop_size"] = resolve_crop(crop_size, crop_fraction, *source_size) if source_size else 0
  data["crop_fraction"] = 0.0
  return canonical


def load_config(path: str, overrides: dict | None = None) -> ml_collections.ConfigDict:
  """Loads `configs/<name>.py[:arg]` as `--config=` does, for notebooks and scripts.

  `overrides` maps dotted keys to values, e.g. {"loss.gp_weight": 1.0}.
  """
  path, _, arg = path.partition(":")
  spec = importlib.util.spec_from_file_location("_wgan_gp_config", path)
  if spec is None or not os.path.exists(path):
    raise FileNotFoundError(f"config file {path!r} not found")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg) if arg else module.get_config()
  config.lock()
  for key, value in (overrides or {}).items():
    set_dotted(config, key, value)
  return config


def set_dotted(config, dotted_key: str, value) -> None:
  *parents, leaf = dotted_key.split(".")
  node = config
  for part in parents:
    node = node[part]
  node[leaf] = value


def parse_args(arg: str) -> set[str]:
  """Comma-separated config arguments, e.g. 'smoke,8gaussians'."""
  return {a for a in (arg or "").split(",") if a}


def to_json(config) -> str:
  return json.dumps(config.to_dict(), indent=2, sort_keys=True)


def get_dotted(d: dict, dotted_key: str):
  """d["a"]["b"] for "a.b"; None where a part is missing (a config from older code)."""
  for part in dotted_key.split("."):
    if not isinstance(d, dict) or part not in d:
      return None
    d = d[part]
  return d
