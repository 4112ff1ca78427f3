"""A run of the sweep (`Job`, fixed at planning time), what has happened to it (`JobState`),
and the names of its states and of the events that move it between them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

from ..plan.conditions import StopCondition
from ..plan.grid import KeyPath


class Name(str, Enum):
    """A name written to disk: compares, prints and serialises as its plain string."""

    def __str__(self) -> str:
        return str(self.value)

    def __repr__(self) -> str:
        return repr(str(self.value))

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Status(Name):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"  # stopped at a rung with its model saved, until the rung is decided
    INTERRUPTED = "interrupted"
    DONE = "done"
    STOPPED = "stopped"
    FAILED = "failed"


class Event(Name):
    """Every kind of line in events.jsonl."""

    PLANNED = "planned"
    EXTENDED = "extended"
    SWEEP_EXTENDED = "sweep-extended"
    WORKER_STARTED = "worker-started"
    WORKER_EXITED = "worker-exited"
    STARTED = "started"
    START_FAILED = "start-failed"
    PORT_IN_USE = "port-in-use"
    DONE = "done"
    STOPPED = "stopped"
    INTERRUPTED = "interrupted"
    ATTEMPT_FAILED = "attempt-failed"
    FAILED = "failed"
    PAUSED = "paused"
    PROMOTED = "promoted"
    RETRIED = "retried"
    TAKEN_OVER = "taken-over"
    UNREADABLE_STATE = "unreadable-state"
    STOP_REQUESTED = "stop-requested"
    PAUSE_REQUESTED = "pause-requested"
    RUNG_DECIDED = "rung-decided"
    SLURM_SUBMITTED = "slurm-submitted"
    MONITOR_STARTED = "monitor-started"


PENDING, RUNNING, INTERRUPTED = Status.PENDING, Status.RUNNING, Status.INTERRUPTED
PAUSED = Status.PAUSED
DONE, STOPPED, FAILED = Status.DONE, Status.STOPPED, Status.FAILED
STATUSES = tuple(Status)
FINAL = frozenset({DONE, STOPPED, FAILED})


@dataclass(frozen=True)
class Job:
    """One run of the sweep, fixed at planning time."""

    run_id: str
    index: int
    values: dict[str, dict[str, Any]]
    assignments: tuple[tuple[KeyPath, Any], ...]
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


@dataclass(frozen=True)
class JobState:
    """What has happened to a run so far; written only by the holder of its claim."""

    run_id: str
    status: Status = PENDING
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
    # Rungs passed (promotions): the run trains towards, or is paused at, rung `rung + 1`.
    rung: int = 0
    log_tail: list[str] = field(default_factory=list)
    # grid-retry: how often the run was made claimable again, and how it had ended before.
    retries: int = 0
    previous: str | None = None

    def to_json(self) -> str:
        # A flat copy: dataclasses.asdict deep-copies and costs more than the write itself.
        return json.dumps(vars(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobState:
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        given = {k: v for k, v in data.items() if k in known}
        try:
            given["status"] = Status(given.get("status", PENDING))
        except ValueError:
            raise ValueError(f"unknown status {given['status']!r}") from None
        return cls(**given)
