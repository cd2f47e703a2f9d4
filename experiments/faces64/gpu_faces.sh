#!/usr/bin/env bash
# The GPU face recipe as ONE call of the device tool (one H100/H200, under 10 minutes):
# trains configs/celeba64.py:gpu for its training-time budget with an SWD curve, exports
# the EMA generator, and, if enough time is left, times the recipe's step. FID is not
# measured there: the Inception weights (87 MB) do not fit beside the data in a call's
# 64 MiB, so the face protocol measures FID here, on the CPU, from the exported generator.
#
#   bash experiments/faces64/gpu_faces.sh OUT_DIR [TRAIN_MINUTES [--config.FIELD=VALUE ...]]
#
# (Paths relative to the repository root.)
# TRAIN_MINUTES: default the recipe's train_minutes (give the budget here, not as an
# override: the time arithmetic below reads it). The overrides go to the training run.
# OUT_DIR gets 7 files (a device call brings back at most 8, each at most 16 MiB):
#   generator/generator.npz, generator/info.json  the EMA generator (wgan_gp/pretrained.py)
#   generator/norm_stats.npz                      its BatchNorm's standing statistics
#   eval.jsonl       the SWD curve against training seconds
#   grid.png         64 samples of the EMA generator (noise seed 0)
#   throughput.json  images/s and share of bf16 peak of the step, for one run and for K
#                    runs in one program (a skip note when too little time was left)
#   log.txt          everything this script printed, training included (losses, steps/s)
#
# 1. Here, once (both folders are git-ignored; the tar is 34 MiB, the wheel 80 kB):
#      mkdir -p .data && cp ../shared/data/celeba_align_10k_89x109.tar .data/
#      bash experiments/faces64/gpu_wheels.sh     # .whl/: ml-collections, which the device lacks
# 2. The device call (tool `run`):
#      command: bash experiments/faces64/gpu_faces.sh "$OUT"
#      carry: [".data", ".whl"]   timeout_s: 600
# 3. Here, with the files it brought back under FILES (read-only there, and the protocol
#    writes its result into info.json: copy them first):
#      mkdir -p runs/gpu_faces && cp -r "$FILES"/. runs/gpu_faces/ && chmod -R u+w runs/gpu_faces
#      python -m wgan_gp.face_protocol --pretrained=runs/gpu_faces/generator \
#          --data_path=../shared/data/celeba_align_10k_89x109.tar --num_samples=5000 \
#          --out=experiments/faces64/results/faces.json
#      python -m wgan_gp.plot runs/gpu_faces --out=runs/gpu_faces/curve.png --labels=gpu-recipe
#    (--out upserts the gpu-recipe row into the project's table, without it the row is
#    only printed; protocol 2 scores N <= 5,000 samples against one half of the 10,000
#    images).
#
# End to end on a CPU with a tiny budget (tests/test_gpu_faces_script.py does this):
#   WGAN_GP_GPU_FACES_CONFIG=configs/celeba64.py:gpu,smoke \
#   WGAN_GP_FACES_TAR=../shared/data/celeba_align_10k_89x109.tar \
#   WGAN_GP_GPU_FACES_THROUGHPUT_ARGS="--trials=2 --steps=2 --rounds=1" \
#     bash experiments/faces64/gpu_faces.sh /tmp/gpu_faces_out 2 --config.log_every=2
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT_DIR=${1:?usage: bash experiments/faces64/gpu_faces.sh OUT_DIR [TRAIN_MINUTES [--config.FIELD=VALUE ...]]}
MINUTES=${2:-}
shift $(( $# < 2 ? $# : 2 ))  # the rest: overrides for the training run
CONFIG=${WGAN_GP_GPU_FACES_CONFIG:-configs/celeba64.py:gpu}
DATA=${WGAN_GP_FACES_TAR:-.data/celeba_align_10k_89x109.tar}
WORK=${WGAN_GP_GPU_FACES_WORKDIR:-/tmp/wgan_gp_gpu_faces}
# K of the K-runs-in-one-program throughput, and the timing (gpu_faces.py throughput -h).
THROUGHPUT_ARGS=${WGAN_GP_GPU_FACES_THROUGHPUT_ARGS:---trials=4 --steps=20 --rounds=5}
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1  # the log in the order things happened

# The time budget, in seconds of the command's wall clock. The device tool stops a
# command at 600 s; the command ends MARGIN_S before it. Around the TRAIN_MINUTES of
# training time (compilation included) the run also spends TRAIN_EXTRA_S on what the
# budget does not count: start-up, the first-pass decode of the tar, the SWD
# evaluations, samples and checkpoints. Then the export and the grid (EXPORT_S: two
# Python start-ups and a restore). The throughput runs on whatever is left, if that is
# at least THROUGHPUT_MIN_S (the FLOP count and the first compilation; a part it cannot
# finish is cut by `timeout`, and what it measured before stays in its JSON). For the
# 6-minute recipe: ~20 (install, JAX start) + 360 + 75 + 45 = ~500 s, ~80 s left.
LIMIT_S=${WGAN_GP_GPU_FACES_LIMIT_S:-600}
MARGIN_S=20
TRAIN_EXTRA_S=75
EXPORT_S=45
THROUGHPUT_MIN_S=60
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( LIMIT_S - MARGIN_S - $(elapsed) )); }

