"""Shared fixtures: the seed's configs, a fake trainer command, and a CLI runner."""

from __future__ import annotations

import contextlib
import io
import os
import random
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlagents_grid import cli

from .support.bounds import REAP_S

UNIT_TESTS = Path(__file__).resolve().parent / "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """tests/unit/ holds the in-process tests: `pytest -m unit` runs them in seconds."""
    for item in items:
        if UNIT_TESTS in Path(item.path).parents:
            item.add_marker(pytest.mark.unit)


ROOT = Path(__file__).resolve().parent.parent
FAKE_TRAINER = Path(__file__).resolve().parent / "support" / "fake_trainer.py"
BIN = Path(sys.executable).parent
# The real ML-Agents stack (scripts/setup-mlagents.sh) and the tools installed in it.
MLAGENTS_BIN = ROOT / ".venv-mlagents" / "bin"
SIM_LEARN = MLAGENTS_BIN / "grid-sim-learn"
# Building the stack from nothing: about a minute on an idle 2-core machine, several on a
# loaded one with a slow index. The real tier's per-test timeouts leave this out (func_only).
STACK_BUILD_S = 1200

SEED_3DBALL = textwrap.dedent(
    """\
    behaviors:
      3DBall:
        trainer_type: ppo
        hyperparameters:
          batch_size: 64
          buffer_size: 12000
          learning_rate: 0.0003
          beta:
            opt_values: [0.001, 0.002, 0.003]
          epsilon:
            opt_values: [0.1, 0.2, 0.3]
          lambd: 0.99
          num_epoch: 3
          learning_rate_schedule: linear
        network_settings:
          normalize: true
          hidden_units: 128
          num_layers: 2
          vis_encode_type: simple
        reward_signals:
          extrinsic:
            gamma: 0.99
            strength: 1.0
        keep_checkpoints: 5
        max_steps: 500000
        time_horizon: 1000
        summary_freq: 12000
    """
)

SEED_CONFIG_INFO = """\
3DBall-0 - 3DBall - beta: 0.001 - epsilon: 0.1
3DBall-1 - 3DBall - beta: 0.001 - epsilon: 0.2
3DBall-2 - 3DBall - beta: 0.001 - epsilon: 0.3
3DBall-3 - 3DBall - beta: 0.002 - epsilon: 0.1
3DBall-4 - 3DBall - beta: 0.002 - epsilon: 0.2
3DBall-5 - 3DBall - beta: 0.002 - epsilon: 0.3
3DBall-6 - 3DBall - beta: 0.003 - epsilon: 0.1
3DBall-7 - 3DBall - beta: 0.003 - epsilon: 0.2
3DBall-8 - 3DBall - beta: 0.003 - epsilon: 0.3
"""


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(command: Callable[[list[str]], int], prog: str, argv: list[str]) -> Result:
    """Run an entry point in-process the way its console script does."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli._run(prog, lambda: command(argv))
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GRID_QUEUE", raising=False)
    monkeypatch.delenv("GRID_TRAINER", raising=False)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def tree(root: Path) -> set[str]:
    """Every path under `root`, to prove a failed command wrote nothing."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def free_base_port(count: int) -> int:
    """A base port with `count` ports free from it, below the ephemeral range, for fake
    trainers that bind theirs for real: other suites on this machine bind the default 5005."""
    rng = random.Random()
    for _ in range(100):
        base = rng.randrange(20000, 32000 - count)
        with contextlib.ExitStack() as held:
            try:
                for port in range(base, base + count):
                    held.enter_context(socket.socket()).bind(("127.0.0.1", port))
            except OSError:
                continue
        return base
    raise AssertionError(f"no {count} free ports in a row between 20000 and 32000")


def fake_trainer_command() -> str:
    return f"{sys.executable} {FAKE_TRAINER}"


@contextlib.contextmanager
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Started processes, killed by pid at the end whatever happened."""
    started: list[subprocess.Popen[str]] = []
    try:
        yield started
    finally:
        for proc in started:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                proc.wait(timeout=REAP_S)


@pytest.fixture
def new_sweep() -> Iterator[Callable[..., Any]]:
    """Make sweeps (tests/support/sweep.py) whose processes are all killed by pid at the end."""
    from .support.sweep import Sweep

    made: list[Sweep] = []

    def make(root: Path, **kwargs: Any) -> Sweep:
        sweep = Sweep(root, **kwargs)
        made.append(sweep)
        return sweep

    yield make
    for sweep in made:
        sweep.stop_all()


@pytest.fixture(scope="session")
def sim_learn() -> Path:
    """The real tier's stack, built once per session; skips, saying why, if it cannot be."""
    setup = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup-mlagents.sh")],
        capture_output=True,
        text=True,
        timeout=STACK_BUILD_S,
    )
    if setup.returncode != 0 or not SIM_LEARN.exists():
        last = (setup.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"the ML-Agents stack could not be installed here: {last}")
    return SIM_LEARN


def as_host(name: str, command: list[str]) -> list[str]:
    """`command` on a simulated host: a UTS namespace with hostname `name` (root only)."""
    return ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', name, *command]


@pytest.fixture
def namespaces() -> None:
    """Skip, saying why, where simulated hosts (`as_host`) cannot be made."""
    try:
        probe = subprocess.run(
            as_host("grid-probe", ["hostname"]), capture_output=True, text=True, timeout=10
        )
    except FileNotFoundError:
        pytest.skip("unshare is not installed (util-linux)")
    if probe.returncode != 0 or probe.stdout.strip() != "grid-probe":
        why = (probe.stderr.strip().splitlines() or ["no message"])[-1]
        pytest.skip(f"cannot make a UTS namespace here, which needs root ({why})")
