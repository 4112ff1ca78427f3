"""The product package apart from the simulator: every module imports with the ML-Agents stack
absent, and `grid-sim-learn` belongs to the simulator's distribution (sim/), not to it."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from importlib.metadata import distribution
from pathlib import Path

from .support.bounds import EXIT_S

# What the simulator needs and the product must not: the ML-Agents stack.
STACK = ("mlagents", "mlagents_envs", "torch")
NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9._-]")

# Imports every module of mlagents_grid, in a fresh interpreter where importing any module of
# the stack fails as it does where the stack is not installed; prints the modules imported.
IMPORT_EVERY_MODULE = textwrap.dedent(
    """\
    import importlib, pkgutil, sys

    absent = set(sys.argv[1:])

    class StackAbsent:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in absent:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    def fail(_name):
        raise

    sys.meta_path.insert(0, StackAbsent())
    for name in sorted(absent):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError:
            print("absent:", name)
    import mlagents_grid

    found = pkgutil.walk_packages(mlagents_grid.__path__, "mlagents_grid.", onerror=fail)
    for module in sorted(info.name for info in found):
        importlib.import_module(module)
        print(module)
    """
)


def test_every_module_imports_without_the_mlagents_stack(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERY_MODULE, *STACK],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=EXIT_S,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[: len(STACK)] == [f"absent: {name}" for name in sorted(STACK)]
    imported = set(lines[len(STACK) :])
    assert {"mlagents_grid.cli", "mlagents_grid.queue.job", "mlagents_grid.__main__"} <= imported
    assert not imported & {"mlagents_grid.simenv", "mlagents_grid.simlearn"}


def test_the_product_neither_ships_grid_sim_learn_nor_requires_the_stack() -> None:
    product = distribution("mlagents-grid")
    scripts = {point.name: point for point in product.entry_points}
    assert "grid-plan" in scripts and "grid-sim-learn" not in scripts
    assert all(point.module.split(".")[0] == "mlagents_grid" for point in scripts.values())
    named = {NOT_IN_A_NAME.split(line, maxsplit=1)[0] for line in product.requires or []}
    assert {"PyYAML", "tensorboard"} <= named
    assert not named & {"mlagents", "mlagents-envs", "mlagents_envs", "torch"}
