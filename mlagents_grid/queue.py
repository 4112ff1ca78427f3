"""The queue folder: the only module that knows its layout and the claim protocol.

The folder on disk is the source of truth; no process keeps state another needs.

    sweep.json            the sweep: run ids in order, trainer args, results dir, ports
    template.yaml         the trainer config shared by every run, before its values are set
    config_info.txt       one line per run, in the original tool's format
    events.jsonl          every transition, one JSON object per line
    jobs/<run>.json       what a run is: its values, config assignments and stop conditions
    locks/<run>.lock      held (flock) for as long as the run's trainer lives
    state/<run>.json      a started run that is not final: running, interrupted, or pending a retry
    final/<run>.json      a final run: done, stopped or failed
    kill/<run>            a stop request (JSON: reason, by, time)
    configs/<run>.yaml    the run's trainer config, written when it first starts
    logs/<run>.log        the trainer's output, one header line per attempt
    slots/<host>.<n>.lock a worker's port slot on its host
    slurm/                grid-submit's batch script and the SLURM jobs it submitted
    logs/slurm-<job>_<task>.out  a SLURM array task's worker output
    cache/                what commands derived and may rebuild (metrics read so far)

A run's status is derived: final/ wins over state/, which wins over pending; `running`
with no lock held means its worker died, and is reported as `interrupted`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from filelock import FileLock, Timeout

from .conditions import StopCondition
from .errors import GridError
from .planner import Path_, Plan, build_config, config_info_line

FORMAT = 1
PENDING, RUNNING, INTERRUPTED = "pending", "running", "interrupted"
DONE, STOPPED, FAILED = "done", "stopped", "failed"
STATUSES = (PENDING, RUNNING, INTERRUPTED, DONE, STOPPED, FAILED)
FINAL = frozenset({DONE, STOPPED, FAILED})
UNREADABLE_KILL = "unreadable kill file"
DEFAULT_QUEUE_ROOT = Path("sweeps")
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL
# libyaml's dumper where PyYAML was built with it: several times faster per run config.
_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def host_name() -> str:
    return socket.gethostname().split(".")[0] or "localhost"


def worker_identity() -> str:
    return f"{host_name()}:{os.getpid()}"


def write_atomic(path: Path, text: str) -> None:
    """Write a temporary file beside `path`, then rename it over `path`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GridError(f"{path}: unreadable ({exc}); restore it or remove the sweep") from None


@dataclass
class Sweep:
    """What `grid-plan` decided once for every run of the sweep."""

    prefix: str
    source: str
    results_dir: str
    base_port: int
    num_envs: int
    trainer_args: list[str]
    force: bool
    cwd: str
    created: float
    behaviors: list[str]
    dimensions: list[dict[str, Any]]
    run_ids: list[str]
    format: int = FORMAT
    seeds: int = 1  # runs per grid point (grid-plan --seeds)

    @property
    def behavior_folders(self) -> list[str]:
        """ML-Agents writes `Soccer?team=0` under `Soccer`."""
        return list(dict.fromkeys(name.split("?")[0] for name in self.behaviors))

    def to_json(self) -> str:
        """The manifest; `seeds` only when above 1, so one seed writes what it always did."""
        data = asdict(self)
        if self.seeds == 1:
            del data["seeds"]
        return json.dumps(data, indent=1)


