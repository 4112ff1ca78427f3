#!/usr/bin/env bash
# Builds .venv-mlagents: the real ML-Agents 1.1.0 stack (CPU torch) on Python 3.11, plus this
# project with its dependencies and the simulator package sim/ (`grid-sim-learn`), so that
# this environment's grid-plan validates configs and trainer arguments with ML-Agents itself.
# Idempotent, in two steps with a stamp each: the stack (the hash of this script, which holds
# its pins; a few minutes to rebuild) and the two packages (the hash of their pyproject.toml
# files and the simulator's sources; seconds to reinstall).
#
# mlagents 1.1.0 declares Python <=3.10.12 but runs on 3.11 when installed with --no-deps after
# its dependencies are pinned by hand (facts checked on these machines: see README, "make demo").
# The simulator, which declares mlagents as a dependency, is installed with --no-deps for the
# same reason.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MLAGENTS_VENV:-.venv-mlagents}
STACK_STAMP="$VENV/.stack-stamp"
PACKAGES_STAMP="$VENV/.packages-stamp"
# The contents only: sha256sum's file names would make `bash scripts/setup-mlagents.sh` (make)
# and the test fixture's absolute path disagree, and each would rebuild the stack.
digest() { cat "$@" | sha256sum | cut -c1-16; }
stack_want=$(digest scripts/setup-mlagents.sh)
mapfile -t sim_files < <(find sim -name pyproject.toml -o -name '*.py' | LC_ALL=C sort)
packages_want=$(digest pyproject.toml "${sim_files[@]}")

stamped() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
if stamped "$STACK_STAMP" "$stack_want" && stamped "$PACKAGES_STAMP" "$packages_want" &&
    [ -x "$VENV/bin/grid-sim-learn" ]; then
    echo "ML-Agents stack ready in $VENV"
    exit 0
fi

find_python() {
    if command -v python3.11 >/dev/null 2>&1 && python3.11 --version >/dev/null 2>&1; then
        command -v python3.11
        return
    fi
    ls -d "$HOME"/.pyenv/versions/3.11.*/bin/python3.11 2>/dev/null | sort -V | tail -n 1
}
pip() { "$VENV/bin/python" -m pip "$@"; }
start=$(date +%s)

if ! stamped "$STACK_STAMP" "$stack_want"; then
    PY=$(find_python)
    if [ -z "$PY" ]; then
        echo "setup-mlagents: Python 3.11 not found; install it (pyenv install 3.11) and retry" >&2
        exit 1
    fi
    echo "Building the ML-Agents stack in $VENV with $PY (a few minutes the first time)"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    if ! {
        pip install -q --upgrade pip &&
        pip install -q "torch==2.13.0" &&
        pip install -q "numpy==1.23.5" "protobuf==3.20.3" "onnx==1.15.0" "cattrs<1.7" \
            "setuptools<81" grpcio h5py Pillow "tensorboard<2.21" huggingface-hub attrs six \
            cloudpickle "gym==0.26.2" PyYAML "filelock>=4.1" &&
        pip install -q --no-deps --ignore-requires-python "mlagents==1.1.0" \
            "mlagents-envs==1.1.0" "pettingzoo==1.15.0"
    }; then
        echo "setup-mlagents: could not install the ML-Agents stack (see pip's output above)" >&2
        exit 1
    fi
    echo "$stack_want" > "$STACK_STAMP"
fi

echo "Installing mlagents-grid and the simulator (sim/) into $VENV"
if ! {
    # This project's own dependencies within the stack's pins (newer scipy wants numpy 2).
    pip install -q -e . "numpy==1.23.5" "protobuf==3.20.3" "tensorboard<2.21" "scipy<1.16" &&
    pip install -q --no-deps -e sim &&
    "$VENV/bin/python" -W "ignore:pkg_resources is deprecated:UserWarning" -c \
        "import mlagents.trainers.learn, mlagents_envs.base_env, torch, mlagents_grid.results.report, mlagents_grid_sim.env"
}; then
    echo "setup-mlagents: could not install mlagents-grid or the simulator (see pip's output above)" >&2
    exit 1
fi
echo "$packages_want" > "$PACKAGES_STAMP"
echo "ML-Agents stack ready in $VENV ($(( $(date +%s) - start )) s)"
