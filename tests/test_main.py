"""`python -m mlagents_grid TOOL ARGS...`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mlagents_grid.__main__ import TOOLS, entry_point


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlagents_grid", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_tool_has_its_console_script_function() -> None:
    for tool in TOOLS:
        assert callable(entry_point(tool))


def test_unknown_tool_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for args in (["grid-nope"], []):
        done = _run(*args, cwd=tmp_path)
        assert done.returncode == 2
        assert done.stdout == ""
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and all(tool in lines[0] for tool in TOOLS), done.stderr


def test_grid_plan_through_python_m(tmp_path: Path) -> None:
    config = tmp_path / "two.yaml"
    config.write_text(
        "behaviors:\n  Ball:\n    trainer_type: ppo\n    hyperparameters:\n"
        "      beta:\n        opt_values: [0.001, 0.002]\n"
    )
    queue = tmp_path / "my queue" / "two"
    done = _run("grid-plan", str(config), "--queue", str(queue), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Planned 2 runs" in done.stdout
    assert (queue / "config_info.txt").read_text() == (
        "two-0 - Ball - beta: 0.001\ntwo-1 - Ball - beta: 0.002\n"
    )
