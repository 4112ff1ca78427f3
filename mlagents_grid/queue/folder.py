"""The queue folder: creating it, reading it, and the requests others leave in it.

The folder on disk is the source of truth; no process keeps state another needs. Its paths
are named in `layout.py`. Who may change a run is `ownership.py` (claims); how a claimer
chooses its next run is `claims.py`; what a change is, `transitions.py`; the one writer of a
run's state and of events.jsonl, `ledger.py`.

A run's status is derived: the newest generation among its state/ and final/ files wins
(final/ on a tie); `running` whose owner is gone is reported as `interrupted`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import GridError
from ..plan.grid import Plan, build_config, config_info_line
from ..plan.sweep import Sweep
from . import files
from .files import FileBusy, fsync_dir, names, read_json, sync_tree, write_atomic
from .job import FINAL, INTERRUPTED, RUNNING, Event, Job, JobState
from .layout import PLANNED_FOLDERS, Layout, parse_generation_name
from .ledger import Ledger
from .ownership import (
    ClaimFolder,
    Claims,
    Hold,
    Host,
    Liveness,
    OwnerView,
    Process,
    host_name,
    view_owner,
)
from .rung_decision import RungDecision
from .transitions import RunView, Unreadable

UNREADABLE_KILL = "unreadable kill file"
RETRY = "the next worker retries the run (the file is kept as .unreadable)"
DEFAULT_QUEUE_ROOT = Path("sweeps")
# How long grid-retry and --extend wait for each other (each takes a moment) to end.
PLAN_HOLD_WAIT = 10.0
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL
_BINARY = getattr(os, "O_BINARY", 0)
# libyaml's dumper where PyYAML was built with it: several times faster per run config.
_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def worker_identity() -> str:
    return f"{host_name()}:{os.getpid()}"


@dataclass(frozen=True)
class StateRef:
    """Where a run's newest state is: the generation, and whether it is in final/."""

    run_id: str
    generation: int
    final: bool


@dataclass
class Claim:
    """A run this process holds the claim of, with what it read under it."""

    job: Job
    state: JobState
    hold: Hold
    # Older state files the claimer read: dropped once this claim has written its own.
    stale: list[Path] = field(default_factory=list)

    def release(self) -> None:
        self.hold.release()


