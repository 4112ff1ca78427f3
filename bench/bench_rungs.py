"""Successive-halving rungs: compute saved, whether the best point survives, and wall time.

27 grid points whose curves are known (noisy, some that learn fast and plateau low, some that
start slow and end high, so curves cross), rungs at 1/9 and 1/3 of max_steps, keep 1/3. The
selection is repeated on 20 generated sweeps (`simulate`); one of them also runs end to
end through real grid-worker processes (fake trainer) and grid-monitor, against the same
sweep without rungs. `real_stack()` does a 3x3 sweep on the real ML-Agents stack.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from common import BIN, FAKE_TRAINER, REWARD, ROOT, Row, ledger, start

sys.path.insert(0, str(ROOT))
from mlagents_grid.plan.rungs import Rungs
from mlagents_grid.results.metrics import Scalar
from mlagents_grid.results.rung_ranking import decide_rung, window_score

POINTS = 27
MAX_STEPS = 90
RUNG_STEPS = (MAX_STEPS // 9, MAX_STEPS // 3)
KEEP = 1 / 3
WINDOW = 5
SWEEPS = 20
WORKERS = 3
STEP_DELAY = 0.03


CROSSERS = 3


def curves(seed: int, spread: float = 0.1) -> dict[int, list[float]]:
    """level * (1 - exp(-step / speed)) + noise (0.03); levels 0.2-1.0, speeds 20 +- spread.

    The first CROSSERS points learn fast and plateau low (0.3-0.6): they lead at the first
    rung and end behind, so curves cross. `spread=0.1` is the benchmark's family; the hard
    family (speeds 5-40, every point) shows where early ranking misleads.
    """
    rng = random.Random(seed)
    found = {}
    for point in range(POINTS):
        if spread >= 1:
            level, speed = rng.uniform(0.2, 1.0), rng.uniform(5, 40)
        elif point < CROSSERS:
            level, speed = rng.uniform(0.3, 0.6), 3.0
        else:
            level, speed = rng.uniform(0.2, 1.0), 20 * rng.uniform(1 - spread, 1 + spread)
        found[point] = [
            level * (1 - math.exp(-step / speed)) + rng.gauss(0, 0.03)
            for step in range(1, MAX_STEPS + 1)
        ]
    return found


def simulate(
    curves: Mapping[int, Sequence[float]], rungs: Rungs, max_steps: int
) -> tuple[list[int], int]:
    """Successive halving on known curves (`curves[point][s - 1]` is the value at step s),
    deciding each rung as the monitor does. Returns the finalists (points promoted at the
    last rung) and the steps trained in all."""
    alive = sorted(curves)
    trained = 0
    reached = 0
    for number, step in enumerate(rungs.steps, 1):
        trained += (step - reached) * len(alive)
        reached = step
        scores = {
            p: window_score(
                [Scalar(s, v, 0.0) for s, v in enumerate(curves[p][:step], 1)], step, rungs.window
            )
            for p in alive
        }
        decision = decide_rung(number, step, rungs.keep, scores, {}, alive)
        alive = decision.promoted
    trained += (max_steps - reached) * len(alive)
    return alive, trained


def full_grid_best(found: dict[int, list[float]]) -> int:
    """The point the full grid would pick: best mean of the last WINDOW points."""
    return max(found, key=lambda p: sum(found[p][-WINDOW:]) / WINDOW)


def selection(spread: float = 0.1) -> tuple[float, int]:
    rungs = Rungs(REWARD, RUNG_STEPS, KEEP, WINDOW)
    hits, fractions = 0, []
    for seed in range(SWEEPS):
        found = curves(seed, spread)
        finalists, trained = simulate(found, rungs, MAX_STEPS)
        hits += full_grid_best(found) in finalists
        fractions.append(trained / (POINTS * MAX_STEPS))
    return sum(fractions) / len(fractions), hits


def _config(root: Path, rungs: bool, behavior: str, values: str) -> Path:
    text = ""
    if rungs:
        steps = ", ".join(str(s) for s in RUNG_STEPS)
        text += f"opt_rungs:\n  tag: {REWARD}\n  steps: [{steps}]\n  keep: {KEEP}\n"
        text += f"  window: {WINDOW}\n"
    text += f"behaviors:\n{behavior}environment_parameters:\n  index:\n    opt_values: [{values}]\n"
    path = root / "grid.yaml"
    path.write_text(text)
    return path


def end_to_end(root: Path, rungs: bool, found: dict[int, list[float]]) -> dict[str, Any]:
    """One sweep through grid-plan, WORKERS grid-workers and (with rungs) grid-monitor."""
    root.mkdir(parents=True)
    behavior = f"  B:\n    trainer_type: ppo\n    max_steps: {MAX_STEPS}\n    summary_freq: 1\n"
    config = _config(root, rungs, behavior, ", ".join(str(p) for p in range(POINTS)))
    queue = root / "q"
    subprocess.run(
        [str(BIN / "grid-plan"), str(config), "--queue", str(queue)]
        + ["--results-dir", str(root / "results")],
        check=True,
        capture_output=True,
    )
    book = root / "ledger.jsonl"
    options = {
        "default": {"step_delay": STEP_DELAY},
        "runs": {f"grid-{p}": {"curve": {"*": found[p]}} for p in found},
    }
    env = {"FAKE_LEDGER": str(book), "FAKE_TRAINER": json.dumps(options)}
    began = time.monotonic()
    procs = [
        start(
            [str(BIN / "grid-worker"), "--queue", str(queue), "--trainer", FAKE_TRAINER],
            root / f"worker-{i}.log",
            env,
        )
        for i in range(WORKERS)
    ]
    if rungs:
        monitor = [str(BIN / "grid-monitor"), "--queue", str(queue), "--interval", "1"]
        procs.append(start(monitor + ["--logdir", str(root / "results")], root / "monitor.log"))
    try:
        for proc in procs:
            proc.wait(timeout=600)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    wall = time.monotonic() - began
    entries = ledger(book)
    starts = {}
    trained = 0
    for entry in entries:
        if entry.get("event") == "start":
            starts[entry["run_id"]] = entry["start_step"]
        elif entry.get("event") == "exit":
            trained += entry["step"] - starts.get(entry["run_id"], 0)
    done = [
        int(json.loads(path.read_text())["run_id"].split("-")[-1])
        for path in (queue / "final").glob("*.json")
        if json.loads(path.read_text())["status"] == "done"
    ]
    return {"wall": wall, "trained": trained, "done": sorted(done)}


def main() -> list[Row]:
    fraction, hits = selection()
    _, hard_hits = selection(spread=1.0)
    rows = [
        Row(
            f"steps trained with rungs, of the full grid ({SWEEPS} simulated sweeps, 27 points, "
            f"rungs at {RUNG_STEPS[0]} and {RUNG_STEPS[1]} of {MAX_STEPS}, keep 1/3)",
            f"{fraction:.1%}",
            "<= 30%",
            fraction <= 0.30,
        ),
        Row(
            "full grid's best point among the finalists (simulated sweeps; speeds 20 +- 10%, "
            f"{CROSSERS} crossing curves, noise 0.03)",
            f"{hits} of {SWEEPS}",
            f">= 18 of {SWEEPS}",
            hits >= 18,
        ),
        Row(
            "same, hard family: every point's learning speed anywhere in 5-40 (8x)",
            f"{hard_hits} of {SWEEPS}",
        ),
    ]
    found = curves(0)
    with tempfile.TemporaryDirectory(prefix="bench-rungs-") as tmp:
        with_rungs = end_to_end(Path(tmp) / "rungs", True, found)
        full = end_to_end(Path(tmp) / "full", False, found)
    best = full_grid_best(found)
    rows += [
        Row(
            "end to end (3 workers + monitor, fake trainer): steps trained, of the full grid",
            f"{with_rungs['trained'] / max(1, full['trained']):.1%} "
            f"({with_rungs['trained']} of {full['trained']})",
            "<= 30%",
            with_rungs["trained"] <= 0.30 * full["trained"],
        ),
        Row(
            "end to end: the full grid's best point trained to max_steps with rungs",
            f"{'yes' if best in with_rungs['done'] else 'no'} (best grid-{best}; "
            f"finalists {', '.join(f'grid-{p}' for p in with_rungs['done'])})",
            "yes",
            best in with_rungs["done"],
        ),
        Row(
            f"end to end: wall time with rungs vs without ({WORKERS} workers, "
            f"{STEP_DELAY:g} s per step)",
            f"{with_rungs['wall']:.1f} s vs {full['wall']:.1f} s",
        ),
    ]
    return rows


REAL_CONFIG = """\
behaviors:
  Sim:
    trainer_type: ppo
    hyperparameters:
      batch_size: 32
      buffer_size: 320
      learning_rate:
        opt_values: [0.00001, 0.0003, 0.003]
      beta:
        opt_values: [0.0005, 0.005, 0.05]
      num_epoch: 3
    network_settings:
      hidden_units: 32
      num_layers: 1
    max_steps: 6000
    summary_freq: 500
    time_horizon: 20
