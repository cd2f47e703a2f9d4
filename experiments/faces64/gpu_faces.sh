#!/usr/bin/env bash
# The GPU face recipe as ONE call of the device tool (one H100/H200, under 10 minutes):
# trains configs/celeba64.py:gpu for its training-time budget with an SWD curve, exports
# the EMA generator, and, in a small fixed share of the time, times the recipe's step.
# FID is not measured there: the Inception weights (87 MB) do not fit beside the data in
# a call's 64 MiB, so the face protocol measures FID here, on the CPU, from the exported
# generator.
#
#   WGAN_GP_GPU_FACES_LIMIT_S=SECONDS \
#     bash experiments/faces64/gpu_faces.sh OUT_DIR [TRAIN_MINUTES [--config.FIELD=VALUE ...]]
#   bash experiments/faces64/gpu_faces.sh --carry    # what a call carries, against 64 MiB
#
# (Paths relative to the repository root.)
# WGAN_GP_GPU_FACES_LIMIT_S: the seconds the device tool lets the command run (its
# timeout_s, default 600). Every inner budget is derived from it: when it leaves too
# little for the requested training minutes, training gets what it leaves (a warning
# says so), and below MIN_TRAIN_S of training the script refuses in one line (exit 2).
# TRAIN_MINUTES: default the recipe's train_minutes (give the budget here, not as an
# override: the time arithmetic below reads it). The overrides go to the training run.
# OUT_DIR gets 7 files (a device call brings back at most 8, each at most 16 MiB):
#   generator/generator.npz, generator/info.json  the EMA generator (wgan_gp/pretrained.py)
#   generator/norm_stats.npz                      its BatchNorm's standing statistics
#   eval.jsonl       the SWD curve against training seconds
#   grid.png         64 samples of the EMA generator (noise seed 0)
#   throughput.json  images/s and share of bf16 peak of the step, for one run and for K
#                    runs in one program, as far as its share of the time went (or a note)
#   log.txt          everything this script printed, training included (losses, steps/s)
#
# Exit codes (the files come back whatever the code):
#   0   trained the full budget, exported the generator, wrote every file
#   75  training stopped at the deadline after a checkpoint (SIGTERM); exported from it
#   137 training killed at the deadline (SIGKILL after the grace): exported from the
#       newest checkpoint, if it had saved one
#   143 SIGTERM came before training installed its handler: likewise
#   74  the disk filled during training; other codes: training failed (wgan_gp/exit_codes.py);
#       the newest checkpoint is exported in every case where there is one
#   1   training finished but the export, the grid, or the files that come back failed
#   2   refused: the limit leaves too little to train, or a bad argument
#
# 1. Here, once (both folders are git-ignored; the tar is 34 MiB, the wheel 80 kB):
#      mkdir -p .data && cp ../shared/data/celeba_align_10k_89x109.tar .data/
#      bash experiments/faces64/gpu_wheels.sh     # .whl/: ml-collections, which the device lacks
#      bash experiments/faces64/gpu_faces.sh --carry   # must print under its 60 MiB budget
#    (Measured 2026-12-07: files git sends 12.9 MiB + tar 33.7 MiB + wheel 0.08 MiB =
#    46.7 MiB; tests/test_gpu_faces_script.py fails when a commit takes it over 60 MiB.)
# 2. The device call (tool `run`): first ask `status` for budget_left_s; a machine's start
#    takes a minute or two of it, so N = min(600, budget_left_s - 150). Then
#      command: WGAN_GP_GPU_FACES_LIMIT_S=N bash experiments/faces64/gpu_faces.sh "$OUT"
#      carry: [".data", ".whl"]   timeout_s: N       (the same N in both)
#    If the reply's limit_s came out under N, the command was cut: its log.txt says where.
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
#   WGAN_GP_GPU_FACES_LIMIT_S=420 \
#     bash experiments/faces64/gpu_faces.sh /tmp/gpu_faces_out 2 --config.log_every=2
set -euo pipefail
cd "$(dirname "$0")/../.."

