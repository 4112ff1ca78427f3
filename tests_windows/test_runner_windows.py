"""The runner inside Windows: a `stop` line on a pipe is the trainer's Ctrl-C, with no console
control event (which never arrives under Wine). Same scenarios as tests/test_runner.py, whose
results folder has a space in its path."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from tests import runner_support as support


def test_stop_line_saves_the_model_once(runners: support.Runners, results: Path) -> None:
    support.stop_line_saves_once(runners, results)


def test_end_of_stdin_saves_the_model(runners: support.Runners, results: Path) -> None:
    support.eof_is_a_stop(runners, results)


@pytest.mark.parametrize("ignore", ["--ignore-interrupt", "--ignore-exit"])
def test_ignored_stop_is_escalated(runners: support.Runners, results: Path, ignore: str) -> None:
    support.ignored_stop_escalates(runners, results, ignore)


@pytest.mark.parametrize("kill_first", [False, True], ids=["stopped", "killed"])
def test_hold_refuses_a_second_runner(
    runners: support.Runners, results: Path, kill_first: bool
) -> None:
    support.hold_refuses_second_runner(runners, results, kill_first)


def test_completion_returns_the_trainer_exit_code(runners: support.Runners, results: Path) -> None:
    support.completion_exit_code(runners, results, 3)


@pytest.mark.skipif(sys.platform != "win32", reason="the wake-up is Windows Python's SIGINT event")
def test_stop_wakes_a_trainer_blocked_in_a_wait(runners: support.Runners, results: Path) -> None:
    """interrupt_main() alone would wait for the 600 s sleep to end."""
    trainer = runners.start(results, trainer_args=["--block"])
    trainer.wait_training()
    started = time.monotonic()
    trainer.send(b"stop\n")
    output = trainer.finish(30)
    assert trainer.process.returncode == 0, output
    assert "Learning was interrupted" in output
    assert time.monotonic() - started < 20
