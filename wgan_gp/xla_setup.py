"""XLA settings that must be in place before JAX starts its backend."""

import logging
import os

import jaxlib

# Eigen's convolutions beat YNNPACK's on XLA:CPU with jaxlib 0.10: ~30% on the critic
# update's stride-1 convolutions, 2.3x on the Inception network's, and closer to
# float64. The flag is CPU-only; other jaxlib versions may not know it (an unknown XLA
# flag is fatal), so only 0.10.x gets it, and never over a user's own choice.
_EIGEN_CONVOLUTIONS = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


def prefer_eigen_convolutions():
  """Adds the flag to XLA_FLAGS; takes effect if no JAX backend has started yet."""
  flags_now = os.environ.get("XLA_FLAGS", "")
  if jaxlib.__version__.startswith("0.10.") and "ynn_fusion_type" not in flags_now:
    os.environ["XLA_FLAGS"] = f"{flags_now} {_EIGEN_CONVOLUTIONS}".strip()


class _NoMissingLibtpuNotice(logging.Filter):
  """Drops JAX's INFO line that libtpu is absent: every CPU and GPU machine has it so,
  and it reads like an error. A TPU backend failing for any other reason still shows."""

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not (record.levelno < logging.WARNING and "libtpu" in message
                and message.startswith("Unable to initialize backend 'tpu'"))


def quiet_missing_libtpu_notice():
  """Filters that line at its logger, so whatever handler prints (absl's, basicConfig's)."""
  logger = logging.getLogger("jax._src.xla_bridge")
  if not any(isinstance(f, _NoMissingLibtpuNotice) for f in logger.filters):
    logger.addFilter(_NoMissingLibtpuNotice())