@dataclass(frozen=True)
class Job:
    """One run of the sweep, fixed at planning time."""

    run_id: str
    index: int
    values: dict[str, dict[str, Any]]
    assignments: tuple[tuple[Path_, Any], ...]
    conditions: tuple[StopCondition, ...]
    point: int = 0  # the grid point; without --seeds it is the run's index
    seed: int | None = None  # the env_settings.seed that --seeds gave this run

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "run_id": self.run_id,
            "index": self.index,
            "values": self.values,
            "assignments": [[list(path), value] for path, value in self.assignments],
            "conditions": [c.to_dict() for c in self.conditions],
        }
        if self.seed is not None:  # one seed per point keeps the job file it always had
            data.update(point=self.point, seed=self.seed)
        return json.dumps(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        seed = data.get("seed")
        return cls(
            run_id=str(data["run_id"]),
            index=int(data["index"]),
            values=data["values"],
            assignments=tuple((tuple(path), value) for path, value in data["assignments"]),
            conditions=tuple(StopCondition.from_dict(c) for c in data["conditions"]),
            point=int(data.get("point", data["index"])),
            seed=None if seed is None else int(seed),
        )


@dataclass
class JobState:
    """What has happened to a run so far; written only by the holder of its lock."""

    run_id: str
    status: str = PENDING
    attempts: int = 0
    failures: int = 0
    worker: str | None = None
    pid: int | None = None
    port: int | None = None
    started: float | None = None
    ended: float | None = None
    exit_code: int | None = None
    stop_reason: str | None = None
    mode: str | None = None
    slurm: str | None = None
    log_tail: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        # A flat copy: dataclasses.asdict deep-copies and costs more than the write itself.
        return json.dumps(vars(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobState:
        known = {f.name for f in fields(cls)}
        state = cls(**{k: v for k, v in data.items() if k in known})
        if state.status not in STATUSES:
            raise ValueError(f"unknown status {state.status!r}")
        return state


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


def _try_lock(path: Path) -> tuple[FileLock, int] | None:
    fds: list[int] = []
    lock = _job_lock(path, fds.append)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        return None
    return lock, fds[-1]


class Queue:
    """A sweep's folder; see the module docstring for the layout."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._sweep: Sweep | None = None
        self._template: Any = None
        # Broken job or state files met while claiming: skipped, and reported once each.
        self.problems: dict[str, str] = {}
        self._awaited: set[str] = set()
        self._index: dict[str, int] | None = None
        self._cursor = 0  # claim: fresh runs before it were found final or taken

    # -- layout -----------------------------------------------------------------
    @property
    def sweep_file(self) -> Path:
        return self.root / "sweep.json"

    @property
    def events_file(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def config_info(self) -> Path:
        return self.root / "config_info.txt"

    @property
    def kill_dir(self) -> Path:
        return self.root / "kill"

    @property
    def lock_dir(self) -> Path:
        return self.root / "locks"

    def job_file(self, run_id: str) -> Path:
        return self.root / "jobs" / f"{run_id}.json"

    def state_file(self, run_id: str) -> Path:
        return self.root / "state" / f"{run_id}.json"

    def final_file(self, run_id: str) -> Path:
        return self.root / "final" / f"{run_id}.json"

    def kill_file(self, run_id: str) -> Path:
        return self.kill_dir / run_id

    def lock_file(self, run_id: str) -> Path:
        return self.lock_dir / f"{run_id}.lock"

    def config_file(self, run_id: str) -> Path:
        return self.root / "configs" / f"{run_id}.yaml"

    def log_file(self, run_id: str) -> Path:
        return self.root / "logs" / f"{run_id}.log"

    def slurm_file(self, name: str) -> Path:
        return self.root / "slurm" / name

    def slurm_output(self) -> Path:
        """Where each array task's output goes (sbatch's %A job id, %a task id)."""
        return self.root.absolute() / "logs" / "slurm-%A_%a.out"

    def cache_file(self, name: str) -> Path:
        """Derived data a command may rebuild at any time (never a source of truth)."""
        return self.root / "cache" / name

    def run_results(self, run_id: str) -> Path:
        return Path(self.sweep.results_dir) / run_id

    # -- creation ---------------------------------------------------------------
    def exists(self) -> bool:
        return self.sweep_file.exists()

    def create(self, plan: Plan, sweep: Sweep) -> None:
        """Write the whole sweep into a hidden sibling folder, then rename it into place."""
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
            self._write_staging(staging, plan, sweep)
            if self.root.exists():
                self.root.rmdir()
            os.rename(staging, self.root)
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
    def _write_staging(staging: Path, plan: Plan, sweep: Sweep) -> None:
        for name in ("jobs", "locks", "state", "final", "kill", "configs", "logs", "slots"):
            (staging / name).mkdir()
        (staging / "template.yaml").write_text(
            yaml.safe_dump(plan.template, sort_keys=False, allow_unicode=True), encoding="utf-8"
        )
        jobs = os.open(staging / "jobs", os.O_RDONLY)
        try:
            with open(staging / "config_info.txt", "w", encoding="utf-8") as info:
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
                    # Raw descriptors: file creation is most of the cost of a 100,000-run plan.
                    fd = os.open(f"{run.run_id}.json", _CREATE, 0o644, dir_fd=jobs)
                    try:
                        os.write(fd, job.to_json().encode())
                    finally:
                        os.close(fd)
                    info.write(config_info_line(run) + "\n")
        finally:
            os.close(jobs)
        (staging / "events.jsonl").touch()
        (staging / "sweep.json").write_text(sweep.to_json(), "utf-8")

    # -- reading ----------------------------------------------------------------
    @property
    def sweep(self) -> Sweep:
        if self._sweep is None:
            try:
                data = _read_json(self.sweep_file)
            except FileNotFoundError:
                raise GridError(
                    f"{self.root}: no sweep here (sweep.json missing); run grid-plan first "
                    "or pass --queue with the folder grid-plan printed"
                ) from None
            try:
                self._sweep = Sweep(**data)
            except TypeError as exc:
                raise GridError(f"{self.sweep_file}: not a sweep manifest ({exc})") from None
        return self._sweep

    def job(self, run_id: str) -> Job:
        path = self.job_file(run_id)
        try:
            return Job.from_dict(_read_json(path))
        except FileNotFoundError:
            raise GridError(f"{path}: job file missing; re-plan the sweep") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise GridError(f"{path}: not a job file ({exc}); re-plan the sweep") from None

    def read_state(self, run_id: str) -> JobState:
        """The recorded state; a missing or unreadable file raises GridError naming it."""
        for path in (self.final_file(run_id), self.state_file(run_id)):
            try:
                data = _read_json(path)
            except FileNotFoundError:
                continue
            try:
                return JobState.from_dict(data)
            except (TypeError, ValueError) as exc:
                raise GridError(f"{path}: not a job state ({exc}); delete it to retry") from None
        return JobState(run_id)

    def is_held(self, run_id: str) -> bool:
        """Whether some live process holds the run's lock."""
        taken = _try_lock(self.lock_file(run_id))
        if taken is None:
            return True
        taken[0].release()
        return False

    def effective(self, state: JobState) -> JobState:
        if state.status == RUNNING and not self.is_held(state.run_id):
            state.status = INTERRUPTED
        return state

    def final_ids(self) -> list[str]:
        return _names(self.root / "final")

    def active_ids(self) -> list[str]:
        """Runs with a state file: started at least once, maybe final too."""
        return _names(self.root / "state")

    def running(self) -> list[str]:
        """Runs whose trainer is alive right now (their lock is held)."""
        final = set(self.final_ids())
        return [
            run_id
            for run_id in self.active_ids()
            if run_id not in final
            and self._recorded_status(run_id) == RUNNING
            and self.is_held(run_id)
        ]

    def _recorded_status(self, run_id: str) -> str | None:
        try:
            return self.read_state(run_id).status
        except GridError:
            return None

    def all_final(self) -> bool:
        return len(set(self.final_ids())) >= len(self.sweep.run_ids)

    # -- claiming ---------------------------------------------------------------
    def claim(self, worker: str) -> Claim | None:
        """Lock the next claimable run: interrupted ones first, then pending in run order.

        Only the few started-but-not-final state files are read. Fresh runs come from a
        cursor over the run order that passes runs found final or taken, so a claim costs a
        few file checks however many runs are queued; once the cursor is through, a full
        pass over final/ and state/ finds any run passed while another worker held it.
        """
        order = self._order()
        started = [r for r in self.active_ids() if not self.final_file(r).exists()]
        started.sort(key=lambda r: order.get(r, len(order)))
        status = {r: self._recorded_status(r) for r in started}
        # Interrupted runs, then retries (a started run that is pending again).
        first = [r for r in started if status[r] in (RUNNING, INTERRUPTED)]
        first += [r for r in started if status[r] not in (RUNNING, INTERRUPTED)]
        claim = self._first_claimable(first, worker)
        if claim is not None:
            return claim
        run_ids = self.sweep.run_ids
        skip = set(started)
        while self._cursor < len(run_ids):
            run_id = run_ids[self._cursor]
            self._cursor += 1
            # A lock file on a run without state is another worker's claim in progress (or
            # a claimer that died at once, which the full pass below picks up).
            if (
                run_id in skip
                or self.final_file(run_id).exists()
                or self.lock_file(run_id).exists()
            ):
                continue
            claim = self._first_claimable([run_id], worker)
            if claim is not None:
                return claim
        final = set(self.final_ids())
        return self._first_claimable((r for r in run_ids if r not in final), worker)

    def _first_claimable(self, run_ids: Iterable[str], worker: str) -> Claim | None:
        for run_id in run_ids:
            if run_id in self.problems:
                continue
            try:
                claim = self._try_claim(run_id, worker)
            except GridError as exc:
                self.problems[run_id] = str(exc)
                continue
            if claim is not None:
                return claim
        return None

    def _order(self) -> dict[str, int]:
        if self._index is None:
            self._index = {run_id: i for i, run_id in enumerate(self.sweep.run_ids)}
        return self._index

    def _try_claim(self, run_id: str, worker: str) -> Claim | None:
        taken = _try_lock(self.lock_file(run_id))
        if taken is None:
            return None
        lock, fd = taken
        try:
            if self.final_file(run_id).exists():
                lock.release()
                return None
            state = self.read_state(run_id)
            claim = Claim(self.job(run_id), state, lock, fd)
        except BaseException:
            lock.release()
            raise
        reason = self.kill_reason(run_id)
        if reason is not None:
            self.finish(claim, STOPPED, stop_reason=reason, worker=worker)
            self.record("stopped", run_id, worker=worker, reason=reason)
            claim.release()
            return None
        return claim

    def await_releases(self, run_ids: Iterable[str], wake: threading.Event) -> None:
        """Set `wake` when any of these runs' locks is released, by a finished or dead worker.

        A blocking flock in a thread costs no CPU and needs no file event, which a dead
        process does not produce.
        """
        for run_id in run_ids:
            if run_id not in self._awaited:
                self._awaited.add(run_id)
                threading.Thread(
                    target=self._await_release, args=(run_id, wake), daemon=True
                ).start()

    def _await_release(self, run_id: str, wake: threading.Event) -> None:
        import fcntl

        try:
            fd = os.open(self.lock_file(run_id), os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        except OSError:
            pass
        finally:
            self._awaited.discard(run_id)
            wake.set()

    # -- writing (only by the claim holder) -------------------------------------
    def save(self, claim: Claim, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(claim.state, key, value)
        write_atomic(self.state_file(claim.job.run_id), claim.state.to_json())

    def finish(self, claim: Claim, status: str, **changes: Any) -> None:
        """Record a final state: final/ is written before state/ is removed, and wins."""
        changes.setdefault("ended", time.time())
        for key, value in changes.items():
            setattr(claim.state, key, value)
        claim.state.status = status
        write_atomic(self.final_file(claim.job.run_id), claim.state.to_json())
        with contextlib.suppress(FileNotFoundError):
            self.state_file(claim.job.run_id).unlink()

    @property
    def template(self) -> Any:
        """The trainer config every run shares, before its values are set."""
        if self._template is None:
            path = self.root / "template.yaml"
            try:
                self._template = yaml.safe_load(path.read_text("utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
                raise GridError(f"{path}: unreadable ({exc}); re-plan the sweep") from None
        return self._template

    def write_config(self, job: Job) -> Path:
        path = self.config_file(job.run_id)
        config = build_config(self.template, job.assignments)
        write_atomic(path, yaml.dump(config, Dumper=_DUMPER, sort_keys=False, allow_unicode=True))
        return path

    # -- stop requests ----------------------------------------------------------
    def request_stop(self, run_id: str, reason: str, by: str) -> bool:
        """Drop a kill file; False when one was already there (first reason wins)."""
        path = self.kill_file(run_id)
        if path.exists():
            return False
        write_atomic(path, json.dumps({"reason": reason, "by": by, "time": time.time()}))
        return True

    def settle_stopped(self, run_id: str, by: str) -> None:
        """Finish a stop-requested run that no worker holds, so it never starts."""
        claim = self._try_claim(run_id, by)
        if claim is not None:
            claim.release()

    def kill_reason(self, run_id: str) -> str | None:
        try:
            text = self.kill_file(run_id).read_text(encoding="utf-8")
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
        return set(_names(self.kill_dir, suffix=""))

    # -- port slots -------------------------------------------------------------
    def take_slot(self, host: str, start: int = 0) -> tuple[int, FileLock]:
        """The lowest free port slot on this host at or above `start`."""
        slot = start
        while True:
            taken = _try_lock(self.root / "slots" / f"{host}.{slot}.lock")
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
        fd = os.open(self.events_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def events(self) -> Iterable[dict[str, Any]]:
        try:
            lines = self.events_file.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out


def _names(folder: Path, suffix: str = ".json") -> list[str]:
    """Run ids with a file in `folder`, skipping temporary files."""
    try:
        entries = os.listdir(folder)
    except FileNotFoundError:
        return []
    return [
        name[: len(name) - len(suffix)]
        for name in entries
        if not name.startswith(".") and name.endswith(suffix)
    ]


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
    names = ", ".join(str(p) for p in found)
    raise GridError(f"several sweeps under ./{DEFAULT_QUEUE_ROOT} ({names}); pass --queue DIR")
