"""Growing a planned sweep: `grid-plan --extend` (README: Growing a sweep).

What may change is decided by the pure `diff.compare_plans`; which grid points are new by
`diff.extension_runs`. This module checks grid-plan's flags against the sweep as planned,
puts the two together, and hands the files to `Queue.publish_extension`, which writes them
as one change under the sweep's plan.lock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import GridError
from ..plan.conditions import StopCondition
from ..plan.diff import (
    EXTEND_RULE,
    PlanChange,
    carried_assignments,
    compare_plans,
    extension_runs,
    values_of,
)
from ..plan.document import load_document, plan_document
from ..plan.grid import Dimension, Plan, PlannedRun, config_info_line
from ..plan.seeds import with_seeds
from ..plan.sweep import (
    DEFAULT_MAX_RUNS,
    Sweep,
    SweepRequest,
    check_results_clash,
    checked_sweep,
    dimension_records,
    positive_int,
)
from .files import read_json
from .folder import Queue
from .job import Job
from .ownership import Claims


@dataclass(frozen=True)
class ExtendRequest:
    """grid-plan --extend's options, as given (None: not given, so the sweep's stand)."""

    config: Path
    trainer_args: list[str]
    run_id: str | None = None
    results_dir: str | None = None
    base_port: int | None = None
    max_runs: int = DEFAULT_MAX_RUNS
    seeds: str | None = None
    lease: float | None = None
    max_attempts: int | None = None
    force: bool = False


@dataclass(frozen=True)
class Replan:
    """The config planned again as an extension of the sweep, its flags checked."""

    plan: Plan
    source: str  # the config's absolute path, as sweep.json records it
    trainer_args: list[str] | None  # None: the recorded trainer arguments are kept
    notes: list[str]  # warnings and notes for grid-plan to print


@dataclass
class Extension:
    """What an --extend would write: the new sweep, its new runs and the rewritten jobs."""

    sweep: Sweep
    change: PlanChange
    runs: list[PlannedRun]
    rewritten: list[Job]
    seeds_before: int = 1  # seeds per grid point before the extension (sweep.seeds)
    points_before: int = 0  # grid points before the extension

    @property
    def empty(self) -> bool:
        return not (self.runs or self.rewritten or self.change.conditions_changed)

    def describe(self) -> list[str]:
        lines = self.change.describe()
        before, after = self.seeds_before, self.sweep.seeds
        if after > before:
            n = self.points_before
            added = f"seed {before}" if after == before + 1 else f"seeds {before}..{after - 1}"
            lines.append(
                f"seeds: {before} -> {after} per grid point ({added} added to each of the {n} "
                f"existing point{'s' if n != 1 else ''})"
            )
        return lines


@dataclass(frozen=True)
class Committed:
    """An extension whose manifest was written (it is committed) but whose files a crash left
    before all of them were renamed into place: the sweep as it is once rolled forward."""

    sweep: Sweep
    jobs: dict[str, Job]  # the job files it writes, as they will be
    generation: int
    added: list[str]  # the run ids it adds

    def describe(self) -> str:
        """`generation 2: 2 new runs (grid-4 ... grid-5)`."""
        n = len(self.added)
        span = f" ({self.added[0]} ... {self.added[-1]})" if n > 1 else ""
        span = f" ({self.added[0]})" if n == 1 else span
        return f"generation {self.generation}: {n} new run{'s' if n != 1 else ''}{span}"

    def job(self, queue: Queue, run_id: str) -> Job:
        return self.jobs[run_id] if run_id in self.jobs else queue.job(run_id)


def committed(queue: Queue) -> Committed | None:
    """The committed extension a crash left half-applied, read without changing anything;
    None when there is none (an uncommitted staging is no extension: it is dropped)."""
    try:
        manifest = read_json(queue.paths.extension_manifest)
        entries, events = manifest["files"], manifest["events"]
    except (FileNotFoundError, GridError, KeyError, TypeError):
        return None
    sweep, jobs = queue.sweep, {}
    jobs_dir = queue.paths.job_file("-").parent
    for staged, target in entries:
        placed = queue.root / target
        source = queue.paths.extension_dir / staged
        path = source if source.exists() else placed  # renamed into place already
        if placed == queue.paths.sweep_file:
            sweep = Sweep(**read_json(path))
        elif placed.parent == jobs_dir:
            job = Job.from_dict(read_json(path))
            jobs[job.run_id] = job
    added = [e["run_id"] for e in events if e.get("event") == "extended"]
    return Committed(sweep, jobs, sweep.generation, added)


def planned(queue: Queue, sweep: Sweep | None = None) -> Plan:
    """The sweep's plan as it stands (or as `sweep` has it): template.yaml, and dimensions and
    opt_stop from sweep.json (from the first job file for sweeps planned before they were
    recorded)."""
    sweep = queue.sweep if sweep is None else sweep
    try:
        template = yaml.safe_load(queue.paths.template_file.read_text("utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise GridError(
            f"{queue.paths.template_file}: unreadable ({exc}); re-plan the sweep"
        ) from None
    first = queue.job(sweep.run_ids[0]) if sweep.run_ids else None
    paths = [tuple(d["path"]) if "path" in d else None for d in sweep.dimensions]
    if None in paths:
        if first is None or len(first.assignments) != len(paths):
            raise GridError(f"{queue.paths.sweep_file}: the swept keys' paths are unknown")
        paths = [path for path, _ in first.assignments]
    dimensions = tuple(
        Dimension(d["owner"], d["name"], path, tuple(d["values"]))
        for d, path in zip(sweep.dimensions, paths, strict=True)
        if path is not None
    )
    if sweep.conditions is not None:
        conditions = tuple(StopCondition.from_dict(c) for c in sweep.conditions)
    else:
        conditions = first.conditions if first is not None else ()
    return Plan(
        sweep.source,
        sweep.prefix,
        template,
        dimensions,
        conditions,
        tuple(sweep.behaviors),
        rungs=sweep.rungs,
    )


def prepare(
    queue: Queue,
    new: Plan,
    trainer_args: list[str] | None,
    source: str,
    half: Committed | None = None,
) -> Extension:
    """Compare `new` with the sweep and work out every file the extension changes; `half`:
    compare with the sweep as a committed extension will leave it (a dry run, which may not
    roll it forward)."""
    sweep = queue.sweep if half is None else half.sweep
    change = compare_plans(planned(queue, sweep), new, sweep.trainer_args, trainer_args)
    job_of = queue.job if half is None else lambda run_id: half.job(queue, run_id)
    jobs = [job_of(run_id) for run_id in sweep.run_ids]
    runs = extension_runs(new, change, (job.assignments for job in jobs), sweep.seeds)
    final = set(queue.final_ids())
    rewritten = []
    for job in jobs:
        assignments, values, conditions = job.assignments, job.values, job.conditions
        if change.new_keys:
            assignments = carried_assignments(job.assignments, change)
            values = values_of(assignments, new.dimensions)
        if change.conditions_changed and job.run_id not in final:
            conditions = new.conditions
        if (assignments, values, conditions) != (job.assignments, job.values, job.conditions):
            rewritten.append(
                dataclasses.replace(
                    job, assignments=assignments, values=values, conditions=conditions
                )
            )
    extended = dataclasses.replace(
        sweep,
        source=source,
        run_ids=[*sweep.run_ids, *(run.run_id for run in runs)],
        dimensions=dimension_records(new.dimensions),
        conditions=[c.to_dict() for c in new.conditions],
        generation=sweep.generation + 1,
        seeds=max(sweep.seeds, len(new.seed_values)),
    )
    points = len({job.point for job in jobs})
    return Extension(extended, change, runs, rewritten, sweep.seeds, points)


def publish(queue: Queue, extension: Extension) -> None:
    """Write the extension (the caller holds plan.lock): new job files, rewritten ones,
    config_info.txt with the new lines appended, and sweep.json last."""
    files: list[tuple[Path, str]] = []
    for run in extension.runs:
        job = Job(
            run.run_id, run.index, run.values, run.assignments, run.conditions, run.point, run.seed
        )
        files.append((queue.paths.job_file(run.run_id), job.to_json()))
    files += [(queue.paths.job_file(job.run_id), job.to_json()) for job in extension.rewritten]
    try:
        info = queue.paths.config_info.read_text(encoding="utf-8")
    except FileNotFoundError:
        info = ""
    if info and not info.endswith("\n"):
        info += "\n"
    info += "".join(config_info_line(run) + "\n" for run in extension.runs)
    files.append((queue.paths.config_info, info))
    generation = extension.sweep.generation
    events: list[dict[str, Any]] = [
        {"event": "extended", "run_id": run.run_id, "generation": generation}
        for run in extension.runs
    ]
    events.append(
        {
            "event": "sweep-extended",
            "generation": generation,
            "runs": len(extension.runs),
            "rewritten": len(extension.rewritten),
            "opt_stop_changed": extension.change.conditions_changed,
            "source": extension.sweep.source,
        }
    )
    queue.publish_extension(extension.sweep, files, events)


def replan(queue: Queue, request: ExtendRequest) -> Replan:
    """Plan the config again for the sweep in `queue`; GridError naming the first flag that
    disagrees with the sweep (--extend keeps its prefix, lease, attempts, folders and ports)."""
    document = load_document(request.config)
    sweep = queue.sweep
    if request.run_id is not None and request.run_id != sweep.prefix:
        raise GridError(
            f"--run-id {request.run_id}: the sweep's run ids start with {sweep.prefix}; drop "
            "--run-id (--extend keeps the sweep's prefix)"
        )
    if request.force and not sweep.force:
        raise GridError(
            "--force: the sweep was planned without it and --extend cannot change that; drop it"
        )
    for label, given, recorded in (
        ("--lease", request.lease, sweep.lease),
        ("--max-attempts", request.max_attempts, sweep.max_attempts),
    ):
        if given is not None and given != recorded:
            raise GridError(
                f"--extend: {label} changed from {recorded:g} to {given:g}; drop it ({EXTEND_RULE})"
            )
    seeds = sweep.seeds if request.seeds is None else positive_int(request.seeds, "--seeds")
    if seeds < sweep.seeds:
        raise GridError(
            f"--seeds {seeds}: the sweep trains {sweep.seeds} seeds per grid point and --extend "
            f"never removes runs; give --seeds {sweep.seeds} or more, or leave it out"
        )
    plan = with_seeds(plan_document(document, str(request.config), sweep.prefix), seeds)
    sweep_request = SweepRequest(
        config=request.config,
        trainer_args=request.trainer_args or list(sweep.trainer_args),
        results_dir=request.results_dir or sweep.results_dir,
        base_port=request.base_port or sweep.base_port,
        force=sweep.force,
        max_runs=request.max_runs,
        lease=sweep.lease,
        max_attempts=sweep.max_attempts,
    )
    replanned, notes = checked_sweep(document, plan, sweep_request, sweep.cwd)
    for label, old, new in (
        ("--results-dir", sweep.results_dir, replanned.results_dir),
        ("--base-port", sweep.base_port, replanned.base_port),
        ("--num-envs", sweep.num_envs, replanned.num_envs),
    ):
        if old != new:
            raise GridError(
                f"--extend: {label} changed from {old} to {new}; drop it ({EXTEND_RULE})"
            )
    return Replan(plan, replanned.source, request.trainer_args or None, notes)


def preview(queue: Queue, replanned: Replan, tell: Callable[[str], None]) -> Extension:
    """What `grow` would do, changing nothing: compared with a committed extension a crash
    left half-applied as it will be once finished (`tell` says so)."""
    half = committed(queue)
    if half is not None:
        tell(
            f"An earlier --extend was cut short after its commit ({half.describe()}); "
            "the next --extend, grid-retry or worker finishes it; compared with it applied"
        )
    return prepare(queue, replanned.plan, replanned.trainer_args, replanned.source, half)


def grow(queue: Queue, claims: Claims, replanned: Replan, tell: Callable[[str], None]) -> Extension:
    """Extend the sweep under its plan.lock: first finish an extension a crash left (`tell`
    says so), then refuse run ids whose results exist, then write."""
    lock = queue.hold_plan(claims)
    if lock is None:
        raise GridError(
            f"--extend: {queue.paths.plan_claims} is held: another grid-plan --extend or "
            "grid-retry is changing this sweep; try again once it has ended"
        )
    try:
        half = committed(queue)
        lock.wrote = queue.recover_extension()
        if half is not None:
            tell(f"Finished an earlier --extend cut short after its commit ({half.describe()})")
        extension = prepare(queue, replanned.plan, replanned.trainer_args, replanned.source)
        check_results_clash(
            dataclasses.replace(extension.sweep, run_ids=[r.run_id for r in extension.runs])
        )
        if not extension.empty:
            lock.wrote = True
            publish(queue, extension)
    finally:
        lock.release()
    return extension
