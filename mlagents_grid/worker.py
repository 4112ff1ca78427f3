"""A worker: claims one run at a time from the queue and supervises its trainer.

Started N times, on one host or several sharing the queue folder; the job locks keep any
two of them from ever running the same run at once.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

from .errors import GridError
from .launcher import Launcher
from .output import say
from .queue import (
    DONE,
    FAILED,
    INTERRUPTED,
    PENDING,
    RUNNING,
    STOPPED,
    Claim,
    Queue,
    host_name,
    worker_identity,
)
from .slurm import slurm_label
from .trainer import TERM_GRACE, Trainer, open_log
from .watch import POLL_INTERVAL, FolderWatch

# How ML-Agents says that its port is taken: retried on another slot, not a failure.
PORT_IN_USE = ("is still in use", "Address already in use")
PERIODIC_CHECK = 5.0
IDLE_RECHECK = 30.0
MAX_SLOT_MOVES = 32
LOG_TAIL_LINES = 20


@dataclass
class WorkerOptions:
    trainer: list[str]
    wait: bool = False
    max_attempts: int = 3
    grace: float = 60.0
    gpus: list[str] = field(default_factory=list)
    console: bool = False
    polling: bool | None = None


def trainer_command(given: str | None) -> list[str]:
    """--trainer, else $GRID_TRAINER, else mlagents-learn; checked before any job is taken."""
    text = given or os.environ.get("GRID_TRAINER") or "mlagents-learn"
    try:
        command = shlex.split(text)
    except ValueError as exc:
        raise GridError(f"--trainer {text!r}: cannot split it into words ({exc})") from None
    if not command:
        raise GridError("--trainer is empty; give a command such as mlagents-learn")
    found = shutil.which(command[0])
    if found is None:
        raise GridError(
            f"--trainer: {command[0]!r} not found; install ML-Agents (pip install mlagents) "
            "or pass --trainer with the command to run"
        )
    # Resolved once: every start then skips the search through $PATH.
    return [found, *command[1:]]


@dataclass
class _Outcome:
    exit_code: int | None
    stop_reason: str | None = None
    interrupted: bool = False


class Worker:
    def __init__(self, queue: Queue, options: WorkerOptions) -> None:
        self.queue = queue
        self.options = options
        self.identity = worker_identity()
        self.host = host_name()
        self.wake = threading.Event()
        self.signals: list[int] = []
        self.slot = 0
        self.slot_lock: FileLock | None = None
        self.slurm = slurm_label()

    # -- lifecycle --------------------------------------------------------------
    def run(self) -> int:
        # First, while this process has one thread and no lock (launcher.py says why).
        self.launcher = Launcher()
        try:
            return self._work()
        finally:
            self.launcher.close()

    def _work(self) -> int:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)
        self.slot, self.slot_lock = self.queue.take_slot(self.host)
        self.queue.record("worker-started", worker=self.identity, slot=self.slot, slurm=self.slurm)
        where = f", {self.slurm}" if self.slurm else ""
        say(f"worker {self.identity} started on slot {self.slot} (port {self.port}{where})")
        # Kill files stop runs; with --wait, state changes may make a run claimable.
        folders = [self.queue.kill_dir]
        if self.options.wait:
            folders += [self.queue.root / "state", self.queue.root / "final"]
        reported: set[str] = set()
        with FolderWatch(folders, lambda _path: self.wake.set(), self.options.polling) as watch:
            if watch.polling:
                say(f"watching {self.queue.root} by polling every {POLL_INTERVAL:g}s")
            while not self.signals:
                claim = self.queue.claim(self.identity)
                for run_id, problem in self.queue.problems.items():
                    if run_id not in reported:
                        reported.add(run_id)
                        say(f"{run_id} skipped: {problem}")
                if claim is not None:
                    try:
                        self._run(claim)
                    except OSError as exc:
                        say(
                            f"cannot write to the queue {self.queue.root} ({exc}); this worker "
                            "stops and the run stays resumable"
                        )
                        return 1
                    continue
                if not self.options.wait or self.queue.all_final():
                    break
                self.queue.await_releases(self.queue.running(), self.wake)
                self.wake.wait(IDLE_RECHECK)
                self.wake.clear()
        self.queue.record("worker-exited", worker=self.identity, slot=self.slot)
        if self.signals:
            say(f"worker {self.identity} interrupted")
            return 128 + self.signals[0]
        say(f"worker {self.identity}: no run left to claim, exiting")
        return 0

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.signals.append(signum)
        self.wake.set()

    @property
    def port(self) -> int:
        return self.queue.port_for(self.slot)

    # -- one run ----------------------------------------------------------------
    def _mode(self, run_id: str) -> str | None:
        """--resume when every behavior has a checkpoint, --force over partial results."""
        results = self.queue.run_results(run_id)
        if results.is_dir():
            folders = self.queue.sweep.behavior_folders
            if folders and all((results / f / "checkpoint.pt").is_file() for f in folders):
                return "--resume"
            return "--force"
        return "--force" if self.queue.sweep.force else None

    def _command(self, config: Path, run_id: str, mode: str | None) -> list[str]:
        sweep = self.queue.sweep
        command = [
            *self.options.trainer,
            str(config.absolute()),
            "--run-id",
            run_id,
            "--results-dir",
            sweep.results_dir,
            "--base-port",
            str(self.port),
        ]
        if mode:
            command.append(mode)
        command += sweep.trainer_args
        if self.options.gpus:
            device = self.options.gpus[self.slot % len(self.options.gpus)]
            command += ["--torch-device", f"cuda:{device}"]
        return command

    def _run(self, claim: Claim) -> None:
        run_id = claim.job.run_id
        try:
            for _ in range(MAX_SLOT_MOVES):
                outcome, log_text = self._attempt(claim)
                if outcome.exit_code == 0 or outcome.stop_reason or outcome.interrupted:
                    break
                if not any(marker in log_text for marker in PORT_IN_USE):
                    break
                claim.state.attempts -= 1
                self._move_slot(run_id)
            self._record_outcome(claim, outcome, log_text)
        finally:
            claim.release()

    def _move_slot(self, run_id: str) -> None:
        old_port, old_lock = self.port, self.slot_lock
        self.slot, self.slot_lock = self.queue.take_slot(self.host, start=self.slot + 1)
        if old_lock is not None:
            old_lock.release()
        self.queue.record("port-in-use", run_id, worker=self.identity, port=old_port)
        say(f"{run_id}: port {old_port} in use, retrying on port {self.port}")

    def _attempt(self, claim: Claim) -> tuple[_Outcome, str]:
        run_id = claim.job.run_id
        attempt = claim.state.attempts + 1
        mode = self._mode(run_id)
        config = self.queue.write_config(claim.job)
        command = self._command(config, run_id, mode)
        log_path = self.queue.log_file(run_id)
        offset = log_path.stat().st_size if log_path.exists() else 0
        log = open_log(
            log_path,
            f"attempt {attempt} by {self.identity} on port {self.port}: {shlex.join(command)}",
        )
        started = time.time()
        inherited = os.dup(claim.lock_fd)
        try:
            trainer = Trainer(
                self.launcher,
                command,
                cwd=self.queue.sweep.cwd,
                log=log,
                inherit_fd=inherited,
                wake=self.wake,
                echo=self._echo(run_id) if self.options.console else None,
            )
        except OSError as exc:
            log.write(f"cannot start the trainer: {exc}\n".encode())
            log.close()
            claim.state.attempts = attempt
            return _Outcome(exit_code=127), str(exc)
        finally:
            os.close(inherited)
        # Recorded once the trainer exists: a worker dying before this leaves the run pending
        # with its lock held by the trainer, which the next claim waits out.
        self.queue.save(
            claim,
            status=RUNNING,
            attempts=attempt,
            worker=self.identity,
            pid=trainer.pid,
            port=self.port,
            started=started,
            ended=None,
            exit_code=None,
            mode=mode,
            slurm=self.slurm,
        )
        resuming = ", resuming from its checkpoint" if mode == "--resume" else ""
        self.queue.record(
            "started",
            run_id,
            worker=self.identity,
            pid=trainer.pid,
            port=self.port,
            attempt=attempt,
            mode=mode,
        )
        say(f"{run_id} started on port {self.port} (attempt {attempt}{resuming})")
        outcome = self._supervise(trainer, run_id)
        left = trainer.clean_up()
        if left:
            say(f"{run_id}: ended {left} leftover process(es) of the trainer")
        log.close()
        return outcome, _read_from(log_path, offset)

    def _echo(self, run_id: str) -> Callable[[bytes], None]:
        def echo(line: bytes) -> None:
            sys.stdout.write(f"{run_id} | {line.decode(errors='replace')}")
            sys.stdout.flush()

        return echo

    def _supervise(self, trainer: Trainer, run_id: str) -> _Outcome:
        """Wait for the trainer; on a kill file or a signal, SIGINT then escalate."""
        reason: str | None = None
        interrupted_at = terminated_at = killed_at = None
        while True:
            now = time.monotonic()
            deadlines = [now + PERIODIC_CHECK]
            if interrupted_at is not None and terminated_at is None:
                deadlines.append(interrupted_at + self.options.grace)
            if terminated_at is not None and killed_at is None:
                deadlines.append(terminated_at + TERM_GRACE)
            self.wake.wait(max(0.0, min(deadlines) - now))
            self.wake.clear()
            if trainer.exited.is_set():
                break
            trainer.remember_descendants()
            now = time.monotonic()
            if len(self.signals) >= 2 and killed_at is None:
                say(f"{run_id}: second interrupt, killing the trainer now")
                trainer.kill()
                killed_at = now
            elif interrupted_at is None:
                reason = self.queue.kill_reason(run_id)
                if reason is not None or self.signals:
                    why = reason or f"worker got {signal.Signals(self.signals[0]).name}"
                    say(f"{run_id}: stopping ({why}), SIGINT sent; saving its model")
                    trainer.interrupt()
                    interrupted_at = now
            elif terminated_at is None and now >= interrupted_at + self.options.grace:
                say(f"{run_id}: still running {self.options.grace:g}s after SIGINT, SIGTERM")
                trainer.terminate()
                terminated_at = now
            elif (
                terminated_at is not None
                and killed_at is None
                and now >= terminated_at + TERM_GRACE
            ):
                trainer.kill()
                killed_at = now
        return _Outcome(
            exit_code=trainer.returncode,
            stop_reason=reason,
            interrupted=reason is None and bool(self.signals),
        )

    def _record_outcome(self, claim: Claim, outcome: _Outcome, log_text: str) -> None:
        run_id = claim.job.run_id
        tail = log_text.splitlines()[-LOG_TAIL_LINES:]
        common = {"worker": self.identity, "exit_code": outcome.exit_code}
        if outcome.stop_reason is not None:
            self.queue.finish(claim, STOPPED, stop_reason=outcome.stop_reason, **common)
            self.queue.record("stopped", run_id, reason=outcome.stop_reason, **common)
            say(f"{run_id} stopped: {outcome.stop_reason}")
        elif outcome.interrupted:
            self.queue.save(claim, status=INTERRUPTED, ended=time.time(), **common)
            self.queue.record("interrupted", run_id, **common)
            say(f"{run_id} interrupted; the next worker resumes it")
        elif outcome.exit_code == 0:
            self.queue.finish(claim, DONE, **common)
            self.queue.record("done", run_id, **common)
            say(f"{run_id} done")
        else:
            failures = claim.state.failures + 1
            if failures >= self.options.max_attempts:
                self.queue.finish(claim, FAILED, failures=failures, log_tail=tail, **common)
                self.queue.record("failed", run_id, attempt=claim.state.attempts, **common)
                say(
                    f"{run_id} failed (exit code {outcome.exit_code}, {failures} attempts); "
                    f"see {self.queue.log_file(run_id)}"
                )
            else:
                self.queue.save(
                    claim,
                    status=PENDING,
                    failures=failures,
                    log_tail=tail,
                    ended=time.time(),
                    **common,
                )
                self.queue.record("attempt-failed", run_id, attempt=claim.state.attempts, **common)
                say(
                    f"{run_id} exited with code {outcome.exit_code} "
                    f"(failure {failures} of {self.options.max_attempts}); it will be retried"
                )


def _read_from(path: Path, offset: int, limit: int = 256_000) -> str:
    """This attempt's part of the log (its last `limit` bytes)."""
    try:
        with open(path, "rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(offset, size - limit))
            return log.read().decode(errors="replace")
    except OSError:
        return ""
