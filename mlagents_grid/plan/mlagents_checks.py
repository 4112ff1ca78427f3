"""The checks grid-plan asks ML-Agents itself to make, where it is installed.

ML-Agents knows its settings and its command line better than a copy of them would, so a
config and the trainer arguments go through its own classes once at planning time, instead
of failing every run after a start-up. Without `mlagents` these checks are skipped (and
grid-plan says so): the pure checks (learn_args.py, document.py) still run.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import Any, NoReturn
from warnings import catch_warnings, filterwarnings

from ..errors import GridError
from .grid import Plan, build_config


@contextlib.contextmanager
def _quiet_mlagents_import() -> Iterator[None]:
    """Import ML-Agents without its pkg_resources deprecation warning.

    ML-Agents 1.1.0 imports pkg_resources, and setuptools warns about that on stderr: a line
    about ML-Agents' own code in every grid-plan that checks a config. Only that warning is
    hidden.
    """
    with catch_warnings():
        filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        yield


def validate_with_mlagents(plan: Plan) -> bool:
    """Check runs with ML-Agents' own settings classes; False when mlagents is absent.

    Configs differ only in their swept values, so checking as many runs as the longest
    dimension has values, each run taking the next value of every dimension, puts every
    swept value through ML-Agents at least once without checking the whole grid.
    """
    try:
        with _quiet_mlagents_import():
            from mlagents.plugins.trainer_type import register_trainer_plugins
            from mlagents.trainers.settings import RunOptions, TrainerSettings
    except Exception:
        return False
    with _quiet_mlagents_import():
        register_trainer_plugins()
    width = max((len(d.values) for d in plan.dimensions), default=1)
    for k in range(width):
        assignments = tuple((d.path, d.values[k % len(d.values)]) for d in plan.dimensions)
        config = build_config(plan.template, assignments)
        try:
            RunOptions.from_dict(config)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise GridError(
                f"{plan.source}: ML-Agents rejects the config: {first}; fix that key"
            ) from None
        finally:
            TrainerSettings.default_override = None
    return True


def check_trainer_args(config: str, trainer_args: list[str]) -> dict[str, Any] | None:
    """Parse the trainer arguments with mlagents-learn's own parser; None without mlagents.

    Every run gets these arguments: one that mlagents-learn refuses would fail every run,
    each after a start-up, so it is refused once here instead.
    """
    try:
        with _quiet_mlagents_import():
            from mlagents.trainers.cli_utils import _create_parser
    except Exception:
        return None
    parser: argparse.ArgumentParser = _create_parser()

    def refuse(message: str) -> NoReturn:
        raise GridError(
            f"mlagents-learn rejects the trainer arguments: {message}; fix them "
            "(mlagents-learn --help lists its options)"
        )

    parser.error = refuse  # type: ignore[method-assign]
    return vars(parser.parse_args([config, *trainer_args, "--run-id", "grid-plan-check"]))
