"""`python -m mlagents_grid TOOL ARGS...`: every command without its console-script shim.

Why: on Windows the grid-*.exe shims are not always there or on PATH (embeddable Python,
Wine, a venv that is not activated), while `python -m` works wherever the package imports.
The tools are the package's console scripts, read from its installed entry points: one list
(pyproject.toml's [project.scripts]), which no copy here can fall behind.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.metadata import EntryPoint, entry_points

PACKAGE = "mlagents_grid"


def tools() -> dict[str, EntryPoint]:
    """The package's console scripts by name, in name order."""
    found = {
        point.name: point
        for point in entry_points(group="console_scripts")
        if point.module.split(".")[0] == PACKAGE
    }
    return dict(sorted(found.items()))


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    known = tools()
    if not known:
        print(
            "python -m mlagents_grid: no console scripts found: the package is not installed "
            "(pip install it, e.g. pip install -e . in its checkout)",
            file=sys.stderr,
        )
        sys.exit(2)
    if not args or args[0] not in known:
        given = f"unknown tool {args[0]!r}" if args else "no tool given"
        print(f"python -m mlagents_grid: {given}; one of: {', '.join(known)}", file=sys.stderr)
        sys.exit(2)
    # The tool parses sys.argv as its console script would, and names itself in its messages.
    sys.argv = args
    known[args[0]].load()()


if __name__ == "__main__":
    main()
