"""What a Windows user does in a console: Ctrl+Break in the worker's window, Ctrl+C in a
trainer's own window (`--console`). These need a real Windows console: under Wine (which has
none: console control events never arrive) and on Linux they skip, saying so.

Closing a window is not driven from here (no test can close a console window reliably); it
reaches the worker as SIGBREAK, as Ctrl+Break does, and the runner's close handler is
tested on its own in tests/test_runner.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import runner_support as support

from .test_worker_windows import BEHAVIOR, WindowsSweep, ledger, made, starts
from .wine import started, wine_version

__all__ = ["made"]  # the fixture, used here by name


def _missing_console() -> str | None:
    """Why console control events cannot be tested here, or None when they can."""
    if sys.platform != "win32":
        return "needs a Windows console"
    wine = wine_version()
    if wine:
        return f"Wine {wine} has no real console: console control events never arrive"
    import ctypes

    pids = (ctypes.c_uint32 * 1)()
    if ctypes.windll.kernel32.GetConsoleProcessList(pids, 1) == 0:
        return "this test process has no console"
    return None


needs_console = pytest.mark.skipif(_missing_console() is not None, reason=str(_missing_console()))

# Sends Ctrl+C into the console of the process argv[1] (a process of another console): attach
# to it, ignore the event here, and generate it for every process attached.
SEND_CTRL_C = textwrap.dedent(
    """\
    import ctypes, sys
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.FreeConsole()
    if not kernel32.AttachConsole(int(sys.argv[1])):
        sys.exit(f"AttachConsole: error {ctypes.get_last_error()}")
    kernel32.SetConsoleCtrlHandler(None, True)
    if not kernel32.GenerateConsoleCtrlEvent(0, 0):
        sys.exit(f"GenerateConsoleCtrlEvent: error {ctypes.get_last_error()}")
    """
)


def send_ctrl_c_to_console_of(pid: int) -> int:
    helper = started(
        lambda: subprocess.run(
            [sys.executable, "-c", SEND_CTRL_C, str(pid)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=support.START_TIMEOUT,
            creationflags=subprocess.DETACHED_PROCESS,  # type: ignore[attr-defined]
        )
    )
    return helper.returncode


@needs_console
def test_ctrl_break_in_the_worker_window_stops_it_and_its_trainer_saves_once(
    made: list[WindowsSweep], tmp_path: Path
) -> None:
    """Ctrl+Break (and closing the window: both SIGBREAK) is the worker's Ctrl-C; its runner,
    in a console of its own, gets the worker's one stop and not the console's."""
    sweep = WindowsSweep(tmp_path, 1, ["--step-delay", "0.05"])
    made.append(sweep)
    worker = sweep.worker(creationflags=subprocess.CREATE_NEW_PROCESS_GROUP)  # type: ignore[attr-defined]
    out = sweep.results / "grid-0"
    support.wait_until((out / "console.json").exists, support.START_TIMEOUT, "training")
    assert worker.pid not in json.loads((out / "console.json").read_text())
    os.kill(worker.pid, signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
    output = worker.communicate(timeout=120)[0].decode(errors="replace")
    assert worker.returncode == 128 + signal.SIGBREAK, output  # type: ignore[attr-defined]
    assert sweep.state("grid-0")["status"] == "interrupted", output
    assert (out / "interrupts.txt").read_text() == "1"
    assert (out / BEHAVIOR / "checkpoint.pt").exists()


@needs_console
def test_ctrl_c_in_a_trainer_window_saves_once_and_the_run_is_resumed(
    made: list[WindowsSweep], tmp_path: Path
) -> None:
    """--console: Ctrl+C in the trainer's own window is one save, recorded `interrupted`; a
    second Ctrl+C while it saves is ignored; the worker then resumes the run."""
    sweep = WindowsSweep(tmp_path, 1, ["--steps", "200", "--step-delay", "0.05"])
    made.append(sweep)
    worker = sweep.worker("--console")
    out = sweep.results / "grid-0"
    step = out / "step"
    support.wait_until(
        lambda: step.exists() and int(step.read_text() or 0) >= 3,
        support.START_TIMEOUT,
        "training",
    )
    runner_pid = starts(sweep.results, "grid-0")[0]["pid"]  # the runner trains in-process
    assert send_ctrl_c_to_console_of(runner_pid) == 0
    support.wait_until(
        lambda: any(e["event"] == "exit" for e in ledger(sweep.results, "grid-0")),
        support.START_TIMEOUT,
        "the save",
    )
    send_ctrl_c_to_console_of(runner_pid)  # while it saves (it may be gone already)
    output = worker.communicate(timeout=300)[0].decode(errors="replace")
    assert worker.returncode == 0, output
    events = [e for e in sweep.events() if e.get("run_id") == "grid-0"]
    interrupted = [e for e in events if e["event"] == "interrupted"]
    assert len(interrupted) == 1 and interrupted[0]["exit_code"] == 0xC000013A, events
    assert not [e for e in events if e["event"] in ("attempt-failed", "failed")]
    first_exit = next(e for e in ledger(sweep.results, "grid-0") if e["event"] == "exit")
    assert first_exit["reason"] == "interrupt"
    assert (out / "interrupts.txt").read_text() == "1"
    resumed = starts(sweep.results, "grid-0")[1:]
    assert len(resumed) == 1 and resumed[0]["resume"] is True
    assert sweep.state("grid-0")["status"] == "done"
