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


def print_table(report: dict[str, Any], console: Console) -> None:
    counts = ", ".join(f"{n} {status}" for status, n in report["counts"].items() if n)
    total = len(report["runs"])
    finished = sum(report["counts"][s] for s in ("done", "stopped", "failed"))
    console.print(f"[bold]{report['queue']}[/bold]: {finished}/{total} final ({counts})")
    columns = _value_columns(report)
    table = Table(show_edge=False, pad_edge=False)
    for column in ("run", "status", "att.", "worker", "port", "started", "ended"):
        table.add_column(column, no_wrap=True)
    for _, _, header in columns:
        table.add_column(header, no_wrap=True)
    table.add_column("note", overflow="fold", min_width=20)
    for row in report["runs"]:
        note = row.get("stop_reason") or row.get("error") or ""
        if row.get("status") == "failed" and row.get("exit_code") is not None:
            note = f"exit code {row['exit_code']}"
        values = [
            format_value(row["values"][owner][key]) if key in row["values"].get(owner, {}) else ""
            for owner, key, _ in columns
        ]
        table.add_row(
            row["run_id"],
            row["status"],
            str(row.get("attempts", "")),
            row.get("worker") or "",
            str(row.get("port") or ""),
            _clock(row.get("started")),
            _clock(row.get("ended")),
            *values,
            note,
        )
    console.print(table)
