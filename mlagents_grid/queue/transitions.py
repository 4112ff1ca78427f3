"""Every way a run's state changes, as pure functions: what the new state is and which event
tells it. `ledger.py` writes what these return; nothing else writes a run's state.

`claim_steps` is the claimer's one decision: given everything read about a run under its
claim (`RunView`), what to record first (an attempt a dead worker left unrecorded, a stop
request, a rung's decision) and whether to train the run now.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from .job import FINAL, Event, Job, JobState, Name, Status
from .outcome import Decision, Outcome, decide
from .rung_decision import RungDecision, passed_rungs, passes, ranked_point


class Request(Name):
    """A request file of a run, which a transition may answer (and so remove)."""

    PAUSE = "pause"  # pause/<run>
    KILL = "kill"  # kill/<run>


@dataclass(frozen=True)
class Change:
    """One transition of a run: the state it leads to, the events that tell it, and the
    request files it answers, which go once it is written."""

    state: JobState
    events: tuple[tuple[Event, dict[str, Any]], ...]
    answers: tuple[Request, ...] = ()

    @property
    def final(self) -> bool:
        return self.state.status in FINAL


@dataclass(frozen=True)
class Unreadable:
    """A state file that cannot be read: set aside, and never proof of anything."""

    path: str
    problem: str


@dataclass(frozen=True)
class RunView:
    """Everything a claimer reads about a run, once, under its claim."""

    job: Job
    state: JobState  # the newest readable state (a fresh JobState when there is none)
    unreadable: tuple[Unreadable, ...] = ()
    exit: dict[str, Any] | None = None  # the exit record of an attempt since that state
    kill_reason: str | None = None
    rungs: bool = False  # the sweep has opt_rungs
    decisions: dict[int, RungDecision] = field(default_factory=dict)


@dataclass(frozen=True)
class ClaimSteps:
    """What a claim does: set files aside, record changes in order, then train or let go."""

    unreadable: tuple[Unreadable, ...]
    changes: tuple[Change, ...]
    train: bool
    notes: tuple[str, ...] = ()

    @property
    def state(self) -> JobState | None:
        """The state after the changes (None when there are none)."""
        return self.changes[-1].state if self.changes else None


def _change(
    state: JobState, event: Event, answers: tuple[Request, ...] = (), **details: Any
) -> Change:
    return Change(state, ((event, details),), answers)


def started(state: JobState, **fields: Any) -> Change:
    """The trainer of a new attempt exists: the run is running."""
    new = dataclasses.replace(state, status=Status.RUNNING, **fields)
    return _change(
        new,
        Event.STARTED,
        pid=new.pid,
        port=new.port,
        attempt=new.attempts,
        mode=new.mode,
    )


def ended(state: JobState, decision: Decision, **fields: Any) -> Change:
    """An attempt's end, as `outcome.decide` said."""
    fields.setdefault("ended", time.time())
    new = dataclasses.replace(state, status=decision.status, failures=decision.failures, **fields)
    return _change(
        new,
        decision.event,
        exit_code=new.exit_code,
        attempt=new.attempts if decision.counts_as_failure else None,
        reason=new.stop_reason if decision.status == Status.STOPPED else None,
        rung=new.rung + 1 if decision.status == Status.PAUSED else None,
    )


def stopped_by_request(state: JobState, reason: str, by: str) -> Change:
    """A run with a kill file that no trainer runs: stopped, and never started again."""
    new = dataclasses.replace(
        state, status=Status.STOPPED, stop_reason=reason, worker=by, ended=time.time()
    )
    return _change(new, Event.STOPPED, (Request.PAUSE,), reason=reason)


def promoted(state: JobState, number: int, reason: str) -> Change:
    """A run paused at rung `number` that the rung promoted: claimable, it resumes from there."""
    new = dataclasses.replace(state, status=Status.PENDING, rung=number, stop_reason=None)
    return _change(new, Event.PROMOTED, (Request.PAUSE,), rung=number, reason=reason)


def stopped_at_rung(state: JobState, number: int, reason: str, by: str) -> Change:
    """A run paused at rung `number` that the rung did not promote: stopped, for good."""
    new = dataclasses.replace(
        state, status=Status.STOPPED, stop_reason=reason, worker=by, ended=time.time()
    )
    return _change(new, Event.STOPPED, (Request.PAUSE,), rung=number, reason=reason)


def passed(state: JobState, number: int) -> Change:
    """A run about to train passes the rungs decided without it, up to rung `number`."""
    new = dataclasses.replace(state, rung=number)
    events = tuple(
        (
            Event.PROMOTED,
            {"rung": rung, "reason": f"rung {rung} was decided without it; it trains on"},
        )
        for rung in range(state.rung + 1, number + 1)
    )
    return Change(new, events)


