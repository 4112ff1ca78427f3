#!/usr/bin/env bash
# Builds .venv-mlagents: the real ML-Agents 1.1.0 stack (CPU torch) on Python 3.11, plus this
# project with its dependencies, so that `grid-sim-learn` exists and this environment's
# grid-plan validates configs and trainer arguments with ML-Agents itself. Idempotent: a stamp
# file holding the hash of this script skips the work when nothing changed.
#
# mlagents 1.1.0 declares Python <=3.10.12 but runs on 3.11 when installed with --no-deps after
# its dependencies are pinned by hand (facts checked on these machines: see README, "make demo").
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${MLAGENTS_VENV:-.venv-mlagents}
STAMP="$VENV/.stack-stamp"
# The contents only: sha256sum's file names would make `bash scripts/setup-mlagents.sh` (make)
# and the test fixture's absolute path disagree, and each would rebuild the stack.
want=$(cat "$0" pyproject.toml | sha256sum | cut -c1-16)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/grid-sim-learn" ]; then
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
PY=$(find_python)
if [ -z "$PY" ]; then
    echo "setup-mlagents: Python 3.11 not found; install it (pyenv install 3.11) and retry" >&2
    exit 1
fi

echo "Building the ML-Agents stack in $VENV with $PY (a few minutes the first time)"
start=$(date +%s)
rm -rf "$VENV"
"$PY" -m venv "$VENV"
pip() { "$VENV/bin/python" -m pip "$@"; }
if ! {
    pip install -q --upgrade pip &&
    pip install -q "torch==2.13.0" &&
    pip install -q "numpy==1.23.5" "protobuf==3.20.3" "onnx==1.15.0" "cattrs<1.7" "setuptools<81" \
        grpcio h5py Pillow "tensorboard<2.21" huggingface-hub attrs six cloudpickle "gym==0.26.2" \
        PyYAML "filelock>=4.1" &&
    pip install -q --no-deps --ignore-requires-python "mlagents==1.1.0" "mlagents-envs==1.1.0" \
        "pettingzoo==1.15.0" &&
    # This project's own dependencies within the stack's pins (newer scipy wants numpy 2).
    pip install -q -e . "numpy==1.23.5" "protobuf==3.20.3" "tensorboard<2.21" "scipy<1.16" &&
    "$VENV/bin/python" -W "ignore:pkg_resources is deprecated:UserWarning" \
        -c "import mlagents.trainers.learn, mlagents_envs.base_env, torch, mlagents_grid.report"
}; then
    echo "setup-mlagents: could not install the ML-Agents stack (see pip's output above)" >&2
    exit 1
fi
echo "$want" > "$STAMP"
echo "ML-Agents stack ready in $VENV ($(( $(date +%s) - start )) s)"
