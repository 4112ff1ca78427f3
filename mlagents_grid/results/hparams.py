"""The sweep in TensorBoard's HParams dashboard, written with tensorboard's own hparams API.

TensorBoard takes the experiment (which hparams and metrics exist) from any run that has
one, and a session from every run folder holding a session-start summary; a session's
metrics are the scalars of that folder and of its subfolders. So the experiment goes to
`<results>/<prefix>-hparams/` and each run's session to `<results>/<run>/`, beside the
`<run>/<behavior>/` folders where ML-Agents writes its scalars. The summaries are built by
`summary_v2`'s `*_pb` functions and written by tensorboard's EventFileWriter: no TensorFlow.

TensorBoard keeps the first session summary it reads for a run, so each write replaces our
previous file in that folder: a TensorBoard started later shows the latest status.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..plan.grid import format_value
from ..plan.seeds import RANDOM_SEED, run_seed, sweep_seeds
from ..plan.sweep import Sweep
from ..queue import files
from ..queue.folder import Queue
from ..queue.job import STATUSES, Job
from .metrics import DEFAULT_METRIC, framed

SCORE_TAG = "grid/score"
SUFFIX = ".grid-hparams"  # our event files, told apart from ML-Agents' own
# TensorBoard keeps the event files it reads open, which on Windows forbids removing them: an
# older session file it holds is waited for this long, then left for a later write to remove.
HELD_EVENTS_WAIT = 1.0


def experiment_folder(queue: Queue) -> Path:
    return Path(queue.sweep.results_dir) / f"{queue.sweep.prefix}-hparams"


def _kind(values: Iterable[Any]) -> type:
    """The hparam type that holds every value: bool, float (any number) or str."""
    values = list(values)
    if all(isinstance(v, bool) for v in values):
        return bool
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return float
    return str


def _as_kind(value: Any, kind: type) -> Any:
    return format_value(value) if kind is str else kind(value)


def experiment_summary(queue: Queue, metric: str = DEFAULT_METRIC) -> Any:
    """The swept keys (discrete domains), `seed` and `status`; the metric per behavior and
    the report's score."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    hparams = []
    for dim in queue.sweep.dimensions:
        kind = _kind(dim["values"])
        values = dict.fromkeys(_as_kind(v, kind) for v in dim["values"])
        hparams.append(hp.HParam(f"{dim['owner']}.{dim['name']}", hp.Discrete(values, kind)))
    seeds = [float(s) for s in sweep_seeds(queue.sweep, queue.template)]
    hparams.append(hp.HParam("seed", hp.Discrete(seeds, float)))
    hparams.append(hp.HParam("status", hp.Discrete(STATUSES, str)))
    metrics = [
        hp.Metric(metric, group=behavior, display_name=f"{behavior}: {metric}")
        for behavior in queue.sweep.behavior_folders
    ]
    metrics.append(
        hp.Metric(SCORE_TAG, display_name="score (grid-report)", description="grid-report's score")
    )
    return hp.hparams_config_pb(hparams, metrics, time_created_secs=queue.sweep.created)


_KINDS: dict[str, Any] = {}  # the sweep last asked about, and its hparams' kinds


def _kinds(sweep: Sweep) -> dict[str, type]:
    """Each swept key's hparam kind, worked out once per sweep (a key may have many values)."""
    if _KINDS.get("sweep") is not sweep:
        kinds = {f"{d['owner']}.{d['name']}": _kind(d["values"]) for d in sweep.dimensions}
        _KINDS.update(sweep=sweep, kinds=kinds)
    return dict(_KINDS["kinds"])


def session_summary(queue: Queue, job: Job, status: str) -> Any:
    """The run's swept values, its seed and its status, as one HParams session."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    kinds = _kinds(queue.sweep)
    values: dict[str, Any] = {}
    for owner, named in job.values.items():
        for name, value in named.items():
            key = f"{owner}.{name}"
            values[key] = _as_kind(value, kinds.get(key, _kind([value])))
    seed = run_seed(job, None if job.seed is not None else queue.template)
    values["seed"] = float(RANDOM_SEED if seed is None else seed)
    values["status"] = status
    return hp.hparams_pb(values, trial_id=job.run_id)


def _replace_events(folder: Path, summaries: list[tuple[int, Any]]) -> Path:
    """Write one event file of ours into `folder`, then remove the ones written before it;
    returns the folder.

    The records are framed as tensorboard's RecordWriter frames them (`metrics.framed`,
    with checksums in C), written at once and renamed into place: its EventFileWriter would
    start a thread per file, a cost paid at every run's start.
    """
    from tensorboard.compat.proto import event_pb2

    folder.mkdir(parents=True, exist_ok=True)
    older = [folder / n for n in os.listdir(folder) if n.endswith(SUFFIX)]
    now = time.time()
    name = f"events.out.tfevents.{int(now):010d}.{socket.gethostname()}.{os.getpid()}{SUFFIX}"
    events = [event_pb2.Event(wall_time=now, file_version="brain.Event:2")]
    events += [event_pb2.Event(wall_time=now, step=step, summary=s) for step, s in summaries]
    tmp = folder / f".{name}.tmp"
    with open(tmp, "wb") as handle:
        handle.write(framed(event.SerializeToString() for event in events))
    files.replace(tmp, folder / name)
    for path in older:
        if path.name != name:
            with contextlib.suppress(FileNotFoundError, PermissionError):
                files.unlink(path, wait=HELD_EVENTS_WAIT)
    return folder


def write_experiment(queue: Queue, metric: str = DEFAULT_METRIC) -> Path:
    """(Re)write the sweep's experiment into `<results>/<prefix>-hparams/`."""
    return _replace_events(experiment_folder(queue), [(0, experiment_summary(queue, metric))])


def write_session(
    queue: Queue, job: Job, status: str, score: float | None = None, step: int = 0
) -> Path:
    """Show a run in the HParams dashboard: its session in `<results>/<run>/` (returned).

    The worker calls it when a run starts (status "running"); grid-report calls it again
    with the run's status and its score, written as the `grid/score` scalar at `step`.
    The experiment is written first when the sweep has none yet. Raises OSError when the
    results folder cannot be written.
    """
    folder = experiment_folder(queue)
    if not (folder.is_dir() and any(n.endswith(SUFFIX) for n in os.listdir(folder))):
        write_experiment(queue)
    summaries = [(0, session_summary(queue, job, status))]
    if score is not None:
        from tensorboard.compat.proto import summary_pb2

        value = summary_pb2.Summary.Value(tag=SCORE_TAG, simple_value=score)
        summaries.append((step, summary_pb2.Summary(value=[value])))
    return _replace_events(queue.run_results(job.run_id), summaries)
