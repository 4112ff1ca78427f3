"""Shared pieces of the benchmarks: planning a sweep, starting tools, reading the ledger."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlagents_grid.queue.folder import Claim, Queue

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FAKE_TRAINER = f"{sys.executable} {ROOT / 'tests' / 'support' / 'fake_trainer.py'}"
REWARD = "Environment/Cumulative Reward"


@dataclass
class Row:
    """One figure of the benchmark table."""

    name: str
    value: str
    goal: str = ""
    met: bool | None = None

    @property
    def verdict(self) -> str:
        return "" if self.met is None else ("met" if self.met else "MISSED")


def plan(root: Path, behaviors: str, runs: int, extra_args: tuple[str, ...] = ()) -> Path:
    """A sweep of `runs` runs over environment_parameters.index; returns its queue folder."""
    root.mkdir(parents=True, exist_ok=True)
    values = ", ".join(str(i) for i in range(runs))
    config = root / "grid.yaml"
    config.write_text(
        f"behaviors:\n{behaviors}environment_parameters:\n  index:\n    opt_values: [{values}]\n"
    )
    queue = root / "q"
    subprocess.run(
        [
            str(BIN / "grid-plan"),
            str(config),
            "--queue",
            str(queue),
            "--results-dir",
            str(root / "results"),
            "--max-runs",
            str(runs),
            *extra_args,
        ],
        check=True,
        capture_output=True,
    )
    return queue


def behavior(ticks: int, stop: str = "") -> str:
    text = f"  3DBall:\n    trainer_type: ppo\n    max_steps: {ticks}\n    summary_freq: 1\n"
    return text + (f"    opt_stop: {stop}\n" if stop else "")


def running_runs(queue: Queue, count: int) -> list[Claim]:
    """The first `count` runs claimed by this process and recorded as started, as a worker
    leaves them while its trainers train (release each claim when done)."""
    from mlagents_grid.queue import transitions
    from mlagents_grid.queue.claims import Claimer
    from mlagents_grid.queue.ownership import Claims, Identity

    claimer = Claimer(queue, Claims(Identity.this(), queue.sweep.lease))
    claims = []
    for _ in range(count):
        claim = claimer.next()
        assert claim is not None, "a planned run could not be claimed"
        assert queue.ledger.write(claim.hold, transitions.started(claim.state, attempts=1))
        claims.append(claim)
    return claims


def write_curve(folder: Path, values: list[float], tag: str = REWARD) -> None:
    """An event file as ML-Agents writes one: `values[i]` at step i + 1."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(folder))
    for step, number in enumerate(values, start=1):
        value = summary_pb2.Summary.Value(tag=tag, simple_value=number)
        writer.add_event(event_pb2.Event(step=step, summary=summary_pb2.Summary(value=[value])))
    writer.close()


def start(
    command: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )


def trainer_env(ledger: Path, options: dict[str, Any]) -> dict[str, str]:
    return {"FAKE_LEDGER": str(ledger), "FAKE_TRAINER": json.dumps({"default": options})}


def ledger(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
