"""A trainer process, and the one way it is stopped: SIGINT, then SIGTERM, then SIGKILL.

mlagents-learn saves a checkpoint and exits 0 on its first SIGINT, and has no SIGTERM
handler; interrupted again while saving, it aborts and can hang. So a stop is one SIGINT;
`grace` seconds later SIGTERM to the group and every descendant known; TERM_GRACE seconds
later SIGKILL to them all. `StopSequence` is that schedule, and `Trainer` carries it out for
whoever started the process: its launcher's supervisor (supervisor.py).
"""

from __future__ import annotations

import contextlib
import json
import ntpath
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO

import psutil

from ..queue.files import write_atomic
from ..queue.outcome import StopBy
from ..queue.ownership import Renewal

IS_WINDOWS = sys.platform == "win32"
TERM_GRACE = 5.0
CONSOLE_HOSTS = frozenset({"conhost.exe", "openconsole.exe"})
# A runner (runner.py) carries out its own stop sequence: grace, then TERM_GRACE to its kill
# step. Its supervisor's sequence waits that long and this much more, so that it only ever
# ends a runner that could not end itself, and the two never race.
RUNNER_MARGIN = 10.0


def backstop_grace(grace: float) -> float:
    """The grace of a runner's supervisor, whose own grace is `grace`."""
    return grace + TERM_GRACE + RUNNER_MARGIN


class Step(Enum):
    """A step of the stop sequence."""

    INTERRUPT = "interrupt"
    TERMINATE = "terminate"
    KILL = "kill"


