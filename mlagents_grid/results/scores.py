"""A run's metric as kept: read from its event files once it is final, then kept with the run.

`scores/<run>.json` holds, per tag asked for, each behavior's last points and its curve
thinned for plots, and every tag the run's event files have. grid-report and grid-status
read it instead of the event files. A final run's record is keyed by its final record
(status, attempts, end, retries): a run retried and ended again is read and scored afresh.
A run still training is read whenever one of its event files changed (name, size, mtime),
and its record is only a cache; `--watch` reads such runs incrementally instead.

A score is the mean of the last K points of the metric per behavior, averaged over the
run's behaviors. A NaN or infinite point among them makes the score non-finite: the run
diverged, which `RunScore.diverged` says, and it never counts as a number.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..queue.files import write_atomic
from ..queue.folder import Queue
from ..queue.job import FINAL, JobState
from .metrics import EVENT_FILE_MARK, EventFileReader, Scalar, tensorboard_run

DEFAULT_LAST = 5
TAIL = 20  # points kept exactly: grid-report --last up to 20 reads no event file of a final run
CURVE = 60  # points of the whole curve kept for the plots

Point = tuple[int, float]


@dataclass(frozen=True)
class Kept:
    """One behavior's series of one tag: its last points exactly, the whole curve thinned."""

    count: int
    tail: tuple[Point, ...]
    curve: tuple[Point, ...]

    @classmethod
    def of(cls, points: Sequence[Scalar], tail: int = TAIL) -> Kept:
        return cls.of_pairs([(p.step, p.value) for p in points], tail)

    @classmethod
    def of_pairs(cls, pairs: Sequence[Point], tail: int = TAIL) -> Kept:
        return cls(len(pairs), tuple(pairs[-tail:]), tuple(thin(pairs, CURVE)))

    @property
    def latest(self) -> Point | None:
        return self.tail[-1] if self.tail else None

    @property
    def steps(self) -> int:
        return self.tail[-1][0] if self.tail else 0

    def holds(self, last: int) -> bool:
        """Whether the last `last` points are kept."""
        return len(self.tail) >= min(last, self.count)

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "tail": self.tail, "curve": self.curve}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Kept:
        def pairs(rows: Any) -> tuple[Point, ...]:
            return tuple((int(step), float(value)) for step, value in rows)

        return cls(int(data["count"]), pairs(data["tail"]), pairs(data["curve"]))


def thin(points: Sequence[Point], most: int) -> list[Point]:
    """At most `most` points spread evenly over the series, its first and last among them."""
    if len(points) <= most:
        return list(points)
    last = len(points) - 1
    picks = sorted({round(i * last / (most - 1)) for i in range(most)})
    return [points[i] for i in picks]


@dataclass(frozen=True)
class RunMetrics:
    """What a run's event files hold: every scalar tag, and the kept series of one tag."""

    tags: frozenset[str]
    series: dict[str, Kept]  # behavior folder -> series; behaviors without a point left out

    @property
    def steps(self) -> int:
        return max((kept.steps for kept in self.series.values()), default=0)


NO_METRICS = RunMetrics(frozenset(), {})


@dataclass(frozen=True)
class RunScore:
    """A run's score over its last K points: a number, nothing yet, or diverged (and why)."""

    value: float | None
    behaviors: dict[str, float]
    diverged: str | None = None


def _format(value: float) -> str:
    return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def score_run(metrics: RunMetrics, last: int) -> RunScore:
    """Mean over behaviors of each one's mean of its last `last` points; a non-finite point
    among them makes the run diverged."""
    behaviors = {}
    for behavior, kept in metrics.series.items():
        window = kept.tail[-last:]
        if not window:
            continue
        bad = [(step, value) for step, value in window if not math.isfinite(value)]
        if bad:
            step, value = bad[0]
            return RunScore(None, {}, f"{_format(value)} in {behavior} at step {step}")
        behaviors[behavior] = statistics.fmean(value for _, value in window)
    mean = statistics.fmean(behaviors.values()) if behaviors else None
    return RunScore(mean, behaviors)


def latest(metrics: RunMetrics) -> tuple[int | None, float | None, str | None]:
    """The latest step, the mean over behaviors of their latest value, and why that value is
    missing when one of them is not finite."""
    points = [kept.latest for kept in metrics.series.values() if kept.latest is not None]
    if not points:
        return None, None, None
    step = max(step for step, _ in points)
    for behavior, kept in metrics.series.items():
        if kept.latest is not None and not math.isfinite(kept.latest[1]):
            value = kept.latest[1]
            return step, None, f"{_format(value)} in {behavior} at step {kept.latest[0]}"
    return step, statistics.fmean(value for _, value in points), None


def final_key(state: JobState) -> dict[str, Any]:
    """What changes when a final run ends again: a record keyed by it is fresh."""
    return {
        "status": state.status,
        "attempts": state.attempts,
        "ended": state.ended,
        "retries": state.retries,
    }


def _signature(folder: Path) -> list[list[Any]]:
    """Name, size and mtime of each event file: unchanged files need no reading."""
    try:
        found = sorted(n for n in os.listdir(folder) if EVENT_FILE_MARK in n)
    except OSError:
        return []
    signature = []
    for name in found:
        with contextlib.suppress(OSError):
            info = os.stat(folder / name)
            signature.append([name, info.st_size, info.st_mtime_ns])
    return signature


