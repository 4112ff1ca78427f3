"""`make demo`: what it plans (fast), and the whole demo on the real ML-Agents stack."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlagents_grid import cli
from mlagents_grid.queue.folder import Queue

from .conftest import ROOT, run_cli


def _load_demo() -> Any:
    """scripts/demo.py as a module (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location("demo", ROOT / "scripts" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = _load_demo()

# The whole demo on a loaded 2-core machine (80 s quiet, 2 minutes with both cores busy).
DEMO_S = 540


def test_the_demo_plans_seeds_rungs_and_opt_stop(tmp_path: Path) -> None:
    """Enough seeds for intervals and a verdict, and both ways of stopping runs early."""
    assert demo.SEEDS >= 2
    planned = run_cli(
        cli.plan,
        "grid-plan",
        [
            str(ROOT / "examples" / "demo.yaml"),
            "--queue",
            str(tmp_path / "q"),
            "--run-id",
            "demo",
            "--seeds",
            str(demo.SEEDS),
            *demo.TRAINER_ARGS,
        ],
    )
    assert planned.code == 0, planned.err
    sweep = Queue(tmp_path / "q").sweep
    assert sweep.seeds == demo.SEEDS
    assert len(sweep.run_ids) == 6 * demo.SEEDS
    assert sweep.rung_plan is not None and sweep.conditions


@pytest.mark.real_mlagents
@pytest.mark.timeout(DEMO_S + 60, func_only=True)
def test_make_demo_ends_with_intervals_a_verdict_and_a_decided_rung(
    tmp_path: Path, sim_learn: Path
) -> None:
    out = tmp_path / "demo"
    ran = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=DEMO_S,
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert "No 95% intervals" not in ran.stdout
    verdict = [line for line in ran.stdout.splitlines() if "95% interval" in line]
    assert verdict and ("is the best" in verdict[0] or "tied" in verdict[0]), ran.stdout
    points = _tool_json(
        "grid-report", "--queue", str(out / "queue"), "--out", str(tmp_path / "report")
    )
    assert points[0]["seeds"] == demo.SEEDS and points[0]["ci_low"] is not None
    assert points[0]["values"]["3DBall"]["learning_rate"] == 0.003
    rung = json.loads((out / "queue" / "rungs" / "1.json").read_text())
    assert sorted(rung["promoted"]) == [0, 1]  # learning rate 0.003
    # The slower rates (3e-4, 1e-5) end at the rung or, where opt_stop met all of a point's
    # runs at step 2,000, before it: which of them hovers around the 0.1 bar there is noise.
    before = {p["point"] for p in rung["points"] if not p["eligible"]}
    assert set(rung["stopped"]) | before == {2, 3, 4, 5}, rung
    runs = _tool_json("grid-status", "--queue", str(out / "queue"))["runs"]
    barely_learning = [r for r in runs if r["values"]["3DBall"]["learning_rate"] == 1e-5]
    assert any(
        r["status"] == "stopped" and "< 0.1 [step: " in (r["stop_reason"] or "")
        for r in barely_learning
    ), barely_learning


def _tool_json(tool: str, *args: str) -> Any:
    """What one of the tools prints with --json."""
    printed = subprocess.run(
        [str(Path(sys.executable).parent / tool), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(printed.stdout)
