"""`python -m mlagents_grid TOOL ARGS...`: every command without its console-script shim.

Why: on Windows the grid-*.exe shims are not always there or on PATH (embeddable Python,
Wine, a venv that is not activated), while `python -m` works wherever the package imports.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

TOOLS = (
    "grid-plan",
    "grid-worker",
    "grid-monitor",
    "grid-stop",
    "grid-status",
    "grid-report",
    "grid-submit",
)


def entry_point(tool: str) -> Callable[[], None]:
    """The cli function that the console script `tool` calls."""
    from . import cli

    names = {
        "grid-plan": cli.plan_main,
        "grid-worker": cli.worker_main,
        "grid-monitor": cli.monitor_main,
        "grid-stop": cli.stop_main,
        "grid-status": cli.status_main,
        "grid-report": cli.report_main,
        "grid-submit": cli.submit_main,
    }
    return names[tool]


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in TOOLS:
        given = f"unknown tool {args[0]!r}" if args else "no tool given"
        print(
            f"python -m mlagents_grid: {given}; one of: {', '.join(TOOLS)}",
            file=sys.stderr,
        )
        sys.exit(2)
    # The tool parses sys.argv as its console script would, and names itself in its messages.
    sys.argv = args
    entry_point(args[0])()


if __name__ == "__main__":
    main()
