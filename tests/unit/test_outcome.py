"""The outcome policy (queue/outcome.py): which end of an attempt becomes which status and
event, and whether it counts against --max-attempts."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from mlagents_grid.queue.job import Event, Status
from mlagents_grid.queue.outcome import STATUS_CONTROL_C_EXIT, Outcome, StopBy, decide

MAX_ATTEMPTS = 3


@pytest.mark.parametrize(
    ("outcome", "failures", "status", "event", "failures_after", "counts"),
    [
        (Outcome(0), 0, Status.DONE, Event.DONE, 0, False),
        (Outcome(0, stop_reason="low"), 1, Status.STOPPED, Event.STOPPED, 1, False),
        (Outcome(0, interrupted=True), 0, Status.INTERRUPTED, Event.INTERRUPTED, 0, False),
        (Outcome(-signal.SIGKILL, interrupted=True), 2, Status.INTERRUPTED, Event.INTERRUPTED, 2,
         False),
        (Outcome(None), 0, Status.INTERRUPTED, Event.INTERRUPTED, 0, False),
        (Outcome(-signal.SIGTERM), 0, Status.INTERRUPTED, Event.INTERRUPTED, 0, False),
        (Outcome(-signal.SIGINT), 0, Status.INTERRUPTED, Event.INTERRUPTED, 0, False),
        (Outcome(-signal.SIGKILL), 0, Status.PENDING, Event.ATTEMPT_FAILED, 1, True),
        (Outcome(1), 0, Status.PENDING, Event.ATTEMPT_FAILED, 1, True),
        (Outcome(1), 2, Status.FAILED, Event.FAILED, 3, True),
        # Windows: a console's Ctrl+C, Ctrl+Break or close (or the runner saving after one).
        (Outcome(STATUS_CONTROL_C_EXIT), 2, Status.INTERRUPTED, Event.INTERRUPTED, 2, False),
        # Paused at a rung: whatever the exit code, never a failure.
        (Outcome(0, paused=True), 1, Status.PAUSED, Event.PAUSED, 1, False),
        (Outcome(1, paused=True), 2, Status.PAUSED, Event.PAUSED, 2, False),
        (Outcome(-signal.SIGKILL, paused=True), 0, Status.PAUSED, Event.PAUSED, 0, False),
        # A pause whose exit code was lost with its launcher: resumed, not paused.
        (Outcome(None, paused=True), 0, Status.INTERRUPTED, Event.INTERRUPTED, 0, False),
        # A stop asked for while pausing wins.
        (Outcome(0, stop_reason="low", paused=True), 0, Status.STOPPED, Event.STOPPED, 0, False),
    ],
)  # fmt: skip
def test_the_outcome_policy(
    outcome: Outcome,
    failures: int,
    status: Status,
    event: Event,
    failures_after: int,
    counts: bool,
) -> None:
    decision = decide(outcome, failures, MAX_ATTEMPTS)
    assert (decision.status, decision.event, decision.failures) == (status, event, failures_after)
    assert decision.counts_as_failure is counts


@pytest.mark.parametrize(
    ("record", "kill_reason", "expected"),
    [
        ({"exit_code": 0, "stop": StopBy.KILL_FILE}, "slow", Outcome(0, stop_reason="slow")),
        # The kill file is gone: the status stands for the reason.
        ({"exit_code": 0, "stop": StopBy.KILL_FILE}, None, Outcome(0, stop_reason="stopped")),
        ({"exit_code": 0, "stop": StopBy.WORKER}, None, Outcome(0, interrupted=True)),
        ({"exit_code": 0, "stop": StopBy.ORPHANED}, None, Outcome(0, interrupted=True)),
        ({"exit_code": 0, "stop": StopBy.PAUSE}, None, Outcome(0, paused=True)),
        # A kill file written while the run paused: stopped, not paused.
        ({"exit_code": 0, "stop": StopBy.PAUSE}, "by hand", Outcome(0, stop_reason="by hand")),
        ({"exit_code": 1, "stop": None}, None, Outcome(1)),
        ({"exit_code": "x"}, None, Outcome(None)),
        # As written to disk: the plain strings.
        ({"exit_code": 0, "stop": "orphaned"}, None, Outcome(0, interrupted=True)),
    ],
)  # fmt: skip
def test_outcomes_from_exit_records(
    record: dict[str, Any], kill_reason: str | None, expected: Outcome
) -> None:
    assert Outcome.from_exit_record(record, kill_reason) == expected
