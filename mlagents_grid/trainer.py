"""A trainer process, and the one way it is stopped: SIGINT, then SIGTERM, then SIGKILL.

mlagents-learn saves a checkpoint and exits 0 on its first SIGINT, and has no SIGTERM
handler; interrupted again while saving, it aborts and can hang. So a stop is one SIGINT;
`grace` seconds later SIGTERM to the group and every descendant known; TERM_GRACE seconds
later SIGKILL to them all. `StopSequence` is that schedule, and `Trainer` carries it out for
whoever started the process: the launcher (launcher.py) on POSIX, the worker on Windows.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

from .files import write_atomic

IS_WINDOWS = sys.platform == "win32"
TERM_GRACE = 5.0
INTERRUPT, TERMINATE, KILL = "interrupt", "terminate", "kill"


@dataclass
class StopSequence:
    """When to interrupt, terminate and kill: asked once, escalated on a clock."""

    grace: float
    term_grace: float = TERM_GRACE
    asked_at: float | None = None
    terminated_at: float | None = None
    killed_at: float | None = None

    def ask(self, now: float) -> str | None:
        """A stop request: INTERRUPT the first time, nothing after."""
        if self.asked_at is not None:
            return None
        self.asked_at = now
        return INTERRUPT

    def force(self, now: float) -> str | None:
        """A second Ctrl-C: KILL now, once."""
        if self.killed_at is not None:
            return None
        self.asked_at = self.asked_at if self.asked_at is not None else now
        self.killed_at = now
        return KILL

    def due(self, now: float) -> str | None:
        """The escalation whose time has come, if any (each is given once)."""
        if self.asked_at is None or self.killed_at is not None:
            return None
        if self.terminated_at is None:
            if now >= self.asked_at + self.grace:
                self.terminated_at = now
                return TERMINATE
            return None
        if now >= self.terminated_at + self.term_grace:
            self.killed_at = now
            return KILL
        return None

    def deadline(self) -> float | None:
        """When `due` will next have something to say."""
        if self.asked_at is None or self.killed_at is not None:
            return None
        if self.terminated_at is None:
            return self.asked_at + self.grace
        return self.terminated_at + self.term_grace


@dataclass(frozen=True)
class RunInfo:
    """What the process that reaps a trainer needs to record its end for its run."""

    run_id: str
    attempt: int
    exit_file: str | None = None


class Trainer:
    """A started trainer and what it started: stopped, escalated and cleaned up here."""

    def __init__(
        self,
        pid: int,
        run: RunInfo,
        grace: float,
        lock_fd: int | None = None,
        popen: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self.popen = popen  # None when this process did not start it (see worker._stop_orphan)
        self.pid = pid
        self.run = run
        self.sequence = StopSequence(grace)
        self.stop_kind: str | None = None
        # Held until the exit is recorded: a claimer must not see the run free before that.
        self.lock_fd = lock_fd
        self.known: dict[int, psutil.Process] = {}

    # -- stopping ---------------------------------------------------------------
    def stop(self, why: str, now: float) -> str | None:
        """Ask the trainer to stop (once); returns the action taken, for the log."""
        if self.stop_kind is None:
            self.stop_kind = why
        return self._do(self.sequence.ask(now))

    def kill(self, why: str, now: float) -> str | None:
        if self.stop_kind is None:
            self.stop_kind = why
        return self._do(self.sequence.force(now))

    def tick(self, now: float) -> str | None:
        """Escalate when its time has come; note descendants while they can be found."""
        self.remember_descendants()
        return self._do(self.sequence.due(now))

    def deadline(self) -> float | None:
        return self.sequence.deadline()

    def _do(self, action: str | None) -> str | None:
        if action == INTERRUPT:
            self.remember_descendants()
            if self.popen is not None and self.popen.stdin is not None:
                self._ask_runner()
            elif IS_WINDOWS:
                send_signal(self.pid, getattr(signal, "CTRL_BREAK_EVENT", signal.SIGINT))
            else:
                signal_group(self.pid, signal.SIGINT)
        elif action == TERMINATE:
            self._escalate(signal.SIGTERM)
        elif action == KILL:
            self._escalate(getattr(signal, "SIGKILL", signal.SIGTERM))
        return action

    def _ask_runner(self) -> None:
        """The runner (runner.py) turns this line into Ctrl-C inside mlagents-learn."""
        assert self.popen is not None and self.popen.stdin is not None
        with contextlib.suppress(OSError, ValueError):
            self.popen.stdin.write(b"stop\n")
            self.popen.stdin.flush()

    def _escalate(self, signum: int) -> None:
        self.remember_descendants()
        if not IS_WINDOWS:
            signal_group(self.pid, signum)
        send_signal(self.pid, signum)
        for process in list(self.known.values()):
            with contextlib.suppress(psutil.Error):
                if process.is_running():
                    process.send_signal(signum)

    # -- after its end ----------------------------------------------------------
    def record_exit(self, code: int | None) -> None:
        """Write how the trainer ended into the queue, durably, then let go of the run's lock."""
        try:
            if self.run.exit_file:
                record = {
                    "run_id": self.run.run_id,
                    "attempt": self.run.attempt,
                    "pid": self.pid,
                    "exit_code": code,
                    "stop": self.stop_kind,
                    "time": time.time(),
                }
                with contextlib.suppress(OSError):
                    write_atomic(Path(self.run.exit_file), json.dumps(record))
        finally:
            if self.lock_fd is not None:
                os.close(self.lock_fd)
                self.lock_fd = None

    def remember_descendants(self) -> None:
        """Note every descendant now, while they can still be found from the trainer."""
        if not has_children(self.pid):
            return
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.pid).children(recursive=True):
                self.known.setdefault(child.pid, child)

    def leftovers(self, adopter: int) -> list[psutil.Process]:
        """Processes of the run still alive after the trainer itself has exited.

        Those remembered while the trainer ran, plus what `adopter` adopted: as a subreaper
        it inherits every orphan the trainer left.
        """
        alive: dict[int, psutil.Process] = {}
        if has_children(adopter):
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(adopter).children(recursive=True):
                    self.known.setdefault(child.pid, child)
        for process in self.known.values():
            with contextlib.suppress(psutil.Error):
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    alive[process.pid] = process
        alive.pop(self.pid, None)
        return list(alive.values())

    def clean_up(self, adopter: int) -> int:
        """End whatever the run left behind (SIGTERM, then SIGKILL); returns how many."""
        left = self.leftovers(adopter)
        for process in left:
            with contextlib.suppress(psutil.Error):
                process.terminate()
        _, alive = psutil.wait_procs(left, timeout=TERM_GRACE)
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(alive, timeout=TERM_GRACE)
        return len(left)


def signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def send_signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        os.kill(pid, signum)


def has_children(pid: int) -> bool:
    """Cheaply, from /proc: whether `pid` has any child (psutil scans every process)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as children:
                if children.read().strip():
                    return True
        except OSError:
            return True
    return False


def open_log(path: Path, header: str) -> IO[bytes]:
    log = open(path, "ab")  # noqa: SIM115 - the trainer writes to it for the whole run
    log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {header} =====\n".encode())
    log.flush()
    return log
