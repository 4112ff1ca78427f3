"""The Windows trainer runner (mlagents_grid.runner), run here on Linux: its pure logic, and
its scenarios against the fake mlagents in tests/fake_mlagents (tests_windows/ runs them too,
inside Windows CPython under Wine)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlagents_grid import runner

from . import runner_support as support


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


# -- pure logic -------------------------------------------------------------------------
def test_split_lines_keeps_the_unfinished_line() -> None:
    assert runner.split_lines(b"", b"st") == ([], b"st")
    assert runner.split_lines(b"st", b"op\r\nx\nsto") == (["stop", "x"], b"sto")


def test_exit_code_as_the_interpreter_maps_system_exit(capsys: pytest.CaptureFixture[str]) -> None:
    assert runner.exit_code(None) == 0
    assert runner.exit_code(3) == 3
    assert runner.exit_code("bad config") == 1
    assert "bad config" in capsys.readouterr().err


def test_split_argv_at_the_first_double_dash() -> None:
    assert runner.split_argv(["--grace", "5", "--", "a.yaml", "--", "x"]) == (
        ["--grace", "5"],
        ["a.yaml", "--", "x"],
    )
    assert runner.split_argv(["--grace", "5"]) == (["--grace", "5"], [])


def test_guard_interrupts_once_on_stop_line_then_escalates() -> None:
    read_fd, write_fd = os.pipe()
    calls: list[str] = []
    guard = runner.Guard(grace=0.2, fd=read_fd, interrupt=lambda: calls.append("interrupt"))
    guard.terminate = lambda: calls.append("terminate")  # type: ignore[method-assign]
    guard.kill = lambda: calls.append("kill")  # type: ignore[method-assign]
    guard.kill_after = 0.2
    guard.start()
    os.write(write_fd, b"hello\nst")
    os.write(write_fd, b"op\nstop\n")
    guard.thread.join(timeout=10)
    assert calls == ["interrupt", "terminate", "kill"]
    assert guard.request_stop() is False
    assert guard.interrupts == 1
    os.close(write_fd)
    os.close(read_fd)


def test_guard_takes_end_of_file_as_a_stop() -> None:
    read_fd, write_fd = os.pipe()
    os.close(write_fd)
    calls: list[str] = []
    guard = runner.Guard(grace=60, fd=read_fd, interrupt=lambda: calls.append("interrupt"))
    # Stand-ins: the real steps would end this test process when the grace runs out.
    guard.terminate = lambda: calls.append("terminate")  # type: ignore[method-assign]
    guard.kill = lambda: calls.append("kill")  # type: ignore[method-assign]
    guard.start()
    support.wait_until(lambda: bool(calls), 10, "the interrupt")
    assert calls == ["interrupt"]
    os.close(read_fd)


# -- against the fake mlagents ----------------------------------------------------------
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


@pytest.mark.parametrize("code", [0, 3])
def test_completion_returns_the_trainer_exit_code(
    runners: support.Runners, results: Path, code: int
) -> None:
    support.completion_exit_code(runners, results, code)


def test_a_runner_started_with_sigint_ignored_still_stops_its_trainer(
    runners: support.Runners, results: Path
) -> None:
    """As under `nohup` or `&`: Python then installs no KeyboardInterrupt handler by itself."""
    import signal

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
