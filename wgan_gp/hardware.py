"""The machine a figure was measured on, in words: every timing and face figure names it."""

import platform
from pathlib import Path


def cpu_model() -> str:
  """The host CPU's model name and widest vector extension: the JAX/PyTorch ratio on CPU
  depends on both (the frameworks' convolution libraries use AVX-512 differently)."""
  try:
    cpuinfo = Path("/proc/cpuinfo").read_text()
  except OSError:
    return platform.processor() or "unknown CPU"
  fields = dict(line.split(":", 1) for line in cpuinfo.splitlines() if ":" in line)
  fields = {key.strip(): value.strip() for key, value in fields.items()}
  flags = fields.get("flags", "").split()
  vector = next((isa for isa in ("avx512f", "avx2", "avx") if isa in flags), "no AVX")
  # AMX: PyTorch's bf16 runs its matrix products there; XLA:CPU's does not.
  amx = "AMX" if "amx_bf16" in flags else "no AMX"
  return f"{fields.get('model name', 'unknown CPU')}, {vector}, {amx}"
