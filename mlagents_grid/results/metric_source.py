"""Where the monitor reads its scalars: one interface over the event files and TensorBoard.

Runs are TensorBoard run names (`<run-id>/<behavior>`, metrics.tensorboard_run). Both raise
MetricsUnavailable when nothing may be concluded from what they read.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Protocol

from .metrics import EventFileReader, Scalar, TensorBoardClient


class MetricSource(Protocol):
    @property
    def description(self) -> str:
        """What the monitor's first line names: `TensorBoard at http://...`."""
        ...

    @property
    def folder(self) -> Path | None:
        """The folder whose writes bring new points (watched, not polled); None: poll."""
        ...

    def latest(self, wanted: Mapping[str, Collection[str]]) -> dict[tuple[str, str], Scalar | None]:
        """The latest point of each tag for each of its runs ({tag: runs}), keyed (run, tag);
        runs not asked for again may be forgotten."""
        ...

    def series(self, runs: Collection[str], tag: str) -> dict[str, list[Scalar]]:
        """Every point of `tag` for each run, by step (empty: none)."""
        ...


class EventFileMetrics:
    """The event files under the results folder, read incrementally."""

    def __init__(self, logdir: Path) -> None:
        self.folder: Path | None = logdir
        self.reader = EventFileReader(logdir)

    @property
    def description(self) -> str:
        return f"event files under {self.folder}"

    def latest(self, wanted: Mapping[str, Collection[str]]) -> dict[tuple[str, str], Scalar | None]:
        # Read on from where the last pass stopped; runs no longer watched are dropped.
        watched = {run for runs in wanted.values() for run in runs}
        self.reader.retain(watched)
        self.reader.refresh(watched)
        return {
            (run, tag): self.reader.latest(run, tag) for tag, runs in wanted.items() for run in runs
        }

    def series(self, runs: Collection[str], tag: str) -> dict[str, list[Scalar]]:
        self.reader.refresh(runs)
        return {run: self.reader.series(run, tag) for run in runs}


class TensorBoardMetrics:
    """A TensorBoard server's scalars plugin: one request per tag for all runs."""

    folder: Path | None = None

    def __init__(self, url: str) -> None:
        self.client = TensorBoardClient(url)

    @property
    def description(self) -> str:
        return f"TensorBoard at {self.client.url}"

    def latest(self, wanted: Mapping[str, Collection[str]]) -> dict[tuple[str, str], Scalar | None]:
        found: dict[tuple[str, str], Scalar | None] = {}
        for tag, runs in wanted.items():
            for run, point in self.client.fetch(sorted(set(runs)), tag).items():
                found[(run, tag)] = point
        return found

    def series(self, runs: Collection[str], tag: str) -> dict[str, list[Scalar]]:
        rows = self.client.fetch_series(sorted(set(runs)), tag)
        return {run: rows.get(run, []) for run in runs}


def metric_source(tensorboard: str, logdir: Path | None) -> MetricSource:
    """The event files when the monitor is given `--logdir` (no server needed, and it reacts
    to each write), else the TensorBoard server at `tensorboard`."""
    if logdir is not None:
        return EventFileMetrics(logdir)
    return TensorBoardMetrics(tensorboard)
