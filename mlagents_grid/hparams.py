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

from .job import STATUSES, Job
from .metrics import DEFAULT_METRIC
from .planner import SEED_PATH, format_value, run_id_for
from .queue import Queue
from .seeds import RANDOM_SEED, config_seed, fixed_seed, run_seed, seed_values

SCORE_TAG = "grid/score"
SUFFIX = ".grid-hparams"  # our event files, told apart from ML-Agents' own


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


def sweep_seeds(queue: Queue) -> list[int]:
    """Every seed a run of the sweep trains with; -1 stands for ML-Agents' random seed."""
    template = queue.template
    sweep = queue.sweep
    if sweep.seeds > 1:
        seeds = list(seed_values(config_seed(template), sweep.seeds))
        # Planned with one seed and given more by --extend: its first runs kept the config's
        # own seed, which may be ML-Agents' random one.
        unseeded = bool(sweep.run_ids) and sweep.run_ids[0] == run_id_for(sweep.prefix, 0)
        if unseeded and config_seed(template) is None:
            seeds.insert(0, RANDOM_SEED)
        return seeds
    section, key = SEED_PATH
    swept = [
        d["values"] for d in queue.sweep.dimensions if (d["owner"], d["name"]) == (section, key)
    ]
    values = swept[0] if swept else [config_seed(template)]
    fixed = (fixed_seed(v) for v in values)
    return list(dict.fromkeys(RANDOM_SEED if s is None else s for s in fixed))


def experiment_summary(queue: Queue, metric: str = DEFAULT_METRIC) -> Any:
    """The swept keys (discrete domains), `seed` and `status`; the metric per behavior and
    the report's score."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    hparams = []
    for dim in queue.sweep.dimensions:
        kind = _kind(dim["values"])
        values = dict.fromkeys(_as_kind(v, kind) for v in dim["values"])
        hparams.append(hp.HParam(f"{dim['owner']}.{dim['name']}", hp.Discrete(values, kind)))
    hparams.append(hp.HParam("seed", hp.Discrete([float(s) for s in sweep_seeds(queue)], float)))
    hparams.append(hp.HParam("status", hp.Discrete(STATUSES, str)))
    metrics = [
        hp.Metric(metric, group=behavior, display_name=f"{behavior}: {metric}")
        for behavior in queue.sweep.behavior_folders
    ]
    metrics.append(
        hp.Metric(SCORE_TAG, display_name="score (grid-report)", description="grid-report's score")
    )
    return hp.hparams_config_pb(hparams, metrics, time_created_secs=queue.sweep.created)


def session_summary(queue: Queue, job: Job, status: str) -> Any:
    """The run's swept values, its seed and its status, as one HParams session."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    kinds = {f"{d['owner']}.{d['name']}": _kind(d["values"]) for d in queue.sweep.dimensions}
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

    tensorboard's RecordWriter frames the records, written at once and renamed into place:
    its EventFileWriter would start a thread per file, a cost paid at every run's start.
    """
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    folder.mkdir(parents=True, exist_ok=True)
    older = [folder / n for n in os.listdir(folder) if n.endswith(SUFFIX)]
    now = time.time()
    name = f"events.out.tfevents.{int(now):010d}.{socket.gethostname()}.{os.getpid()}{SUFFIX}"
    events = [event_pb2.Event(wall_time=now, file_version="brain.Event:2")]
    events += [event_pb2.Event(wall_time=now, step=step, summary=s) for step, s in summaries]
    tmp = folder / f".{name}.tmp"
    with open(tmp, "wb") as handle:
        writer = RecordWriter(handle)
        for event in events:
            writer.write(event.SerializeToString())
    os.replace(tmp, folder / name)
    for path in older:
        if path.name != name:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
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
