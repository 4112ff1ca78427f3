"""A worker: claims one run at a time from the queue and supervises its trainer.

Started N times, on one host or several sharing the queue folder; claims (ownership.py)
keep any two of them from ever running the same run at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
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
from typing import IO

import psutil

from ..errors import GridError
from ..output import say
from ..queue import transitions
from ..queue.claims import Claimer
from ..queue.folder import Claim, Queue
from ..queue.job import DONE, FAILED, FINAL, INTERRUPTED, PAUSED, RUNNING, STOPPED, Event
from ..queue.outcome import Outcome, StopBy, decide
from ..queue.ownership import Claims, Hold, Identity
from ..wakeup import Wakeup, catch_stop_signals
from .launcher import start_launcher
from .slurm import slurm_label
from .supervisor import TrainerHandle
from .trainer import IS_WINDOWS, RunInfo, Trainer, backstop_grace, open_log
from .watch import POLL_INTERVAL, FolderWatch

# How ML-Agents says that its port is taken: retried on another slot, not a failure.
PORT_IN_USE = ("is still in use", "Address already in use")
PERIODIC_CHECK = 5.0
IDLE_RECHECK = 30.0
HELD_RECHECK = 1.0
MAX_SLOT_MOVES = 32
LOG_TAIL_LINES = 20
# Start errors in a row (the same for every run: a missing trainer, a full disk) that stop
# a worker before it wastes the queue's attempts.
MAX_START_ERRORS = 3
ORPHAN_POLL = 0.1
# How soon a worker tries again runs it skipped because their files were held open.
BUSY_RECHECK = 1.0
# Set to 1 to start mlagents-learn through runner.py on any platform (always on Windows).
RUNNER_ENV = "GRID_RUNNER"


@dataclass
class WorkerOptions:
    trainer: list[str]
    wait: bool = False
    grace: float = 60.0
    gpus: list[str] = field(default_factory=list)
    console: bool = False
    polling: bool | None = None
    # Windows: mlagents-learn runs inside runner.py, which a pipe stops (see runner.py).
    runner: bool = False


def uses_runner(given: str | None) -> bool:
    """Windows, and the default trainer: mlagents-learn runs in-process in runner.py.

    There no signal can make mlagents-learn save its model (it has no CTRL_BREAK handler,
    and console events never arrive under Wine); the runner turns a line on a pipe into its
    Ctrl-C instead. It needs mlagents in this Python environment.
    """
    if given or os.environ.get("GRID_TRAINER"):
        return False
    if not (IS_WINDOWS or os.environ.get(RUNNER_ENV) == "1"):
        return False
    return importlib.util.find_spec("mlagents") is not None


def runner_prefix(grace: float, run_id: str) -> list[str]:
    """The runner's own arguments, before mlagents-learn's."""
    return [
        sys.executable,
        "-m",
        "mlagents_grid.run.runner",
        "--grace",
        f"{grace:g}",
        "--title",
        run_id,
        "--",
    ]


def trainer_command(given: str | None) -> list[str]:
    """--trainer, else $GRID_TRAINER, else mlagents-learn; checked before any job is taken."""
    if uses_runner(given):
        return []  # runner_prefix, per run
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


def resume_mode(queue: Queue, run_id: str) -> str | None:
    """--resume when every behavior has a checkpoint, --force over partial results."""
    results = queue.run_results(run_id)
    if results.is_dir():
        folders = queue.sweep.behavior_folders
        if folders and all((results / f / "checkpoint.pt").is_file() for f in folders):
            return "--resume"
        return "--force"
    return "--force" if queue.sweep.force else None


def trainer_argv(
    trainer: list[str],
    queue: Queue,
    run_id: str,
    port: int,
    mode: str | None,
    device: str | None = None,
) -> list[str]:
    """The command a worker runs for an attempt of `run_id` on `port`."""
    sweep = queue.sweep
    command = [
        *trainer,
        str(queue.paths.config_file(run_id).absolute()),
        "--run-id",
        run_id,
        "--results-dir",
        sweep.results_dir,
        "--base-port",
        str(port),
    ]
    if mode:
        command.append(mode)
    command += sweep.trainer_args
    if device is not None:
        command += ["--torch-device", f"cuda:{device}"]
    return command


class StartError(Exception):
    """The trainer could not be started: the worker's trouble, never the run's."""


class LauncherLost(Exception):
    """The launcher died under a running trainer: this worker can start no more trainers."""


class Worker:
    def __init__(self, queue: Queue, options: WorkerOptions) -> None:
        self.queue = queue
        self.options = options
        self.wake = Wakeup()
        self.signals: list[int] = []
        self.slot = 0
        self.slot_hold: Hold | None = None
        self.slurm = slurm_label()
        self._shown: set[str] = set()  # runs this worker has shown in the HParams dashboard

    # -- lifecycle --------------------------------------------------------------
    def run(self) -> int:
        # First, while this process has one thread and no lock (launch_posix.py says why).
        self.launcher = start_launcher()
        self.claims = Claims(Identity.this(self.launcher.pid, self.slurm), self.queue.sweep.lease)
        self.identity = self.claims.identity.by
        self.claimer = Claimer(self.queue, self.claims)
        try:
            return self._work()
        finally:
            if self.slot_hold is not None:
                self.slot_hold.release()
            self.launcher.close()

    def _work(self) -> int:
        catch_stop_signals(self._on_signal, self.wake)
        self.slot, self.slot_hold = self.queue.take_slot(self.claims)
        self.queue.record(
            Event.WORKER_STARTED, worker=self.identity, slot=self.slot, slurm=self.slurm
        )
        where = f", {self.slurm}" if self.slurm else ""
        say(f"worker {self.identity} started on slot {self.slot} (port {self.port}{where})")
        # Kill files stop runs; with --wait, state changes may make a run claimable.
        paths = self.queue.paths
        rungs = self.queue.sweep.rung_plan is not None
        folders = [paths.kill_dir]
        if self.options.wait or rungs:
            folders += [paths.state_dir, paths.final_dir, paths.exit_dir]
        if rungs:
            # Pause requests stop the trainer; rung decisions make paused runs claimable.
            folders += [paths.pause_dir, paths.rungs_dir]
        waiting_said = False
        reported: set[str] = set()
        start_errors: list[str] = []
        code: int | None = None
        # An extension that a crash left half-applied is finished before claiming.
        self.queue.finish_left_extension(self.claims)
        with contextlib.ExitStack() as stack:
            watch = stack.enter_context(
                FolderWatch(folders, lambda _path: self.wake.set(), self.options.polling)
            )
            if self.options.wait:
                # grid-plan --extend publishes new runs by replacing sweep.json.
                sweep_file = os.fsdecode(paths.sweep_file.absolute())
                stack.enter_context(
                    FolderWatch(
                        [paths.root],
                        lambda path: self._on_root_change(path, sweep_file),
                        watch.polling,
                    )
                )
            if watch.polling:
                say(f"watching {self.queue.root} by polling every {POLL_INTERVAL:g}s")
            while not self.signals:
                try:
                    claim = self.claimer.next()
                except OSError as exc:
                    return self._cannot_write(exc, "every run stays as it was")
                for note in self.claimer.notes:
                    say(note)
                self.claimer.notes.clear()
                for run_id, problem in self.claimer.problems.items():
                    if run_id not in reported:
                        reported.add(run_id)
                        say(f"{run_id} skipped: {problem}")
                if claim is not None:
                    try:
                        self._run(claim)
                        start_errors.clear()
                    except StartError as exc:
                        start_errors.append(str(exc))
                        if len(start_errors) >= MAX_START_ERRORS:
                            say(
                                f"worker {self.identity} stops: {len(start_errors)} trainers in "
                                f"a row could not start ({exc}); every run stays as it was"
                            )
                            code = 1
                            break
                    except LauncherLost as exc:
                        say(f"worker {self.identity} stops: {exc}; its run stays resumable")
                        code = 1
                        break
                    except OSError as exc:
                        return self._cannot_write(exc, "the run stays resumable")
                    continue
                if self.claimer.busy:
                    self.wake.wait(BUSY_RECHECK)  # files held open for now: try them again
                    continue
                if not self.options.wait and not (rungs and self._rung_work_left()):
                    break
                if self.options.wait and self.queue.all_final():
                    break
                if rungs and not waiting_said:
                    waiting_said = True
                    say(
                        f"worker {self.identity}: no run to claim now; waiting for runs to "
                        "reach their rung and for grid-monitor to decide it"
                    )
                running = set(self.queue.recorded_running())
                held = running | self.claimer.held
                again = self.claimer.await_releases(
                    sorted(r for r in held if r not in self.claimer.problems), self.wake
                )
                if self.claimer.held - running:
                    # Held by a process that trains nothing (grid-monitor carrying out a rung,
                    # grid-retry, an orphaned launcher recording an exit): it lets go in a
                    # moment, with no file event, so look again soon.
                    again = min(again or HELD_RECHECK, HELD_RECHECK)
                self.wake.wait(IDLE_RECHECK if again is None else min(again, IDLE_RECHECK))
                self.queue.finish_left_extension(self.claims)
        self.queue.record(Event.WORKER_EXITED, worker=self.identity, slot=self.slot)
        if code is not None:
            return code
        if self.signals:
            say(f"worker {self.identity} interrupted")
            return 128 + self.signals[0]
        say(f"worker {self.identity}: no run left to claim, exiting")
        return 0

    def _cannot_write(self, exc: OSError, left: str) -> int:
        say(f"cannot write to the queue {self.queue.root} ({exc}); this worker stops and {left}")
        return 1

    def _on_root_change(self, path: str, sweep_file: str) -> None:
        if os.path.abspath(path) == sweep_file:
            self.wake.set()

    def _rung_work_left(self) -> bool:
        """With rungs, a worker stays while a run is pending, paused or running."""
        left = set(self.queue.sweep.run_ids) - set(self.queue.final_ids())
        return bool(left - set(self.claimer.problems))

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.signals.append(signum)
        self.wake.set()

    @property
    def port(self) -> int:
        return self.queue.port_for(self.slot)

    # -- one run ----------------------------------------------------------------
    def _run(self, claim: Claim) -> None:
        """Train a claimed run: attempts (moving port slot while its port is taken), then its
        end recorded; nothing more once another worker took the run over."""
        run_id = claim.job.run_id
        claim.hold.keep_alive(True)
        try:
            for _ in range(MAX_SLOT_MOVES):
                if claim.hold.fenced():
                    say(f"{run_id}: taken over by another worker before it started; left to it")
                    return
                outcome, log_text, lost = self._attempt(claim)
                if lost is not None:
                    # The launcher said why and how its trainer ended; nothing more is ours.
                    say(f"{run_id}: left to the worker that takes it over; nothing recorded here")
                    claim.hold.done = True
                    return
                if not _port_taken(outcome, log_text):
                    break
                # Not the run's failure: the next slot's attempt keeps the attempt's number.
                claim.state = dataclasses.replace(claim.state, attempts=claim.state.attempts - 1)
                self._move_slot(run_id)
            self._record(claim, outcome, log_text)
            if outcome.exit_code is None:
                raise LauncherLost("the trainer launcher died")
        finally:
            claim.release()

    def _move_slot(self, run_id: str) -> None:
        old_port, old_hold = self.port, self.slot_hold
        self.slot, self.slot_hold = self.queue.take_slot(self.claims, start=self.slot + 1)
        if old_hold is not None:
            old_hold.release()
        self.queue.record(Event.PORT_IN_USE, run_id, worker=self.identity, port=old_port)
        say(f"{run_id}: port {old_port} in use, retrying on port {self.port}")

    def _attempt(self, claim: Claim) -> tuple[Outcome, str, str | None]:
        """One attempt: the outcome, this attempt's log, and why the claim was lost (if so)."""
        run_id = claim.job.run_id
        attempt = claim.state.attempts + 1
        mode = resume_mode(self.queue, run_id)
        self.queue.write_config(claim.job)
        gpus = self.options.gpus
        device = gpus[self.slot % len(gpus)] if gpus else None
        trainer = self.options.trainer
        if self.options.runner:
            trainer = runner_prefix(self.options.grace, run_id)
        command = trainer_argv(trainer, self.queue, run_id, self.port, mode, device)
        log_path = self.queue.paths.log_file(run_id)
        offset = log_path.stat().st_size if log_path.exists() else 0
        log = open_log(
            log_path,
            f"attempt {attempt} by {self.identity} on port {self.port}: {shlex.join(command)}",
        )
        started = time.time()
        try:
            handle = self._start(claim, command, attempt, log)
        except StartError as exc:
            log.write(f"cannot start the trainer: {exc}\n".encode())
            log.close()
            self.queue.record(Event.START_FAILED, run_id, worker=self.identity, reason=str(exc))
            say(f"{run_id}: cannot start the trainer ({exc}); the run stays as it was")
            raise
        # From here the launcher renews the claim's lease for as long as the trainer lives.
        claim.hold.keep_alive(False)
        # Recorded once the trainer exists. A worker dying before this leaves the run held
        # by the trainer, and its exit record (attempt N) tells the next claimer.
        self._write(
            claim,
            transitions.started(
                claim.state,
                attempts=attempt,
                worker=self.identity,
                pid=handle.pid,
                port=self.port,
                started=started,
                ended=None,
                exit_code=None,
                mode=mode,
                slurm=self.slurm,
            ),
        )
        resuming = ", resuming from its checkpoint" if mode == "--resume" else ""
        say(f"{run_id} started on port {self.port} (attempt {attempt}{resuming})")
        rung = claim.state.rung + 1 if self.queue.sweep.rung_plan is not None else None
        outcome = self._supervise(handle, claim, rung)
        claim.hold.keep_alive(handle.fenced is None)
        self._show_in_dashboard(claim)  # a run too short to be shown while it trained
        log.close()
        return outcome, _read_from(log_path, offset), handle.fenced

    def _write(self, claim: Claim, change: transitions.Change) -> bool:
        """Record a change of the claimed run; once taken over, nothing is written (False)."""
        written = self.queue.ledger.write(claim.hold, change, claim.stale)
        if written:
            claim.stale = []
        claim.state = change.state
        return written

    def _keep_score(self, claim: Claim) -> None:
        """Keep the final run's score and show it in the dashboard (`final_score`), under its
        claim: later reports read no event file of it. A failure here is the report's to
        repair (it reads the event files then), never the run's."""
        from ..results.final_score import keep_final_score

        try:
            keep_final_score(self.queue, claim.job, claim.state)
        except (OSError, GridError, ImportError, ValueError) as exc:
            say(f"{claim.job.run_id}: score not kept ({exc}); grid-report reads it later")

    def _show_in_dashboard(self, claim: Claim) -> None:
        """The run's session in TensorBoard's HParams tab, so a live sweep shows there.

        Written once the trainer has made its results folder: made by us before, it would
        change the --resume/--force decision, and made while mlagents-learn starts, it would
        trip its "previous data" check. A failure here is the dashboard's, never the run's.
        """
        run_id = claim.job.run_id
        if run_id in self._shown or not self.queue.run_results(run_id).is_dir():
            return
        self._shown.add(run_id)
        from ..results import hparams

        try:
            hparams.write_session(self.queue, claim.job, RUNNING)
        except (OSError, GridError, ImportError) as exc:
            say(f"{run_id}: HParams dashboard not updated ({exc})")

    def _start(
        self, claim: Claim, command: list[str], attempt: int, log: IO[bytes]
    ) -> TrainerHandle:
        """Start the trainer through the launcher; its output goes to the log (and here too
        with --console)."""
        stdout = log.fileno()
        tee: threading.Thread | None = None
        if self.options.console and not IS_WINDOWS:
            # Started before the trainer, so that its end is heard only after its output.
            read_end, stdout = os.pipe()
            tee = threading.Thread(
                target=_tee,
                args=(os.fdopen(read_end, "rb"), log, self._echo(claim.job.run_id)),
                daemon=True,
            )
            tee.start()
        hold = claim.hold
        request = {
            "argv": command,
            "cwd": self.queue.sweep.cwd,
            "new_console": self.options.console and IS_WINDOWS,
            "runner": self.options.runner,
            # A runner escalates by itself; its supervisor's escalation is only a backstop.
            "grace": backstop_grace(self.options.grace)
            if self.options.runner
            else self.options.grace,
            "run_id": claim.job.run_id,
            "attempt": attempt,
            "exit_file": str(
                self.queue.paths.exit_file(claim.job.run_id, hold.generation).absolute()
            ),
            "claim": {"folder": str(hold.folder.path.absolute()), "owner": hold.owner.to_json()},
        }
        try:

            def on_end() -> None:
                if tee is not None:
                    tee.join(timeout=5)
                self.wake.set()

            return self.launcher.start(request, stdout, on_end)
        except OSError as exc:
            raise StartError(str(exc)) from None
        finally:
            if tee is not None:
                os.close(stdout)

    def _echo(self, run_id: str) -> Callable[[bytes], None]:
        def echo(line: bytes) -> None:
            sys.stdout.write(f"{run_id} | {line.decode(errors='replace')}")
            sys.stdout.flush()

        return echo

    def _supervise(self, handle: TrainerHandle, claim: Claim, rung: int | None = None) -> Outcome:
        """Wait for the trainer; on a kill file, a pause request for `rung` (the rung it trains
        towards) or a signal, have it stopped (one sequence)."""
        run_id = claim.job.run_id
        reason: str | None = None
        asked = killed = paused = False
        while not handle.ended:
            self.wake.wait(PERIODIC_CHECK)
            if handle.ended:
                break
            if len(self.signals) >= 2 and not killed:
                say(f"{run_id}: second interrupt, killing the trainer now")
                self.launcher.kill(handle.pid, StopBy.WORKER)
                killed = True
            elif not asked:
                reason = self.queue.kill_reason(run_id)
                if reason is not None or self.signals:
                    why = reason or f"worker got {signal.Signals(self.signals[0]).name}"
                    say(f"{run_id}: stopping ({why}), SIGINT sent; saving its model")
                    self.launcher.stop(handle.pid, StopBy.KILL_FILE if reason else StopBy.WORKER)
                    asked = True
                elif rung is not None and self.queue.pause_rung(run_id) == rung:
                    say(f"{run_id}: pausing at rung {rung}, SIGINT sent; saving its model")
                    self.launcher.stop(handle.pid, StopBy.PAUSE)
                    asked = paused = True
            if not asked:
                self._show_in_dashboard(claim)  # after the stop checks: never delays a stop
        if handle.lost:
            claim.hold.keep_alive(True)  # nobody else renews the lease now
            self._stop_orphan(handle.pid, run_id)
        if paused and not self.signals:
            # A stop asked for while it was pausing wins: the run is stopped, not paused.
            reason = self.queue.kill_reason(run_id)
        return Outcome(
            exit_code=handle.returncode,
            stop_reason=reason,
            interrupted=reason is None and bool(self.signals),
            paused=paused and reason is None and not self.signals,
        )

    def _stop_orphan(self, pid: int, run_id: str) -> None:
        """The launcher died: give its trainer its one stop and the usual escalation from here.

        Not its parent, the worker cannot wait for it; it watches the pid instead.
        """
        say(f"{run_id}: the trainer launcher died; stopping the trainer (SIGINT)")
        trainer = Trainer(pid, RunInfo(run_id, 0), self.options.grace)
        trainer.stop(StopBy.ORPHANED, time.monotonic())
        while _alive(pid):
            time.sleep(ORPHAN_POLL)
            trainer.tick(time.monotonic())

    def _record(self, claim: Claim, outcome: Outcome, log_text: str) -> None:
        run_id = claim.job.run_id
        max_attempts = self.queue.sweep.max_attempts
        decision = decide(outcome, claim.state.failures, max_attempts)
        changes: dict[str, object] = {"worker": self.identity, "exit_code": outcome.exit_code}
        if outcome.stop_reason is not None:
            changes["stop_reason"] = outcome.stop_reason
        if decision.counts_as_failure:
            changes["log_tail"] = log_text.splitlines()[-LOG_TAIL_LINES:]
        if self._write(claim, transitions.ended(claim.state, decision, **changes)) and (
            decision.status in FINAL
        ):
            self._keep_score(claim)
        if decision.status == STOPPED:
            say(f"{run_id} stopped: {outcome.stop_reason}")
        elif decision.status == INTERRUPTED:
            say(f"{run_id} interrupted; the next worker resumes it")
        elif decision.status == DONE:
            say(f"{run_id} done")
        elif decision.status == PAUSED:
            say(f"{run_id} paused at rung {claim.state.rung + 1}; it waits for the rung")
        elif decision.status == FAILED:
            say(
                f"{run_id} failed (exit code {outcome.exit_code}, {decision.failures} attempts); "
                f"see {self.queue.paths.log_file(run_id)}"
            )
        else:
            say(
                f"{run_id} exited with code {outcome.exit_code} "
                f"(failure {decision.failures} of {max_attempts}); it will be retried"
            )


def _port_taken(outcome: Outcome, log_text: str) -> bool:
    """The trainer failed because its port was in use: not the run's fault."""
    if outcome.exit_code == 0 or outcome.stop_reason or outcome.interrupted:
        return False
    return any(marker in log_text for marker in PORT_IN_USE)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _tee(output: IO[bytes], log: IO[bytes], echo: Callable[[bytes], None]) -> None:
    with output:
        for line in output:
            log.write(line)
            log.flush()
            echo(line)


def _read_from(path: Path, offset: int, limit: int = 256_000) -> str:
    """This attempt's part of the log (its last `limit` bytes)."""
    try:
        with open(path, "rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(offset, size - limit))
            return log.read().decode(errors="replace")
    except OSError:
        return ""
