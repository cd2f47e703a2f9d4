#!/usr/bin/env bash
# Downloads into .whl/ (git-ignored) the wheels that experiments/faces64/gpu_faces.sh and
# experiments/speed/gpu_benchmark.sh install on the GPU machine, whose image has JAX, flax, optax, orbax,
# absl-py, PyYAML and Pillow but no ml-collections, and no network (about 80 kB).
# The faces read the CelebA tar (data.source=images), so TFDS is not needed there.
#
#   bash experiments/faces64/gpu_wheels.sh [PYTHON_VERSION]     # the device's python3: 3.12
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${1:-3.12}
WHEELS=(ml-collections==1.1.0)  # pure Python; needs absl-py and PyYAML, both there
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
ls -l .whl
