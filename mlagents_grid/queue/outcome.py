"""Which end of an attempt becomes which status and event: one pure function, `decide`.

Only a trainer that ran and failed on its own counts against `--max-attempts`. A stop asked
for by a kill file is `stopped`; an end the run did not cause (its worker was stopped, the
job was cancelled, the trainer was killed from outside or its exit code was lost) is
`interrupted`, and the next worker resumes it.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Any

from .job import DONE, FAILED, INTERRUPTED, PAUSED, PENDING, STOPPED, Event, Name, Status

# Stop requests of the ones who own a machine or a job: scancel, shutdown, a closed terminal.
# SIGKILL is not among them: with no stop asked for, it is usually the kernel's OOM killer,
# which the run would meet again.
OUTSIDE_STOPS = frozenset({signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", 1)})
# Windows' exit code for a process ended by a console's Ctrl+C, Ctrl+Break or closing (and
# the runner's, when it saved after one of them): an outside stop too.
STATUS_CONTROL_C_EXIT = 0xC000013A


class StopBy(Name):
    """Who asked a trainer to stop, as its exit record's `stop` says."""

    KILL_FILE = "kill-file"
    WORKER = "worker"  # the worker was asked to stop (Ctrl-C, SIGTERM)
    ORPHANED = "orphaned"  # the worker died; its launcher stopped the trainer
    # A pause request at a rung (pause/<run>): the model is saved and the run waits for it.
    PAUSE = "pause"
    # The claim was lost (taken over, or its lease could not be renewed): killed without a
    # save, and no exit record is written.
    FENCED = "fenced"


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, as its supervisor saw it."""

    exit_code: int | None  # negative: killed by that signal; None: lost with its launcher
    stop_reason: str | None = None  # a kill file asked for the stop, for this reason
    interrupted: bool = False  # the worker was asked to stop, or died
    paused: bool = False  # stopped at a rung by a pause request

    @classmethod
    def from_exit_record(cls, record: dict[str, Any], kill_reason: str | None) -> Outcome:
        """The outcome of an attempt whose worker died before recording it."""
        code = record.get("exit_code")
        stop = record.get("stop")
        exit_code = code if isinstance(code, int) else None
        if stop == StopBy.KILL_FILE or (stop == StopBy.PAUSE and kill_reason is not None):
            # With its kill file gone, no reason is left to read: the status stands for it.
            return cls(exit_code, stop_reason=kill_reason or str(Status.STOPPED))
        if stop == StopBy.PAUSE:
            return cls(exit_code, paused=True)
        return cls(exit_code, interrupted=stop in (StopBy.WORKER, StopBy.ORPHANED))


@dataclass(frozen=True)
class Decision:
    status: Status
    event: Event
    failures: int
    counts_as_failure: bool = False  # against --max-attempts: the trainer failed on its own


def decide(outcome: Outcome, failures: int, max_attempts: int) -> Decision:
    """The status and event an attempt's end leads to; `failures` counts earlier failures."""
    if outcome.stop_reason is not None:
        return Decision(STOPPED, Event.STOPPED, failures)
    if outcome.paused and outcome.exit_code is not None:
        # Whatever the exit code: a pause never counts as a failure.
        return Decision(PAUSED, Event.PAUSED, failures)
    if outcome.interrupted or outcome.exit_code is None:
        return Decision(INTERRUPTED, Event.INTERRUPTED, failures)
    if outcome.exit_code == 0:
        return Decision(DONE, Event.DONE, failures)
    if outcome.exit_code < 0 and -outcome.exit_code in OUTSIDE_STOPS:
        return Decision(INTERRUPTED, Event.INTERRUPTED, failures)
    if outcome.exit_code == STATUS_CONTROL_C_EXIT:
        return Decision(INTERRUPTED, Event.INTERRUPTED, failures)
    if failures + 1 >= max_attempts:
        return Decision(FAILED, Event.FAILED, failures + 1, counts_as_failure=True)
    return Decision(PENDING, Event.ATTEMPT_FAILED, failures + 1, counts_as_failure=True)
