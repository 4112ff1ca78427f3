"""Scalars of running trainers: from the event files themselves or from TensorBoard's HTTP API.

ML-Agents writes each behavior's summaries under `<results>/<run-id>/<behavior>/`, so a
TensorBoard run is named `<run-id>/<behavior>`; both sources use those names.
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import requests

EVENT_FILE_MARK = "tfevents"
# A TFRecord: length (u64) and its masked CRC (u32), the data, the data's masked CRC (u32).
_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
DEFAULT_METRIC = "Environment/Cumulative Reward"


def tensorboard_run(run_id: str, behavior: str) -> str:
    """ML-Agents writes `<results>/<run-id>/<behavior>/`; `Soccer?team=0` goes under `Soccer`."""
    return f"{run_id}/{behavior.split('?')[0]}"


class Scalar(NamedTuple):
    """One point of a scalar tag (a tuple: a sweep reads millions of them)."""

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


def _masked_crc(crc32c: Callable[[bytes], int], data: bytes) -> int:
    """TFRecord's checksum: CRC-32C, rotated and offset (as tensorboard's RecordWriter writes)."""
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def framed(records: Iterable[bytes]) -> bytes:
    """Records framed as in an event file, byte for byte as tensorboard's RecordWriter frames
    them, with the checksums computed in C (its own are pure Python)."""
    import google_crc32c

    crc32c = google_crc32c.value
    out = []
    for data in records:
        header = struct.pack("<Q", len(data))
        out += [
            header,
            struct.pack("<I", _masked_crc(crc32c, header)),
            data,
            struct.pack("<I", _masked_crc(crc32c, data)),
        ]
    return b"".join(out)


class CorruptEventFile(Exception):
    """A record whose checksum does not match: the file is read no further than it."""


class _EventFile:
    """One event file, read from where the last read stopped.

    tensorboard's reader without TensorFlow makes four reads and a pure-Python CRC-32C per
    record (about 60 us); this one reads what was appended in one call and checks both
    checksums of each record in C (google-crc32c). A record still being written is left for
    the next read.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0

    def read(self) -> list[Any]:
        import google_crc32c
        from tensorboard.compat.proto import event_pb2

        crc32c = google_crc32c.value

        if os.stat(self.path).st_size <= self.offset:
            return []
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        events = []
        position = 0
        while len(data) - position >= _HEADER.size:
            length, length_crc = _HEADER.unpack_from(data, position)
            if _masked_crc(crc32c, data[position : position + 8]) != length_crc:
                self.offset += position
                raise CorruptEventFile(f"bad length checksum at byte {self.offset}")
            start = position + _HEADER.size
            end = start + length + _FOOTER.size
            if end > len(data):
                break
            body = data[start : start + length]
            if _masked_crc(crc32c, body) != _FOOTER.unpack_from(data, start + length)[0]:
                self.offset += position
                raise CorruptEventFile(f"bad record checksum at byte {self.offset}")
            events.append(event_pb2.Event.FromString(body))
            position = end
        self.offset += position
        return events


class EventFileReader:
    """Scalars read straight from event files, incrementally: no record is read twice.

    No file stays open between reads; a run's points and read offsets are kept until it is
    forgotten (`forget`, `retain`).
    """

    def __init__(self, logdir: Path, tags: Collection[str] | None = None) -> None:
        """`tags`: the only tags whose points are kept (None: every tag); the names of all
        scalar tags are kept in any case (`tags()`)."""
        self.logdir = logdir
        self.wanted = None if tags is None else frozenset(tags)
        self.records_read = 0
        self.errors: dict[str, str] = {}
        self._files: dict[str, dict[str, _EventFile]] = {}
        self._points: dict[str, dict[str, dict[int, Scalar]]] = {}
        self._tags: dict[str, set[str]] = {}

    def refresh(self, runs: Iterable[str]) -> None:
        """Read what was written to these runs' event files since the last read."""
        for run in set(runs):
            self._refresh_run(run)

    def retain(self, runs: Iterable[str]) -> None:
        """Forget every run but these."""
        for run in (set(self._files) | set(self._points) | set(self._tags)) - set(runs):
            self.forget(run)

    def _refresh_run(self, run: str) -> None:
        folder = os.path.join(self.logdir, run)
        try:
            names = sorted(n for n in os.listdir(folder) if EVENT_FILE_MARK in n)
        except OSError:
            return
        files = self._files.setdefault(run, {})
        points = self._points.setdefault(run, {})
        tags = self._tags.setdefault(run, set())
        for name in names:
            reader = files.get(name)
            if reader is None:
                reader = files[name] = _EventFile(os.path.join(folder, name))
            path = reader.path
            try:
                events = reader.read()
            except FileNotFoundError:
                files.pop(name, None)
                continue
            except Exception as exc:  # a corrupt file must not stop the reader
                self.errors[str(path)] = f"{type(exc).__name__}: {exc}"
                continue
            self.records_read += len(events)
            for event in events:
                self._add(tags, points, event)

    def _add(self, tags: set[str], points: dict[str, dict[int, Scalar]], event: Any) -> None:
        if not event.HasField("summary"):
            return
        for value in event.summary.value:
            # simple_value first: what ML-Agents writes, without a call per value.
            number = value.simple_value if value.HasField("simple_value") else _scalar_value(value)
            if number is None:
                continue
            tags.add(value.tag)
            if self.wanted is None or value.tag in self.wanted:
                # A resumed run rewrites steps: the last written value of a step wins.
                step = int(event.step)
                points.setdefault(value.tag, {})[step] = Scalar(step, number, event.wall_time)

    def series(self, run: str, tag: str) -> list[Scalar]:
        by_step = self._points.get(run, {}).get(tag, {})
        return [by_step[step] for step in sorted(by_step)]

    def latest(self, run: str, tag: str) -> Scalar | None:
        by_step = self._points.get(run, {}).get(tag, {})
        return by_step[max(by_step)] if by_step else None

    def tags(self, run: str) -> set[str]:
        """The scalar tags read so far for `run`."""
        return set(self._tags.get(run, ()))

    def forget(self, run: str) -> None:
        """Drop a run's loaders and points (it is final and will not be read again)."""
        self._files.pop(run, None)
        self._points.pop(run, None)
        self._tags.pop(run, None)


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


class TensorBoardClient:
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
