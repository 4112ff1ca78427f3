"""The Windows trainer runner (mlagents_grid.run.runner), run here on Linux: its scenarios
against the fake mlagents in tests/support/fake_mlagents (tests_windows/ runs them too, inside
Windows CPython under Wine). Its pure logic and guard are in tests/unit/test_run.py."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import runner_support as support


@pytest.fixture
def runners() -> Iterator[support.Runners]:
    started = support.Runners()
    yield started
    started.end_all()


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A results folder whose path has a space in it, as on many Windows machines."""
    path = tmp_path / "my results"
    path.mkdir()
    return path


def test_closing_the_console_waits_for_the_save_then_leaves_as_stopped() -> None:
    """Windows' close handler, in a process of its own: it asks for the stop, returns only
    once the trainer has returned, and exits with the runner's code."""
    script = textwrap.dedent(
        """\
        import os, sys, threading, time
        from mlagents_grid.run import runner
        guard = runner.Guard(60, fd=os.open(os.devnull, os.O_RDONLY), interrupt=lambda: None)
        def trainer_returns():
            while guard.stop_requested_at is None:
                time.sleep(0.01)
            print("stop asked by", guard.source, flush=True)
            time.sleep(0.5)
            guard.exit_code = 58
            guard.finished.set()
        threading.Thread(target=trainer_returns).start()
        guard.on_console_close(runner.CTRL_CLOSE_EVENT)
        print("not reached")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=support.ROOT
    )
    assert done.returncode == 58, done.stderr
    assert done.stdout == "stop asked by console\n"


# -- against the fake mlagents ----------------------------------------------------------
def test_stop_line_saves_the_model_once(runners: support.Runners, results: Path) -> None:
    support.stop_line_saves_once(runners, results)


def test_end_of_stdin_saves_the_model(runners: support.Runners, results: Path) -> None:
    support.eof_is_a_stop(runners, results)


@pytest.mark.parametrize("ignore", ["--ignore-interrupt", "--ignore-exit"])
def test_ignored_stop_is_escalated(runners: support.Runners, results: Path, ignore: str) -> None:
    support.ignored_stop_escalates(runners, results, ignore)


@pytest.mark.parametrize("code", [0, 3])
def test_completion_returns_the_trainer_exit_code(
    runners: support.Runners, results: Path, code: int
) -> None:
    support.completion_exit_code(runners, results, code)


@pytest.mark.parametrize("block", ["--block", "--block-recv"])
def test_stop_wakes_a_trainer_blocked_in_a_wait(
    runners: support.Runners, results: Path, block: str
) -> None:
    support.blocked_wait_gets_its_stop(runners, results, block)


def test_a_runner_started_with_sigint_ignored_still_stops_its_trainer(
    runners: support.Runners, results: Path
) -> None:
    """As under `nohup` or `&`: Python then installs no KeyboardInterrupt handler by itself."""

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        trainer = runners.start(results)
    finally:
        signal.signal(signal.SIGINT, previous)
    trainer.wait_training()
    trainer.send(b"stop\n")
    output = trainer.finish(support.START_TIMEOUT)
    assert trainer.process.returncode == 0, output
    assert (trainer.out / "checkpoint.txt").exists()
