"""The runner inside Windows: a `stop` line on a pipe is the trainer's Ctrl-C, with no console
control event (which never arrives under Wine). Same scenarios as tests/test_runner.py, whose
results folder has a space in its path."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import runner_support as support


def test_stop_line_saves_the_model_once(runners: support.Runners, results: Path) -> None:
    support.stop_line_saves_once(runners, results)


def test_end_of_stdin_saves_the_model(runners: support.Runners, results: Path) -> None:
    support.eof_is_a_stop(runners, results)


@pytest.mark.parametrize("ignore", ["--ignore-interrupt", "--ignore-exit"])
def test_ignored_stop_is_escalated(runners: support.Runners, results: Path, ignore: str) -> None:
    support.ignored_stop_escalates(runners, results, ignore)


def test_completion_returns_the_trainer_exit_code(runners: support.Runners, results: Path) -> None:
    support.completion_exit_code(runners, results, 3)


@pytest.mark.parametrize("block", ["--block", "--block-recv"])
def test_stop_wakes_a_trainer_blocked_in_a_wait(
    runners: support.Runners, results: Path, block: str
) -> None:
    """The main thread waits (a sleep; Connection.recv(), as mlagents-learn waits for Unity):
    only the SIGINT event that a real Ctrl-C sets ends such a wait on Windows."""
    support.blocked_wait_gets_its_stop(runners, results, block)