@dataclass
class StopSequence:
    """When to interrupt, terminate and kill: asked once, escalated on a clock."""

    grace: float
    term_grace: float = TERM_GRACE
    asked_at: float | None = None
    terminated_at: float | None = None
    killed_at: float | None = None

    def ask(self, now: float) -> Step | None:
        """A stop request: INTERRUPT the first time, nothing after."""
        if self.asked_at is not None:
            return None
        self.asked_at = now
        return Step.INTERRUPT

    def force(self, now: float) -> Step | None:
        """A second Ctrl-C: KILL now, once."""
        if self.killed_at is not None:
            return None
        self.asked_at = self.asked_at if self.asked_at is not None else now
        self.killed_at = now
        return Step.KILL

    def due(self, now: float) -> Step | None:
        """The escalation whose time has come, if any (each is given once)."""
        if self.asked_at is None or self.killed_at is not None:
            return None
        if self.terminated_at is None:
            if now >= self.asked_at + self.grace:
                self.terminated_at = now
                return Step.TERMINATE
            return None
        if now >= self.terminated_at + self.term_grace:
            self.killed_at = now
            return Step.KILL
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
        popen: subprocess.Popen[bytes] | None = None,
        renewal: Renewal | None = None,
    ) -> None:
        self.popen = popen  # None when this process did not start it (see worker._stop_orphan)
        self.pid = pid
        self.run = run
        self.sequence = StopSequence(grace)
        self.stop_kind: StopBy | None = None
        # The run's lease, renewed by whoever supervises the trainer for as long as it lives.
        self.renewal = renewal
        self.fenced: str | None = None  # why the claim was lost, when it was
        self.known: dict[int, psutil.Process] = {}

    # -- stopping ---------------------------------------------------------------
    def stop(self, why: StopBy, now: float) -> Step | None:
        """Ask the trainer to stop (once); returns the action taken, for the log."""
        if self.stop_kind is None:
            self.stop_kind = why
        return self._do(self.sequence.ask(now))

    def kill(self, why: StopBy, now: float) -> Step | None:
        if self.stop_kind is None:
            self.stop_kind = why
        return self._do(self.sequence.force(now))

    def tick(self, now: float) -> Step | None:
        """Escalate when its time has come; note descendants while they can be found."""
        self.remember_descendants()
        return self._do(self.sequence.due(now))

    def keep_lease(self) -> str | None:
        """Renew the run's lease when due; a lost claim kills the trainer at once, without a
        save, which would overwrite the new owner's checkpoint. Why it was lost, if it was."""
        if self.renewal is None or self.fenced is not None:
            return None
        lost = self.renewal.tick() if self.renewal.clock() >= self.renewal.due() else None
        if lost is not None:
            self.fenced = lost
            self.stop_kind = StopBy.FENCED
            self._do(self.sequence.force(time.monotonic()))
        return lost

    def deadline(self) -> float | None:
        """When `tick` or `keep_lease` next has something to do (on the monotonic clock)."""
        deadlines = [d for d in (self.sequence.deadline(),) if d is not None]
        if self.renewal is not None and self.fenced is None:
            deadlines.append(time.monotonic() + max(0.0, self.renewal.due() - self.renewal.clock()))
        return min(deadlines, default=None)

    def _do(self, step: Step | None) -> Step | None:
        if step is Step.INTERRUPT:
            self.remember_descendants()
            if self.popen is not None and self.popen.stdin is not None:
                self._ask_runner()
            else:
                interrupt_group(self.pid)
        elif step is Step.TERMINATE:
            self._escalate(signal.SIGTERM)
        elif step is Step.KILL:
            self._escalate(getattr(signal, "SIGKILL", signal.SIGTERM))
        return step

    def _ask_runner(self) -> None:
        """The runner (runner.py) turns this line into Ctrl-C inside mlagents-learn."""
        assert self.popen is not None and self.popen.stdin is not None
        with contextlib.suppress(OSError, ValueError):
            self.popen.stdin.write(b"stop\n")
            self.popen.stdin.flush()

    def _escalate(self, signum: int) -> None:
        self.remember_descendants()
        signal_group(self.pid, signum)
        send_signal(self.pid, signum)
        for process in list(self.known.values()):
            with contextlib.suppress(psutil.Error):
                if process.is_running():
                    process.send_signal(signum)

    # -- after its end ----------------------------------------------------------
    def record_exit(self, code: int | None) -> None:
        """Write how the trainer ended into the queue, durably, unless the claim was lost
        (under its own generation: a late write never reaches the new owner's record)."""
        if not self.run.exit_file or self.fenced is not None:
            return
        if self.renewal is not None and self.renewal.hold.fenced():
            self.fenced = "another worker took the run over"
            return
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
        if self.renewal is not None:
            self.renewal.end()

    def remember_descendants(self) -> None:
        """Note every descendant now, while they can still be found from the trainer."""
        if not has_children(self.pid):
            return
        for child in descendants(self.pid):
            self.known.setdefault(child.pid, child)

    def leftovers(self, adopter: int) -> list[psutil.Process]:
        """Processes of the run still alive after the trainer itself has exited.

        Those remembered while the trainer ran, plus what `adopter` adopted: as a subreaper
        it inherits every orphan the trainer left.
        """
        alive: dict[int, psutil.Process] = {}
        if has_children(adopter):
            for child in descendants(adopter):
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


def descendants(pid: int | None = None) -> list[psutil.Process]:
    """Every process below `pid` (this process by default), but a Windows console host.

    Windows starts a console host (conhost.exe) as a child of a process given a console of
    its own, as a runner is: ending it would end every process attached to that console.
    """
    try:
        found = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    return [process for process in found if not is_console_host(process)]


def is_console_host(process: psutil.Process) -> bool:
    if not IS_WINDOWS:
        return False
    try:
        name = process.name()
    except (psutil.Error, OSError):  # Wine's conhost.exe has no image name to query
        try:
            command = process.cmdline()
        except (psutil.Error, OSError):
            return False
        name = ntpath.basename(command[0]) if command else ""
    return name.lower() in CONSOLE_HOSTS


def interrupt_group(pid: int) -> None:
    """The stop's one interrupt, to the process group `pid` leads: SIGINT on POSIX; on
    Windows CTRL_BREAK, the console event that reaches a process group."""
    if IS_WINDOWS:
        send_signal(pid, getattr(signal, "CTRL_BREAK_EVENT", signal.SIGINT))
    else:
        signal_group(pid, signal.SIGINT)


def signal_group(pid: int, signum: int) -> None:
    """`signum` to the process group `pid` leads (POSIX); Windows has no group signals, so
    there the leader and its known descendants are signalled one by one."""
    if IS_WINDOWS:
        return
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
