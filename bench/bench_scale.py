"""Watching a 10,000-run sweep: grid-status's view and --watch, grid-report, the monitor's pass.

Queues live on tmpfs where there is one (what is measured is the tool, not the disk).
grid-status runs under a real pseudo-terminal of 50 x 200, as a user would see it; every
command is a fresh process. A finished sweep is made by real workers with the trainer
`true` over results folders whose event files were written beforehand.
"""

from __future__ import annotations

import contextlib
import os
import pty
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Iterator
from fcntl import ioctl
from pathlib import Path

import psutil
from common import BIN, REWARD, Row, behavior, plan, running_runs, start

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mlagents_grid.queue.folder import Queue
from mlagents_grid.results.monitor import Monitor

TERMINAL = (50, 200)  # rows, columns
WATCH_SECONDS = 60
ENDING_PER_SECOND = 10
SEEDS = 4
POINTS_PER_CURVE = 50
MONITOR_RUNS = 1_000
FIRST_FRAME_WAIT = 180  # the old --watch took 20 s and more per frame at 10,000 runs
FINAL_COUNT = re.compile(rb"([\d,]+)/([\d,]+) final")
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    shm = Path("/dev/shm")
    where = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        yield Path(tmp)


class Terminal:
    """A command on a pseudo-terminal of TERMINAL's size; its output collected by a thread."""

    def __init__(self, command: list[str]) -> None:
        master, slave = pty.openpty()
        ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *TERMINAL, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color"}
        env.pop("COLUMNS", None)
        env.pop("LINES", None)
        self.process = subprocess.Popen(
            command, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
        )
        os.close(slave)
        self.master = master
        self.output = bytearray()
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self.lock:
                self.output += chunk

    def text(self) -> bytes:
        with self.lock:
            return bytes(self.output)

    def finish(self, timeout: float = 600) -> bytes:
        self.process.wait(timeout=timeout)
        self.reader.join(timeout=10)
        os.close(self.master)
        return self.text()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)
        self.reader.join(timeout=10)
        os.close(self.master)


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def status_table(runs: int) -> tuple[float, int]:
    """Seconds for `grid-status` on `runs` planned runs, and the lines it printed."""
    with scratch() as root:
        queue = plan(root, behavior(10), runs)
        began = time.perf_counter()
        terminal = Terminal([str(BIN / "grid-status"), "--queue", str(queue)])
        output = terminal.finish()
        elapsed = time.perf_counter() - began
    return elapsed, output.count(b"\n")


def frames(output: bytes) -> list[int]:
    """The final-run count of every frame drawn so far."""
    plain = ANSI.sub(b"", output)
    return [int(m.group(1).replace(b",", b"")) for m in FINAL_COUNT.finditer(plain)]


def watch_idle(runs: int) -> tuple[float, float, int]:
    """--watch over `runs` planned runs that nothing changes: seconds to the first frame,
    CPU seconds over WATCH_SECONDS after it, and bytes written per frame after it."""
    with scratch() as root:
        queue = plan(root, behavior(10), runs)
        began = time.perf_counter()
        terminal = Terminal([str(BIN / "grid-status"), "--queue", str(queue), "--watch"])
        try:
            first = wait_first_frame(terminal, began)
            process = psutil.Process(terminal.process.pid)
            before, drawn, size = (
                cpu_seconds(process),
                len(frames(terminal.text())),
                len(terminal.text()),
            )
            time.sleep(WATCH_SECONDS)
            cpu = cpu_seconds(process) - before
            text = terminal.text()
            per_frame = (len(text) - size) / max(1, len(frames(text)) - drawn)
        finally:
            terminal.kill()
    return first, cpu, int(per_frame)


def wait_first_frame(terminal: Terminal, began: float) -> float:
    while not frames(terminal.text()):
        if time.perf_counter() - began > FIRST_FRAME_WAIT or terminal.process.poll() is not None:
            raise RuntimeError(f"no frame drawn: {terminal.text()[-2000:]!r}")
        time.sleep(0.05)
    return time.perf_counter() - began


