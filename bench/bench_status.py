"""grid-status and grid-report on a finished 1,000-run sweep with real event files.

grid-status reads metrics from the event files itself; what it read is cached with each
file's size and mtime, so a second call re-reads only what changed. Each call is a fresh
process, as a user (or `--watch`, once per refresh) would run it.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from common import BIN, Row, behavior, plan, write_curve

RUNS = 1_000
POINTS = 50


def timed(command: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - began


def main() -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        queue = plan(root, behavior(POINTS), RUNS)
        for index in range(RUNS):
            curve = [index / RUNS + step / POINTS for step in range(POINTS)]
            write_curve(root / "results" / f"grid-{index}" / "3DBall", curve)
        status = [str(BIN / "grid-status"), "--queue", str(queue), "--json"]
        cold = timed(status)
        warm = timed(status)
        write_curve(root / "results" / "grid-7" / "3DBall", [1.0] * POINTS)
        changed = timed(status)
        report = timed([str(BIN / "grid-report"), "--queue", str(queue)])
    return [
        Row(f"grid-status, {RUNS:,} runs x {POINTS} points, first call", f"{cold:.2f} s"),
        Row(
            f"grid-status, {RUNS:,} runs, next call (cached)",
            f"{warm:.2f} s",
            "< 1 s",
            warm < 1.0,
        ),
        Row(f"grid-status, {RUNS:,} runs, one event file changed", f"{changed:.2f} s"),
        Row(f"grid-report, {RUNS:,} runs (CSV, Markdown, plot)", f"{report:.2f} s"),
    ]


if __name__ == "__main__":
    for row in main():
        print(row)
