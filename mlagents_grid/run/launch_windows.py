"""Windows: there is no fork, so the supervisor runs in threads of the worker.

Each trainer gets a thread that waits for its end and records it, and one that renews its
run's lease and escalates its stop on the supervisor's clock. A runner (runner.py) never
shares the worker's console, whose Ctrl+C, Ctrl+Break and closing would reach it and every
process it starts (mlagents' environment workers, Unity players) and end them without a
save: it gets a hidden console of its own, which its children share, or with --console a
window of its own. Other trainers share the worker's console in a process group of their
own, where CTRL_BREAK reaches them.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from ..queue.outcome import StopBy
from .supervisor import Supervisor, TrainerHandle

# The longest the escalation thread sleeps before it looks at its trainer again.
ESCALATE_EVERY = 1.0


def popen_options(new_console: bool, runner: bool) -> dict[str, Any]:
    if runner:
        # A new process group would start with Ctrl+C disabled in the runner's window.
        flag = "CREATE_NEW_CONSOLE" if new_console else "CREATE_NO_WINDOW"
        return {"creationflags": getattr(subprocess, flag, 0)}
    # --console: a console window of its own per run, as the original did.
    flags = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
    if new_console:
        flags |= getattr(subprocess, "CREATE_NEW_CONSOLE", 0)
    return {"creationflags": flags}


class ThreadLauncher:
    """The supervisor in the worker's own process; `pid` is None, as there is no launcher
    process apart from the worker."""

    pid = None

    def __init__(self) -> None:
        self._supervisor = Supervisor(popen_options)

    def start(
        self, request: dict[str, Any], stdout: int, on_end: Callable[[], None]
    ) -> TrainerHandle:
        supervisor = self._supervisor
        trainer = supervisor.start(request, stdout)
        handle = TrainerHandle(trainer.pid, on_end)

        def wait() -> None:
            assert trainer.popen is not None
            code = trainer.popen.wait()
            ended = supervisor.ended(trainer.pid, code, os.getpid())
            handle.end(code, ended[1] if ended else 0, fenced=trainer.fenced)

        def escalate() -> None:
            while not handle.ended:
                time.sleep(min(ESCALATE_EVERY, supervisor.timeout()))
                supervisor.keep_leases()
                supervisor.tick()

        threading.Thread(target=wait, daemon=True).start()
        threading.Thread(target=escalate, daemon=True).start()
        return handle

    def stop(self, pid: int, why: StopBy) -> None:
        self._supervisor.stop(pid, why)

    def kill(self, pid: int, why: StopBy) -> None:
        self._supervisor.kill(pid, why)

    def close(self) -> None:
        """Nothing to end: the threads are daemons, each gone with its trainer."""
