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
flags.DEFINE_bool("distributed", False, "Join a multi-process run through jax.distributed; "
                  "with no --coordinator_address, JAX detects the cluster (SLURM, ...).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (implies "
                    "--distributed).")
flags.DEFINE_integer("num_processes", None, "Number of processes in the run.")
flags.DEFINE_integer("process_id", None, "This process's index, 0 .. num_processes-1.")
flags.DEFINE_integer("distributed_timeout", 300, "Seconds to wait for all processes to "
                     "connect before giving up.")
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

  from wgan_gp import distributed, train
  from wgan_gp.data import DataError

  try:
    if FLAGS.distributed or FLAGS.coordinator_address:
      distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                             FLAGS.distributed_timeout)
    logging.info("JAX process %d/%d, local devices: %s", jax.process_index(),
                 jax.process_count(), jax.local_devices())
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except (train.ConfigError, DataError, train.IncompatibleCheckpointError,
          distributed.DistributedError, FloatingPointError) as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
