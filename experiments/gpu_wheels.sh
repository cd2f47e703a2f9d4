#!/usr/bin/env bash
# Downloads into .whl/ (git-ignored) the wheels that experiments/gpu_faces.sh installs on
# a GPU machine that has JAX, flax, optax and orbax but no network: ml-collections, and
# TFDS with the dependencies that such an image lacks. Python 3.12, x86-64 (about 10 MB).
#
#   bash experiments/gpu_wheels.sh [PYTHON_VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-3.12}
WHEELS=(ml-collections==1.1.0 tensorflow-datasets==4.9.10 array-record dm-tree immutabledict
        simple-parsing docstring-parser tensorflow-metadata googleapis-common-protos
        termcolor toml)
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
python3 -m pip wheel -q --no-deps -w .whl promise==2.3  # sdist only: pure Python
ls .whl
