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
from .job import FINAL, PAUSED, RUNNING, STATUSES, JobState
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
    report: dict[str, Any] = {
        "queue": str(queue.root),
        "metric": metric,
        "progress": _progress(rows),
        "counts": {status: counts.get(status, 0) for status in (*STATUSES, "unreadable")},
        "runs": rows,
    }
    if queue.sweep.rung_plan is not None:
        report["rungs"] = rung_progress(queue, rows)
    return report


def rung_progress(queue: Queue, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The rung being played: its step, how many of its runs are there (paused or final)."""
    rungs = queue.sweep.rung_plan
    assert rungs is not None
    decided = queue.rung_decisions()
    number = 1
    while number in decided:
        number += 1
    total = len(rungs.steps)
    if number > total:
        return {"current": None, "of": total, "decided": sorted(decided)}
    if number == 1:
        entered = {row["run_id"] for row in rows}
    else:
        entered = {r for v in decided[number - 1].verdicts if v.promoted for r in v.runs}
    mine = [row for row in rows if row["run_id"] in entered]
    paused = sum(row["status"] == PAUSED for row in mine)
    final = sum(row["status"] in FINAL for row in mine)
    return {
        "current": number,
        "of": total,
        "step": rungs.steps[number - 1],
        "runs": len(mine),
        "paused": paused,
        "final": final,
        "training": len(mine) - paused - final,
        "decided": sorted(decided),
    }


def _rung_line(rungs: dict[str, Any]) -> str:
    if rungs["current"] is None:
        return f"rungs: all {rungs['of']} decided; the promoted runs train to max_steps"
    return (
        f"rung {rungs['current']} of {rungs['of']} (step {rungs['step']}): "
        f"{rungs['paused'] + rungs['final']}/{rungs['runs']} runs there ({rungs['paused']} "
        f"paused, {rungs['final']} final), {rungs['training']} still to reach it"
    )


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
    if "rungs" in report:
        header += "\n" + _rung_line(report["rungs"])
    columns = _value_columns(report)
    table = Table(show_edge=False, pad_edge=False)
    rung_column = "rungs" in report
    for column in ("run", "status", "att.", "worker", "port", "started", "ended", "step"):
        table.add_column(column, no_wrap=True)
    if rung_column:
        table.add_column("rung", no_wrap=True)
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
            *([_rung_cell(row, report["rungs"]["of"])] if rung_column else []),
            "" if row.get("metric") is None else f"{row['metric']:.4g}",
            *values,
            note,
        )
    return Group(header, table)


def _rung_cell(row: dict[str, Any], total: int) -> str:
    """The rung a run trains towards or is paused at (`1/2`); `past` after the last one."""
    passed = row.get("rung")
    if not isinstance(passed, int):
        return ""
    return f"{passed + 1}/{total}" if passed < total else "past"


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
