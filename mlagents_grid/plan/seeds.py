"""Several seeds per grid point (grid-plan --seeds K): which seeds, and which seed a run has.

A seed is one more assignment, `env_settings.seed`, so the worker builds seeded configs
without knowing about seeds.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from ..errors import GridError
from .grid import SEED_PATH, KeyPath, Plan, run_id_for
from .sweep import Sweep

RANDOM_SEED = -1  # ML-Agents' default: draw a seed at random


class SeededRun(Protocol):
    """What the seed of a run is read from: a planned run, or the queue's job file."""

    @property
    def seed(self) -> int | None: ...

    @property
    def assignments(self) -> tuple[tuple[KeyPath, Any], ...]: ...


def fixed_seed(seed: Any) -> int | None:
    """A seed that fixes the run's randomness; None for unset, -1 or not a number."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed == RANDOM_SEED:
        return None
    return seed


def config_seed(template: Any) -> int | None:
    """The config's env_settings.seed, or None when it is unset or -1 (a random seed)."""
    env = template.get("env_settings") if isinstance(template, dict) else None
    return fixed_seed(env.get("seed") if isinstance(env, dict) else None)


def seed_values(base: int | None, k: int) -> tuple[int, ...]:
    """K seeds: the config's seed plus 0..K-1, or 0..K-1 when the config sets none."""
    return tuple((base or 0) + i for i in range(k))


def with_seeds(plan: Plan, k: int) -> Plan:
    """The plan with every grid point trained K times; K = 1 leaves it exactly as it was."""
    if k == 1:
        return plan
    if any(d.path == SEED_PATH for d in plan.dimensions):
        raise GridError(
            f"--seeds {k}: {plan.source} sweeps env_settings.seed with opt_values; "
            "drop the opt_values or plan with --seeds 1"
        )
    env = plan.template.get("env_settings")
    raw = env.get("seed") if isinstance(env, dict) else None
    if raw is not None and (isinstance(raw, bool) or not isinstance(raw, int)):
        raise GridError(
            f"{plan.source}: env_settings.seed: expected a whole number for --seeds to add "
            f"0..{k - 1} to, got {raw!r}; fix it or remove it"
        )
    return dataclasses.replace(plan, seed_values=seed_values(config_seed(plan.template), k))


def run_seed(run: SeededRun, template: Any) -> int | None:
    """The env_settings.seed a run trains with; None when ML-Agents draws it at random."""
    if run.seed is not None:
        return run.seed
    swept = [value for path, value in run.assignments if path == SEED_PATH]
    return fixed_seed(swept[0]) if swept else config_seed(template)


def point_assignments(run: SeededRun) -> tuple[tuple[KeyPath, Any], ...]:
    """The run's grid-point values without the seed that --seeds added."""
    if run.seed is None:
        return run.assignments
    return tuple((path, value) for path, value in run.assignments if path != SEED_PATH)


def sweep_seeds(sweep: Sweep, template: Any) -> list[int]:
    """Every seed a run of the sweep trains with; -1 stands for ML-Agents' random seed."""
    if sweep.seeds > 1:
        seeds = list(seed_values(config_seed(template), sweep.seeds))
        # Planned with one seed and given more by --extend: its first runs kept the config's
        # own seed, which may be ML-Agents' random one.
        unseeded = bool(sweep.run_ids) and sweep.run_ids[0] == run_id_for(sweep.prefix, 0)
        if unseeded and config_seed(template) is None:
            seeds.insert(0, RANDOM_SEED)
        return seeds
    section, key = SEED_PATH
    swept = [d["values"] for d in sweep.dimensions if (d["owner"], d["name"]) == (section, key)]
    values = swept[0] if swept else [config_seed(template)]
    fixed = (fixed_seed(v) for v in values)
    return list(dict.fromkeys(RANDOM_SEED if s is None else s for s in fixed))
