"""What every run of a sweep is doing, as rows for a table or for JSON."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.table import Table

from .errors import GridError
from .planner import format_value
from .queue import STATUSES, JobState, Queue


def collect(queue: Queue) -> dict[str, Any]:
    """The sweep's runs in run order, with counts per status."""
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
            row["values"] = queue.job(run_id).values
        except GridError as exc:
            row.update(status="unreadable", error=str(exc), values={})
        row["config"] = str(queue.config_file(run_id))
        row["log"] = str(queue.log_file(run_id))
        rows.append(row)
    counts = Counter(row["status"] for row in rows)
    return {
        "queue": str(queue.root),
        "counts": {status: counts.get(status, 0) for status in (*STATUSES, "unreadable")},
        "runs": rows,
    }


def _clock(stamp: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(stamp)) if stamp else ""


def print_table(report: dict[str, Any], console: Console) -> None:
    counts = ", ".join(f"{n} {status}" for status, n in report["counts"].items() if n)
    total = len(report["runs"])
    finished = sum(report["counts"][s] for s in ("done", "stopped", "failed"))
    console.print(f"[bold]{report['queue']}[/bold]: {finished}/{total} final ({counts})")
    table = Table(show_edge=False, pad_edge=False)
    for column in ("run", "status", "att.", "worker", "port", "started", "ended", "values", "note"):
        table.add_column(column, overflow="fold")
    for row in report["runs"]:
        values = "; ".join(
            f"{owner}: " + ", ".join(f"{k}={format_value(v)}" for k, v in named.items())
            for owner, named in row.get("values", {}).items()
        )
        note = row.get("stop_reason") or row.get("error") or ""
        if row.get("status") == "failed" and row.get("exit_code") is not None:
            note = f"exit code {row['exit_code']}"
        table.add_row(
            row["run_id"],
            row["status"],
            str(row.get("attempts", "")),
            row.get("worker") or "",
            str(row.get("port") or ""),
            _clock(row.get("started")),
            _clock(row.get("ended")),
            values,
            note,
        )
    console.print(table)