class Queue:
    """A sweep's folder; see `layout.py` for what is where."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths = Layout(root)
        self.ledger = Ledger(self.paths)
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
                f"{self.root}: a sweep is already planned here; to add runs to it, plan with "
                "--extend; else remove the folder or pass --queue with another folder"
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
            files.rename(staging, self.root)
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
        except FileBusy:
            if self._sweep is None:
                raise
            return self._sweep  # held open elsewhere for now: the new sweep is read next time
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

    # -- runs' states -----------------------------------------------------------
    def snapshot(self) -> dict[str, StateRef]:
        """Where each started run's newest state is: one listing of state/ and of final/."""
        refs = self.listing(final=False)
        for run_id, ref in self.listing(final=True).items():
            known = refs.get(run_id)
            if known is None or ref.generation >= known.generation:
                refs[run_id] = ref
        return refs

    def listing(self, final: bool) -> dict[str, StateRef]:
        """The newest file of each run in final/ (or state/) alone: one listing, no read.

        state/ alone lists the runs started and not final (a run's state file goes once its
        final one is written), which is all a claimer needs before its cursor is through.
        """
        refs: dict[str, StateRef] = {}
        try:
            entries = os.listdir(self.paths.final_dir if final else self.paths.state_dir)
        except FileNotFoundError:
            return refs
        for name in entries:
            parsed = parse_generation_name(name)
            if parsed is not None:
                run_id, generation = parsed
                known = refs.get(run_id)
                if known is None or generation > known.generation:
                    refs[run_id] = StateRef(run_id, generation, final)
        return refs

    def state_path(self, ref: StateRef) -> Path:
        if ref.final:
            return self.paths.final_file(ref.run_id, ref.generation)
        return self.paths.state_file(ref.run_id, ref.generation)

    def read_state(self, ref: StateRef) -> JobState:
        """The state at `ref`; GridError naming the file when it cannot be read.

        An empty or cut-off file (a crash before its data reached the disk) never counts as
        a final state: the message says that the next worker retries the run.
        """
        path = self.state_path(ref)
        try:
            state = JobState.from_dict(read_json(path, RETRY))
            if state.run_id != ref.run_id:
                raise ValueError(f"it names run {state.run_id!r}")
            if (state.status in FINAL) != ref.final:
                raise ValueError(f"status {state.status!r} in {path.parent.name}/")
            return state
        except (TypeError, ValueError) as exc:
            raise GridError(f"{path}: not a job state ({exc}); {RETRY}") from None

    def states(self, refs: Mapping[str, StateRef]) -> dict[str, JobState | GridError]:
        """Each run's state at its ref; a file gone since the listing is looked up again."""
        found: dict[str, JobState | GridError] = {}
        for run_id, ref in refs.items():
            try:
                found[run_id] = self.read_state(ref)
            except FileNotFoundError:
                newer = self.latest_ref(run_id)
                if newer is not None:
                    with contextlib.suppress(FileNotFoundError, GridError):
                        found[run_id] = self.read_state(newer)
            except GridError as exc:
                found[run_id] = exc
        return found

    def latest_ref(self, run_id: str) -> StateRef | None:
        """The newest state of one run, without listing the shared folders: from the
        run's newest claim down (a claim writes its state under its own generation)."""
        for generation in range(self._top_generation(run_id), -1, -1):
            for final in (True, False):
                ref = StateRef(run_id, generation, final)
                if self.state_path(ref).exists():
                    return ref
        return None

    def state_of(self, run_id: str) -> JobState:
        """One run's recorded state (pending when it never started); GridError if unreadable."""
        for _ in range(3):
            ref = self.latest_ref(run_id)
            if ref is None:
                return JobState(run_id)
            with contextlib.suppress(FileNotFoundError):
                return self.read_state(ref)
        return JobState(run_id)

    def _top_generation(self, run_id: str) -> int:
        generations = self.claim_folder(run_id).generations()
        return generations[-1] if generations else 0

    def claim_folder(self, run_id: str) -> ClaimFolder:
        return ClaimFolder(self.paths.claim_folder(run_id), run_id)

    def read_view(self, hold: Hold) -> tuple[RunView, list[Path]]:
        """Everything about a held run, read once: its newest readable state (and the
        unreadable ones above it), the exit record of an attempt since, its stop request and
        the rung decisions. Also the files read, which the claim's first write makes stale.
        """
        run_id = hold.folder.name
        job = self.job(run_id)
        state: JobState | None = None
        found_at = 0
        unreadable: list[Unreadable] = []
        seen: list[Path] = []
        for generation in range(hold.previous, -1, -1):
            for final in (True, False):
                ref = StateRef(run_id, generation, final)
                path = self.state_path(ref)
                try:
                    read = self.read_state(ref)
                except FileNotFoundError:
                    continue
                except FileBusy:
                    raise  # held open, not broken: never set aside (the run waits a pass)
                except GridError as exc:
                    unreadable.append(Unreadable(str(path), str(exc)))
                    continue
                seen.append(path)
                if state is None:
                    state, found_at = read, generation
            if state is not None:
                break
        exit_record = None
        for generation in range(hold.previous, found_at - 1, -1):
            path = self.paths.exit_file(run_id, generation)
            record = _read_record(path)
            if record is not None:
                exit_record = record
                seen.append(path)
                break
        rungs = self.sweep.rung_plan is not None
        view = RunView(
            job=job,
            state=state or JobState(run_id),
            unreadable=tuple(unreadable),
            exit=exit_record,
            kill_reason=self.kill_reason(run_id),
            rungs=rungs,
            decisions=self.rung_decisions() if rungs else {},
        )
        return view, seen

    def owner(self, run_id: str, lease: float | None = None) -> OwnerView:
        """Who holds the run's claim and how fresh its lease is, as far as one look tells."""
        return view_owner(
            self.claim_folder(run_id).look(),
            Host.this(),
            Process.alive,
            time.time(),
            self.sweep.lease if lease is None else lease,
        )

    def effective(self, state: JobState, owner: OwnerView | None = None) -> JobState:
        """`running` whose owner is gone (or whose lease has lapsed) is `interrupted`."""
        if state.status == RUNNING:
            liveness = (owner or self.owner(state.run_id)).liveness
            if liveness != Liveness.HELD:
                return dataclasses.replace(state, status=INTERRUPTED)
        return state

    def final_ids(self) -> list[str]:
        return [run_id for run_id, ref in self.snapshot().items() if ref.final]

    def running(self) -> list[str]:
        """Runs recorded running whose owner is alive (or whose lease has not lapsed)."""
        refs = self.listing(final=False)
        return [
            run_id
            for run_id, state in self.states(refs).items()
            if isinstance(state, JobState)
            and state.status == RUNNING
            and self.owner(run_id).liveness == Liveness.HELD
        ]

    def runs_stamp(self) -> tuple[int, ...]:
        """Changes whenever a run's recorded state is written or removed: every such write
        is a rename in or out of state/ or final/, which changes that folder's mtime."""
        stamp: list[int] = []
        for folder in (self.paths.state_dir, self.paths.final_dir):
            try:
                info = os.stat(folder)
                stamp += [info.st_ino, info.st_mtime_ns]
            except OSError:
                stamp += [0, 0]
        return tuple(stamp)

    def recorded_running(self) -> list[str]:
        """Runs whose state says running, whether or not their owner lives."""
        refs = self.listing(final=False)
        return [
            run_id
            for run_id, state in self.states(refs).items()
            if isinstance(state, JobState) and state.status == RUNNING
        ]

    def all_final(self) -> bool:
        return len(set(self.final_ids())) >= len(self.sweep.run_ids)

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

    # -- the sweep itself: extensions and retries (under the plan claim) ----------
    def hold_plan(self, claims: Claims, timeout: float = 0.0) -> Hold | None:
        """The sweep-level claim that --extend and grid-retry hold while they change the
        sweep, waiting up to `timeout` s; None while another holds it. Renewed while held;
        its holder sets `wrote` once it changed the sweep."""
        hold = claims.wait_for(ClaimFolder(self.paths.plan_claims, "plan"), timeout)
        if hold is not None:
            hold.keep_alive(True)
        return hold

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

    def finish_left_extension(self, claims: Claims) -> None:
        """What a worker does about an extension left half-applied: finish it, unless one
        is being written right now."""
        if not self.paths.extension_dir.exists():
            return
        hold = self.hold_plan(claims)
        if hold is None:
            return
        try:
            hold.wrote = self.recover_extension()
        finally:
            hold.release()

    def _roll_forward(self, entries: list[list[str]], events: list[dict[str, Any]]) -> None:
        staging = self.paths.extension_dir
        folders = set()
        for staged, target in entries:
            source = staging / staged
            if source.exists():
                files.replace(source, self.root / target)
            folders.add((self.root / target).parent)
        for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
            fsync_dir(folder)
        for event in events:
            self.record(**event)
        files.unlink(self.paths.extension_manifest)
        shutil.rmtree(staging, ignore_errors=True)
        fsync_dir(self.root)

    # -- stop requests ----------------------------------------------------------
    def request_stop(self, run_id: str, reason: str, by: str) -> bool:
        """Drop a kill file; False when one was already there (first reason wins)."""
        path = self.paths.kill_file(run_id)
        if path.exists():
            return False
        write_atomic(path, json.dumps({"reason": reason, "by": by, "time": time.time()}))
        self.record(Event.STOP_REQUESTED, run_id, reason=reason, by=by)
        return True

    def kill_reason(self, run_id: str) -> str | None:
        try:
            text = files.read_text(self.paths.kill_file(run_id))
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
        self.record(Event.PAUSE_REQUESTED, run_id, rung=number, step=step, by=by)
        return True

    def pause_rung(self, run_id: str) -> int | None:
        """The rung the run's pause request is for; None without a readable one."""
        try:
            rung = json.loads(files.read_text(self.paths.pause_file(run_id)))["rung"]
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
        """Durably, before any run is promoted or stopped by it; then its event."""
        self.paths.rungs_dir.mkdir(exist_ok=True)
        write_atomic(self.paths.rung_file(decision.rung), json.dumps(decision.to_dict(), indent=1))
        self.announce_rung(decision, by)

    def announce_rung(self, decision: RungDecision, by: str, recovered: bool = False) -> None:
        """The `rung-decided` event; `recovered`: written by whoever found the decision
        without it (its monitor was killed between the two)."""
        self.record(
            Event.RUNG_DECIDED,
            rung=decision.rung,
            step=decision.step,
            promoted=decision.promoted,
            stopped=decision.stopped,
            cut=decision.cut,
            by=by,
            recovered=recovered or None,
        )

    # -- port slots -------------------------------------------------------------
    def take_slot(self, claims: Claims, start: int = 0) -> tuple[int, Hold]:
        """The lowest free port slot on this host at or above `start`, held for life."""
        host = claims.identity.host.name
        slot = start
        while True:
            folder = ClaimFolder(self.paths.slot_claims(host, slot), f"slot {host}.{slot}")
            hold = claims.take(folder)
            if hold is not None:
                hold.wrote = True  # released, never withdrawn: a port was handed out
                return slot, hold
            slot += 1

    def port_for(self, slot: int) -> int:
        return self.sweep.base_port + slot * max(1, self.sweep.num_envs)

    # -- events -----------------------------------------------------------------
    def record(self, event: Event, run_id: str | None = None, **fields_: Any) -> None:
        self.ledger.record(event, run_id, **fields_)

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


def _read_record(path: Path) -> dict[str, Any] | None:
    """An exit record, when one was written and is whole."""
    try:
        record = read_json(path)
    except FileBusy:
        raise  # it may say the run is done: the claimer skips the run for now
    except (FileNotFoundError, GridError):
        return None
    return record if isinstance(record, dict) else None


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
