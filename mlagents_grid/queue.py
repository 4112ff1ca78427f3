"""The queue folder: reading it, and the transitions that change a run's state.

The folder on disk is the source of truth; no process keeps state another needs. Its paths
are named in `layout.py`; how a worker picks its next run is `claims.py`. Each transition
here writes its state file (durably: see `files.py`) and its line in `events.jsonl`, so no
caller has to pair the two.

A run's status is derived: final/ wins over state/, which wins over pending; `running`
with no lock held means its worker died, and is reported as `interrupted`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock, Timeout

from .errors import GridError
from .files import fsync_dir, names, read_json, sync_tree, write_atomic
from .job import FAILED, FINAL, INTERRUPTED, PAUSED, PENDING, RUNNING, STOPPED, Job, JobState
from .layout import PLANNED_FOLDERS, Layout
from .outcome import Decision
from .planner import Plan, Sweep, build_config, config_info_line
from .rungs import RungDecision, passes, run_verdict

UNREADABLE_KILL = "unreadable kill file"
RETRY = "the next worker retries the run (the file is kept as .unreadable)"
DEFAULT_QUEUE_ROOT = Path("sweeps")
# How long a probe or a claim waits for another probe of the same run (which takes microseconds).
PROBE_WAIT = 5.0
# A probe holds its lock for microseconds: wait for it in steps of that order, not filelock's
# default 50 ms, which every claim that meets a probe would pay.
PROBE_POLL = 0.001
# How long grid-retry waits for an extension of the sweep (which takes a moment) to end.
PLAN_LOCK_WAIT = 10.0
RETRYABLE = (FAILED, STOPPED)
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL
_BINARY = getattr(os, "O_BINARY", 0)
# libyaml's dumper where PyYAML was built with it: several times faster per run config.
_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def host_name() -> str:
    return socket.gethostname().split(".")[0] or "localhost"


def worker_identity() -> str:
    return f"{host_name()}:{os.getpid()}"


@dataclass
class Claim:
    """A job this process holds the lock of, for as long as its trainer runs."""

    job: Job
    state: JobState
    lock: FileLock
    lock_fd: int

    def release(self) -> None:
        self.lock.release()


def _job_lock(path: Path, on_acquired: Callable[[int], None] | None = None) -> FileLock:
    # Kept on release: unlinking a lock file lets two processes lock two different inodes.
    return FileLock(
        path,
        thread_local=False,
        preserve_lock_file=True,
        fallback_to_soft=False,
        on_acquired=on_acquired,
    )


def try_lock(path: Path, timeout: float = -1, poll: float = 0.05) -> tuple[FileLock, int] | None:
    """The lock and its descriptor, or None when another holds it (after `timeout` s,
    retrying every `poll` s)."""
    fds: list[int] = []
    lock = _job_lock(path, fds.append)
    try:
        lock.acquire(timeout=timeout, blocking=timeout != -1, poll_interval=poll)
    except Timeout:
        return None
    return lock, fds[-1]


class Queue:
    """A sweep's folder; see `layout.py` for what is where."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths = Layout(root)
        self._sweep: Sweep | None = None
        self._sweep_key: tuple[int, int, int] | None = None
        self._template: Any = None

    def run_results(self, run_id: str) -> Path:
        return Path(self.sweep.results_dir) / run_id

    # -- creation ---------------------------------------------------------------
    def exists(self) -> bool:
        return self.paths.sweep_file.exists()

    def create(self, plan: Plan, sweep: Sweep) -> None:
        """Write the whole sweep into a hidden sibling folder, sync it, rename it into place."""
        if self.exists():
            raise GridError(
                f"{self.root}: a sweep is already planned here; remove the folder or pass "
                "--queue with another folder"
            )
        if self.root.exists() and any(self.root.iterdir()):
            raise GridError(
                f"{self.root}: the folder exists and is not a sweep; pass --queue with an "
                "empty or new folder"
            )
        parent = self.root.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            staging = parent / f".{self.root.name}.planning-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
        except OSError as exc:
            raise GridError(
                f"{self.root}: cannot create the queue folder ({exc.strerror}); "
                "pass --queue with a writable folder"
            ) from None
        try:
            self._write_staging(Layout(staging), plan, sweep)
            # One flush of the whole plan before it becomes visible, then the rename itself.
            sync_tree(staging)
            if self.root.exists():
                self.root.rmdir()
            os.rename(staging, self.root)
            fsync_dir(parent.absolute())
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise GridError(
                f"{self.root}: cannot write the queue ({exc.strerror}); nothing was planned"
            ) from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self._sweep = sweep

    @staticmethod
    def _write_staging(staging: Layout, plan: Plan, sweep: Sweep) -> None:
        for name in PLANNED_FOLDERS:
            (staging.root / name).mkdir()
        staging.template_file.write_text(
            yaml.safe_dump(plan.template, sort_keys=False, allow_unicode=True), encoding="utf-8"
        )
        # Raw descriptors relative to the folder: file creation is most of the cost of a
        # 100,000-run plan. Windows has no dir_fd; there each job is opened by its path.
        relative = os.open in os.supports_dir_fd
        jobs = os.open(staging.root / "jobs", os.O_RDONLY) if relative else -1
        try:
            with open(staging.config_info, "w", encoding="utf-8") as info:
                for run in plan.runs():
                    job = Job(
                        run.run_id,
                        run.index,
                        run.values,
                        run.assignments,
                        run.conditions,
                        run.point,
                        run.seed,
                    )
                    if relative:
                        fd = os.open(f"{run.run_id}.json", _CREATE, 0o644, dir_fd=jobs)
                    else:
                        fd = os.open(staging.job_file(run.run_id), _CREATE | _BINARY, 0o644)
                    try:
                        os.write(fd, job.to_json().encode())
                    finally:
                        os.close(fd)
                    info.write(config_info_line(run) + "\n")
        finally:
            if relative:
                os.close(jobs)
        staging.events_file.touch()
        staging.sweep_file.write_text(sweep.to_json(), "utf-8")

    # -- reading ----------------------------------------------------------------
    @property
    def sweep(self) -> Sweep:
        """sweep.json, read again whenever it was replaced (grid-plan --extend rewrites it).

        One stat per access: sweep.json is only ever renamed into place, so a new inode,
        mtime or size means a new sweep. The stat comes first, so a reader never keeps an
        old sweep under a new key.
        """
        try:
            stat = os.stat(self.paths.sweep_file)
            key: tuple[int, int, int] | None = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except OSError:
            key = None
        if self._sweep is not None and (key is None or key == self._sweep_key):
            return self._sweep
        try:
            data = read_json(self.paths.sweep_file)
        except FileNotFoundError:
            raise GridError(
                f"{self.root}: no sweep here (sweep.json missing); run grid-plan first "
                "or pass --queue with the folder grid-plan printed"
            ) from None
        try:
            self._sweep = Sweep(**data)
        except TypeError as exc:
            raise GridError(f"{self.paths.sweep_file}: not a sweep manifest ({exc})") from None
        self._sweep_key = key
        return self._sweep

    def job(self, run_id: str) -> Job:
        path = self.paths.job_file(run_id)
        try:
            return Job.from_dict(read_json(path))
        except FileNotFoundError:
            raise GridError(f"{path}: job file missing; re-plan the sweep") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise GridError(f"{path}: not a job file ({exc}); re-plan the sweep") from None

    def read_state(self, run_id: str) -> JobState:
        """The recorded state; a missing or unreadable file raises GridError naming it.

        An empty or cut-off file (a crash before its data reached the disk) never counts as
        a final state: the message says that the next worker retries the run.
        """
        for path in (self.paths.final_file(run_id), self.paths.state_file(run_id)):
            try:
                state = JobState.from_dict(read_json(path, RETRY))
                if state.run_id != run_id:
                    raise ValueError(f"it names run {state.run_id!r}")
                if (state.status in FINAL) != (path.parent == self.paths.final_dir):
                    raise ValueError(f"status {state.status!r} in {path.parent.name}/")
                return state
            except FileNotFoundError:
                continue
            except (TypeError, ValueError) as exc:
                raise GridError(f"{path}: not a job state ({exc}); {RETRY}") from None
        return JobState(run_id)

    def read_exit(self, run_id: str) -> dict[str, Any] | None:
        """The exit record of the run's last trainer, when one was written and is whole."""
        try:
            record = read_json(self.paths.exit_file(run_id))
        except (FileNotFoundError, GridError):
            return None
        return record if isinstance(record, dict) else None

    def is_held(self, run_id: str) -> bool:
        """Whether some live process holds the run's lock, without ever failing a claim.

        Taking the run's lock, even for an instant, could make a worker claiming the run at
        that instant pass it over; so a probe first takes the run's probe lock, which a
        claimer that lost the race takes too before it tries again (see claims.py).
        """
        probe = try_lock(self.paths.probe_file(run_id), timeout=PROBE_WAIT, poll=PROBE_POLL)
        if probe is None:
            return True
        try:
            taken = try_lock(self.paths.lock_file(run_id))
            if taken is None:
                return True
            taken[0].release()
            return False
        finally:
            probe[0].release()

    def effective(self, state: JobState) -> JobState:
        if state.status == RUNNING and not self.is_held(state.run_id):
            state.status = INTERRUPTED
        return state

    def final_ids(self) -> list[str]:
        return names(self.paths.final_dir)

    def active_ids(self) -> list[str]:
        """Runs with a state file: started at least once, maybe final too."""
        return names(self.paths.state_dir)

    def running(self) -> list[str]:
        """Runs whose trainer is alive right now (their lock is held)."""
        return [run_id for run_id in self.recorded_running() if self.is_held(run_id)]

    def recorded_running(self) -> list[str]:
        """Runs whose state says running, whether or not their worker lives (no probing)."""
        final = set(self.final_ids())
        return [
            run_id
            for run_id in self.active_ids()
            if run_id not in final and self.recorded_status(run_id) == RUNNING
        ]

    def recorded_state(self, run_id: str) -> JobState | None:
        """The recorded state, or None when its file cannot be read (see read_state)."""
        try:
            return self.read_state(run_id)
        except GridError:
            return None

    def recorded_status(self, run_id: str) -> str | None:
        state = self.recorded_state(run_id)
        return None if state is None else state.status

    def all_final(self) -> bool:
        return len(set(self.final_ids())) >= len(self.sweep.run_ids)

    # -- transitions (only by the holder of the run's lock) ---------------------
    def start_attempt(self, claim: Claim, **changes: Any) -> None:
        """The trainer of a new attempt exists: the run is running."""
        self._write_state(claim, RUNNING, changes)
        state = claim.state
        self.record(
            "started",
            state.run_id,
            worker=state.worker,
            pid=state.pid,
            port=state.port,
            attempt=state.attempts,
            mode=state.mode,
        )

    def end_attempt(self, claim: Claim, decision: Decision, **changes: Any) -> None:
        """Record how an attempt ended, as `outcome.decide` said; final runs go to final/."""
        changes.setdefault("ended", time.time())
        changes["failures"] = decision.failures
        if decision.status in FINAL:
            self._finish(claim, decision.status, changes)
        else:
            self._write_state(claim, decision.status, changes)
        state = claim.state
        self.record(
            decision.event,
            state.run_id,
            worker=state.worker,
            exit_code=state.exit_code,
            attempt=state.attempts if decision.counts_as_failure else None,
            reason=state.stop_reason if decision.status == STOPPED else None,
            rung=state.rung + 1 if decision.status == PAUSED else None,
        )

    def settle_stop_request(self, claim: Claim, reason: str, by: str) -> None:
        """A run with a kill file that no trainer runs: it is stopped, and never starts."""
        self._finish(claim, STOPPED, {"stop_reason": reason, "worker": by})
        self.record("stopped", claim.job.run_id, worker=by, reason=reason)

    def promote(self, claim: Claim, number: int, reason: str, by: str) -> None:
        """A run paused at rung `number` that the rung promoted: claimable, resumes from there."""
        self._write_state(claim, PENDING, {"rung": number, "stop_reason": None})
        with contextlib.suppress(FileNotFoundError):
            self.paths.pause_file(claim.job.run_id).unlink()
        self.record("promoted", claim.job.run_id, worker=by, rung=number, reason=reason)

    def pass_rungs(self, claim: Claim, number: int, by: str) -> None:
        """A run not paused passes rungs decided without it, up to rung `number`: its state
        says so (durably) before it trains on; one `promoted` event per rung."""
        first = claim.state.rung + 1
        self._write_state(claim, claim.state.status, {"rung": number})
        for rung in range(first, number + 1):
            self.record(
                "promoted",
                claim.job.run_id,
                worker=by,
                rung=rung,
                reason=f"rung {rung} was decided without it; it trains on",
            )

    def stop_at_rung(self, claim: Claim, number: int, reason: str, by: str) -> None:
        """A run paused at rung `number` that the rung did not promote: stopped, for good."""
        self._finish(claim, STOPPED, {"stop_reason": reason, "worker": by})
        with contextlib.suppress(FileNotFoundError):
            self.paths.pause_file(claim.job.run_id).unlink()
        self.record("stopped", claim.job.run_id, worker=by, rung=number, reason=reason)

    def set_aside(self, path: Path, problem: str, by: str) -> Path:
        """Keep an unreadable state file for inspection, out of the way of a retry."""
        kept = path.with_name(path.name + ".unreadable")
        os.replace(path, kept)
        fsync_dir(path.parent)
        self.record("unreadable-state", path.stem, worker=by, file=str(kept), reason=problem)
        return kept

    def _write_state(self, claim: Claim, status: str, changes: dict[str, Any]) -> None:
        for key, value in changes.items():
            setattr(claim.state, key, value)
        claim.state.status = status
        write_atomic(self.paths.state_file(claim.job.run_id), claim.state.to_json())

    def _finish(self, claim: Claim, status: str, changes: dict[str, Any]) -> None:
        """final/ is written before state/ is removed, and wins."""
        changes.setdefault("ended", time.time())
        for key, value in changes.items():
            setattr(claim.state, key, value)
        claim.state.status = status
        write_atomic(self.paths.final_file(claim.job.run_id), claim.state.to_json())
        with contextlib.suppress(FileNotFoundError):
            self.paths.state_file(claim.job.run_id).unlink()

    @property
    def template(self) -> Any:
        """The trainer config every run shares, before its values are set."""
        if self._template is None:
            path = self.paths.template_file
            try:
                self._template = yaml.safe_load(path.read_text("utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
                raise GridError(f"{path}: unreadable ({exc}); re-plan the sweep") from None
        return self._template

    def render_config(self, job: Job) -> str:
        """The run's trainer config, as mlagents-learn gets it."""
        config = build_config(self.template, job.assignments)
        return str(yaml.dump(config, Dumper=_DUMPER, sort_keys=False, allow_unicode=True))

    def write_config(self, job: Job) -> Path:
        path = self.paths.config_file(job.run_id)
        write_atomic(path, self.render_config(job), durable=False)  # rewritten at every attempt
        return path

    # -- lifecycle: retries and extensions (under plan.lock) ----------------------
    def lock_run(self, run_id: str) -> tuple[FileLock, int] | None:
        """The run's lock without blocking (None: a trainer holds it); a reader's probe is
        waited out, as a claimer does."""
        taken = try_lock(self.paths.lock_file(run_id))
        if taken is not None:
            return taken
        probe = try_lock(self.paths.probe_file(run_id), timeout=PROBE_WAIT, poll=PROBE_POLL)
        if probe is None:
            return None
        try:
            return try_lock(self.paths.lock_file(run_id))
        finally:
            probe[0].release()

    def plan_lock(self, timeout: float = -1) -> FileLock | None:
        """The sweep-level lock that --extend and grid-retry hold while they change the sweep."""
        taken = try_lock(self.paths.plan_lock, timeout=timeout)
        return None if taken is None else taken[0]

    def retry_runs(self, run_ids: list[str], reason: str, by: str) -> list[JobState]:
        """Make failed or stopped runs claimable again; all of them, or none (GridError).

        Each run's lock is taken without blocking (held: its run is training, refused) and
        held until every run is checked and retried. Per run: the new state/ is written
        durably, then the kill file goes, then final/: a crash in between leaves the run
        final (final/ wins) or retried, never lost. Each retry is a `retried` event.
        """
        plan_lock = self.plan_lock(timeout=PLAN_LOCK_WAIT)
        if plan_lock is None:
            raise GridError(
                f"{self.paths.plan_lock}: the sweep is being extended; try again once "
                "grid-plan --extend has ended"
            )
        locks: list[FileLock] = []
        try:
            self.recover_extension()
            states = []
            for run_id in run_ids:
                if not self.paths.final_file(run_id).exists():
                    status = self.effective(self.read_state(run_id)).status
                    if status != PAUSED:
                        raise GridError(_not_retryable(run_id, status))
                taken = self.lock_run(run_id)
                if taken is None:
                    raise GridError(_not_retryable(run_id, RUNNING))
                locks.append(taken[0])
                state = self.read_state(run_id)
                if state.status not in (*RETRYABLE, PAUSED):
                    raise GridError(_not_retryable(run_id, state.status))
                states.append(state)
            return [self._retry(state, reason, by) for state in states]
        finally:
            for lock in locks:
                lock.release()
            plan_lock.release()

    def _retry(self, final: JobState, reason: str, by: str) -> JobState:
        """`final`: a failed or stopped run, or a paused one (promoted by hand).

        The run keeps the rungs it passed. A run stopped by a rung decision, or paused at a
        rung, is treated as promoted past that rung: it trains on to the next one.
        """
        run_id = final.run_id
        rung = final.rung
        passed: int | None = None  # the rung this retry promotes the run past
        if final.status == FAILED:
            previous = f"failed (exit code {final.exit_code})"
        elif final.status == PAUSED:
            passed = final.rung + 1
            previous = f"paused at rung {passed}"
        else:
            previous = f"stopped ({final.stop_reason or 'no reason recorded'})"
            if self._stopped_by_rung(final):
                passed = final.rung + 1
        if passed is not None:
            rung = passed
        state = JobState(
            run_id,
            status=PENDING,
            attempts=final.attempts,
            failures=final.failures if final.status == PAUSED else 0,
            rung=rung,
            retries=final.retries + 1,
            previous=previous,
        )
        # The new state first, durably; then what made the run final or paused goes.
        write_atomic(self.paths.state_file(run_id), state.to_json())
        for path in (
            self.paths.pause_file(run_id),
            self.paths.kill_file(run_id),
            self.paths.final_file(run_id),
        ):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                fsync_dir(path.parent)
        self.record(
            "retried",
            run_id,
            worker=by,
            reason=reason,
            previous=final.status,
            exit_code=final.exit_code,
            stop_reason=final.stop_reason,
            retries=state.retries,
            rung=passed,
        )
        return state

    def _stopped_by_rung(self, final: JobState) -> bool:
        """Whether a stopped run was stopped by the decision of the rung it paused at."""
        if final.status != STOPPED or self.sweep.rung_plan is None:
            return False
        decision = self.rung_decision(final.rung + 1)
        if decision is None:
            return False
        try:
            point = self.job(final.run_id).point
        except GridError:
            return False
        verdict = run_verdict(decision, final.run_id, point)
        return (
            verdict is not None
            and not passes(decision, final.run_id, point)
            and final.stop_reason is not None
            and final.stop_reason.startswith(verdict.reason)
        )

    def publish_extension(
        self, sweep: Sweep, files: list[tuple[Path, str]], events: list[dict[str, Any]]
    ) -> None:
        """Write an extension of the sweep as one change; the caller holds plan.lock.

        Every file is staged in extending/ and synced; writing extending/manifest.json
        commits the change; then the staged files are renamed into place in order (job
        files first, sweep.json last, which publishes the new runs to workers), the events
        are recorded and extending/ is removed. A crash before the manifest leaves the old
        sweep (the staging is dropped by `recover_extension`); a crash after it is rolled
        forward by `recover_extension` (run by the next --extend, grid-retry or worker).
        """
        staging = self.paths.extension_dir
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        text = sweep.to_json()
        entries = []
        for number, (target, content) in enumerate([*files, (self.paths.sweep_file, text)]):
            staged = staging / f"{number}.staged"
            with open(staged, "w", encoding="utf-8") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            entries.append([staged.name, str(target.relative_to(self.root))])
        fsync_dir(staging)
        write_atomic(
            self.paths.extension_manifest, json.dumps({"files": entries, "events": events})
        )
        self._roll_forward(entries, events)

    def recover_extension(self) -> bool:
        """Finish a committed extension a crash cut short, or drop an uncommitted one.

        The caller holds plan.lock. True when a committed extension was finished.
        """
        staging = self.paths.extension_dir
        if not staging.exists():
            return False
        try:
            manifest = read_json(self.paths.extension_manifest)
            entries, events = manifest["files"], manifest["events"]
        except (FileNotFoundError, GridError, KeyError, TypeError):
            shutil.rmtree(staging, ignore_errors=True)
            fsync_dir(self.root)
            return False
        self._roll_forward(entries, events)
        return True

    def settle_extension(self) -> None:
        """What a worker does about an extension left half-applied: finish it, unless one
        is being written right now."""
        if not self.paths.extension_dir.exists():
            return
        lock = self.plan_lock()
        if lock is None:
            return
        try:
            self.recover_extension()
        finally:
            lock.release()

    def _roll_forward(self, entries: list[list[str]], events: list[dict[str, Any]]) -> None:
        staging = self.paths.extension_dir
        folders = set()
        for staged, target in entries:
            source = staging / staged
            if source.exists():
                os.replace(source, self.root / target)
            folders.add((self.root / target).parent)
        for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
            fsync_dir(folder)
        for event in events:
            self.record(**event)
        self.paths.extension_manifest.unlink()
        shutil.rmtree(staging, ignore_errors=True)
        fsync_dir(self.root)

    # -- stop requests ----------------------------------------------------------
    def request_stop(self, run_id: str, reason: str, by: str) -> bool:
        """Drop a kill file; False when one was already there (first reason wins)."""
        path = self.paths.kill_file(run_id)
        if path.exists():
            return False
        write_atomic(path, json.dumps({"reason": reason, "by": by, "time": time.time()}))
        self.record("stop-requested", run_id, reason=reason, by=by)
        return True

    def kill_reason(self, run_id: str) -> str | None:
        try:
            text = self.paths.kill_file(run_id).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError):
            return UNREADABLE_KILL
        try:
            reason = json.loads(text)["reason"]
        except (ValueError, KeyError, TypeError):
            return UNREADABLE_KILL
        return str(reason) if reason else UNREADABLE_KILL

    def stop_requested(self) -> set[str]:
        return set(names(self.paths.kill_dir, suffix=""))

    # -- rungs (opt_rungs) ------------------------------------------------------
    def request_pause(self, run_id: str, number: int, step: int, by: str) -> bool:
        """Ask the run's worker to pause it at rung `number`; False when already asked."""
        if self.pause_rung(run_id) == number:
            return False
        text = json.dumps({"rung": number, "step": step, "by": by, "time": time.time()})
        write_atomic(self.paths.pause_file(run_id), text)
        self.record("pause-requested", run_id, rung=number, step=step, by=by)
        return True

    def pause_rung(self, run_id: str) -> int | None:
        """The rung the run's pause request is for; None without a readable one."""
        try:
            rung = json.loads(self.paths.pause_file(run_id).read_text(encoding="utf-8"))["rung"]
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
            return None
        return rung if isinstance(rung, int) else None

    def decided_rungs(self) -> set[int]:
        """The numbers of the rungs whose decision is written (cheap: a folder listing)."""
        found = set()
        for name in names(self.paths.rungs_dir):
            with contextlib.suppress(ValueError):
                found.add(int(name))
        return found

    def rung_decision(self, number: int) -> RungDecision | None:
        """Rung `number`'s decision; None when not decided (or unreadable: decided again)."""
        try:
            return RungDecision.from_dict(read_json(self.paths.rung_file(number)))
        except (FileNotFoundError, GridError, KeyError, TypeError, ValueError):
            return None

    def rung_decisions(self) -> dict[int, RungDecision]:
        found = {}
        for number in sorted(self.decided_rungs()):
            decision = self.rung_decision(number)
            if decision is not None:
                found[number] = decision
        return found

    def write_rung_decision(self, decision: RungDecision, by: str) -> None:
        """Durably, before any run is promoted or stopped by it."""
        self.paths.rungs_dir.mkdir(exist_ok=True)
        write_atomic(self.paths.rung_file(decision.rung), json.dumps(decision.to_dict(), indent=1))
        self.record(
            "rung-decided",
            rung=decision.rung,
            step=decision.step,
            promoted=decision.promoted,
            stopped=decision.stopped,
            cut=decision.cut,
            by=by,
        )

    # -- port slots -------------------------------------------------------------
    def take_slot(self, host: str, start: int = 0) -> tuple[int, FileLock]:
        """The lowest free port slot on this host at or above `start`."""
        slot = start
        while True:
            taken = try_lock(self.paths.slot_file(host, slot))
            if taken is not None:
                return slot, taken[0]
            slot += 1

    def port_for(self, slot: int) -> int:
        return self.sweep.base_port + slot * max(1, self.sweep.num_envs)

    # -- events -----------------------------------------------------------------
    def record(self, event: str, run_id: str | None = None, **fields_: Any) -> None:
        """Append one JSON line; O_APPEND keeps concurrent writers' lines whole."""
        entry = {"time": round(time.time(), 3), "event": event, "run_id": run_id}
        entry.update({k: v for k, v in fields_.items() if v is not None})
        line = (json.dumps(entry) + "\n").encode()
        fd = os.open(self.paths.events_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def events(self) -> Iterable[dict[str, Any]]:
        try:
            lines = self.paths.events_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        out = []
        for line in lines.splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out


def _not_retryable(run_id: str, status: str) -> str:
    return (
        f"{run_id} is {status}; only failed, stopped and paused runs can be retried "
        "(see grid-status; --failed / --stopped select every failed / stopped run)"
    )


def resolve_queue(given: str | None) -> Queue:
    """--queue, else $GRID_QUEUE, else the only sweep under ./sweeps."""
    if given:
        return Queue(Path(given))
    env = os.environ.get("GRID_QUEUE")
    if env:
        return Queue(Path(env))
    found = sorted(p.parent for p in DEFAULT_QUEUE_ROOT.glob("*/sweep.json"))
    if len(found) == 1:
        return Queue(found[0])
    if not found:
        raise GridError(
            f"no sweep found under ./{DEFAULT_QUEUE_ROOT}; run grid-plan first or pass --queue DIR"
        )
    names_ = ", ".join(str(p) for p in found)
    raise GridError(f"several sweeps under ./{DEFAULT_QUEUE_ROOT} ({names_}); pass --queue DIR")
