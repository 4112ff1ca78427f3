"""The sweep record (the queue's sweep.json): what grid-plan decides once for every run.

`checked_sweep` turns a plan and grid-plan's options into that record, refusing here,
before anything is written, what would fail every run later.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import GridError
from .grid import Dimension, Plan
from .learn_args import check_overrides
from .mlagents_checks import check_trainer_args, validate_with_mlagents
from .rungs import Rungs

DEFAULT_MAX_RUNS = 10_000
DEFAULT_BASE_PORT = 5005
# How long a claim's lease lasts: how long a dead host's runs wait before another host takes
# them over (README: Running on a cluster).
DEFAULT_LEASE = 120.0
MIN_LEASE = 1.0
DEFAULT_MAX_ATTEMPTS = 3
SWEEP_FORMAT = 1


@dataclass
class Sweep:
    """What `grid-plan` decided once for every run of the sweep (the queue's sweep.json)."""

    prefix: str
    source: str
    results_dir: str
    base_port: int
    num_envs: int
    trainer_args: list[str]
    force: bool
    cwd: str
    created: float
    behaviors: list[str]
    dimensions: list[dict[str, Any]]
    run_ids: list[str]
    format: int = SWEEP_FORMAT
    seeds: int = 1  # runs per grid point (grid-plan --seeds)
    # Bumped by each `grid-plan --extend`; readers reload sweep.json when it changes.
    generation: int = 0
    # The opt_stop conditions of the latest plan (None: planned before they were recorded).
    conditions: list[dict[str, Any]] | None = None
    # `opt_rungs` as parsed (rungs.Rungs.to_dict); None: no rungs. Absent from older sweeps.
    rungs: dict[str, Any] | None = None
    # Seconds a claim's lease lasts (grid-plan --lease): every worker must use the same.
    lease: float = DEFAULT_LEASE
    # Failures of a run before it is failed (grid-plan --max-attempts).
    max_attempts: int = DEFAULT_MAX_ATTEMPTS

    @property
    def rung_plan(self) -> Rungs | None:
        return Rungs.from_dict(self.rungs) if self.rungs else None

    @property
    def behavior_folders(self) -> list[str]:
        """ML-Agents writes `Soccer?team=0` under `Soccer`."""
        return list(dict.fromkeys(name.split("?")[0] for name in self.behaviors))

    def to_json(self) -> str:
        """The manifest; `seeds` only when above 1, so one seed writes what it always did."""
        data = asdict(self)
        if self.seeds == 1:
            del data["seeds"]
        return json.dumps(data, indent=1)


@dataclass(frozen=True)
class SweepRequest:
    """grid-plan's own options, as given (None: not given)."""

    config: Path
    trainer_args: list[str]
    results_dir: str | None = None
    base_port: int | None = None
    force: bool = False
    max_runs: int = DEFAULT_MAX_RUNS
    lease: float = DEFAULT_LEASE
    max_attempts: int = DEFAULT_MAX_ATTEMPTS


def checked_sweep(
    document: Any, plan: Plan, request: SweepRequest, cwd: str
) -> tuple[Sweep, list[str]]:
    """The sweep record of a plan: checked against its flags, with ports and folders
    decided; also the notes to print.

    Refused here, before anything is written: too many runs, trainer arguments that
    mlagents-learn would refuse in every run, and values ML-Agents rejects.
    """
    source = request.config
    check_overrides(request.trainer_args, (d.path for d in plan.dimensions), plan.seed_values)
    if plan.count > request.max_runs:
        raise GridError(
            f"{source}: {plan.count:,} runs ({plan.describe_dimensions()}) exceed "
            f"the limit of {request.max_runs:,}; pass --max-runs {plan.count} to allow them"
        )
    notes = [f"warning: {warning}" for warning in plan.warnings]
    parsed = check_trainer_args(str(source), request.trainer_args)
    if parsed is None and request.trainer_args:
        notes.append(
            "warning: mlagents is not importable here, so the trainer arguments "
            f"({' '.join(request.trainer_args)}) were not checked; a mistyped one fails every run"
        )
    if not validate_with_mlagents(plan):
        notes.append(
            "note: mlagents is not importable here, so only the top-level sections were "
            "checked; install mlagents beside grid-plan for full validation"
        )
    num_envs_arg = _option_value(request.trainer_args, "--num-envs")
    if parsed is not None and "num_envs" in parsed:
        num_envs_arg = str(parsed["num_envs"]) if num_envs_arg or parsed["num_envs"] != 1 else None
    num_envs = positive_int(
        num_envs_arg or _section_value(document, "env_settings", "num_envs") or 1,
        "--num-envs" if num_envs_arg else f"{source}: env_settings.num_envs",
    )
    results = Path(
        request.results_dir
        or str(_section_value(document, "checkpoint_settings", "results_dir") or "results")
    )
    if not results.is_absolute():
        results = Path(cwd) / results
    base_port = positive_int(
        request.base_port
        or _section_value(document, "env_settings", "base_port")
        or DEFAULT_BASE_PORT,
        "--base-port",
    )
    sweep = Sweep(
        prefix=plan.prefix,
        source=str(source.absolute()),
        results_dir=str(results),
        base_port=base_port,
        num_envs=num_envs,
        trainer_args=list(request.trainer_args),
        force=request.force,
        cwd=cwd,
        created=time.time(),
        behaviors=list(plan.behaviors),
        dimensions=dimension_records(plan.dimensions),
        run_ids=plan.run_ids(),
        seeds=max(1, len(plan.seed_values)),
        conditions=[c.to_dict() for c in plan.conditions],
        rungs=plan.rungs,
        lease=request.lease,
        max_attempts=request.max_attempts,
    )
    return sweep, notes


def dimension_records(dimensions: Iterable[Dimension]) -> list[dict[str, Any]]:
    """sweep.json's account of the swept keys (the path lets --extend compare plans)."""
    return [
        {"owner": d.owner, "name": d.name, "path": list(d.path), "values": list(d.values)}
        for d in dimensions
    ]


def check_results_clash(sweep: Sweep) -> None:
    """Refuse run ids whose results folder exists (--force lets their first attempt overwrite)."""
    if sweep.force:
        return
    try:
        existing = os.listdir(sweep.results_dir)
    except OSError:
        return
    order = {run_id: i for i, run_id in enumerate(sweep.run_ids)}
    clash = sorted((name for name in existing if name in order), key=order.__getitem__)
    if clash:
        shown = ", ".join(clash[:5]) + (" ..." if len(clash) > 5 else "")
        raise GridError(
            f"{sweep.results_dir}: results already exist for {len(clash)} run id(s) ({shown}); "
            "pass --force to overwrite them, or --run-id with a new prefix"
        )


def _option_value(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _section_value(document: object, section: str, key: str) -> object:
    body = document.get(section) if isinstance(document, dict) else None
    return body.get(key) if isinstance(body, dict) else None


def positive_int(value: object, where: str) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise GridError(f"{where}: expected a whole number, got {value!r}") from None
    if number < 1:
        raise GridError(f"{where}: must be at least 1, got {number}")
    return number