"""


def real_stack() -> list[Row]:
    """3x3 learning_rate x beta on grid-sim-learn, with rungs at 1500 and 3000 vs without."""
    trainer = ROOT / ".venv-mlagents" / "bin" / "grid-sim-learn"
    if not trainer.exists():
        return [Row("real stack", "skipped: run scripts/setup-mlagents.sh first")]
    results: dict[bool, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-rungs-real-") as tmp:
        for rungs in (True, False):
            root = Path(tmp) / ("rungs" if rungs else "full")
            root.mkdir()
            text = REAL_CONFIG
            if rungs:
                text = (
                    f"opt_rungs:\n  tag: {REWARD}\n  steps: [1500, 3000]\n  keep: 0.34\n"
                    "  window: 2\n" + text
                )
            (root / "grid.yaml").write_text(text)
            queue = root / "q"
            subprocess.run(
                [str(BIN / "grid-plan"), str(root / "grid.yaml"), "--queue", str(queue)]
                + ["--results-dir", str(root / "results"), "--base-port", "7100"],
                check=True,
                capture_output=True,
                cwd=root,
            )
            began = time.monotonic()
            procs = [
                start(
                    [str(BIN / "grid-worker"), "--queue", str(queue), "--trainer", str(trainer)],
                    root / f"worker-{i}.log",
                )
                for i in range(WORKERS)
            ]
            if rungs:
                procs.append(
                    start(
                        [str(BIN / "grid-monitor"), "--queue", str(queue), "--interval", "1"]
                        + ["--logdir", str(root / "results")],
                        root / "monitor.log",
                    )
                )
            try:
                for proc in procs:
                    proc.wait(timeout=900)
            finally:
                for proc in procs:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
            wall = time.monotonic() - began
            report = subprocess.run(
                [str(BIN / "grid-report"), "--queue", str(queue), "--last", "2"],
                capture_output=True,
                text=True,
            ).stdout
            status = json.loads(
                subprocess.run(
                    [str(BIN / "grid-status"), "--queue", str(queue), "--json"],
                    capture_output=True,
                    text=True,
                ).stdout
            )
            steps = sum(run["step"] or 0 for run in status["runs"])
            best = next((line.split()[1] for line in report.splitlines() if "1. " in line), "?")
            results[rungs] = {"wall": wall, "steps": steps, "best": best}
            shutil.rmtree(root / "results", ignore_errors=True)
    on, off = results[True], results[False]
    return [
        Row(
            "real stack 3x3 (grid-sim-learn, 6000 steps, rungs at 1500/3000): steps trained",
            f"{on['steps']} vs {off['steps']} ({on['steps'] / max(1, off['steps']):.0%})",
        ),
        Row(
            "real stack: wall time with rungs vs without",
            f"{on['wall']:.0f} s vs {off['wall']:.0f} s",
        ),
        Row(
            "real stack: best point with rungs vs full grid",
            f"{on['best']} vs {off['best']}",
            "same",
            on["best"] == off["best"],
        ),
    ]


if __name__ == "__main__":
    for row in main() + (real_stack() if "--real" in sys.argv else []):
        print(f"{row.name:<100} {row.value}  {row.goal} {row.verdict}")
