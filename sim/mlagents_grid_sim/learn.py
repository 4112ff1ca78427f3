"""`grid-sim-learn`: mlagents-learn itself, with the Unity build replaced by `env.SimEnv`.

Same arguments, the real `mlagents.trainers.learn` entry point and trainers, results folder,
--resume/--force checks, TensorBoard writer and Ctrl-C checkpointing; only the environment
factory is swapped, so a sweep can run end to end on a machine without Unity.
"""

from __future__ import annotations

import sys
from typing import Any


def _behaviors(argv: list[str]) -> list[str]:
    """Behavior names from the trainer config given on the command line."""
    import yaml

    config = next((arg for arg in argv if not arg.startswith("-")), None)
    if config is None:
        return []
    with open(config, encoding="utf-8") as handle:
        document = yaml.safe_load(handle) or {}
    return [str(name) for name in (document.get("behaviors") or {})]


def _patch_onnx_export() -> None:
    """torch >= 2.9 exports with dynamo by default, which ML-Agents' models do not support."""
    import inspect

    import torch

    export = torch.onnx.export
    if "dynamo" not in inspect.signature(export).parameters:
        return

    def legacy_export(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("dynamo", False)
        return export(*args, **kwargs)

    torch.onnx.export = legacy_export


def main() -> None:
    argv = sys.argv[1:]
    try:
        from mlagents.trainers import learn
    except ImportError:
        print(
            "grid-sim-learn: the ML-Agents stack is not installed; run: make mlagents",
            file=sys.stderr,
        )
        sys.exit(2)
    from . import env

    behaviors = _behaviors(argv)
    _patch_onnx_export()

    def create_environment_factory(*_args: Any, **_kwargs: Any) -> Any:
        seed = _args[3] if len(_args) > 3 else int(_kwargs.get("seed", 0))
        return env.factory(behaviors, seed)

    learn.create_environment_factory = create_environment_factory
    learn.run_cli(learn.parse_command_line(argv))
