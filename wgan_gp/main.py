"""Trains a WGAN-GP: `python -m wgan_gp.main --config=configs/celeba64.py --workdir=runs/x`.

This file is intentionally kept short: the logic lives in `wgan_gp.train`, which can be
imported and tested on its own (and used from a notebook).
"""

import logging as std_logging
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples; a "
                    "run resumes from the latest checkpoint found here.")
config_flags.DEFINE_config_file("config", None, "Experiment config file, e.g. "
                                "configs/toy2d.py or configs/celeba64.py:dcgan.",
                                lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def _quiet_library_info_logs():
  """Orbax logs every save step by step at INFO; keep its warnings, drop the chatter."""
  def keep(record):
    return record.levelno >= std_logging.WARNING or (
        f"{os.sep}orbax{os.sep}" not in record.pathname and
        f"{os.sep}jax{os.sep}_src{os.sep}xla_bridge" not in record.pathname)
  logging.get_absl_handler().addFilter(keep)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  _quiet_library_info_logs()
  import jax

  from wgan_gp import train
  from wgan_gp.data import DataError

  logging.info("JAX process %d/%d, local devices: %s", jax.process_index(),
               jax.process_count(), jax.local_devices())
  try:
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except (train.ConfigError, DataError, train.IncompatibleCheckpointError,
          FloatingPointError) as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
