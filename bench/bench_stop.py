"""Stop latency: kill file to trainer SIGINT, and condition crossing to SIGINT with the monitor.

The fake trainer appends to a ledger when it writes each point (`ledger_ticks`) and when it
exits on SIGINT (after saving its checkpoint), which timestamps both ends.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from common import (
    BIN,
    FAKE_TRAINER,
    Row,
    behavior,
    ledger,
    median,
    percentile,
    plan,
    start,
    trainer_env,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mlagents_grid.queue.folder import Queue
from tests.support.board import Board

KILL_SAMPLES = 20
CROSS_SAMPLES = 5
STOP = '{tag: "Environment/Cumulative Reward", step: 1, min: 50}'


def wait(predicate: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step timed out")
        time.sleep(0.01)


def sigint_exit(path: Path, run_id: str) -> dict[str, object] | None:
    return next(
        (e for e in ledger(path) if e.get("run_id") == run_id and e.get("reason") == "sigint"),
        None,
    )


def kill_file_latency(root: Path) -> list[float]:
    queue_dir = plan(root, behavior(100_000), KILL_SAMPLES)
    queue = Queue(queue_dir)
    book = root / "ledger.jsonl"
    env = trainer_env(book, {"step_delay": 0.05})
    worker = start(
        [str(BIN / "grid-worker"), "--queue", str(queue_dir), "--trainer", FAKE_TRAINER],
        root / "worker.log",
        env,
    )
    latencies = []
    for run_id in queue.sweep.run_ids:
        wait(
            lambda run_id=run_id: any(
                e.get("run_id") == run_id and e.get("event") == "start" for e in ledger(book)
            )
        )
        time.sleep(0.3)
        asked = time.time()
        queue.request_stop(run_id, "benchmark", "bench")
        wait(lambda run_id=run_id: sigint_exit(book, run_id) is not None)
        latencies.append(float(sigint_exit(book, run_id)["time"]) - asked)  # type: ignore[index, arg-type]
    worker.wait(timeout=60)
    return latencies


def crossing_latency(root: Path, mode: str) -> list[float]:
    """Seconds from the trainer writing the first value below min to its SIGINT."""
    queue_dir = plan(root, behavior(100_000, STOP), CROSS_SAMPLES)
    queue = Queue(queue_dir)
    book = root / "ledger.jsonl"
    curve = [100.0] * 20 + [1.0]
    env = trainer_env(book, {"step_delay": 0.1, "curve": {"*": curve}, "ledger_ticks": True})
    board = None
    if mode == "tensorboard":
        board = Board(root / "results")
        board.start()
        source = ["--tensorboard", board.url, "--interval", "1"]
    else:
        source = ["--logdir", str(root / "results")]
    monitor = start([str(BIN / "grid-monitor"), "--queue", str(queue_dir), *source], root / "m.log")
    worker = start(
        [str(BIN / "grid-worker"), "--queue", str(queue_dir), "--trainer", FAKE_TRAINER],
        root / "worker.log",
        env,
    )
    try:
        worker.wait(timeout=300)
        monitor.wait(timeout=60)
    finally:
        for proc in (worker, monitor):
            if proc.poll() is None:
                proc.kill()
        if board is not None:
            board.stop()
    latencies = []
    entries = ledger(book)
    for run_id in queue.sweep.run_ids:
        crossed = next(
            e["time"]
            for e in entries
            if e.get("run_id") == run_id and e.get("event") == "tick" and e["step"] == len(curve)
        )
        stopped = sigint_exit(book, run_id)
        assert stopped is not None, f"{run_id} was not stopped"
        latencies.append(float(stopped["time"]) - float(crossed))  # type: ignore[arg-type]
    return latencies


def main() -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        kill = kill_file_latency(Path(tmp) / "kill")
        p99 = percentile(kill, 99) * 1000
        rows.append(
            Row(
                "stop latency: kill file -> trainer SIGINT",
                f"median {median(kill) * 1000:.0f} ms, p99 {p99:.0f} ms ({len(kill)} stops)",
                "p99 < 200 ms",
                p99 < 200,
            )
        )
        logdir = crossing_latency(Path(tmp) / "logdir", "logdir")
        worst = max(logdir)
        rows.append(
            Row(
                "condition crossing -> SIGINT, --logdir",
                f"median {median(logdir):.2f} s, max {worst:.2f} s ({len(logdir)} runs)",
                "< 1 s",
                worst < 1,
            )
        )
        board = crossing_latency(Path(tmp) / "tb", "tensorboard")
        worst = max(board)
        rows.append(
            Row(
                "condition crossing -> SIGINT, TensorBoard, --interval 1, reload 1 s",
                f"median {median(board):.2f} s, max {worst:.2f} s ({len(board)} runs)",
                "< interval + reload + 1 s = 3 s",
                worst < 3,
            )
        )
    return rows


if __name__ == "__main__":
    for row in main():
        print(row)
