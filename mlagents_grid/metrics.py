"""Scalars of running trainers: from the event files themselves or from TensorBoard's HTTP API.

ML-Agents writes each behavior's summaries under `<results>/<run-id>/<behavior>/`, so a
TensorBoard run is named `<run-id>/<behavior>`; both sources use those names.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .files import write_atomic

if TYPE_CHECKING:
    import requests

EVENT_FILE_MARK = "tfevents"
DEFAULT_METRIC = "Environment/Cumulative Reward"


def tensorboard_run(run_id: str, behavior: str) -> str:
    """ML-Agents writes `<results>/<run-id>/<behavior>/`; `Soccer?team=0` goes under `Soccer`."""
    return f"{run_id}/{behavior.split('?')[0]}"


@dataclass(frozen=True)
class Scalar:
    step: int
    value: float
    wall_time: float


class MetricsUnavailable(Exception):
    """The source could not be read at all: nothing may be concluded from it."""


def _scalar_value(value: Any) -> float | None:
    """A summary value's number, for TF1 `simple_value` and TF2 tensor summaries alike."""
    if value.HasField("simple_value"):
        return float(value.simple_value)
    if value.HasField("tensor") and value.metadata.plugin_data.plugin_name == "scalars":
        from tensorboard.util import tensor_util

        array = tensor_util.make_ndarray(value.tensor)
        if array.size == 1:
            return float(array.reshape(()))
    return None


class _EventFile:
    """One event file, read from where the last read stopped."""

    def __init__(self, path: Path) -> None:
        from tensorboard.backend.event_processing.event_file_loader import (
            LegacyEventFileLoader,
        )

        # The stub reader logs every truncated record at debug level; keep it quiet.
        logging.getLogger("tensorboard").setLevel(logging.WARNING)
        self.loader = LegacyEventFileLoader(str(path))

    def read(self) -> Iterable[Any]:
        return self.loader.Load()


class EventFileSource:
    """Scalars read straight from event files, incrementally: no record is read twice.

    Loaders are kept only for the runs of the latest `refresh`, which bounds open files by
    the number of runs being watched.
    """

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.records_read = 0
        self.errors: dict[str, str] = {}
        self._files: dict[str, dict[str, _EventFile]] = {}
        self._points: dict[str, dict[str, dict[int, Scalar]]] = {}

    def refresh(self, runs: Iterable[str]) -> None:
        wanted = set(runs)
        for run in set(self._files) - wanted:
            del self._files[run]
        for run in wanted:
            self._refresh_run(run)

    def _refresh_run(self, run: str) -> None:
        folder = self.logdir / run
        try:
            names = sorted(n for n in os.listdir(folder) if EVENT_FILE_MARK in n)
        except OSError:
            return
        files = self._files.setdefault(run, {})
        points = self._points.setdefault(run, {})
        for name in names:
            path = folder / name
            try:
                if name not in files:
                    files[name] = _EventFile(path)
                for event in files[name].read():
                    self.records_read += 1
                    self._add(points, event)
            except Exception as exc:  # a corrupt or vanished file must not stop the reader
                self.errors[str(path)] = f"{type(exc).__name__}: {exc}"
                files.pop(name, None)

    @staticmethod
    def _add(points: dict[str, dict[int, Scalar]], event: Any) -> None:
        if not event.HasField("summary"):
            return
        for value in event.summary.value:
            number = _scalar_value(value)
            if number is not None:
                # A resumed run rewrites steps: the last written value of a step wins.
                points.setdefault(value.tag, {})[int(event.step)] = Scalar(
                    int(event.step), number, float(event.wall_time)
                )

    def series(self, run: str, tag: str) -> list[Scalar]:
        by_step = self._points.get(run, {}).get(tag, {})
        return [by_step[step] for step in sorted(by_step)]

    def latest(self, run: str, tag: str) -> Scalar | None:
        by_step = self._points.get(run, {}).get(tag, {})
        return by_step[max(by_step)] if by_step else None

    def forget(self, run: str) -> None:
        """Drop a run's loaders and points (it is final and will not be read again)."""
        self._files.pop(run, None)
        self._points.pop(run, None)


def _valid_rows(rows: Any) -> list[Scalar]:
    """The valid `[wall_time, step, value]` rows, in their order; malformed rows are skipped."""
    found: list[Scalar] = []
    if not isinstance(rows, list):
        return found
    for row in rows:
        if not (isinstance(row, list | tuple) and len(row) == 3):
            continue
        wall_time, step, value = row
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in row):
            continue
        if not (math.isfinite(value) and math.isfinite(step) and math.isfinite(wall_time)):
            continue
        found.append(Scalar(int(step), float(value), float(wall_time)))
    return found


