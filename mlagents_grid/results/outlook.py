"""What a grid-retry leads to, said before it acts: the rung a retried run meets next, and
an opt_stop condition that its latest data still meets (the monitor would stop it again at
once)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..errors import GridError
from ..plan.conditions import StopCondition
from ..plan.rungs import Rungs
from ..queue.folder import Queue
from ..queue.retry import rung_passed
from ..queue.rung_decision import RungDecision, passed_rungs
from .metrics import EventFileReader, tensorboard_run
from .monitor import conditions_met
from .rung_ranking import quota


def retry_outlook(
    run_id: str, point: int, passed: int, rungs: Rungs, decisions: Mapping[int, RungDecision]
) -> str:
    """What a retried run meets next; `passed` is `JobState.rung` once retried."""
    number = passed_rungs(passed, decisions, run_id, point) + 1
    if number > len(rungs.steps):
        return "it trains to max_steps: no rung is left ahead of it"
    where = f"rung {number} (step {rungs.steps[number - 1]})"
    if number in decisions:
        return f"{where} stopped its grid point: it trains to that step and is stopped there"
    previous = decisions.get(number - 1)
    if previous is None:
        return f"it takes part in {where}"
    kept = len(previous.promoted)
    places = max(1, quota(kept, rungs.keep))
    share = (
        f"{places} place{'s' if places != 1 else ''} for the {kept} point"
        f"{'s' if kept != 1 else ''} rung {number - 1} promoted"
    )
    if point in previous.refused:
        return (
            f"it joins {where} without adding a place: the rung keeps {share} "
            f"(ceil({rungs.keep:.3g} x {kept})), and it competes for them"
        )
    return f"it joins {where} as a point rung {number - 1} did not rank: it adds to the {share}"


def rung_lines(queue: Queue, run_ids: Iterable[str]) -> list[str]:
    """`run: it joins rung 2 (step 60000) without adding a place: ...`, one per run."""
    rungs = queue.sweep.rung_plan
    if rungs is None:
        return []
    decisions = queue.rung_decisions()
    lines = []
    for run_id in run_ids:
        state = queue.state_of(run_id)
        passed = rung_passed(queue, state)
        rung = state.rung if passed is None else passed
        outlook = retry_outlook(run_id, queue.job(run_id).point, rung, rungs, decisions)
        lines.append(f"{run_id}: {outlook}")
    return lines


def stop_warnings(queue: Queue, run_ids: Iterable[str], config: str) -> list[str]:
    """A warning for each run whose opt_stop, as it will have it once retried (the sweep's),
    holds for its latest data."""
    sweep = queue.sweep
    if sweep.conditions is None:
        return []
    conditions = tuple(StopCondition.from_dict(c) for c in sweep.conditions)
    if not conditions:
        return []
    jobs = [dataclasses.replace(queue.job(run_id), conditions=conditions) for run_id in run_ids]
    source = EventFileReader(Path(sweep.results_dir))
    source.refresh(tensorboard_run(job.run_id, c.behavior) for job in jobs for c in conditions)
    latest = {
        (tensorboard_run(job.run_id, c.behavior), c.tag): source.latest(
            tensorboard_run(job.run_id, c.behavior), c.tag
        )
        for job in jobs
        for c in conditions
    }
    return [
        f"warning: {met.run_id} still meets its opt_stop ({met.reason}), so "
        "grid-monitor stops it again at once; to relax the condition, change opt_stop in "
        f"{config} and run grid-plan {config} --extend first (a retried run takes the "
        "sweep's opt_stop)"
        for met in conditions_met(jobs, latest, len(sweep.behaviors) > 1)
    ]


def retry_notes(queue: Queue, run_ids: list[str]) -> tuple[list[str], list[str]]:
    """The rung lines (stdout) and the opt_stop warnings (stderr) for these runs; none when
    a run cannot be read (the retry itself then says what is wrong)."""
    try:
        return rung_lines(queue, run_ids), stop_warnings(queue, run_ids, _config_name(queue))
    except GridError:
        return [], []


def _config_name(queue: Queue) -> str:
    """The config as the user named it: relative to the folder grid-plan ran in, if inside."""
    source = Path(queue.sweep.source)
    try:
        return str(source.relative_to(queue.sweep.cwd))
    except ValueError:
        return str(source)