run_all() {
  # --- 1. What the machine lacks, from carried wheels (no network there).
  if ! "$PYTHON" -c "import ml_collections" 2>/dev/null; then
    if ! compgen -G ".whl/*.whl" > /dev/null; then
      echo "error: ml-collections is not installed and .whl/ holds no wheels: run" \
           "bash experiments/faces64/gpu_wheels.sh here, and carry .whl" >&2
      return 1
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/wgan_gp_site .whl/*.whl
    export PYTHONPATH=/tmp/wgan_gp_site${PYTHONPATH:+:$PYTHONPATH}
  fi
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # the package, uninstalled
  if [[ ! -f "$DATA" ]]; then
    echo "error: $DATA not found: copy ../shared/data/celeba_align_10k_89x109.tar to .data/" \
         "and carry .data" >&2
    return 1
  fi
  if [[ -z "$MINUTES" ]]; then
    MINUTES=$("$PYTHON" -c "import sys; from wgan_gp.config import load_config
print(load_config(sys.argv[1]).train_minutes)" "$CONFIG")
  fi
  "$PYTHON" -c "import jax; print('JAX', jax.__version__, jax.devices())"

  # --- 2. Train for the fixed budget of training time, with an SWD curve (no weights).
  local train_s needed
  train_s=$("$PYTHON" -c "import sys; print(round(60 * float(sys.argv[1])))" "$MINUTES")
  needed=$(( train_s + TRAIN_EXTRA_S + EXPORT_S ))
  if (( needed > $(left) )); then
    echo "error: $MINUTES training minutes need ~${needed} s with the export; $(left) s" \
         "are left of the ${LIMIT_S} s: give fewer TRAIN_MINUTES" >&2
    return 1
  fi
  echo "gpu_faces: $(elapsed) s in; training $CONFIG for $MINUTES min (~${needed} s with" \
       "the export), stopped by SIGTERM if still running with $EXPORT_S s left"
  rm -rf "$WORK"
  # SIGTERM makes the run save a checkpoint and exit 75 (a budget cut short, not a failure);
  # 74 is a full disk (wgan_gp/exit_codes.py), a failure: nothing is left to export.
  local rc=0
  timeout --preserve-status -k 30 $(( $(left) - EXPORT_S )) \
    "$PYTHON" -m wgan_gp.main --config="$CONFIG" --workdir="$WORK" \
      --config.data.source=images --config.data.path="$DATA" \
      --config.data.cache_dir=/tmp/wgan_gp_decoded \
      --config.train_minutes="$MINUTES" --config.eval_metrics=swd "$@" || rc=$?
  if (( rc == 74 )); then
    echo "error: the disk filled during training (exit 74): free space for $WORK" \
         "and /tmp/wgan_gp_decoded, then rerun" >&2
    return 1
  fi
  if (( rc != 0 && rc != 75 )); then
    echo "error: training failed (exit $rc)" >&2
    return 1
  fi
  (( rc == 0 )) || echo "warning: training was stopped at the deadline (exit 75)" >&2
  # The training records stay in the log: the 8 files that come back are counted.
  cp "$WORK/eval.jsonl" "$OUT_DIR/" || echo "warning: the run wrote no eval.jsonl" >&2

  # --- 3. The EMA generator, for wgan_gp.face_protocol --pretrained on the CPU, and its grid.
  echo "gpu_faces: $(elapsed) s in; exporting"
  "$PYTHON" experiments/faces64/gpu_faces.py export "$WORK" "$OUT_DIR/generator" \
      --config="$CONFIG" --command="bash experiments/faces64/gpu_faces.sh OUT_DIR $MINUTES${*:+ $*}"
  "$PYTHON" -m wgan_gp.sample --pretrained="$OUT_DIR/generator" --num=64 \
      --out="$OUT_DIR/grid.png"

  # --- 4. The step's throughput, on the time left.
  local remaining note
  remaining=$(left)
  if (( remaining >= THROUGHPUT_MIN_S )); then
    echo "gpu_faces: $(elapsed) s in; timing the step ($remaining s left)"
    # Without preallocation JAX leaves room for PyTorch's matmul peak in the same process.
    rc=0
    XLA_PYTHON_CLIENT_PREALLOCATE=false timeout -k 5 "$remaining" \
      "$PYTHON" experiments/faces64/gpu_faces.py throughput "$WORK" "$OUT_DIR/throughput.json" \
        --config="$CONFIG" $THROUGHPUT_ARGS || rc=$?
    (( rc == 0 )) || echo "warning: the throughput stopped early (exit $rc); its JSON" \
                         "keeps what it measured" >&2
    note="failed or cut short (exit $rc) before its first result"
  else
    note="skipped: $remaining s were left of the command's $LIMIT_S s; it needs $THROUGHPUT_MIN_S"
  fi
  [[ -f "$OUT_DIR/throughput.json" ]] || echo "{\"note\": \"$note\"}" > "$OUT_DIR/throughput.json"

  # --- 5. What comes back: at most 8 files, each at most 16 MiB.
  local files
  files=$(find "$OUT_DIR" -type f | wc -l)
  find "$OUT_DIR" -type f -printf '%s\t%P\n' | sort -k2
  if (( files > 8 )) || [[ -n "$(find "$OUT_DIR" -type f -size +16M)" ]]; then
    echo "error: $files files in $OUT_DIR; a device call brings back 8, each <= 16 MiB" >&2
    return 1
  fi
  echo "gpu_faces: done in $(elapsed) s; $files files in $OUT_DIR"
}

mkdir -p "$OUT_DIR"
# Only this run's files may come back (a stale throughput.json would pass for its own).
rm -rf "$OUT_DIR"/{generator,eval.jsonl,grid.png,throughput.json,log.txt}
run_all "$@" 2>&1 | tee "$OUT_DIR/log.txt"
