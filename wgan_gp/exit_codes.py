"""What `python -m wgan_gp.main` returns, for schedulers (SLURM, Kubernetes) and scripts.

The other commands (evaluate, sample, fid, plot, sweep, vectorized) use the same codes.

Requeue a job on RESUMABLE: the same command continues the run from its last checkpoint.
Do not requeue on DISK_FULL: a retry meets the same full disk. Free space first; then the
same command resumes from the last checkpoint.
Every code but FINISHED and CRASHED comes with one line on stderr saying what to do.
"""

FINISHED = 0  # trained to num_train_steps (or through its train_minutes budget)
CRASHED = 1  # an unexpected error, with Python's traceback (a bug, out of memory, ...)
BAD_INPUT = 2  # a bad flag, config, data, checkpoint, or workdir (in use, read-only): fix it
NON_FINITE = 3  # NaN/inf in training: the line names the last good checkpoint
DISK_FULL = 74  # no space left (or over quota): free space, then rerun (sysexits' EX_IOERR)
RESUMABLE = 75  # SIGTERM/SIGINT after a checkpoint: rerun to resume (sysexits' EX_TEMPFAIL)
INTERRUPTED = 130  # a second Ctrl-C: stopped at once; the last checkpoint resumes (128+2)
