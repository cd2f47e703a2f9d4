#!/usr/bin/env bash
# The benchmark on one GPU, as one call of under 8 minutes: JAX (plain XLA, fp32 and
# bf16) against PyTorch eager and torch.compile (fp32 and bf16), ResNet-64 then
# DCGAN-64 at batch 64, n_critic 5 only, to fit the time (ResNet first: its PyTorch rows
# are the ones still missing);
# the fast CPU formulation last, if time is left.
#
#   bash experiments/speed/gpu_benchmark.sh [OUT_DIR]      # default runs/gpu
#
# Needs jax with CUDA, torch with CUDA, flax, optax, ml_collections: the device image
# lacks only the last, installed here from .whl/ (bash experiments/faces64/gpu_wheels.sh).
# The device call: command `bash experiments/speed/gpu_benchmark.sh "$OUT"`, carry [".whl"].
# Results go to OUT_DIR/bench_gpu.{md,json} (written after every architecture) and
# OUT_DIR/log.txt (paths relative to the repository root).
set -o pipefail
cd "$(dirname "$0")/../.."
out=${1:-${OUT:-runs/gpu}}
mkdir -p "$out"
if ! python3 -c "import ml_collections" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/wgan_gp_site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/wgan_gp_site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/log.txt"
# Both frameworks share the GPU: JAX must not take 75% of its memory up front.
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
python3 experiments/speed/benchmark.py \
  --archs resnet,dcgan --batch-sizes 64 --n-critic 5 --repeats 10 \
  --jax xla:float32,xla:bfloat16 --jax-extra fast:float32 \
  --torch eager:float32,eager:bfloat16,compile:float32,compile:bfloat16 \
  --deadline-s 380 --out "$out/bench_gpu" 2>&1 | tee -a "$out/log.txt"
