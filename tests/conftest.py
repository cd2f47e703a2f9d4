import atexit
import importlib.util
import os
import pathlib
import shutil
import tempfile

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "configs"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
CELEBA_TAR = SHARED_DATA / "celeba_align_10k_89x109.tar"
CELEBA_TAR_IMAGE_SIZE = (89, 109)  # width, height of its faces

requires_celeba_tar = pytest.mark.skipif(
    not CELEBA_TAR.exists(),
    reason=f"{CELEBA_TAR} not found: the shared CelebA sample sits beside the checkout in CI "
    "and the dev workspace, not in a user's clone")


# Tiers: `python -m pytest -m "not slow"` is the quick tier (every module, every CLI once,
# one train-and-resume through `python -m wgan_gp.main`, tiny configs);
# `slow` marks the tests that train for long, start several processes (distributed,
# signals), execute the notebook, cross-check against PyTorch or run the real Inception
# weights. The full suite runs both. Both run on every usable core through pytest-xdist
# (`-n auto` in pyproject.toml; `-n 0` runs one test at a time, in this process).

# LLVM at -O0 for every test process (this one and each child): the suite's programs are
# tiny, so compiling them costs more than running them, and -O0 cuts a third of the
# compilation (the children that run the real Inception over many images opt out:
# `subprocess_env(optimised_code=True)`). XLA's own HLO passes still run, so the tests see
# the programs that a training run compiles (the slow-convolution checks in test_layers.py
# read those), only less optimised machine code. Numbers may differ from -O2 in the last
# bits; no test compares against figures computed under other flags.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"
if TEST_XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()

# One JAX persistent compilation cache for the whole session, shared by every child
# Python (see `subprocess_env`) and every pytest-xdist worker: each otherwise compiles the
# same tiny train steps again. Fresh per session, unless WGAN_GP_TESTS_JAX_CACHE names a
# folder to keep across sessions (JAX keys its entries by jaxlib version, flags and
# program). The process that makes the session's folder (pytest itself, or xdist's
# controller, which starts its workers after loading this file) removes it at exit.
_SESSION_CACHE_VARIABLE = "WGAN_GP_TESTS_SESSION_JAX_CACHE"
_COMPILATION_CACHE = (os.environ.get("WGAN_GP_TESTS_JAX_CACHE")
                      or os.environ.get(_SESSION_CACHE_VARIABLE))
if not _COMPILATION_CACHE:
  _COMPILATION_CACHE = tempfile.mkdtemp(prefix="wgan_gp_tests_jax_cache_")
  os.environ[_SESSION_CACHE_VARIABLE] = _COMPILATION_CACHE
  atexit.register(shutil.rmtree, _COMPILATION_CACHE, ignore_errors=True)


_MOST_WORKERS = 8  # each worker holds JAX (and TensorFlow, for the TFDS tests) in memory


def pytest_xdist_auto_num_workers(config):
  """`-n auto`: the cores this process may run on (os.cpu_count counts the host's, which a
  container may not get; macOS has no sched_getaffinity), at most _MOST_WORKERS."""
  usable = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count() or 1)
  return max(1, min(usable, _MOST_WORKERS))


def compilation_cache_env() -> dict:
  """JAX settings (as environment variables) that make a child use the shared cache for
  every compilation, however small and fast."""
  env = {"JAX_COMPILATION_CACHE_DIR": _COMPILATION_CACHE,
         "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
         "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"}
  if importlib.util.find_spec("filelock") is not None:
    # A size limit makes JAX lock the cache while reading and writing an entry: children
    # that run at the same time (two processes of a distributed run) never read a
    # half-written one. Without filelock JAX refuses the setting; such runs then only race.
    env["JAX_COMPILATION_CACHE_MAX_SIZE"] = str(4 << 30)
  return env


