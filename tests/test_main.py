"""`python -m mlagents_grid TOOL ARGS...`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mlagents_grid.__main__ import tools

from .support.bounds import EXIT_S


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlagents_grid", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=EXIT_S,
    )


def console_scripts() -> set[str]:
    """The console scripts pyproject.toml declares, as pip installed them."""
    from importlib.metadata import distribution

    points = distribution("mlagents-grid").entry_points
    return {point.name for point in points if point.group == "console_scripts"}


def listed_tools(cwd: Path) -> list[str]:
    """The tools `python -m mlagents_grid` names when given none."""
    done = _run(cwd=cwd)
    assert done.returncode == 2 and "one of: " in done.stderr, done.stderr
    return done.stderr.strip().split("one of: ", 1)[1].split(", ")


def test_python_m_knows_every_console_script_and_nothing_else(tmp_path: Path) -> None:
    scripts = console_scripts()
    assert {"grid-show", "grid-retry", "grid-worker"} <= scripts
    listed = listed_tools(tmp_path)
    assert sorted(listed) == listed
    assert set(listed) == scripts  # every script is a tool, and every tool a script
    for tool, point in tools().items():
        assert callable(point.load()), tool


def test_every_tool_runs_through_python_m(tmp_path: Path) -> None:
    for tool in listed_tools(tmp_path):
        done = _run(tool, "--help", cwd=tmp_path)
        said = done.stdout + done.stderr
        assert said.startswith((f"usage: {tool} ", f"{tool}: ")), said


def test_unknown_tool_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for args in (["grid-nope"], []):
        done = _run(*args, cwd=tmp_path)
        assert done.returncode == 2
        assert done.stdout == ""
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and all(tool in lines[0] for tool in tools()), done.stderr


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
