"""What every run of a sweep is doing, as rows for a table or for JSON."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from .errors import GridError
from .job import FINAL, RUNNING, STATUSES, JobState
from .metrics import DEFAULT_METRIC, cached_latest, tensorboard_run
from .planner import format_value
from .queue import Queue
from .seeds import run_seed


def collect(queue: Queue, metric: str = DEFAULT_METRIC) -> dict[str, Any]:
    """The sweep's runs in run order, with counts per status and their latest metric."""
    folders = queue.sweep.behavior_folders
    latest = cached_latest(
        Path(queue.sweep.results_dir),
        [tensorboard_run(r, b) for r in queue.sweep.run_ids for b in folders],
        metric,
        queue.paths.cache_file("latest.json"),
    )
    rows = []
    final = set(queue.final_ids())
    active = set(queue.active_ids())
    for run_id in queue.sweep.run_ids:
        row: dict[str, Any] = {"run_id": run_id}
        try:
            state = (
                queue.effective(queue.read_state(run_id))
                if run_id in final or run_id in active
                else JobState(run_id)
            )
            row.update(asdict(state))
            job = queue.job(run_id)
            row.update(values=job.values, point=job.point)
            row["seed"] = run_seed(job, None if job.seed is not None else queue.template)
        except GridError as exc:
            row.update(status="unreadable", error=str(exc), values={}, point=None, seed=None)
        config = queue.paths.config_file(run_id)
        row["config"] = str(config) if config.exists() else None
        row["log"] = str(queue.paths.log_file(run_id))
        points = {b: latest.get(tensorboard_run(run_id, b)) for b in folders}
        found = [p for p in points.values() if p is not None]
        row["step"] = max((p.step for p in found), default=None)
        row["metric"] = statistics.fmean(p.value for p in found) if found else None
        row["metrics"] = {b: None if p is None else p.value for b, p in points.items()}
        rows.append(row)
    counts = Counter(row["status"] for row in rows)
    return {
        "queue": str(queue.root),
        "metric": metric,
        "progress": _progress(rows),
        "counts": {status: counts.get(status, 0) for status in (*STATUSES, "unreadable")},
        "runs": rows,
    }


def _progress(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Final/total, time since the first start, and an ETA from the finished runs' durations."""
    final = [r for r in rows if r["status"] in FINAL]
    starts = [r["started"] for r in rows if r.get("started")]
    elapsed = time.time() - min(starts) if starts else 0.0
    durations = [r["ended"] - r["started"] for r in final if r.get("ended") and r.get("started")]
    running = sum(r["status"] == RUNNING for r in rows)
    remaining = len(rows) - len(final)
    eta = None
    if durations and remaining:
        eta = statistics.fmean(durations) * remaining / max(1, running)
    return {"final": len(final), "total": len(rows), "elapsed": elapsed, "eta": eta}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _clock(stamp: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(stamp)) if stamp else ""


def _value_columns(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(owner, key, header) for every swept key; the owner is shown only when several exist."""
    keys = list(
        dict.fromkeys(
            (owner, key)
            for row in report["runs"]
            for owner, named in row["values"].items()
            for key in named
        )
    )
    owners = {owner for owner, _ in keys}
    return [(o, k, f"{o}.{k}" if len(owners) > 1 else k) for o, k in keys]


def render(report: dict[str, Any]) -> Group:
    counts = ", ".join(f"{n} {status}" for status, n in report["counts"].items() if n)
    progress = report["progress"]
    header = (
        f"[bold]{report['queue']}[/bold]: {progress['final']}/{progress['total']} final "
        f"({counts}); elapsed {_duration(progress['elapsed'])}, ETA {_duration(progress['eta'])}"
    )
    columns = _value_columns(report)
    table = Table(show_edge=False, pad_edge=False)
    for column in ("run", "status", "att.", "worker", "port", "started", "ended", "step"):
        table.add_column(column, no_wrap=True)
    table.add_column(report["metric"].split("/")[-1], no_wrap=True, justify="right")
    for _, _, name in columns:
        table.add_column(name, no_wrap=True)
    table.add_column("note", overflow="fold", min_width=20)
    for row in report["runs"]:
        note = row.get("stop_reason") or row.get("error") or ""
        if row.get("status") == "failed" and row.get("exit_code") is not None:
            note = f"exit code {row['exit_code']}"
        if row.get("retries"):
            times = "once" if row["retries"] == 1 else f"{row['retries']} times"
            history = f"retried {times}, last {row.get('previous')}"
            note = f"{note}; {history}" if note else history
        values = [
            format_value(row["values"][owner][key]) if key in row["values"].get(owner, {}) else ""
            for owner, key, _ in columns
        ]
        table.add_row(
            row["run_id"],
            row["status"],
            str(row.get("attempts", "")),
            " ".join(filter(None, (row.get("worker"), row.get("slurm") and f"({row['slurm']})"))),
            str(row.get("port") or ""),
            _clock(row.get("started")),
            _clock(row.get("ended")),
            "" if row.get("step") is None else str(row["step"]),
            "" if row.get("metric") is None else f"{row['metric']:.4g}",
            *values,
            note,
        )
    return Group(header, table)


def print_table(report: dict[str, Any], console: Console) -> None:
    console.print(render(report))


def watch(queue: Queue, console: Console, metric: str, every: float = 2.0) -> None:
    """Redraw the table in place until every run is final."""
    with Live(render(collect(queue, metric)), console=console, auto_refresh=False) as live:
        while True:
            report = collect(queue, metric)
            live.update(render(report), refresh=True)
            if report["progress"]["final"] >= report["progress"]["total"]:
                return
            time.sleep(every)
