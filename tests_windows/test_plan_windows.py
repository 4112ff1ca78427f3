"""`python -m mlagents_grid grid-plan` inside Windows, into a queue folder with a space."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.runner_support import child_env

from .wine import started

CONFIG = """\
behaviors:
  Ball:
    trainer_type: ppo
    hyperparameters:
      learning_rate: 0.0003
      beta:
        opt_values: [0.001, 0.002]
    max_steps: 1000
"""


def test_grid_plan_two_runs(tmp_path: Path) -> None:
    config = tmp_path / "ball.yaml"
    config.write_text(CONFIG)
    queue = tmp_path / "my sweeps" / "ball"
    results = tmp_path / "my results"
    done = started(
        lambda: subprocess.run(
            [
                sys.executable,
                "-m",
                "mlagents_grid",
                "grid-plan",
                str(config),
                "--queue",
                str(queue),
                "--results-dir",
                str(results),
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            env=child_env(),
        )
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Planned 2 runs of ball" in done.stdout
    assert (queue / "config_info.txt").read_text() == (
        "ball-0 - Ball - beta: 0.001\nball-1 - Ball - beta: 0.002\n"
    )
    status = started(
        lambda: subprocess.run(
            [sys.executable, "-m", "mlagents_grid", "grid-status", "--queue", str(queue), "--json"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            env=child_env(),
        )
    )
    assert status.returncode == 0, status.stderr
    assert "ball-0" in status.stdout and "ball-1" in status.stdout


def test_python_m_and_the_console_scripts_list_the_same_tools(tmp_path: Path) -> None:
    """The console scripts as pip installs them (here: make test-windows writes the package's
    metadata from pyproject.toml) are exactly the tools `python -m mlagents_grid` knows."""
    from tests.test_main import console_scripts, listed_tools

    scripts = console_scripts()
    assert {"grid-show", "grid-retry"} <= scripts
    assert set(listed_tools(tmp_path)) == scripts
