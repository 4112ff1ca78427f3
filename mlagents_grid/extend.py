"""Growing a planned sweep: `grid-plan --extend` (README: Growing a sweep).

What may change is decided by the pure `planner.compare_plans`; which grid points are new
by `planner.extension_runs`. This module reads the sweep as planned, puts the two
together, and hands the files to `Queue.publish_extension`, which writes them as one
change under the sweep's plan.lock.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .conditions import StopCondition
from .errors import GridError
from .job import Job
from .planner import (
    Dimension,
    Plan,
    PlanChange,
    PlannedRun,
    Sweep,
    carried_assignments,
    compare_plans,
    config_info_line,
    dimension_records,
    extension_runs,
    values_of,
)
from .queue import Queue


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


def planned(queue: Queue) -> Plan:
    """The sweep's plan as it stands: template.yaml, and dimensions and opt_stop from
    sweep.json (from the first job file for sweeps planned before they were recorded)."""
    sweep = queue.sweep
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


def prepare(queue: Queue, new: Plan, trainer_args: list[str] | None, source: str) -> Extension:
    """Compare `new` with the sweep and work out every file the extension changes."""
    sweep = queue.sweep
    change = compare_plans(planned(queue), new, sweep.trainer_args, trainer_args)
    jobs = [queue.job(run_id) for run_id in sweep.run_ids]
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