# This process uses the cache too: tests that build the same step twice (a run against its
# resumed copy) compile it once. Only programs that take a while to compile: below that,
# writing an entry for each of the thousands of small programs here costs more than it
# saves. Set before JAX is imported, which reads these variables.
os.environ.update(compilation_cache_env(), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5")


def subprocess_env(devices: int = 1, optimised_code: bool = False, **extra) -> dict:
  """Environment for a child Python: `devices` CPU devices, the repo importable, the
  session's shared compilation cache. `optimised_code`: LLVM at its default level, for a
  child that runs the real Inception over many images, where -O0 code runs slower than
  it compiles faster."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}" + (
      "" if optimised_code else f" {TEST_XLA_FLAGS}")
  env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
  env.update(compilation_cache_env())
  env.update(extra)
  return env


def gan_losses_and_grads(image_size: int, batch: int, **model_overrides):
  """One critic-loss and one generator-loss evaluation of a fresh GAN (seed 0) on fixed
  random inputs: (fake images, scalars, critic grads, generator grads), with the scalars
  the critic loss's metrics plus 'generator_loss'."""
  compute, params = gan_losses_and_grads_fn(image_size, batch, **model_overrides)
  return compute(*params)


def gan_losses_and_grads_fn(image_size: int, batch: int, **model_overrides):
  """The jitted computation behind `gan_losses_and_grads`, and its (generator, critic)
  parameters."""
  import functools

  import jax

  from wgan_gp import losses
  from wgan_gp.config import base_config
  from wgan_gp import models

  config = base_config().model
  config.update(**model_overrides)
  gan = models.build(config, (image_size, image_size, 3))
  g_params, d_params = gan.init(0)
  keys = jax.random.split(jax.random.PRNGKey(1), 3)
  real = jax.random.uniform(keys[0], (batch, image_size, image_size, 3), minval=-1, maxval=1)
  z = jax.random.normal(keys[1], (batch, config.z_dim))
  eps = jax.random.uniform(keys[2], (batch,))

  @jax.jit
  def compute(g_params, d_params):
    fake = gan.generate(g_params, z)
    critic_loss = lambda d: losses.wgan_gp_critic_loss(
        functools.partial(gan.criticize, d), real, fake, eps, 10.0)
    (loss, scalars), d_grads = jax.value_and_grad(critic_loss, has_aux=True)(d_params)
    g_loss, g_grads = jax.value_and_grad(lambda g: losses.wgan_generator_loss(
        gan.criticize(d_params, gan.generate(g, z))))(g_params)
    return fake, {**scalars, "critic_loss": loss, "generator_loss": g_loss}, d_grads, g_grads

  return compute, (g_params, d_params)


@pytest.fixture
def cli_in_process(capsys, monkeypatch):
  """Runs a command's `__main__` block in this process, as `python -m` would, for the
  refusals that happen before any work: returns a CompletedProcess-like (returncode,
  stdout, stderr). Each call parses the flags afresh. `wgan_gp.main` goes through absl's
  app.run with its own flags parser; argparse commands (`sweep`, `plot`) through their
  `main(argv)`, which returns the exit code. Not the other absl commands (`sample`,
  `evaluate`, `fid`): absl's flags are one registry per process, and `wgan_gp.main`'s
  (--workdir, required) clash with theirs, so those stay subprocesses. One real
  `python -m` run of each command stays in the suite for the entry point itself."""
  import importlib
  import logging
  import subprocess
  import sys
  import warnings

  from absl import app, flags

  def reset_flags():
    # Fields that ml_collections' config flag registered for the previous call's
    # --config.* overrides; left in place, defining them again would fail.
    for name in [name for name in flags.FLAGS if name.startswith("config.")]:
      delattr(flags.FLAGS, name)
    disabled = logging.root.manager.disable
    logging.disable(logging.INFO)  # absl logs each unparse_flags() at INFO
    try:
      flags.FLAGS.unparse_flags()
    finally:
      logging.disable(disabled)

  def run(module_name, *args):
    module = importlib.import_module(module_name)
    argv = [module_name, *map(str, args)]
    monkeypatch.setattr(sys, "argv", argv)  # config_flags finds its overrides there
    handlers, level = logging.root.handlers[:], logging.root.level
    # A child starts with no handlers; here an earlier test's logging.basicConfig may have
    # left one on a captured stream since closed, which would print an error per record.
    logging.root.handlers[:] = [h for h in handlers if not getattr(
        getattr(h, "stream", None), "closed", False)]
    capsys.readouterr()
    try:
      with warnings.catch_warnings():
        # Hidden in a `python -m` run: ml_collections' loading of a config file.
        warnings.filterwarnings("ignore", "the load_module", DeprecationWarning)
        if hasattr(module, "FLAGS"):  # absl's app.run, as the module's __main__ block
          reset_flags()
          with pytest.raises(SystemExit) as exit_info:
            parser = getattr(module, "_parse_flags", None)
            app.run(module.main, argv=argv, **({"flags_parser": parser} if parser else {}))
          code = exit_info.value.code
        else:
          code = module.main(argv[1:])
    finally:
      reset_flags()
      logging.root.handlers[:] = handlers
      logging.root.setLevel(level)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(argv, 0 if code is None else code, out, err)

  return run


def train(config: str, workdir, *overrides, devices: int = 1, **env):
  """`python -m wgan_gp.main --config=configs/<config> --workdir=<workdir> <overrides>`;
  returns the CompletedProcess after asserting that it finished."""
  import subprocess
  import sys

  result = subprocess.run(
      [sys.executable, "-m", "wgan_gp.main", f"--config={CONFIGS / config}",
       f"--workdir={workdir}", *map(str, overrides)],
      env=subprocess_env(devices, **env), cwd=REPO_ROOT, capture_output=True, text=True,
      timeout=900)
  assert result.returncode == 0, f"main failed ({result.returncode}):\n{result.stderr[-4000:]}"
  return result


def wait_for_success(child):
  """Waits for a child started beside other work (`subprocess.Popen`, stderr piped) and
  asserts that it exited 0, with its stderr's tail; returns its stdout (None unpiped)."""
  stdout, stderr = child.communicate(timeout=600)
  assert child.returncode == 0, f"exit {child.returncode}:\n{stderr[-3000:]}"
  return stdout


@pytest.fixture(scope="session")
def toy_smoke_run(tmp_path_factory):
  """One `python -m wgan_gp.main --config=configs/toy2d.py:smoke` run for the whole
  session (checkpoints 10 and 20), shared by the modules that test what it wrote or
  what later commands do with it. Read it; copy it (`copy_run`) before changing it."""
  workdir = tmp_path_factory.mktemp("toy_smoke") / "run"
  train("toy2d.py:smoke", workdir)
  return workdir


def copy_run(workdir, destination):
  """A copy of a finished run's workdir, to change or resume."""
  shutil.copytree(workdir, destination)
  return destination


@pytest.fixture(scope="session")
def image_smoke_run(tmp_path_factory):
  """One `python -m wgan_gp.main --config=configs/celeba64.py:smoke` run on 40 random
  48×56 JPEGs (crop 40, 32 px images, 32 evaluation samples; checkpoints 5 and 10) for the
  whole session, run so that it prints which optional modules it imported:
  (workdir, CompletedProcess). Read it; copy it (`copy_run`) before changing it."""
  from test_main import _run_main, _write_image_folder

  tmp = tmp_path_factory.mktemp("image_smoke")
  images = _write_image_folder(tmp / "images")
  workdir = tmp / "run"
  result = _run_main("celeba64.py:smoke", workdir, "--config.data.source=images",
                     f"--config.data.path={images}", "--config.data.crop_size=40",
                     "--config.data.crop_fraction=0",
                     f"--config.data.cache_dir={tmp / 'cache'}", "--config.eval_samples=32",
                     report_imports=True)
  return workdir, result
