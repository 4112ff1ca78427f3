"""`make demo`: a real sweep of examples/demo.yaml with real mlagents-learn on a simulated env.

Plans the example with the grid-plan of .venv-mlagents (so ML-Agents itself checks the config
and the trainer arguments), starts TensorBoard on 127.0.0.1, two workers and the monitor,
shows progress while it trains, and ends with the sweep's status, grid-report's ranking, the
best configuration and where to look. Every process it starts is ended by pid when it
finishes or is interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# The environment with the real ML-Agents stack (scripts/setup-mlagents.sh, `make mlagents`).
MLAGENTS_BIN = ROOT / ".venv-mlagents" / "bin"
# Trainer arguments every run gets; grid-plan checks them with mlagents-learn's own parser.
TRAINER_ARGS = ["--torch-device=cpu"]
# Each grid point trains this many times, with seeds 0, 1, ...: enough for the report's
# intervals and its verdict on which differences hold.
SEEDS = 2
# Seconds the simulated environment waits per step (4 agent steps): 8,000 steps take about
# 6 s more. Unpaced, a fast machine trains a run from step 4,000 to its end in the 2 to 4 s
# TensorBoard and the monitor take to see step 4,000, and the rung is decided without it.
STEP_DELAY = "0.003"
# How long TensorBoard may take to answer before the workers start anyway (the monitor waits
# for it); generous for a loaded machine.
BOARD_READY_S = 60.0


def free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise RuntimeError("no free port on 127.0.0.1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(ROOT / "build" / "demo"), help="demo folder")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--trainer", default=str(MLAGENTS_BIN / "grid-sim-learn"))
    args = parser.parse_args()

    if not (MLAGENTS_BIN / "grid-plan").exists():
        print(f"demo: {MLAGENTS_BIN / 'grid-plan'} is missing; run `make mlagents` first")
        return 1
    began = time.monotonic()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    queue, results = out / "queue", out / "results"
    print(
        f"$ .venv-mlagents/bin/grid-plan examples/demo.yaml --seeds {SEEDS} "
        f"{' '.join(TRAINER_ARGS)}\n"
        "  (mlagents is importable there: ML-Agents' own settings classes check every swept "
        "value and mlagents-learn's parser checks the trainer arguments)",
        flush=True,
    )
    planned = subprocess.run(
        [
            str(MLAGENTS_BIN / "grid-plan"),
            str(ROOT / "examples" / "demo.yaml"),
            "--queue",
            str(queue),
            "--results-dir",
            str(results),
            "--run-id",
            "demo",
            "--base-port",
            str(free_port(5105)),
            "--seeds",
            str(SEEDS),
            *TRAINER_ARGS,
        ],
        check=False,
    )
    if planned.returncode != 0:
        print(f"demo: grid-plan failed (exit code {planned.returncode})")
        return planned.returncode
    board_port = free_port(6006)
    board = f"http://127.0.0.1:{board_port}"
    started: list[subprocess.Popen[bytes]] = []
    logs = out / "logs"
    logs.mkdir()

    def start(
        name: str, command: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with open(logs / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=out, env=env)
        started.append(proc)
        return proc

    try:
        start(
            "tensorboard",
            [
                sys.executable,
                "-m",
                "tensorboard.main",
                "--logdir",
                str(results),
                "--host",
                "127.0.0.1",
                "--port",
                str(board_port),
                "--reload_interval",
                "2",
            ],
        )
        monitor = start(
            "monitor",
            [
                str(BIN / "grid-monitor"),
                "--queue",
                str(queue),
                "--tensorboard",
                board,
                "--interval",
                "2",
            ],
        )
        wait_for_board(board)
        paced = {**os.environ, "GRID_SIM_STEP_DELAY": STEP_DELAY}
        workers = [
            start(
                f"worker-{i}",
                [str(BIN / "grid-worker"), "--queue", str(queue), "--trainer", args.trainer],
                paced,
            )
            for i in range(args.workers)
        ]
        print(f"Training: {args.workers} workers, monitor and TensorBoard at {board}")
        begin = time.monotonic()
        while any(w.poll() is None for w in workers):
            time.sleep(5)
            summary = subprocess.run(
                [str(BIN / "grid-status"), "--queue", str(queue), "--json"],
                capture_output=True,
                text=True,
            )
            counts = _counts(summary.stdout)
            print(f"  [{time.monotonic() - begin:5.0f}s] {counts}", flush=True)
        with contextlib.suppress(subprocess.TimeoutExpired):
            monitor.wait(timeout=30)
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.terminate()
        for proc in started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
            if proc.poll() is None:
                proc.kill()
    subprocess.run([str(BIN / "grid-status"), "--queue", str(queue)], check=False)
    report = queue / "report"
    print("\n$ grid-report --queue", queue, flush=True)
    reported = subprocess.run([str(BIN / "grid-report"), "--queue", str(queue)], check=False)
    best = best_configuration(report / "report.md") if reported.returncode == 0 else None
    if best is not None:
        title, snippet = best
        print(f"\n{title}, to paste into your trainer config:\n")
        print(textwrap.indent(snippet, "    "))
    else:
        print("\nNo best configuration: no run has a score (see the trainer logs)")
    print(
        f"\nWhere to look:\n"
        f"  report:          {report / 'report.md'}\n"
        f"  learning curves: {report / 'curves.png'}\n"
        f"  leaderboard:     {report / 'leaderboard.csv'}\n"
        f"  results:         {results}\n"
        f"  runs and values: {queue / 'config_info.txt'}\n"
        f"  trainer logs:    {queue / 'logs'}\n"
        f"  TensorBoard:     tensorboard --logdir {results}\n"
        f"  events:          {queue / 'events.jsonl'}\n"
        f"\nDemo finished in {time.monotonic() - began:.0f} s"
    )
    return 0 if reported.returncode == 0 else reported.returncode


def wait_for_board(board: str) -> None:
    """Wait until TensorBoard answers, so the monitor sees the first runs train."""
    deadline = time.monotonic() + BOARD_READY_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{board}/data/logdir", timeout=5):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)


def best_configuration(markdown: Path) -> tuple[str, str] | None:
    """The title and YAML snippet of report.md's "Best configuration" section, if any."""
    try:
        lines = markdown.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for at, line in enumerate(lines):
        if line.startswith("## Best configuration"):
            body = lines[at + 1 :]
            if "```yaml" not in body:
                return None
            start = body.index("```yaml") + 1
            end = body.index("```", start) if "```" in body[start:] else len(body)
            return line.removeprefix("## "), "\n".join(body[start:end])
    return None


def _counts(text: str) -> str:
    import json

    try:
        counts = json.loads(text)["counts"]
    except (ValueError, KeyError):
        return "status unavailable"
    return ", ".join(f"{n} {status}" for status, n in counts.items() if n)


if __name__ == "__main__":
    sys.exit(main())
