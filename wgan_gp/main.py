"""Trains a WGAN-GP: `python -m wgan_gp.main --config=configs/celeba64.py --workdir=runs/x`.

This file is intentionally kept short: the logic lives in `wgan_gp.train`, which can be
imported and tested on its own (and used from a notebook).

Exit codes (`wgan_gp.exit_codes`): 0 finished; 75 stopped by SIGTERM/SIGINT after a
checkpoint, so rerunning the same command resumes (requeue on it); 74 a full disk: free
space, then rerun (do not requeue blindly: it would meet the same full disk); 2 a bad
flag, config, data, workdir (in use by another run, read-only) or checkpoint; 3
non-finite values; 130 a second Ctrl-C; 1 a crash. Every failure but a crash prints one
line, `error: ...`, naming the problem and the fix.
"""

import contextlib
import logging as std_logging
import os
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from wgan_gp import disk_errors, distributed, exit_codes, stopping, train, validation, workdir_lock
from wgan_gp.data import DataError
from wgan_gp.metrics.inception import WeightsError

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
flags.DEFINE_bool("change_budget", False, "Resume a run under another "
                  "--config.train_minutes: budget schedules then read the fraction of the new "
                  "budget from the resumed step on, and the EMA continues (one line says "
                  "what changes). Without it such a resume is refused.")
flags.mark_flags_as_required(["config", "workdir"])


def _quiet_library_info_logs():
  """Orbax logs every save step by step at INFO; keep its warnings, drop the chatter, and
  the tracebacks it logs of a full disk (reported in one line)."""
  def keep(record):
    if disk_errors.is_reported_library_log(record):
      return False
    return record.levelno >= std_logging.WARNING or (
        f"{os.sep}orbax{os.sep}" not in record.pathname and
        f"{os.sep}jax{os.sep}_src{os.sep}xla_bridge" not in record.pathname)
  logging.get_absl_handler().addFilter(keep)


def _one_line(error: BaseException) -> str:
  """A flag or config-file error as one line (ml_collections nests tracebacks in them)."""
  chain = [error]
  while chain[-1].__cause__ or chain[-1].__context__:
    chain.append(chain[-1].__cause__ or chain[-1].__context__)
  config_arg = next((a for a in sys.argv[1:] if a.startswith("--config=")), "--config")
  if isinstance(error, (AttributeError, KeyError)):  # --config.a.b=... names no field
    field = next((str(e.args[0]) for e in reversed(chain) if isinstance(e, KeyError)), "?")
    hint = next((e.args[0].splitlines()[-1] for e in chain if e.args and isinstance(
        e.args[0], str) and "Did you mean" in e.args[0]), "")
    override = next((a for a in sys.argv[1:] if a.startswith("--config.") and
                     f".{field.strip(chr(39))}" in a.split("=")[0]), f"--config...{field}")
    return (f"{override.split('=')[0]}: the config has no field {field}"
            f"{' (' + hint + ')' if hint else ''}; the fields are in wgan_gp/config.py")
  if isinstance(error, SyntaxError):
    return (f"{config_arg}: {error.msg} in {error.filename}, line {error.lineno}: "
            "fix the config file")
  if isinstance(error, OSError):  # the file is missing or unreadable
    path = config_arg.removeprefix("--config=").split(":")[0]
    problem = "no such file" if not os.path.isfile(path) else "cannot read it"
    return f"{config_arg}: {problem}: check the path (e.g. configs/toy2d.py)"
  root = str(chain[-1]).strip().splitlines() or [type(chain[-1]).__name__]
  if isinstance(error, flags.Error) and len(chain) > 1:  # raised inside get_config()
    flag = str(error).split(": ", 1)[0].removeprefix("flag ")
    return f"{flag}: {root[-1]}"
  return " ".join(line.strip() for line in str(error).splitlines()) + " (see --helpshort)"


def _parse_flags(argv):
  """absl's flag parsing, with every error as one line on stderr and exit code 2."""
  try:
    rest = FLAGS(argv)
    FLAGS.config.get("seed")  # a config file that failed to load raises when first read
  except Exception as error:  # whatever loading a config file raises: SyntaxError, ...
    print(f"error: {_one_line(error)}", file=sys.stderr)
    sys.exit(exit_codes.BAD_INPUT)
  return rest


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments {' '.join(argv[1:])}: every option is a flag, "
          "--name=value (see --helpshort)", file=sys.stderr)
    sys.exit(exit_codes.BAD_INPUT)
  _quiet_library_info_logs()
  from wgan_gp import checkpoint  # orbax after absl's handler is set up (see train)

  try:
    if FLAGS.distributed or FLAGS.coordinator_address:
      distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
                             FLAGS.distributed_timeout)
    validation.check_workdir_path(FLAGS.workdir)  # bad input: one line, before anything else
    validation.validate_config(FLAGS.config)
    logging.info("JAX process %d/%d, local devices: %s", jax.process_index(),
                 jax.process_count(), jax.local_devices())
    # Process 0 holds the workdir for the whole multi-process run.
    with (workdir_lock.hold(FLAGS.workdir) if jax.process_index() == 0
          else contextlib.nullcontext()):
      state = train.train_and_evaluate(FLAGS.config, FLAGS.workdir, FLAGS.change_budget)
  except (validation.ConfigError, DataError, validation.IncompatibleCheckpointError,
          checkpoint.DamagedCheckpointError, distributed.DistributedError,
          WeightsError, workdir_lock.WorkdirInUseError) as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(exit_codes.BAD_INPUT)
  except FloatingPointError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(exit_codes.NON_FINITE)
  except KeyboardInterrupt:  # a second Ctrl-C, or one before training started
    print("error: interrupted by Ctrl-C, without saving since the last checkpoint: rerun "
          "the same command to resume from it", file=sys.stderr)
    sys.exit(exit_codes.INTERRUPTED)
  except Exception as error:  # a full, read-only or forbidden disk; anything else crashes
    explained = disk_errors.explain(error, FLAGS.workdir)
    if explained is None:
      raise
    print(f"error: {explained[0]}", file=sys.stderr)
    sys.exit(explained[1])
  if stopping.stopped_by() and int(state.step) < FLAGS.config.num_train_steps:
    sys.exit(exit_codes.RESUMABLE)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