MIB=1048576
CARRY_LIMIT_MIB=64  # what one device call carries: the files git sends, .data and .whl
# The share of it this recipe may take, leaving room for files that later commits add.
CARRY_BUDGET_MIB=${WGAN_GP_CARRY_BUDGET_MIB:-60}
WHEELS_ALLOWANCE=$MIB  # counted for .whl before gpu_wheels.sh made it (the wheel is 80 kB)

mib() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1048576 }'; }
sum_sizes() { awk '{ s += $1 } END { printf "%d", s }'; }
sent_files() { git ls-files -z --cached --others --exclude-standard; }

# What a device call carries for this recipe, against its 64 MiB; exit 1 over
# CARRY_BUDGET_MIB. The tool sends every file git sends here (tracked ones, and
# untracked ones unless ignored) plus the carried .data and .whl. Tracked files always
# travel: neither `carry` nor an ignore rule leaves them out, so a large tracked result
# (the PNG grids in results/, the shipped weights) costs every call its size; an
# untracked file stays here once .git/info/exclude names it.
carry_report() {
  if ! git rev-parse --is-inside-work-tree > /dev/null 2>&1; then
    echo "error: --carry counts the files git sends: run it in the git checkout" >&2
    return 1
  fi
  local tree data wheels total data_note wheels_note source
  tree=$(sent_files | { xargs -0 -r stat -c %s -- 2> /dev/null || true; } | sum_sizes)
  if [[ -d .data ]]; then
    data=$(find .data -type f -printf '%s\n' | sum_sizes)
    data_note=".data"
  else
    source=${WGAN_GP_FACES_TAR:-../shared/data/celeba_align_10k_89x109.tar}
    if [[ ! -f "$source" ]]; then
      echo "error: no .data/, and no $source to count in its place:" \
           "set WGAN_GP_FACES_TAR to the CelebA tar" >&2
      return 1
    fi
    data=$(stat -c %s -- "$source")
    data_note=".data (not made yet; counted: $source)"
  fi
  if [[ -d .whl ]]; then
    wheels=$(find .whl -type f -printf '%s\n' | sum_sizes)
    wheels_note=".whl"
  else
    wheels=$WHEELS_ALLOWANCE
    wheels_note=".whl (not made yet; counted as $(mib "$wheels") MiB)"
  fi
  total=$(( tree + data + wheels ))
  echo "carry: $(mib "$tree") MiB of files git sends + $(mib "$data") MiB $data_note +" \
       "$(mib "$wheels") MiB $wheels_note = $(mib "$total") MiB of the $CARRY_LIMIT_MIB MiB" \
       "a device call carries (budget $CARRY_BUDGET_MIB MiB," \
       "$(mib $(( CARRY_BUDGET_MIB * MIB - total ))) MiB to spare)"
  if (( total > CARRY_BUDGET_MIB * MIB )); then
    echo "error: the carry, $(mib "$total") MiB, is over its $CARRY_BUDGET_MIB MiB budget;" \
         "the largest files git sends:" >&2
    # awk, not head, keeps the first five: head would exit early and, under pipefail,
    # sort's SIGPIPE would become this report's exit code (141).
    sent_files | { xargs -0 -r stat -c '%s %n' -- 2> /dev/null || true; } | sort -rn \
      | awk 'NR <= 5 { s = $1; $1 = ""; printf "  %8.2f MiB %s\n", s / 1048576, $0 }' >&2
    return 1
  fi
}

if [[ "${1:-}" == --carry ]]; then
  carry_report
  exit
fi

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

