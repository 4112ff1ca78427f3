#!/usr/bin/env bash
# `make test-windows`: the tests_windows/ tier inside real Windows CPythons under Wine, one
# after the other: each version in $WINDOWS_PYTHONS (default "3.10 3.11"), set up or found
# cached by scripts/setup-windows.sh. Extra pytest arguments pass through. Fails if any
# version fails; every version runs either way.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VERSIONS=${WINDOWS_PYTHONS:-3.10 3.11}

# The package's metadata, as pip would install it, so that `python -m mlagents_grid` finds
# its console scripts (pyproject.toml's [project.scripts]) although the checkout is imported
# from PYTHONPATH, not installed.
METADATA=$(mktemp -d)
trap 'rm -rf "$METADATA"' EXIT
INFO="$METADATA/mlagents_grid-0.dist-info"
mkdir "$INFO"
printf 'Metadata-Version: 2.1\nName: mlagents-grid\nVersion: 0\n' >"$INFO/METADATA"
{
    echo "[console_scripts]"
    sed -n '/^\[project\.scripts\]/,/^\[/{/^[a-z]/s/"//gp}' pyproject.toml
} >"$INFO/entry_points.txt"

# Z: is the Linux root in a new prefix. The cached python.exe reads PYTHONPATH through its
# pythonpath.pth (see setup-windows.sh), so it imports this checkout, wherever it is.
PYTHONPATH="Z:${ROOT//\//\\};Z:${METADATA//\//\\}"
export PYTHONPATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
unset DISPLAY WAYLAND_DISPLAY

failed=()
for version in $VERSIONS; do
    echo "== test-windows: Windows CPython $version under Wine"
    started=$(date +%s)
    if ! PYEXE=$(bash scripts/setup-windows.sh "$version" | tail -n 1); then
        failed+=("$version (set-up)") # it said why, in one line
        continue
    fi
    ready=$(date +%s)
    echo "test-windows: $version set-up took $((ready - started)) s"
    export WINEPREFIX="${PYEXE%/python/python.exe}/prefix" GRID_WINDOWS_PYTHON=$version
    # Std streams are pipes: python.exe dies at start (WinError 6) on a regular file.
    status=0
    wine "$PYEXE" -m pytest tests_windows -p no:cacheprovider -ra "$@" </dev/null 2>&1 | cat ||
        status=$?
    echo "test-windows: $version took $(($(date +%s) - ready)) s (exit $status)"
    [ "$status" = 0 ] || failed+=("$version")
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "test-windows: FAILED on ${failed[*]}"
    exit 1
fi
echo "test-windows: passed on $VERSIONS"
