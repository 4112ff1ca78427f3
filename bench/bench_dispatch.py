"""Dispatch overhead against `xargs -P N`, claim cost with 10,000 queued jobs, worker memory.

The trainer is `true`, so what is measured is the tool itself: claiming, writing the run's
config and state, starting the process, recording the outcome.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from common import BIN, ROOT, Row, behavior, median, percentile, plan, start

JOBS = 1_000
CLAIM_QUEUE = 10_000


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def drain(queue: Path, workers: int, logs: Path) -> tuple[float, float]:
    """Wall time for `workers` workers to drain the queue, and their largest peak RSS (MB)."""
    command = [str(BIN / "grid-worker"), "--queue", str(queue), "--trainer", "true"]
    began = time.perf_counter()
    procs = [start(command, logs / f"w{workers}-{i}.log") for i in range(workers)]
    peak = 0.0
    while any(p.poll() is None for p in procs):
        peak = max([peak, *(peak_rss_mb(p.pid) for p in procs if p.poll() is None)])
        time.sleep(0.05)
    elapsed = time.perf_counter() - began
    assert all(p.returncode == 0 for p in procs), "a worker failed"
    return elapsed, peak


def xargs(workers: int, commands: int) -> float:
    lines = "".join(f"{i}\n" for i in range(commands)).encode()
    began = time.perf_counter()
    subprocess.run(["xargs", "-P", str(workers), "-I{}", "true", "{}"], input=lines, check=True)
    return time.perf_counter() - began


def gnu_parallel(workers: int, commands: int) -> float | None:
    """GNU parallel running the same `true` jobs (None where it is not installed)."""
    if shutil.which("parallel") is None:
        return None
    lines = "".join(f"{i}\n" for i in range(commands)).encode()
    began = time.perf_counter()
    subprocess.run(
        ["parallel", "--will-cite", "-j", str(workers), "true", "{}"],
        input=lines,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - began


def claim_gaps(root: Path) -> list[float]:
    """Seconds from each run's recorded end to the same worker's next trainer start."""
    queue = plan(root, behavior(1), CLAIM_QUEUE)
    command = [str(BIN / "grid-worker"), "--queue", str(queue), "--trainer", "true"]
    procs = [start(command, root / f"claim-{i}.log") for i in range(4)]
    time.sleep(8)
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(timeout=60)
    events = [json.loads(line) for line in (queue / "events.jsonl").read_text().splitlines()]
    gaps = []
    by_worker: dict[str, list[dict[str, object]]] = {}
    for event in events:
        if event["event"] in ("done", "started"):
            by_worker.setdefault(str(event["worker"]), []).append(event)
    for series in by_worker.values():
        for before, after in itertools.pairwise(series):
            if before["event"] == "done" and after["event"] == "started":
                gaps.append(float(after["time"]) - float(before["time"]))  # type: ignore[arg-type]
    return gaps


def main() -> list[Row]:
    """On tmpfs when there is one: what is measured is the tool, not the disk's inode creation
    and fsyncs (5 new files per run); the 4-worker drain on the disk is printed beside it."""
    rows = []
    shm = Path("/dev/shm")
    where = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        base = Path(tmp)
        for workers in (1, 2, 4):
            queue = plan(base / f"d{workers}", behavior(1), JOBS)
            ours, peak = drain(queue, workers, base / f"d{workers}")
            reference = xargs(workers, JOBS)
            ratio = ours / reference
            per_job_ms = (ours - reference) * workers / JOBS * 1000
            goal = "<= 3x xargs" if workers == 4 else ""
            rows.append(
                Row(
                    f"dispatch {JOBS:,} `true` jobs, {workers} worker(s)",
                    f"{ours:.2f} s vs xargs -P {workers} {reference:.2f} s = {ratio:.1f}x; "
                    f"{per_job_ms:.1f} ms/job overhead per worker",
                    goal,
                    ratio <= 3 if workers == 4 else None,
                )
            )
            if workers == 4:
                rows.append(Row("peak RSS of a worker during a sweep", f"{peak:.0f} MB"))
                parallel = gnu_parallel(workers, JOBS)
                if parallel is not None:
                    rows.append(
                        Row(
                            f"the same {JOBS:,} jobs with GNU parallel -j 4",
                            f"{parallel:.2f} s (grid-worker x4: {ours:.2f} s)",
                            "grid-worker ahead",
                            ours < parallel,
                        )
                    )
        gaps = claim_gaps(base / "claim")
        p50, p99 = median(gaps) * 1000, percentile(gaps, 99) * 1000
        rows.append(
            Row(
                f"claim with {CLAIM_QUEUE:,} queued, 4 workers (free -> trainer started)",
                f"median {p50:.1f} ms, p99 {p99:.1f} ms over {len(gaps)} claims",
                "p99 < 50 ms",
                p99 < 50,
            )
        )
    # The same 4-worker drain with the queue on the disk, where every state write's fsync
    # (file and folder) reaches the device: printed beside, judged on tmpfs.
    build = ROOT / "build"
    build.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=build) as tmp:
        queue = plan(Path(tmp) / "disk", behavior(1), JOBS)
        ours, _ = drain(queue, 4, Path(tmp) / "disk")
        reference = xargs(4, JOBS)
        rows.append(
            Row(
                f"dispatch {JOBS:,} `true` jobs, 4 worker(s), queue on disk (fsync)",
                f"{ours:.2f} s vs xargs -P 4 {reference:.2f} s = {ours / reference:.1f}x",
            )
        )
    return rows


if __name__ == "__main__":
    for row in main():
        print(row)