def _series_rows(rows: Any) -> list[Scalar]:
    """A whole series by step; a step written twice (a resumed run) keeps its last value."""
    by_step = {point.step: point for point in _valid_rows(rows)}
    return [by_step[step] for step in sorted(by_step)]


class TensorBoardSource:
    """TensorBoard's scalars plugin over HTTP: one request per tag for all runs."""

    def __init__(self, url: str = "http://localhost:6006", timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        import requests  # here: the worker, which shows runs in HParams, needs no HTTP

        self.requests_made = 0
        self.multirun = True
        self.session = requests.Session()
        self._failures = requests.RequestException

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        self.requests_made += 1
        try:
            return self.session.request(method, f"{self.url}{path}", timeout=self.timeout, **kwargs)
        except self._failures as exc:
            raise MetricsUnavailable(f"{self.url}: {type(exc).__name__}") from None

    @staticmethod
    def _json(response: requests.Response) -> Any:
        if response.status_code >= 500:
            raise MetricsUnavailable(f"{response.url}: HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise MetricsUnavailable(f"{response.url}: answer is not JSON") from None

    def fetch(self, runs: list[str], tag: str) -> dict[str, Scalar | None]:
        """The latest point of `tag` for each run; None where TensorBoard has none."""
        return {
            run: rows[-1] if rows else None for run, rows in self.fetch_series(runs, tag).items()
        }

    def fetch_series(self, runs: list[str], tag: str) -> dict[str, list[Scalar]]:
        """Every point of `tag` TensorBoard keeps for each run, by step (empty: none)."""
        if not runs:
            return {}
        if self.multirun:
            response = self._request(
                "POST",
                "/data/plugin/scalars/scalars_multirun",
                data={"tag": tag, "runs": runs},
            )
            if response.status_code in (404, 405):
                self.multirun = False
            else:
                body = self._json(response)
                if response.status_code >= 400 or not isinstance(body, dict):
                    raise MetricsUnavailable(f"{response.url}: unexpected answer")
                return {run: _series_rows(body.get(run)) for run in runs}
        found: dict[str, list[Scalar]] = {}
        for run in runs:
            response = self._request(
                "GET", "/data/plugin/scalars/scalars", params={"run": run, "tag": tag}
            )
            found[run] = []
            if response.status_code < 400:
                with contextlib.suppress(MetricsUnavailable):
                    found[run] = _series_rows(self._json(response))
            elif response.status_code >= 500:
                raise MetricsUnavailable(f"{response.url}: HTTP {response.status_code}")
        return found


def _signature(folder: Path) -> list[list[Any]]:
    """Name, size and mtime of each event file: unchanged files need no reading."""
    try:
        names = sorted(n for n in os.listdir(folder) if EVENT_FILE_MARK in n)
    except OSError:
        return []
    signature = []
    for name in names:
        with contextlib.suppress(OSError):
            info = os.stat(folder / name)
            signature.append([name, info.st_size, info.st_mtime_ns])
    return signature


def cached_latest(logdir: Path, runs: list[str], tag: str, cache: Path) -> dict[str, Scalar | None]:
    """The latest point of `tag` for each TensorBoard run, reading only changed event files.

    One-shot commands (grid-status) keep what they read in `cache`, so a finished run's
    files are read once, whatever the size of the sweep.
    """
    try:
        saved = json.loads(cache.read_text(encoding="utf-8"))
        entries: dict[str, Any] = saved["runs"] if saved.get("tag") == tag else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        entries = {}
    found: dict[str, Scalar | None] = {}
    stale = False
    source = EventFileSource(logdir)
    for run in runs:
        signature = _signature(logdir / run)
        entry = entries.get(run)
        if isinstance(entry, dict) and entry.get("signature") == signature:
            latest = entry.get("latest")
            found[run] = Scalar(*latest) if isinstance(latest, list) and len(latest) == 3 else None
            continue
        source.refresh([run])
        point = source.latest(run, tag)
        source.forget(run)
        found[run] = point
        entries[run] = {
            "signature": signature,
            "latest": None if point is None else [point.step, point.value, point.wall_time],
        }
        stale = True
    if stale:
        with contextlib.suppress(OSError):
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(cache, json.dumps({"tag": tag, "runs": entries}), durable=False)
    return found
