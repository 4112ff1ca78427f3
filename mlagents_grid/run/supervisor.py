"""What every launcher shares: the trainers it started (`Supervisor`), and the worker's view
of each (`TrainerHandle`). Where the supervisor runs, and how it starts a
trainer's process, is each platform's (launcher.py chooses): a forked process on POSIX
(launch_posix.py), a thread of the worker on Windows (launch_windows.py).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..output import say
from ..queue.outcome import StopBy
from ..queue.ownership import ClaimFolder, Hold, Owner, Process, Renewal
from .trainer import RunInfo, Step, Trainer

# How often the supervisor notes a running trainer's descendants (found later as orphans).
REMEMBER_EVERY = 5.0


class PopenOptions(Protocol):
    """The launcher's platform: how a trainer's process is started."""

    def __call__(self, new_console: bool, runner: bool, /) -> dict[str, Any]: ...


@dataclass
class TrainerHandle:
    """The worker's view of a trainer it asked the launcher for."""

    pid: int
    on_end: Callable[[], None]
    returncode: int | None = None
    ended: bool = False
    lost: bool = False  # the launcher died: the exit code is unknown
    leftovers: int = 0
    fenced: str | None = None  # the claim was lost: killed without a save, nothing to record

    def end(
        self, code: int | None, leftovers: int = 0, lost: bool = False, fenced: str | None = None
    ) -> None:
        self.returncode, self.leftovers, self.lost, self.fenced = code, leftovers, lost, fenced
        self.ended = True
        self.on_end()


class Supervisor:
    """The trainers one worker started: start, stop, escalate, reap and record each."""

    def __init__(self, popen_options: PopenOptions) -> None:
        self.popen_options = popen_options
        self.trainers: dict[int, Trainer] = {}
        self.wake_at: float | None = None  # one more time to wake at (launch_posix.ORPHAN_SETTLE)

    def start(self, request: dict[str, Any], stdout: int) -> Trainer:
        options = self.popen_options(bool(request["new_console"]), bool(request.get("runner")))
        popen = subprocess.Popen(
            list(request["argv"]),
            cwd=request["cwd"],
            # The runner's stdin is its stop channel (and its end is a stop): a pipe kept here.
            stdin=subprocess.PIPE if request.get("runner") else subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            **options,
        )
        run = RunInfo(str(request["run_id"]), int(request["attempt"]), request.get("exit_file"))
        renewal = _renewal(request.get("claim"), popen.pid)
        trainer = Trainer(popen.pid, run, float(request["grace"]), popen, renewal)
        self.trainers[popen.pid] = trainer
        if renewal is not None:
            # The first beat names the trainer: its life alone now keeps the run held here.
            renewal.tick()
        return trainer

    def keep_leases(self) -> None:
        for trainer in self.trainers.values():
            lost = trainer.keep_lease()
            if lost is not None:
                say(
                    f"{trainer.run.run_id}: the claim is lost ({lost}); its trainer was killed "
                    "without a save"
                )

    def stop(self, pid: int, why: StopBy) -> None:
        trainer = self.trainers.get(pid)
        if trainer is not None:
            trainer.stop(why, time.monotonic())

    def kill(self, pid: int, why: StopBy) -> None:
        trainer = self.trainers.get(pid)
        if trainer is not None:
            trainer.kill(why, time.monotonic())

    def stop_all(self, why: StopBy) -> None:
        for pid in list(self.trainers):
            self.stop(pid, why)

    def tick(self) -> None:
        now = time.monotonic()
        for trainer in self.trainers.values():
            step = trainer.tick(now)
            if step is Step.TERMINATE:
                say(
                    f"{trainer.run.run_id}: still running {trainer.sequence.grace:g}s after "
                    "SIGINT, SIGTERM sent"
                )
            elif step is Step.KILL and trainer.sequence.terminated_at is not None:
                say(f"{trainer.run.run_id}: still running after SIGTERM, SIGKILL sent")

    def timeout(self) -> float:
        """Seconds until the next escalation, lease renewal or descendant check."""
        now = time.monotonic()
        deadlines = [d for t in self.trainers.values() if (d := t.deadline()) is not None]
        if self.wake_at is not None and self.wake_at > now:
            deadlines.append(self.wake_at)
        return max(0.0, min([now + REMEMBER_EVERY, *deadlines]) - now)

    def ended(self, pid: int, code: int | None, adopter: int) -> tuple[Trainer, int] | None:
        """Record a trainer's end (before anyone may take its run over) and end its leftovers."""
        trainer = self.trainers.pop(pid, None)
        if trainer is None:
            return None  # an orphan a trainer left, adopted and now reaped
        trainer.record_exit(code)
        left = trainer.clean_up(adopter)
        if left:
            say(f"{trainer.run.run_id}: ended {left} leftover process(es) of the trainer")
        return trainer, left


def _renewal(claim: Any, trainer_pid: int) -> Renewal | None:
    """The lease of the run a trainer trains, as the worker's start request describes it."""
    if not isinstance(claim, dict):
        return None
    owner = Owner.from_json(str(claim.get("owner")))
    if owner is None:
        return None
    hold = Hold(ClaimFolder(Path(str(claim["folder"])), owner.name), owner)
    return Renewal(hold, trainer=Process.of(trainer_pid))
