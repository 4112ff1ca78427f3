#!/usr/bin/env bash
# `make test-windows`: the tests_windows/ tier inside a real Windows CPython under Wine
# (set up, or found cached, by scripts/setup-windows.sh). Extra pytest arguments pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

started=$(date +%s)
PYEXE=$(bash scripts/setup-windows.sh | tail -n 1) || exit 1 # it said why, in one line
ready=$(date +%s)
echo "test-windows: set-up took $((ready - started)) s"

CACHE=${MLAGENTS_GRID_WINDOWS_CACHE:-$HOME/.cache/mlagents-grid-windows}
export WINEPREFIX="$CACHE/prefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
unset DISPLAY WAYLAND_DISPLAY
# Z: is the Linux root in a new prefix. The cached python.exe reads PYTHONPATH through its
# pythonpath.pth (see setup-windows.sh), so it imports this checkout, wherever it is.
PYTHONPATH="Z:${ROOT//\//\\}"
export PYTHONPATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1

# Std streams are pipes: python.exe dies at start (WinError 6) on a regular file.
status=0
wine "$PYEXE" -m pytest tests_windows -p no:cacheprovider -ra "$@" </dev/null 2>&1 | cat ||
    status=$?
echo "test-windows: the tier took $(($(date +%s) - ready)) s (exit $status)"
exit "$status"
