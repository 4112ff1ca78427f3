"""Planning speed and memory: 1,000 / 10,000 / 100,000-run grids through the real grid-plan.

Goals: 10,000 runs under 2 s, 100,000 under 20 s. Each size runs in a fresh process so its
wall time includes start-up and its peak RSS is its own. The goals are judged with the queue
on tmpfs, where what is measured is the tool; the same plans on the disk are printed beside
them, because on this machine's virtual disk creating a file costs from 30 µs to 1 ms
depending on the hour, which dominates a plan of 10,000 files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Row

SIZES = {1_000: (10, 10, 10), 10_000: (10, 10, 10, 10), 100_000: (10, 10, 10, 10, 10)}
KEYS = ("beta", "epsilon", "lambd", "learning_rate", "num_epoch")


def grid_config(shape: tuple[int, ...]) -> str:
    lines = ["behaviors:", "  3DBall:", "    trainer_type: ppo", "    hyperparameters:"]
    for key, count in zip(KEYS, shape, strict=False):
        values = ", ".join(str(round(0.001 * (i + 1), 4)) for i in range(count))
        lines.append(f"      {key}: {{opt_values: [{values}]}}")
    lines += ["    max_steps: 500000", "    summary_freq: 12000"]
    return "\n".join(lines) + "\n"


def measure(runs: int, shape: tuple[int, ...], folder: Path) -> tuple[float, float]:
    config = folder / f"grid{runs}.yaml"
    config.write_text(grid_config(shape))
    command = [
        sys.executable,
        "-c",
        # The child reports its own peak, VmHWM: ru_maxrss also counts the forked parent.
        "import sys; from mlagents_grid.cli import plan; code = plan(sys.argv[1:]); "
        "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0], file=sys.stderr); "
        "sys.exit(code)",
        str(config),
        "--queue",
        str(folder / f"q{runs}"),
        "--results-dir",
        str(folder / "results"),
        "--max-runs",
        str(runs),
    ]
    start = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    peak_kb = int(done.stderr.strip().splitlines()[-1])
    return elapsed, peak_kb / 1024


def main() -> list[Row]:
    rows = []
    shm = Path("/dev/shm")
    # (folder, label, goals judged here): on tmpfs when there is one, else on the disk.
    places: list[tuple[Path | None, str, bool]] = [(None, "disk", True)]
    if shm.is_dir() and os.access(shm, os.W_OK):
        places = [(shm, "tmpfs", True), (None, "disk", False)]
    for folder, label, judged in places:
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            for runs, shape in SIZES.items():
                elapsed, peak_mb = measure(runs, shape, Path(tmp))
                goal = {10_000: 2.0, 100_000: 20.0}.get(runs) if judged else None
                rows.append(
                    Row(
                        f"plan {runs:,} runs, queue on {label}",
                        f"{elapsed:.2f} s, peak RSS {peak_mb:.0f} MB",
                        f"< {goal:g} s" if goal else "",
                        None if goal is None else elapsed < goal,
                    )
                )
    return rows


if __name__ == "__main__":
    for row in main():
        print(row)
