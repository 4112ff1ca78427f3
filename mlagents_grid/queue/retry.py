"""`grid-retry`: make final runs claimable again, or promote a paused run by hand.

Safe while workers run: the sweep's plan claim is held (an --extend waits), then every run's
claim is taken; if any run is training or not retryable, nothing changes. Each retry is one
change under the run's claim (`transitions.retried`): the new pending state is written
durably before the pause request, the kill file and the old final state go.
"""

from __future__ import annotations

import dataclasses

from ..errors import GridError
from ..plan.conditions import StopCondition
from .files import write_atomic
from .folder import PLAN_HOLD_WAIT, Queue
from .job import FAILED, INTERRUPTED, PAUSED, RUNNING, STOPPED, JobState, Status
from .ownership import Claims, Hold
from .transitions import retried, stopped_by_rung

RETRYABLE = (FAILED, STOPPED)
RETRYABLE_OR_PAUSED = (*RETRYABLE, PAUSED)
# Generous: a worker on a busy machine may take seconds between its final write and release.
RELEASE_WAIT = 30.0


def choose(queue: Queue, run_ids: list[str], statuses: set[Status]) -> list[str]:
    """The runs named, then every final run whose status is in `statuses`, in run order;
    GridError naming an unknown run id."""
    known = queue.sweep.run_ids
    unknown = [r for r in run_ids if r not in set(known)]
    if unknown:
        raise GridError(
            f"{queue.root}: no run {unknown[0]!r} in this sweep; see grid-status for run ids"
        )
    targets = list(dict.fromkeys(run_ids))
    if statuses:
        refs = {r: ref for r, ref in queue.snapshot().items() if ref.final and r not in targets}
        for run_id, state in queue.states(refs).items():
            if isinstance(state, JobState) and state.status in statuses:
                targets.append(run_id)
        order = {run_id: i for i, run_id in enumerate(known)}
        targets = targets[: len(run_ids)] + sorted(targets[len(run_ids) :], key=order.__getitem__)
    return targets


def all_retryable(queue: Queue, run_ids: list[str]) -> bool:
    """Whether every run of `run_ids` can be retried as it stands (so the retry's outlook is
    worth telling before `retry_runs` takes their claims)."""
    return all(queue.state_of(r).status in RETRYABLE_OR_PAUSED for r in run_ids)


def retry_runs(queue: Queue, claims: Claims, run_ids: list[str], reason: str) -> list[JobState]:
    """Retry every run of `run_ids`, or none (GridError naming the first that cannot be)."""
    plan = queue.hold_plan(claims, timeout=PLAN_HOLD_WAIT)
    if plan is None:
        raise GridError(
            f"{queue.paths.plan_claims}: the sweep is being extended; try again once "
            "grid-plan --extend has ended"
        )
    holds: list[Hold] = []
    try:
        plan.wrote = queue.recover_extension()
        changes = []
        for run_id in run_ids:
            hold = _take_final(queue, claims, run_id)
            if hold is None:
                raise GridError(_not_retryable(run_id, Status.RUNNING))
            holds.append(hold)
            view, seen = queue.read_view(hold)
            state = view.state
            if state.status not in RETRYABLE_OR_PAUSED:
                # Running under a claim just taken: its worker is gone.
                shown = INTERRUPTED if state.status == RUNNING else state.status
                raise GridError(_not_retryable(run_id, shown))
            by_rung = stopped_by_rung(state, view.decisions.get(state.rung + 1), view.job.point)
            changes.append((hold, retried(state, reason, by_rung), seen))
        for hold, change, seen in changes:
            plan.wrote = True
            _take_sweep_conditions(queue, change.state.run_id)
            queue.ledger.write(hold, change, seen)
        return [change.state for _, change, _ in changes]
    finally:
        for hold in holds:
            hold.release()
        plan.release()


def _take_final(queue: Queue, claims: Claims, run_id: str) -> Hold | None:
    """The run's claim; a run whose final state is written while its worker still lets go
    of the claim (the last events, the release) is waited for, not called running."""
    folder = queue.claim_folder(run_id)
    hold = claims.take(folder)
    if hold is None and queue.state_of(run_id).status in RETRYABLE_OR_PAUSED:
        hold = claims.wait_for(folder, RELEASE_WAIT)
    return hold


def rung_passed(queue: Queue, state: JobState) -> int | None:
    """The rung a retry promotes the run past (1-based): the rung it is paused at, or the
    one whose decision stopped it; None for other runs."""
    if state.status == PAUSED:
        return state.rung + 1
    if queue.sweep.rung_plan is None:
        return None
    decision = queue.rung_decision(state.rung + 1)
    if stopped_by_rung(state, decision, queue.job(state.run_id).point):
        return state.rung + 1
    return None


def _take_sweep_conditions(queue: Queue, run_id: str) -> None:
    """A retried run is not final any more, so it takes the sweep's opt_stop as every run not
    final has it (`grid-plan --extend` may have changed it since the run ended)."""
    recorded = queue.sweep.conditions
    if recorded is None:
        return
    job = queue.job(run_id)
    conditions = tuple(StopCondition.from_dict(c) for c in recorded)
    if job.conditions != conditions:
        write_atomic(
            queue.paths.job_file(run_id), dataclasses.replace(job, conditions=conditions).to_json()
        )


def _not_retryable(run_id: str, status: str) -> str:
    return (
        f"{run_id} is {status}; only failed, stopped and paused runs can be retried "
        "(see grid-status; --failed / --stopped select every failed / stopped run)"
    )
