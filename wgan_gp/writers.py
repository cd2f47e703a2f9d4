"""Where metrics and images go: the console, `metrics.jsonl` and TensorBoard.

TensorBoard event files are written by `wgan_gp.tensorboard` (no TensorFlow, no torch).
Only process 0 writes; elsewhere the writer does nothing. With `echo=False` a record goes
to the files only, for a caller that shows its own summary (`wgan_gp.console`).
"""

import json
import logging
import math
import os

import numpy as np

from wgan_gp.tensorboard import EventWriter


def _format(value) -> str:
  if isinstance(value, float):
    return f"{value:.4g}"
  return str(value)


class MetricWriter:
  def __init__(self, workdir: str, enabled: bool = True, jsonl_name: str = "metrics.jsonl",
               tensorboard=None, echo: bool = True):
    self.enabled = enabled
    self.echo = echo
    self._workdir = workdir
    self._jsonl = None
    self._tensorboard = tensorboard
    self._owns_tensorboard = tensorboard is None
    if enabled:
      os.makedirs(workdir, exist_ok=True)
      self._jsonl_path = os.path.join(workdir, jsonl_name)  # opened at the first record:
      # a run that fails before writing any leaves no empty file behind
      if self._tensorboard is None:
        self._tensorboard = EventWriter(os.path.join(workdir, "tensorboard"))

  def sibling(self, jsonl_name: str, echo: bool = True) -> "MetricWriter":
    """A writer into another JSONL file of the same workdir, sharing the event files."""
    return MetricWriter(self._workdir, self.enabled, jsonl_name, self._tensorboard, echo)

  def write_scalars(self, step: int, scalars: dict, prefix: str = "") -> None:
    if not self.enabled:
      return
    scalars = {prefix + k: (float(v) if isinstance(v, (float, np.floating, int, np.integer))
                            and not isinstance(v, bool) else v) for k, v in scalars.items()}
    if self.echo:
      logging.info("step %d: %s", step,
                   ", ".join(f"{k}={_format(v)}" for k, v in sorted(scalars.items())))
    # JSON has no NaN/inf: write them as strings so the line stays valid JSON.
    record = {"step": step, **{k: (v if not isinstance(v, float) or math.isfinite(v) else str(v))
                               for k, v in scalars.items()}}
    if self._jsonl is None:
      self._jsonl = open(self._jsonl_path, "a", buffering=1)
    self._jsonl.write(json.dumps(record) + "\n")
    for key, value in scalars.items():
      if isinstance(value, float):
        self._tensorboard.scalar(key, value, step)
    self._tensorboard.flush()

  def write_image(self, step: int, name: str, image: np.ndarray) -> None:
    """image: uint8 [H, W, C]."""
    if self.enabled:
      self._tensorboard.image(name, image, step)
      self._tensorboard.flush()

  def write_text(self, step: int, name: str, text: str) -> None:
    if self.enabled:
      self._tensorboard.text(name, text, step)

  def flush(self) -> None:
    if self.enabled:
      self._tensorboard.flush()

  def close(self) -> None:
    if self.enabled:
      if self._jsonl is not None:
        self._jsonl.close()
      if self._owns_tensorboard:
        self._tensorboard.close()