class ScoreBook:
    """Each run's metrics for one tag: from its record while the record holds, else from the
    event files. `save` writes the records read afresh.

    `live` (grid-status --watch) keeps reading runs that train from where it stopped, and
    keeps final runs' metrics in memory, so a redraw costs only what changed.
    """

    def __init__(
        self, queue: Queue, tag: str, last: int = DEFAULT_LAST, live: bool = False
    ) -> None:
        self.queue = queue
        self.tag = tag
        self.last = last
        self.live = live
        sweep = queue.sweep
        self.results = Path(sweep.results_dir)
        self.folders = sweep.behavior_folders
        self.source = EventFileReader(self.results, tags=[tag])
        self._records: dict[str, dict[str, Any]] = {}  # read afresh: `save` writes them
        self._sessions: dict[str, Any] = {}  # each final record's HParams session mark
        self._dirty: set[str] = set()
        self._final: dict[str, tuple[dict[str, Any], RunMetrics]] = {}

    def _names(self, run_id: str) -> dict[str, str]:
        return {b: tensorboard_run(run_id, b) for b in self.folders}

    def metrics(self, run_id: str, state: JobState | None) -> RunMetrics:
        """`state` None: a run never started, which has no data of its own yet."""
        if state is None:
            return NO_METRICS
        if state.status in FINAL:
            return self._final_metrics(run_id, state)
        if self.live:
            return self._read(run_id, forget=False)
        return self._training_metrics(run_id)

    def _final_metrics(self, run_id: str, state: JobState) -> RunMetrics:
        key = final_key(state)
        remembered = self._final.get(run_id)
        if remembered is not None and remembered[0] == key:
            return remembered[1]
        record = self._load(run_id)
        found = None
        if record is not None and record.get("final") == key:
            found = self._from_record(record)
            self._sessions[run_id] = record.get("session")
        if found is None:
            found = self._read(run_id, forget=True)
            self._keep(run_id, {"final": key, "files": None}, found, record)
        if self.live:
            self._final[run_id] = (key, found)
        return found

    def _training_metrics(self, run_id: str) -> RunMetrics:
        files = {b: _signature(self.results / name) for b, name in self._names(run_id).items()}
        record = self._load(run_id)
        if record is not None and record.get("final") is None and record.get("files") == files:
            found = self._from_record(record)
            if found is not None:
                return found
        found = self._read(run_id, forget=True)
        self._keep(run_id, {"final": None, "files": files}, found, record)
        return found

    def _read(self, run_id: str, forget: bool) -> RunMetrics:
        names = self._names(run_id)
        self.source.refresh(names.values())
        tags: set[str] = set()
        series = {}
        for behavior, name in names.items():
            tags |= self.source.tags(name)
            points = self.source.series(name, self.tag)
            if points:
                series[behavior] = Kept.of(points, max(TAIL, self.last))
            if forget:
                self.source.forget(name)
        return RunMetrics(frozenset(tags), series)

    def _from_record(self, record: dict[str, Any]) -> RunMetrics | None:
        """The record's metrics for this tag; None when it lacks them or too few points."""
        try:
            tags = frozenset(str(t) for t in record["tags"])
            if self.tag not in tags:
                return RunMetrics(tags, {})
            kept = record["metrics"].get(self.tag)
            if kept is None:
                return None
            series = {b: Kept.from_json(data) for b, data in kept.items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
        if not all(k.holds(self.last) for k in series.values()):
            return None
        return RunMetrics(tags, series)

    def _keep(
        self,
        run_id: str,
        key: dict[str, Any],
        found: RunMetrics,
        old: dict[str, Any] | None,
    ) -> None:
        metrics: dict[str, Any] = {}
        if old is not None and all(old.get(k) == v for k, v in key.items()):
            with contextlib.suppress(AttributeError):
                metrics.update(old.get("metrics") or {})
        metrics[self.tag] = {b: kept.to_json() for b, kept in found.series.items()}
        self._records[run_id] = {**key, "tags": sorted(found.tags), "metrics": metrics}
        self._sessions.pop(run_id, None)
        self._dirty.add(run_id)

    def _load(self, run_id: str) -> dict[str, Any] | None:
        """The run's record as kept since it was read afresh, else as on disk; None without
        a readable one."""
        if run_id in self._records:
            return self._records[run_id]
        try:
            record = json.loads(self.queue.paths.score_file(run_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def session_written(self, run_id: str) -> bool:
        """Whether the final run's HParams session shows this score (`metrics` was asked for
        the run before)."""
        return self._sessions.get(run_id) == [self.tag, self.last]

    def mark_session(self, run_id: str) -> None:
        record = self._load(run_id)
        if record is not None and record.get("final") is not None:
            self._records[run_id] = {**record, "session": [self.tag, self.last]}
            self._sessions[run_id] = [self.tag, self.last]
            self._dirty.add(run_id)

    def save(self) -> None:
        """Write the records read afresh, each atomically.

        Not fsynced: a record is derived data, checked against its key when read, and one
        that a power cut lost or cut short is read again from the event files.
        """
        if not self._dirty:
            return
        try:
            self.queue.paths.scores_dir.mkdir(exist_ok=True)
            for run_id in sorted(self._dirty):
                path = self.queue.paths.score_file(run_id)
                write_atomic(path, json.dumps(self._records[run_id]), durable=False)
        except OSError:
            return  # a record that cannot be written is read again next time
        self._dirty.clear()