# The time budget, in seconds of the command's wall clock since START. The device tool
# stops the command at LIMIT_S; everything here ends by DEADLINE = LIMIT_S - MARGIN_S.
# Before training: STARTUP_S (the wheel's install, JAX's start, the config), measured
# when training starts and estimated for the refusal before it. Around the training
# minutes (compilation included) the run spends TRAIN_EXTRA_S on what its budget does
# not count: start-up, the first-pass decode of the tar, the SWD evaluations, samples
# and checkpoints. SIGTERM stops it, with a checkpoint, early enough that a SIGKILL
# KILL_S later still leaves EXPORT_S for the export and the grid (two Python start-ups
# and a restore) before the deadline, and THROUGHPUT_S after them when it is reserved.
#
# The throughput comes last, in a small fixed share reserved up front, and only if the
# requested training minutes fit beside it (else its seconds go to training, and it
# runs only if training ends early enough to leave THROUGHPUT_MIN_S). Not on whatever
# was left (after the 6-minute recipe, ~60 s of a 600 s call: too little to count on),
# and not first: first, its time would come out of the recipe's training minutes
# whenever the limit or the estimates are short; last, what runs over an estimate
# shortens only the throughput, never the generator, and it times the step of the
# run's own config.json. The FLOP count, the matmul peak and the first compilation may
# take most of its 60 s; the JSON is rewritten after each part, so a part that `timeout`
# cuts keeps the parts before it. The training log's steps/s is the throughput with the
# input pipeline, whatever happens to this part.
# The 6-minute recipe in 600 s: margin 20 + start 18 + slack 2 + training 360 + its extra
# 75 + SIGKILL grace 20 + export 45 + throughput 60 = 600 (a slower start drops the
# throughput).
LIMIT_S=${WGAN_GP_GPU_FACES_LIMIT_S:-600}
MARGIN_S=20
STARTUP_S=20
TRAIN_EXTRA_S=75
KILL_S=20
EXPORT_S=45
THROUGHPUT_S=60
THROUGHPUT_MIN_S=30
SLACK_S=2
MIN_TRAIN_S=120  # less is not worth a device call: a third of the recipe, compilation included
START=$(date +%s)
DEADLINE=  # LIMIT_S - MARGIN_S, once run_all has checked LIMIT_S
elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( DEADLINE - $(elapsed) )); }
# A `timeout` duration that ends by the deadline (0 would mean none at all).
until_deadline() { local l; l=$(left); echo $(( l > 1 ? l : 1 )); }

# The training's exit code (wgan_gp/exit_codes.py, or timeout's 128+signal), in words.
training_outcome() {
  case $1 in
    0) echo "training finished" ;;
    75) echo "training stopped by SIGTERM at the deadline, after a checkpoint" ;;
    137) echo "training killed by SIGKILL (the deadline's, or out of memory)" ;;
    143) echo "training killed by a SIGTERM that came before its handler" ;;
    74) echo "the disk filled during training" ;;
    *) echo "training failed" ;;
  esac
}

