"""run/ in process: the launcher of each platform, the stop sequence, a worker's command line
for an attempt (`resume_mode`, `trainer_argv`), and the runner's guard (the runner's
scenarios are in tests/test_runner.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlagents_grid import cli
from mlagents_grid.queue.folder import Queue
from mlagents_grid.run import launch_posix, launch_windows, runner
from mlagents_grid.run.launch_posix import ForkLauncher
from mlagents_grid.run.launch_windows import ThreadLauncher
from mlagents_grid.run.launcher import launcher_type
from mlagents_grid.run.supervisor import Supervisor
from mlagents_grid.run.trainer import TERM_GRACE, Step, StopSequence
from mlagents_grid.run.worker import resume_mode, trainer_argv
from mlagents_grid.wakeup import Wakeup
from tests.conftest import run_cli
from tests.support import runner_support as support
from tests.support.bounds import EXIT_S, STATE_S

GENEROUS_S = 60  # a wait that ends only if the behaviour under test is missing
RUN_ID = "grid-0"
CONFIG = """\
behaviors:
  Walker: {trainer_type: ppo, max_steps: 10}
  Soccer?team=0: {trainer_type: ppo, max_steps: 10}
environment_parameters:
  index: {opt_values: [0, 1]}
"""


# -- the launcher of each platform --------------------------------------------------------
@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        ("win32", ThreadLauncher),
        ("linux", ForkLauncher),
        ("darwin", ForkLauncher),
        ("cygwin", ForkLauncher),  # has fork; its processes are POSIX ones
    ],
)
def test_each_platform_gets_its_launcher(platform: str, expected: type) -> None:
    assert launcher_type(platform) is expected


def test_this_platform_gets_its_launcher() -> None:
    assert launcher_type() is (ThreadLauncher if sys.platform == "win32" else ForkLauncher)


@pytest.mark.parametrize(
    ("new_console", "runner_", "flags"),
    [
        # A runner: a console of its own (hidden unless --console), never a new group.
        (False, True, {"CREATE_NO_WINDOW"}),
        (True, True, {"CREATE_NEW_CONSOLE"}),
        # Other trainers: a process group of their own, where CTRL_BREAK reaches them.
        (False, False, {"CREATE_NEW_PROCESS_GROUP"}),
        (True, False, {"CREATE_NEW_PROCESS_GROUP", "CREATE_NEW_CONSOLE"}),
    ],
)
def test_windows_starts_trainers_in_a_console_or_group_of_their_own(
    monkeypatch: pytest.MonkeyPatch, new_console: bool, runner_: bool, flags: set[str]
) -> None:
    every = {"CREATE_NO_WINDOW": 1, "CREATE_NEW_CONSOLE": 2, "CREATE_NEW_PROCESS_GROUP": 4}
    for name, value in every.items():  # Linux's subprocess has none of them
        monkeypatch.setattr(subprocess, name, value, raising=False)
    expected = sum(every[name] for name in flags)
    assert launch_windows.popen_options(new_console, runner_) == {"creationflags": expected}


@pytest.mark.parametrize(("new_console", "runner_"), [(False, False), (True, True)])
def test_posix_starts_every_trainer_in_a_session_of_its_own(
    new_console: bool, runner_: bool
) -> None:
    assert launch_posix.popen_options(new_console, runner_) == {"start_new_session": True}


def test_a_worker_that_died_with_a_reply_unread_is_gone_not_a_launcher_crash() -> None:
    """Its socket then reads ECONNRESET, not EOF; the launcher must live on for its trainers."""
    worker, launcher = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    launcher.send(b'{"pid": 1}')  # a reply the worker never read
    worker.close()
    assert launch_posix._handle(launcher, Supervisor(launch_posix.popen_options)) is False
    launcher.close()


# -- the stop sequence --------------------------------------------------------------------
def test_the_stop_sequence_interrupts_once_then_terminates_then_kills() -> None:
    sequence = StopSequence(grace=3)
    assert sequence.due(100) is None and sequence.deadline() is None
    assert sequence.ask(10) is Step.INTERRUPT
    assert sequence.ask(11) is None  # never a second SIGINT
    assert sequence.deadline() == 13
    assert sequence.due(12.9) is None
    assert sequence.due(13) is Step.TERMINATE
    assert sequence.deadline() == 13 + TERM_GRACE
    assert sequence.due(13 + TERM_GRACE - 0.1) is None
    assert sequence.due(13 + TERM_GRACE) is Step.KILL
    assert sequence.due(1000) is None and sequence.deadline() is None
    forced = StopSequence(grace=60)
    assert forced.force(5) is Step.KILL and forced.force(6) is None and forced.due(100) is None


# -- an attempt's command line ------------------------------------------------------------
def plan(root: Path, *flags: str) -> Queue:
    """A two-behavior sweep of two runs, planned by grid-plan in this process."""
    config = root / "grid.yaml"
    config.write_text(CONFIG)
    queue_dir, results = root / "q", root / "results"
    planned = run_cli(
        cli.plan,
        "grid-plan",
        [str(config), "--queue", str(queue_dir), "--results-dir", str(results), "--run-id", "grid",
         *flags],
    )  # fmt: skip
    assert planned.code == 0, planned.err
    return Queue(queue_dir)


def checkpoints(*behaviors: str) -> Callable[[Path], None]:
    def make(results: Path) -> None:
        results.mkdir(parents=True)
        for behavior in behaviors:
            (results / behavior).mkdir()
            (results / behavior / "checkpoint.pt").write_bytes(b"model")

    return make


def nothing(_results: Path) -> None:
    """No results folder: the run never trained."""


@pytest.mark.parametrize(
    ("flags", "results", "mode"),
    [
        ((), nothing, None),
        (("--force",), nothing, "--force"),
        ((), checkpoints(), "--force"),  # a folder without a checkpoint: partial results
        ((), checkpoints("Walker"), "--force"),  # one behavior of two
        ((), checkpoints("Walker", "Soccer"), "--resume"),  # Soccer?team=0 writes to Soccer
        (("--force",), checkpoints("Walker", "Soccer"), "--resume"),
    ],
)
def test_resume_mode(
    tmp_path: Path, flags: tuple[str, ...], results: Callable[[Path], None], mode: str | None
) -> None:
    queue = plan(tmp_path, *flags)
    results(queue.run_results(RUN_ID))
    assert resume_mode(queue, RUN_ID) == mode
    assert resume_mode(queue, "grid-1") == ("--force" if flags else None)


@pytest.mark.parametrize(
    ("flags", "mode", "device", "tail"),
    [
        ((), None, None, []),
        ((), "--resume", None, ["--resume"]),
        (("--time-scale", "20"), "--force", "1", ["--force", "--time-scale", "20",
                                                  "--torch-device", "cuda:1"]),
    ],
)  # fmt: skip
def test_trainer_argv(
    tmp_path: Path, flags: tuple[str, ...], mode: str | None, device: str | None, tail: list[str]
) -> None:
    queue = plan(tmp_path, *flags)
    argv = trainer_argv(["python", "-m", "trainer"], queue, RUN_ID, 5105, mode, device)
    config = str(queue.paths.config_file(RUN_ID).absolute())
    results = queue.sweep.results_dir
    assert argv == [
        "python", "-m", "trainer", config, "--run-id", RUN_ID, "--results-dir", results,
        "--base-port", "5105", *tail,
    ]  # fmt: skip
    assert Path(config).is_absolute()  # the trainer runs in the sweep's folder, not ours


# -- the runner's pure logic and its guard ------------------------------------------------
def guard_with_stand_ins(calls: list[str], **options: Any) -> runner.Guard:
    """A Guard whose terminate and kill steps only record: the real ones would end this test
    process when the grace runs out."""
    guard = runner.Guard(**options)
    guard.terminate = lambda: calls.append("terminate")  # type: ignore[method-assign]
    guard.kill = lambda: calls.append("kill")  # type: ignore[method-assign]
    return guard


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
    guard = guard_with_stand_ins(
        calls, grace=0.2, fd=read_fd, interrupt=lambda: taken("interrupt"), kill_after=0.2
    )

    def taken(call: str) -> None:
        calls.append(call)
        guard.delivered = True  # as the main thread's handler does when it raises

    guard.start()
    os.write(write_fd, b"hello\nst")
    os.write(write_fd, b"op\nstop\n")
    guard.thread.join(timeout=EXIT_S)
    support.wait_until(lambda: "kill" in calls, STATE_S, "the kill step")
    assert calls == ["interrupt", "terminate", "kill"]
    assert guard.request_stop() is False
    assert guard.interrupts == 1
    assert guard.source is runner.StopFrom.WORKER
    os.close(write_fd)
    os.close(read_fd)


def test_guard_takes_end_of_file_as_a_stop() -> None:
    read_fd, write_fd = os.pipe()
    os.close(write_fd)
    calls: list[str] = []
    guard = guard_with_stand_ins(
        calls, grace=60, fd=read_fd, interrupt=lambda: calls.append("interrupt")
    )
    guard.start()
    support.wait_until(lambda: bool(calls), STATE_S, "the interrupt")
    assert calls[0] == "interrupt"
    os.close(read_fd)


def test_an_interrupt_the_main_thread_did_not_take_is_issued_again() -> None:
    """As when the SIGINT lands just before Windows Python resets the event its wait watches."""
    read_fd, write_fd = os.pipe()
    issued: list[float] = []
    guard = guard_with_stand_ins([], grace=60, fd=read_fd, interrupt=lambda: taken_third_time())

    def taken_third_time() -> None:
        issued.append(time.monotonic())
        guard.delivered = len(issued) >= 3

    guard.start()
    os.write(write_fd, b"stop\n")
    support.wait_until(lambda: len(issued) >= 3, 30, "three interrupts")
    time.sleep(3 * runner.REISSUE_EVERY)
    assert len(issued) == 3 and guard.interrupts == 3
    os.close(write_fd)
    os.close(read_fd)


def test_a_console_stop_is_one_interrupt_and_a_second_one_is_ignored() -> None:
    """Ctrl+C in the runner's own window: the stop's KeyboardInterrupt, then nothing more."""
    read_fd, write_fd = os.pipe()
    guard = guard_with_stand_ins([], grace=60, fd=read_fd, interrupt=lambda: None)
    with pytest.raises(KeyboardInterrupt):
        guard.on_signal(signal.SIGINT, None)
    assert guard.source is runner.StopFrom.CONSOLE and guard.stop_requested_at is not None
    guard.on_signal(signal.SIGINT, None)  # a second Ctrl+C while saving: ignored
    assert guard.request_stop() is False  # and the worker's stop after it starts nothing
    assert guard.interrupts == 0
    assert guard.on_console_close(0) is False  # Ctrl+C goes on to the C runtime's handler
    os.close(write_fd)
    os.close(read_fd)


def test_an_interrupt_swallowed_by_a_finally_return_is_issued_again() -> None:
    """Windows' PipeConnection._recv_bytes returns the data it read from `finally`: an
    interrupt raised there as the read completes is lost. Real SIGINTs here, to this thread."""
    read_fd, write_fd = os.pipe()
    seen: list[object] = []

    def swallowing_read() -> bytes:
        try:
            os.write(write_fd, b"stop\n")
            time.sleep(GENEROUS_S)
        finally:
            seen.append(sys.exc_info()[0])
            return b"data"  # noqa: B012 - the point: as multiprocessing does on Windows

    guard = guard_with_stand_ins([], grace=600, fd=read_fd, swallowers={swallowing_read.__code__})
    previous = signal.signal(signal.SIGINT, guard.on_signal)
    try:
        guard.start()
        try:
            assert swallowing_read() == b"data"
            time.sleep(GENEROUS_S)
        except KeyboardInterrupt:
            seen.append("interrupted again")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert seen == [KeyboardInterrupt, "interrupted again"]
    # Issued again: twice, or more where the main thread took longer than REISSUE_EVERY to
    # take one (a busy machine); those extra ones are ignored, as `seen` shows.
    assert guard.interrupts >= 2
    os.close(write_fd)
    os.close(read_fd)


def test_a_closed_wakeup_is_no_longer_where_signals_are_written() -> None:
    """A monitor closes its wake-up on the way out; a signal after that must not be written to
    the closed descriptor (or to whatever file reuses its number)."""
    previous = signal.set_wakeup_fd(-1)
    try:
        wake = Wakeup()
        wake.wake_on_signals()
        wake.close()
        assert signal.set_wakeup_fd(-1) == -1
    finally:
        signal.set_wakeup_fd(previous)
