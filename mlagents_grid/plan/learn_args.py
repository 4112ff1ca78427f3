"""mlagents-learn's own arguments: which config key each one sets, and which ones a sweep refuses.

mlagents-learn lets its command line win over the trainer config (`RunOptions.from_argparse`
writes every argument given into its section of the config). A recorded trainer argument
that sets a swept key, or the seed that `--seeds` sets, would make every run train with the
same value, so `grid-plan` refuses it. The table is ML-Agents 1.1.0's parser
(`mlagents.trainers.cli_utils._create_parser`); `test_real_mlagents.py` checks it against
that parser. It is needed without `mlagents` too: grid-plan may run where it is not installed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import GridError
from .grid import dotted

Key = tuple[str, ...]
EVERY = "*"  # any behavior name

# The options of mlagents-learn that set a config key, with that key.
CONFIG_KEYS: dict[str, Key] = {
    "--env": ("env_settings", "env_path"),
    "--load": ("checkpoint_settings", "load_model"),
    "--resume": ("checkpoint_settings", "resume"),
    "--deterministic": ("behaviors", EVERY, "network_settings", "deterministic"),
    "--force": ("checkpoint_settings", "force"),
    "--run-id": ("checkpoint_settings", "run_id"),
    "--initialize-from": ("checkpoint_settings", "initialize_from"),
    "--seed": ("env_settings", "seed"),
    "--train": ("checkpoint_settings", "train_model"),
    "--inference": ("checkpoint_settings", "inference"),
    "--base-port": ("env_settings", "base_port"),
    "--num-envs": ("env_settings", "num_envs"),
    "--num-areas": ("env_settings", "num_areas"),
    "--debug": ("debug",),
    "--env-args": ("env_settings", "env_args"),
    "--max-lifetime-restarts": ("env_settings", "max_lifetime_restarts"),
    "--restarts-rate-limit-n": ("env_settings", "restarts_rate_limit_n"),
    "--restarts-rate-limit-period-s": ("env_settings", "restarts_rate_limit_period_s"),
    "--results-dir": ("checkpoint_settings", "results_dir"),
    "--timeout-wait": ("env_settings", "timeout_wait"),
    "--width": ("engine_settings", "width"),
    "--height": ("engine_settings", "height"),
    "--quality-level": ("engine_settings", "quality_level"),
    "--time-scale": ("engine_settings", "time_scale"),
    "--target-frame-rate": ("engine_settings", "target_frame_rate"),
    "--capture-frame-rate": ("engine_settings", "capture_frame_rate"),
    "--no-graphics": ("engine_settings", "no_graphics"),
    "--no-graphics-monitor": ("engine_settings", "no_graphics_monitor"),
    "--torch-device": ("torch_settings", "device"),
}
# Its other options: they take part in argparse's prefix matching but set no key.
OTHER_OPTIONS = ("--help", "--torch", "--tensorflow")
# Everything after it is the Unity environment's arguments (argparse.REMAINDER).
REMAINDER = "--env-args"
SEED_KEY: Key = ("env_settings", "seed")
# What the worker decides for each run: a recorded argument would override it in every run.
WORKER_DECIDES = ("--resume", "--force", "--load")
# What the worker sets from the sweep (grid-plan's own options of the same names).
WORKER_SETS = ("--run-id", "--results-dir", "--base-port")


@dataclass(frozen=True)
class Override:
    """One trainer argument that sets a config key."""

    given: str  # as written, e.g. `--seed=5`
    option: str  # the option it stands for, e.g. `--seed` (argparse takes unique prefixes)
    key: Key

    def sets(self, path: Sequence[str | int]) -> bool:
        """Whether this argument sets the config key at `path` (a swept key's path), or a
        value around it (`--env-args` replaces the whole list)."""
        return len(path) >= len(self.key) and all(
            mine in (EVERY, theirs) for mine, theirs in zip(self.key, path, strict=False)
        )


def resolve(name: str) -> str | None:
    """The option `name` stands for: itself, or the one option it is a prefix of (argparse's
    abbreviations); None when it is none of mlagents-learn's or is ambiguous."""
    options = [*CONFIG_KEYS, *OTHER_OPTIONS]
    if name in options:
        return name
    matches = [option for option in options if option.startswith(name)]
    return matches[0] if len(matches) == 1 else None


def overrides(trainer_args: Iterable[str]) -> list[Override]:
    """The trainer arguments that set config keys, in order (up to `--env-args` or `--`)."""
    found = []
    for arg in trainer_args:
        if arg == "--":
            break
        if not arg.startswith("--"):
            continue
        option = resolve(arg.split("=", 1)[0])
        if option is None or option not in CONFIG_KEYS:
            continue
        found.append(Override(arg, option, CONFIG_KEYS[option]))
        if option == REMAINDER:
            break
    return found


def check_overrides(
    trainer_args: Sequence[str], swept: Iterable[Sequence[str | int]], seeds: Sequence[int]
) -> None:
    """Refuse a trainer argument that would set what the worker decides, a swept key, or
    the seed under --seeds.

    `swept`: the paths of the swept keys; `seeds`: the seeds --seeds gives each grid point
    (empty without --seeds).
    """
    paths = [tuple(path) for path in swept]
    for override in overrides(trainer_args):
        named = override.option
        if override.given.split("=", 1)[0] != named:
            named = f"{override.given.split('=', 1)[0]} (mlagents-learn reads {named})"
        if override.option in WORKER_DECIDES:
            raise GridError(
                f"{named}: grid-worker decides --resume/--force for each run; drop it "
                "(use grid-plan --force to overwrite existing results)"
            )
        if override.option in WORKER_SETS:
            raise GridError(
                f"{named}: grid-worker sets {override.option} for each run; give it to "
                f"grid-plan as {override.option} (spelled out) instead"
            )
        if len(seeds) > 1 and override.sets(SEED_KEY):
            shown = ", ".join(str(s) for s in seeds)
            raise GridError(
                f"{named}: --seeds {len(seeds)} sets env_settings.seed of each grid point's "
                f"runs ({shown}), and mlagents-learn's {override.option} would replace it, "
                f"training every seed alike; drop {override.given} (to shift the seeds, set "
                "env_settings.seed in the config)"
            )
        hit = next((path for path in paths if override.sets(path)), None)
        if hit is not None:
            raise GridError(
                f"{named}: it sets {dotted(hit)}, which the config sweeps with opt_values, "
                f"and mlagents-learn's arguments win over the config, so every run would "
                f"train with the same value; drop {override.given} or the opt_values"
            )
