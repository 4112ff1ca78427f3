"""Where a worker's trainers are started and supervised: one implementation per platform.

A worker asks its launcher to `start` a trainer, to `stop` it (one SIGINT, then the
escalation: trainer.py) or `kill` it, and hears of its end through the handle's `on_end`.
On POSIX the launcher is a forked, one-threaded process that outlives the worker
(launch_posix.py says why); Windows has no fork, so there it is threads of the worker
(launch_windows.py). Both carry out the same `Supervisor` (supervisor.py).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Protocol

from ..queue.outcome import StopBy
from .launch_posix import ForkLauncher
from .launch_windows import ThreadLauncher
from .supervisor import TrainerHandle


class Launcher(Protocol):
    @property
    def pid(self) -> int | None:
        """The launcher's own process, when it has one apart from the worker."""

    def start(
        self, request: dict[str, Any], stdout: int, on_end: Callable[[], None]
    ) -> TrainerHandle:
        """Start a trainer (`request`: argv, cwd, new_console, runner, grace, run_id,
        attempt, exit_file, claim) with `stdout`; OSError when it cannot start."""

    def stop(self, pid: int, why: StopBy) -> None:
        """Stop the trainer (once): its one SIGINT, then the escalation."""

    def kill(self, pid: int, why: StopBy) -> None:
        """Kill the trainer now (a second Ctrl-C)."""

    def close(self) -> None:
        """Let the launcher end (it does anyway when the worker dies)."""


def launcher_type(platform: str = sys.platform) -> Callable[[], Launcher]:
    """The launcher of `platform` (a `sys.platform` value)."""
    return ThreadLauncher if platform == "win32" else ForkLauncher


def start_launcher() -> Launcher:
    """This platform's launcher; on POSIX, call it while the worker has one thread."""
    return launcher_type()()