def retried(final: JobState, reason: str, stopped_by_rung: bool) -> Change:
    """A failed or stopped run made claimable again, or a paused one promoted by hand.

    It keeps the rungs it passed; one stopped by a rung decision, or paused at a rung, is
    treated as promoted past that rung.
    """
    passed_rung: int | None = None
    if final.status == Status.FAILED:
        previous = f"failed (exit code {final.exit_code})"
    elif final.status == Status.PAUSED:
        passed_rung = final.rung + 1
        previous = f"paused at rung {passed_rung}"
    else:
        previous = f"stopped ({final.stop_reason or 'no reason recorded'})"
        if stopped_by_rung:
            passed_rung = final.rung + 1
    new = JobState(
        final.run_id,
        status=Status.PENDING,
        attempts=final.attempts,
        failures=final.failures if final.status == Status.PAUSED else 0,
        rung=final.rung if passed_rung is None else passed_rung,
        retries=final.retries + 1,
        previous=previous,
    )
    return _change(
        new,
        Event.RETRIED,
        (Request.PAUSE, Request.KILL),
        reason=reason,
        previous=final.status,
        exit_code=final.exit_code,
        stop_reason=final.stop_reason,
        retries=new.retries,
        rung=passed_rung,
    )


def unrecorded(record: dict[str, Any], state: JobState) -> bool:
    """Whether an exit record tells of an attempt whose end the run's state does not know.

    Its worker died after the trainer ended (the state says running that attempt), or
    even before it recorded the start (the record is one attempt ahead).
    """
    attempt = record.get("attempt")
    if not isinstance(attempt, int):
        return False
    if state.status == Status.RUNNING and attempt == state.attempts:
        return True
    return attempt == state.attempts + 1


def stopped_by_rung(final: JobState, decision: RungDecision | None, point: int) -> bool:
    """Whether a stopped run was stopped by the decision of the rung it paused at."""
    if final.status != Status.STOPPED or decision is None:
        return False
    ranked = ranked_point(decision, final.run_id, point)
    return (
        ranked is not None
        and not passes(decision, final.run_id, point)
        and final.stop_reason is not None
        and final.stop_reason.startswith(ranked.reason)
    )


def claim_steps(view: RunView, max_attempts: int, by: str) -> ClaimSteps:
    """What a claimer does with a run it holds: skip a final run; record the end of an
    attempt whose worker died; stop a run with a stop request; carry out the decision of the
    rung a paused run waits at (or wait for it); pass rungs decided without the run; train.
    """
    state, job = view.state, view.job
    changes: list[Change] = []
    notes: list[str] = []

    def steps(train: bool) -> ClaimSteps:
        return ClaimSteps(view.unreadable, tuple(changes), train, tuple(notes))

    if state.status in FINAL:
        return steps(train=False)
    if view.exit is not None and unrecorded(view.exit, state):
        outcome = Outcome.from_exit_record(view.exit, view.kill_reason)
        decision = decide(outcome, state.failures, max_attempts)
        ended_at = view.exit.get("time")
        change = ended(
            dataclasses.replace(state, attempts=int(view.exit["attempt"])),
            decision,
            exit_code=outcome.exit_code,
            stop_reason=outcome.stop_reason,
            ended=ended_at if isinstance(ended_at, float) else time.time(),
        )
        changes.append(change)
        state = change.state
        notes.append(
            f"its trainer had ended (exit code {outcome.exit_code}) after its worker died; "
            f"recorded {decision.status}"
        )
        if change.final:
            return steps(train=False)
    if view.kill_reason is not None:
        changes.append(stopped_by_request(state, view.kill_reason, by))
        return steps(train=False)
    if state.status == Status.PAUSED:
        number = state.rung + 1
        decision_at = view.decisions.get(number)
        if decision_at is None:
            return steps(train=False)  # the rung is not decided yet: it waits
        ranked = ranked_point(decision_at, job.run_id, job.point)
        if ranked is not None and not passes(decision_at, job.run_id, job.point):
            reason = ranked.reason
            if decision_at.listing(job.run_id) is None:  # a seed added after the decision
                reason = f"{reason} (its grid point's verdict)"
            changes.append(stopped_at_rung(state, number, reason, by))
            return steps(train=False)
        # Promoted; or paused after its rung was decided without it (never left behind).
        reason = (
            ranked.reason
            if ranked is not None and ranked.eligible
            else f"rung {number}: decided without it; continues"
        )
        changes.append(promoted(state, number, reason))
        return steps(train=True)
    if view.rungs and view.decisions:
        target = passed_rungs(state.rung, view.decisions, job.run_id, job.point)
        if target > state.rung:
            changes.append(passed(state, target))
    return steps(train=True)
