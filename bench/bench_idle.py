"""Idle cost of a `--wait` worker and of the monitor, their memory, and one 100-run poll.

Idle: one run trains (a fake trainer writing nothing new) while a second worker waits with
--wait and the monitor (--logdir, default interval) watches; both are measured over 60 s.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import psutil
from common import (
    BIN,
    FAKE_TRAINER,
    Row,
    behavior,
    plan,
    running_runs,
    start,
    trainer_env,
    write_curve,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mlagents_grid.queue.folder import Queue
from mlagents_grid.results.metric_source import TensorBoardMetrics
from mlagents_grid.results.monitor import Monitor
from tests.support.board import Board

IDLE_SECONDS = 60
POLL_RUNS = 100


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def idle_cost(root: Path) -> tuple[float, float, float, float]:
    stop = '{tag: "Environment/Cumulative Reward", step: 1000000, min: 1}'
    queue = plan(root, behavior(10, stop), 1)
    env = trainer_env(root / "ledger.jsonl", {"step_delay": 3600})
    worker = [str(BIN / "grid-worker"), "--queue", str(queue), "--trainer", FAKE_TRAINER]
    busy = start(worker, root / "busy.log", env)
    time.sleep(2)
    waiting = start([*worker, "--wait"], root / "waiting.log", env)
    monitor = start(
        [str(BIN / "grid-monitor"), "--queue", str(queue), "--logdir", str(root / "results")],
        root / "monitor.log",
    )
    time.sleep(5)
    watched = [psutil.Process(waiting.pid), psutil.Process(monitor.pid)]
    before = [cpu_seconds(p) for p in watched]
    time.sleep(IDLE_SECONDS)
    after = [cpu_seconds(p) for p in watched]
    rss = [p.memory_info().rss / 2**20 for p in watched]
    for proc in (busy, waiting, monitor):
        proc.kill()
        proc.wait(timeout=30)
    return after[0] - before[0], after[1] - before[1], rss[0], rss[1]


def hundred_run_poll(root: Path) -> tuple[float, int, float]:
    """One monitor pass over 100 running runs: TensorBoard (time, requests) and --logdir."""
    stop = '{tag: "Environment/Cumulative Reward", step: 1000000, min: 1}'
    queue = Queue(plan(root, behavior(10, stop), POLL_RUNS))
    claims = running_runs(queue, POLL_RUNS)
    for claim in claims:
        write_curve(root / "results" / claim.job.run_id / "3DBall", [5.0] * 10)
    board = Board(root / "results")
    board.start()
    try:
        monitor = Monitor(queue, tensorboard=board.url, interval=1)
        assert isinstance(monitor.metrics, TensorBoardMetrics)
        client = monitor.metrics.client
        deadline = time.monotonic() + 60
        while len(client.session.get(f"{board.url}/data/runs").json()) < POLL_RUNS:
            assert time.monotonic() < deadline, "TensorBoard did not load the runs"
            time.sleep(0.5)
        client.requests_made = 0
        began = time.perf_counter()
        monitor.check()
        http_seconds = time.perf_counter() - began
        requests = client.requests_made
    finally:
        board.stop()
    files = Monitor(queue, logdir=root / "results")
    began = time.perf_counter()
    files.check()
    logdir_seconds = time.perf_counter() - began
    for claim in claims:
        claim.release()
    return http_seconds, requests, logdir_seconds


def main() -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        worker_cpu, monitor_cpu, worker_rss, monitor_rss = idle_cost(Path(tmp) / "idle")
        http_seconds, requests, logdir_seconds = hundred_run_poll(Path(tmp) / "poll")
    return [
        Row(
            f"idle CPU of a --wait worker over {IDLE_SECONDS} s",
            f"{worker_cpu:.3f} s",
            "< 0.5 s",
            worker_cpu < 0.5,
        ),
        Row(
            f"idle CPU of the monitor (--logdir) over {IDLE_SECONDS} s",
            f"{monitor_cpu:.3f} s",
            "< 0.5 s",
            monitor_cpu < 0.5,
        ),
        Row(
            "RSS of a waiting worker / of the monitor",
            f"{worker_rss:.0f} MB / {monitor_rss:.0f} MB",
        ),
        Row(
            f"one monitor poll of {POLL_RUNS} running runs, TensorBoard",
            f"{http_seconds * 1000:.0f} ms, {requests} HTTP request(s)",
        ),
        Row(
            f"one monitor pass over {POLL_RUNS} running runs, --logdir (first read)",
            f"{logdir_seconds * 1000:.0f} ms",
        ),
    ]


if __name__ == "__main__":
    for row in main():
        print(row)