def watch_busy(runs: int) -> dict[str, float]:
    """--watch while workers end about ENDING_PER_SECOND runs a second."""
    with scratch() as root:
        queue_dir = plan(root, behavior(10), runs)
        queue = Queue(queue_dir)
        trainer = "sh -c 'sleep 0.5' trainer"
        workers = [
            start(
                [str(BIN / "grid-worker"), "--queue", str(queue_dir), "--trainer", trainer],
                root / f"worker-{i}.log",
            )
            for i in range(ENDING_PER_SECOND // 2)
        ]
        try:
            time.sleep(5)
            began = time.perf_counter()
            terminal = Terminal([str(BIN / "grid-status"), "--queue", str(queue_dir), "--watch"])
            try:
                wait_first_frame(terminal, began)
                process = psutil.Process(terminal.process.pid)
                before, drawn = cpu_seconds(process), len(frames(terminal.text()))
                ended_before = len(queue.final_ids())
                time.sleep(WATCH_SECONDS)
                cpu = cpu_seconds(process) - before
                ended = len(queue.final_ids())
                time.sleep(0.5)  # a frame being drawn finishes
                shown = frames(terminal.text())
            finally:
                terminal.kill()
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                worker.wait(timeout=60)
    rate = (ended - ended_before) / WATCH_SECONDS
    return {
        "cpu": cpu,
        "frames": len(shown) - drawn,
        "rate": rate,
        "lag": max(0.0, (ended - shown[-1]) / rate) if rate else 0.0,
    }


def write_events(folder: Path, values: list[float], first_step: int = 1) -> None:
    """Append scalar events to the folder's one event file (created with its header)."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    folder.mkdir(parents=True, exist_ok=True)
    existing = [n for n in os.listdir(folder) if "tfevents" in n]
    name = existing[0] if existing else "events.out.tfevents.1700000000.bench.1"
    with open(folder / name, "ab") as handle:
        writer = RecordWriter(handle)
        if not existing:
            writer.write(
                event_pb2.Event(wall_time=1.7e9, file_version="brain.Event:2").SerializeToString()
            )
        for offset, number in enumerate(values):
            value = summary_pb2.Summary.Value(tag=REWARD, simple_value=number)
            event = event_pb2.Event(
                wall_time=1.7e9 + offset,
                step=first_step + offset,
                summary=summary_pb2.Summary(value=[value]),
            )
            writer.write(event.SerializeToString())


def finished_sweep(root: Path, runs: int) -> Path:
    """`runs` runs (SEEDS per point) whose event files exist, made final by real workers."""
    points = runs // SEEDS
    queue = plan(
        root, behavior(POINTS_PER_CURVE), points, ("--seeds", str(SEEDS), "--max-runs", str(runs))
    )
    for number, run_id in enumerate(Queue(queue).sweep.run_ids):
        curve = [(number % 97) / 97 + step / POINTS_PER_CURVE for step in range(POINTS_PER_CURVE)]
        write_events(root / "results" / run_id / "3DBall", curve)
    command = [str(BIN / "grid-worker"), "--queue", str(queue), "--trainer", "true"]
    workers = [start(command, root / f"drain-{i}.log") for i in range(4)]
    for worker in workers:
        assert worker.wait(timeout=1800) == 0, "a worker failed"
    return queue


Timing = tuple[float, float]  # wall and CPU seconds


def children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def timed(command: list[str]) -> Timing:
    """Wall and CPU seconds of a command (the CPU figure holds on a busy machine)."""
    began, cpu = time.perf_counter(), children_cpu()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - began, children_cpu() - cpu


def timing(figures: Timing) -> str:
    return f"{figures[0]:.2f} s ({figures[1]:.2f} s CPU)"


def report_times(runs: int) -> tuple[Timing, Timing, Timing, Timing, Timing]:
    """On `runs` finished runs whose workers kept their scores: grid-status --json and
    grid-report, each the first time and the next; then grid-report with the kept scores
    removed, as for a sweep ended by an older version (every event file read, every
    HParams session written)."""
    with scratch() as root:
        queue = finished_sweep(root, runs)
        status = [str(BIN / "grid-status"), "--queue", str(queue), "--json"]
        first_status, next_status = timed(status), timed(status)
        report = [str(BIN / "grid-report"), "--queue", str(queue)]
        first_report, next_report = timed(report), timed(report)
        shutil.rmtree(queue / "scores")
        return first_status, next_status, first_report, next_report, timed(report)


def monitor_pass(runs: int) -> tuple[float, float, float]:
    """One --logdir pass over `runs` running runs with opt_stop: the first one (every file
    read from its start), one after each run wrote 5 more points, and of a pass the time
    `Queue.running` takes to probe the runs' locks."""
    stop = f'{{tag: "{REWARD}", step: 1000000, min: 1}}'
    with scratch() as root:
        queue = Queue(plan(root, behavior(1000, stop), runs))
        claims = running_runs(queue, runs)
        for claim in claims:
            write_events(root / "results" / claim.job.run_id / "3DBall", [5.0] * POINTS_PER_CURVE)
        monitor = Monitor(queue, logdir=root / "results")
        began = time.perf_counter()
        monitor.check()
        first = time.perf_counter() - began
        for claim in claims:
            folder = root / "results" / claim.job.run_id / "3DBall"
            write_events(folder, [5.0] * 5, first_step=POINTS_PER_CURVE + 1)
        began = time.perf_counter()
        met = monitor.check()
        later = time.perf_counter() - began
        assert not met
        began = time.perf_counter()
        running = queue.running()
        probes = time.perf_counter() - began
        assert len(running) == runs
        for claim in claims:
            claim.release()
    return first, later, probes


def main() -> list[Row]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    rows = []
    for runs, goal in ((10_000, 0.5), (100_000, 2.0)):
        seconds, lines = status_table(runs)
        rows.append(
            Row(
                f"grid-status table, {runs:,} planned runs (terminal {TERMINAL[0]}x{TERMINAL[1]})",
                f"{seconds:.2f} s, {lines:,} lines",
                f"< {goal:g} s",
                seconds < goal,
            )
        )
    first, cpu, per_frame = watch_idle(10_000)
    per_minute = cpu * 60 / WATCH_SECONDS
    rows.append(
        Row(
            "grid-status --watch, 10,000 runs, nothing changing: CPU per minute",
            f"{per_minute:.2f} s (first frame after {first:.1f} s; {per_frame:,} bytes a frame)",
            "< 2 s",
            per_minute < 2,
        )
    )
    busy = watch_busy(10_000)
    rows.append(
        Row(
            f"grid-status --watch, 10,000 runs, {busy['rate']:.1f} runs ending a second",
            f"{busy['cpu'] * 60 / WATCH_SECONDS:.1f} s CPU a minute, {busy['frames']} frames "
            f"in {WATCH_SECONDS} s, last frame {busy['lag']:.1f} s behind",
            "keeps up",
            busy["lag"] < 5,
        )
    )
    for runs, goal in ((1_000, 3.0), (10_000, 15.0)):
        first_status, next_status, first_report, next_report, unkept = report_times(runs)
        rows.append(
            Row(
                f"grid-status --json, {runs:,} finished runs x {POINTS_PER_CURVE} points: "
                "first / next",
                f"{timing(first_status)} / {timing(next_status)}",
            )
        )
        rows.append(
            Row(
                f"grid-report, {runs:,} finished runs ({SEEDS} seeds a point): first / next",
                f"{timing(first_report)} / {timing(next_report)}",
                f"< {goal:g} s",
                max(first_report[0], next_report[0]) < goal,
            )
        )
        rows.append(
            Row(
                f"grid-report, {runs:,} finished runs, without kept scores (a sweep ended "
                "by an older version)",
                timing(unkept),
            )
        )
    first_pass, later_pass, probes = monitor_pass(MONITOR_RUNS)
    rows.append(
        Row(
            f"monitor pass over {MONITOR_RUNS:,} running runs, --logdir: first / next",
            f"{first_pass:.2f} s / {later_pass:.2f} s, of which {probes:.2f} s probing the "
            "runs' claims (Queue.running)",
            "< 1 s",
            later_pass < 1,
        )
    )
    return rows


if __name__ == "__main__":
    only = sys.argv[1:]
    if only:
        for name in only:
            print(name, globals()[name.split(":")[0]](*map(int, name.split(":")[1:])))
    else:
        for row in main():
            print(row)