# A finished checkpoint (orbax names a save in progress step.orbax-checkpoint-tmp-*).
has_checkpoint() {
  [[ -f "$WORK/config.json" ]] || return 1
  local path
  for path in "$WORK"/checkpoints/*/; do
    [[ "$(basename "$path")" =~ ^[0-9]+$ ]] && return 0
  done
  return 1
}

run_all() {
  # --- 0. Refuse at once, in one line, what cannot train anything useful.
  if [[ ! "$LIMIT_S" =~ ^[0-9]+$ ]]; then
    echo "error: WGAN_GP_GPU_FACES_LIMIT_S=$LIMIT_S is not a whole number of seconds" >&2
    return 2
  fi
  LIMIT_S=$(( 10#$LIMIT_S ))
  DEADLINE=$(( LIMIT_S - MARGIN_S ))
  if [[ -n "$MINUTES" && ! "$MINUTES" =~ ^[0-9]+([.][0-9]+)?$ ]]; then
    echo "error: TRAIN_MINUTES=$MINUTES is not a number of minutes" >&2
    return 2
  fi
  local fixed_s=$(( MARGIN_S + STARTUP_S + TRAIN_EXTRA_S + KILL_S + EXPORT_S ))
  if (( LIMIT_S - fixed_s < MIN_TRAIN_S )); then
    echo "error: a limit of $LIMIT_S s leaves $(( LIMIT_S - fixed_s )) s to train, under" \
         "the $MIN_TRAIN_S s minimum: give the device call a timeout_s (and" \
         "WGAN_GP_GPU_FACES_LIMIT_S) of at least $(( fixed_s + MIN_TRAIN_S ))" >&2
    return 2
  fi

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

  # --- 2. The plan: the training minutes, its SIGTERM and the throughput's share.
  local requested_s avail_s train_s throughput_s=0 term_at
  requested_s=$(awk -v m="$MINUTES" 'BEGIN { printf "%d", 60 * m + 0.5 }')
  # SLACK_S: whole-second clocks, and the steps between this plan and training's start.
  avail_s=$(( $(left) - TRAIN_EXTRA_S - KILL_S - EXPORT_S - SLACK_S ))
  if (( requested_s + THROUGHPUT_S <= avail_s )); then
    train_s=$requested_s
    throughput_s=$THROUGHPUT_S
  elif (( requested_s <= avail_s )); then
    train_s=$requested_s
  else
    train_s=$avail_s
  fi
  if (( train_s < MIN_TRAIN_S && train_s < requested_s )); then
    echo "error: $(elapsed) s in, the limit of $LIMIT_S s leaves $train_s s to train, under" \
         "the $MIN_TRAIN_S s minimum: give the device call a longer timeout_s" >&2
    return 2
  fi
  if (( train_s < requested_s )); then
    MINUTES=$(awk -v s="$train_s" 'BEGIN { printf "%.2f", int(100 * s / 60) / 100 }')
    echo "warning: the limit of $LIMIT_S s leaves $MINUTES training minutes of the" \
         "$(awk -v s="$requested_s" 'BEGIN { printf "%g", s / 60 }') requested;" \
         "no time for the throughput" >&2
  fi
  term_at=$(( DEADLINE - throughput_s - EXPORT_S - KILL_S ))
  echo "gpu_faces: $(elapsed) s in; limit $LIMIT_S s, deadline $DEADLINE s: training" \
       "$CONFIG for $MINUTES min, SIGTERM at $term_at s, SIGKILL at $(( term_at + KILL_S )) s;" \
       "export $EXPORT_S s; throughput ${throughput_s} s reserved"

  # --- 3. Train for the budget of training time, with an SWD curve (no weights).
  rm -rf "$WORK"
  # SIGTERM makes the run save a checkpoint and exit 75 (a budget cut short); 137 is the
  # SIGKILL KILL_S later, 143 a SIGTERM before the run's handler, 74 a full disk.
  local train_rc=0
  timeout --preserve-status -k "$KILL_S" $(( term_at - $(elapsed) )) \
    "$PYTHON" -m wgan_gp.main --config="$CONFIG" --workdir="$WORK" \
      --config.data.source=images --config.data.path="$DATA" \
      --config.data.cache_dir=/tmp/wgan_gp_decoded \
      --config.train_minutes="$MINUTES" --config.eval_metrics=swd "$@" || train_rc=$?
  local outcome
  outcome=$(training_outcome "$train_rc")
  if (( train_rc == 74 )); then
    echo "error: $outcome (exit 74): free space for $WORK and /tmp/wgan_gp_decoded," \
         "then rerun" >&2
  elif (( train_rc != 0 )); then
    echo "warning: $outcome (exit $train_rc)" >&2
  fi
  # The training records stay in the log: the 8 files that come back are counted.
  if [[ -f "$WORK/eval.jsonl" ]]; then
    cp "$WORK/eval.jsonl" "$OUT_DIR/"
  else
    echo "warning: the run wrote no eval.jsonl" >&2
  fi

  # --- 4. The EMA generator of the newest checkpoint, whatever training's exit code,
  # for wgan_gp.face_protocol --pretrained on the CPU, and its grid. Each ends by the
  # deadline, which comes before the throughput's share.
  local export_rc=0
  if ! has_checkpoint; then
    export_rc=1
    echo "error: $outcome (exit $train_rc), and $WORK holds no finished checkpoint:" \
         "nothing to export" >&2
  else
    echo "gpu_faces: $(elapsed) s in; exporting the newest checkpoint"
    timeout -k 5 "$(until_deadline)" \
      "$PYTHON" experiments/faces64/gpu_faces.py export "$WORK" "$OUT_DIR/generator" \
        --config="$CONFIG" \
        --command="bash experiments/faces64/gpu_faces.sh OUT_DIR $MINUTES${*:+ $*}" \
      || export_rc=$?
    if (( export_rc == 0 )); then
      timeout -k 5 "$(until_deadline)" "$PYTHON" -m wgan_gp.sample --pretrained="$OUT_DIR/generator" \
          --num=64 --out="$OUT_DIR/grid.png" || export_rc=$?
    fi
    (( export_rc == 0 )) || echo "error: the export or the grid failed (exit $export_rc)" >&2
  fi

  # --- 5. The step's throughput, in its share of the time (see the budget above).
  local remaining note tp_rc=0
  remaining=$(left)
  if (( remaining >= THROUGHPUT_MIN_S )) && [[ -f "$WORK/config.json" ]]; then
    echo "gpu_faces: $(elapsed) s in; timing the step ($remaining s left)"
    # Without preallocation JAX leaves room for PyTorch's matmul peak in the same process.
    XLA_PYTHON_CLIENT_PREALLOCATE=false timeout -k 5 "$remaining" \
      "$PYTHON" experiments/faces64/gpu_faces.py throughput "$WORK" "$OUT_DIR/throughput.json" \
        --config="$CONFIG" $THROUGHPUT_ARGS || tp_rc=$?
    (( tp_rc == 0 )) || echo "warning: the throughput stopped early (exit $tp_rc); its JSON" \
                            "keeps what it measured" >&2
    note="failed or cut short (exit $tp_rc) before its first result"
  elif [[ ! -f "$WORK/config.json" ]]; then
    note="skipped: the training run wrote no config.json"
  else
    note="skipped: $remaining s were left of the command's $LIMIT_S s; it needs $THROUGHPUT_MIN_S"
  fi
  [[ -f "$OUT_DIR/throughput.json" ]] || echo "{\"note\": \"$note\"}" > "$OUT_DIR/throughput.json"

  # --- 6. What comes back: at most 8 files, each at most 16 MiB.
  local files rc
  files=$(find "$OUT_DIR" -type f | wc -l)
  find "$OUT_DIR" -type f -printf '%s\t%P\n' | sort -k2
  if (( files > 8 )) || [[ -n "$(find "$OUT_DIR" -type f -size +16M)" ]]; then
    echo "error: $files files in $OUT_DIR; a device call brings back 8, each <= 16 MiB" >&2
    export_rc=1
  fi
  # The exit code says what happened: training's when it did not finish, else the export's.
  rc=$train_rc
  (( rc != 0 || export_rc == 0 )) || rc=1
  if (( export_rc == 0 )); then
    outcome="$outcome, generator exported"
  else
    outcome="$outcome, no generator exported"
  fi
  echo "gpu_faces: done in $(elapsed) s, exit $rc ($outcome); $files files in $OUT_DIR"
  return "$rc"
}

mkdir -p "$OUT_DIR"
# Only this run's files may come back (a stale throughput.json would pass for its own).
rm -rf "$OUT_DIR"/{generator,eval.jsonl,grid.png,throughput.json,log.txt}
# Not `run_all ... || status=$?`: bash turns errexit off inside a function called from an
# `||` list, and a failed step (the wheels, the config) would run on. The subshell keeps it.
set +e
( set -e; run_all "$@" ) 2>&1 | tee "$OUT_DIR/log.txt"
status=${PIPESTATUS[0]}
exit "$status"
