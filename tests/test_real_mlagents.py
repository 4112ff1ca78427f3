"""The real mlagents-learn (ML-Agents 1.1.0, PyTorch on CPU) end to end, on the simulated env.

Needs .venv-mlagents, which the session fixture `sim_learn` (conftest.py) builds with
scripts/setup-mlagents.sh; the tier is skipped, saying why, only when that stack cannot be
installed.

Time: each test takes 5 to 20 s on an idle 2-core machine and several times that on a loaded
one, far beyond the suite's global 120 s timeout if the machine is busy enough. So every test
here has its own timeout, REAL_TEST_S, above the sum of the named bounds it waits with; the
build of the stack is bounded apart (STACK_BUILD_S) and left out of it (func_only).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mlagents_grid import cli
from mlagents_grid.queue.folder import Queue

from .conftest import BIN, MLAGENTS_BIN, run_cli, tree
from .support.board import Board
from .support.bounds import EXIT_S, REAP_S

pytestmark = pytest.mark.real_mlagents

REWARD = "Environment/Cumulative Reward"

# Bounds, each generous for a loaded 2-core machine (the idle figure in brackets).
# (tests/support/bounds.py: EXIT_S for the monitor's exit once every run is final, REAP_S for a
# killed process, TENSORBOARD_S for Board.start.)
REAL_SWEEP_S = 360  # every worker of a test's sweep has finished training (5-18 s)
REACH_STEP_S = 150  # a run's log shows a given step (3 s)
PLAN_S = 120  # .venv-mlagents/bin/grid-plan imports ML-Agents and plans (3 s)
# The per-test timeout: above the sum of the bounds any one test waits with (at most
# REACH_STEP_S + REAP_S + REAL_SWEEP_S = 540 s, or TENSORBOARD_S + REAL_SWEEP_S + EXIT_S).
REAL_TEST_S = 600
real_test = pytest.mark.timeout(REAL_TEST_S, func_only=True)


def finish(procs: list[subprocess.Popen[bytes]], bound: float = REAL_SWEEP_S) -> list[int]:
    """Exit codes of `procs`, all of them within `bound` seconds from now (one deadline)."""
    deadline = time.monotonic() + bound
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            pytest.fail(f"{proc.args!r} still running after the bound of {bound} s")
    return codes


def behavior(lr: object, stop: str = "", max_steps: int = 8000) -> str:
    return textwrap.indent(
        textwrap.dedent(
            f"""\
            trainer_type: ppo
            hyperparameters:
              batch_size: 64
              buffer_size: 640
              learning_rate: {lr}
              beta: 0.005
              num_epoch: 3
              learning_rate_schedule: constant
            network_settings: {{hidden_units: 32, num_layers: 1}}
            reward_signals: {{extrinsic: {{gamma: 0.9, strength: 1.0}}}}
            max_steps: {max_steps}
            checkpoint_interval: 2000
            time_horizon: 20
            summary_freq: 1000
            """
        )
        + stop,
        "    ",
    )


# Seconds the simulated environment waits per step (4 agent steps; 8,000 steps: 4 s more).
# Unpaced, a fast machine trains 4,000 steps in about 2 s, less than TensorBoard and the monitor
# may take to see a step, and a run the monitor should stop or pause could end first.
STEP_DELAY = 0.002

STOP_BAD = f"opt_stop: {{tag: {REWARD}, step: 4000, min: 0.5}}\n"


class RealSweep:
    def __init__(self, root: Path, config: str, trainer: Path) -> None:
        self.root = root
        (root / "grid.yaml").write_text(config)
        self.queue_dir = root / "q"
        self.results = root / "results"
        result = run_cli(
            cli.plan,
            "grid-plan",
            [
                str(root / "grid.yaml"),
                "--queue",
                str(self.queue_dir),
                "--results-dir",
                str(self.results),
            ],
        )
        assert result.code == 0, result.err
        self.queue = Queue(self.queue_dir)
        self.trainer = trainer
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, tool: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{tool}-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [str(BIN / tool), "--queue", str(self.queue_dir), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def worker(self, *args: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "GRID_SIM_STEP_DELAY": str(STEP_DELAY)}
        return self.start("grid-worker", "--trainer", str(self.trainer), *args, env=env)

    def statuses(self) -> dict[str, str]:
        return {s.run_id: s.status for s in map(self.queue.state_of, self.queue.sweep.run_ids)}

    def log(self, run_id: str) -> str:
        return self.queue.paths.log_file(run_id).read_text(errors="replace")

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=REAP_S)


@pytest.fixture
def real(tmp_path: Path, sim_learn: Path) -> Iterator[list[RealSweep | Board]]:
    made: list[RealSweep | Board] = []
    yield made
    for thing in made:
        thing.close() if isinstance(thing, RealSweep) else thing.stop()


def checkpoint_and_model(results: Path, run_id: str, name: str = "3DBall") -> bool:
    folder = results / run_id / name
    return (folder / "checkpoint.pt").exists() and any(folder.glob("*.onnx"))


@real_test
def test_four_runs_two_workers_and_the_monitor_stop_exactly_the_bad_runs(
    real: list[RealSweep | Board], tmp_path: Path, sim_learn: Path
) -> None:
    config = "behaviors:\n  3DBall:\n" + behavior(
        "{opt_values: [0.003, 0.00001]}", STOP_BAD
    ).replace("beta: 0.005", "beta: {opt_values: [0.001, 0.01]}")
    sweep = RealSweep(tmp_path, config, sim_learn)
    real.append(sweep)
    board = Board(sweep.results)
    real.append(board)
    board.start()
    workers = [sweep.worker() for _ in range(2)]
    monitor = sweep.start("grid-monitor", "--tensorboard", board.url, "--interval", "1")
    assert finish(workers) == [0, 0]
    assert finish([monitor], EXIT_S) == [0]
    assert sweep.statuses() == {
        "grid-0": "done",
        "grid-1": "done",
        "grid-2": "stopped",
        "grid-3": "stopped",
    }
    for index, run_id in enumerate(sweep.queue.sweep.run_ids):
        written = yaml.safe_load((sweep.results / run_id / "configuration.yaml").read_text())
        hyper = written["behaviors"]["3DBall"]["hyperparameters"]
        assert hyper["learning_rate"] == [0.003, 0.00001][index // 2]
        assert hyper["beta"] == [0.001, 0.01][index % 2]
        assert checkpoint_and_model(sweep.results, run_id)
        assert list((sweep.results / run_id / "3DBall").glob("events.out.tfevents.*"))
    for run_id in ("grid-2", "grid-3"):
        state = sweep.queue.state_of(run_id)
        assert re.fullmatch(rf"{REWARD}: -?[\d.]+ < 0\.5 \[step: \d+\]", state.stop_reason or "")
        # Stopped gracefully: mlagents-learn saved and exported its model on SIGINT.
        assert "Learning was interrupted" in sweep.log(run_id)
        assert state.exit_code == 0


@real_test
def test_a_killed_worker_run_resumes_from_its_checkpoint_and_finishes(
    real: list[RealSweep | Board], tmp_path: Path, sim_learn: Path
) -> None:
    config = "behaviors:\n  3DBall:\n" + behavior(0.003, max_steps=12000)
    sweep = RealSweep(tmp_path, config, sim_learn)
    real.append(sweep)
    first = sweep.worker()
    log = sweep.queue.paths.log_file("grid-0")
    deadline = time.monotonic() + REACH_STEP_S
    while not (log.exists() and "Step: 3000." in log.read_text(errors="replace")):
        assert time.monotonic() < deadline, f"the run did not reach step 3000 in {REACH_STEP_S} s"
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=REAP_S)
    second = sweep.worker("--wait")
    assert finish([second]) == [0]
    text = sweep.log("grid-0")
    resumed = re.search(r"Resuming training from step (\d+)", text)
    assert resumed is not None and int(resumed.group(1)) > 0, text[-3000:]
    assert "Step: 12000." in text
    assert sweep.statuses() == {"grid-0": "done"}
    assert sweep.queue.state_of("grid-0").mode == "--resume"


@real_test
def test_two_behaviors_with_a_condition_on_one_of_them(
    real: list[RealSweep | Board], tmp_path: Path, sim_learn: Path
) -> None:
    config = (
        "behaviors:\n  Goalie:\n"
        + behavior(0.003)
        + "  Striker:\n"
        + behavior("{opt_values: [0.003, 0.00001]}", STOP_BAD)
    )
    sweep = RealSweep(tmp_path, config, sim_learn)
    real.append(sweep)
    worker = sweep.worker()
    monitor = sweep.start("grid-monitor", "--logdir", str(sweep.results), "--interval", "2")
    assert finish([worker]) == [0]
    assert finish([monitor], EXIT_S) == [0]
    assert sweep.statuses() == {"grid-0": "done", "grid-1": "stopped"}
    reason = sweep.queue.state_of("grid-1").stop_reason or ""
    assert reason.startswith(f"Striker: {REWARD}: ")
    for name in ("Goalie", "Striker"):
        assert checkpoint_and_model(sweep.results, "grid-1", name)
        assert checkpoint_and_model(sweep.results, "grid-0", name)


@real_test
def test_seeds_reach_the_real_trainer_configuration(
    real: list[RealSweep | Board], tmp_path: Path, sim_learn: Path
) -> None:
    config = "behaviors:\n  3DBall:\n" + behavior("{opt_values: [0.003, 0.001]}", max_steps=2000)
    (tmp_path / "grid.yaml").write_text(config)
    planned = run_cli(
        cli.plan,
        "grid-plan",
        [
            str(tmp_path / "grid.yaml"),
            "--queue",
            str(tmp_path / "q"),
            "--results-dir",
            str(tmp_path / "results"),
            "--seeds",
            "2",
        ],
    )
    assert planned.code == 0, planned.err
    queue = Queue(tmp_path / "q")
    assert queue.sweep.run_ids == ["grid-0-s0", "grid-0-s1", "grid-1-s0", "grid-1-s1"]
    workers = [
        subprocess.Popen(
            [str(BIN / "grid-worker"), "--queue", str(queue.root), "--trainer", str(sim_learn)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(2)
    ]
    try:
        assert finish(workers) == [0, 0]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGKILL)
                worker.wait(timeout=REAP_S)
    for index, run_id in enumerate(queue.sweep.run_ids):
        assert queue.state_of(run_id).status == "done", queue.paths.log_file(run_id).read_text()
        written = yaml.safe_load((tmp_path / "results" / run_id / "configuration.yaml").read_text())
        assert written["env_settings"]["seed"] == index % 2 == queue.job(run_id).seed
        hyper = written["behaviors"]["3DBall"]["hyperparameters"]
        assert hyper["learning_rate"] == [0.003, 0.001][index // 2]


# -- grid-plan with mlagents importable: trainer arguments checked by mlagents-learn's parser -
# (Without mlagents they are recorded unchecked, with a warning: tests/test_survival.py.)
PLAN_CONFIG = "behaviors:\n  3DBall:\n" + behavior("{opt_values: [0.003, 0.001]}")


def grid_plan(root: Path, *trainer_args: str) -> subprocess.CompletedProcess[str]:
    """.venv-mlagents/bin/grid-plan on root/config.yaml, run in `root`, as a user runs it."""
    (root / "config.yaml").write_text(PLAN_CONFIG)
    env = {k: v for k, v in os.environ.items() if k not in ("GRID_QUEUE", "GRID_TRAINER")}
    return subprocess.run(
        [str(MLAGENTS_BIN / "grid-plan"), "config.yaml", *trainer_args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=PLAN_S,
    )


@real_test
@pytest.mark.parametrize("bad", ["--num-envz=2", "--no-such-flag"])
def test_grid_plan_refuses_a_trainer_argument_mlagents_rejects_and_writes_nothing(
    tmp_path: Path, sim_learn: Path, bad: str
) -> None:
    planned = grid_plan(tmp_path, "--no-graphics", bad)
    assert planned.returncode == 2, planned.stderr
    assert planned.stdout == ""
    lines = planned.stderr.strip().splitlines()
    assert len(lines) == 1, planned.stderr
    assert lines[0].startswith("grid-plan: mlagents-learn rejects the trainer arguments: ")
    assert bad in lines[0]
    assert "--no-graphics" not in lines[0]  # names the bad argument, not the good one
    assert tree(tmp_path) == {"config.yaml"}  # no queue folder, no results folder


@real_test
def test_grid_plan_checks_and_records_good_trainer_arguments(
    tmp_path: Path, sim_learn: Path
) -> None:
    planned = grid_plan(tmp_path, "--no-graphics", "--time-scale=20")
    assert planned.returncode == 0, planned.stderr
    assert planned.stderr == ""  # no "not checked" / "not importable" note, no warning
    assert "Planned 2 runs of config" in planned.stdout
    sweep = json.loads((tmp_path / "sweeps" / "config" / "sweep.json").read_text())
    assert sweep["trainer_args"] == ["--no-graphics", "--time-scale=20"]
    assert sweep["num_envs"] == 1


@real_test
def test_grid_plan_records_an_abbreviated_num_envs_as_mlagents_reads_it(
    tmp_path: Path, sim_learn: Path
) -> None:
    planned = grid_plan(tmp_path, "--num-env=3")  # argparse takes --num-env for --num-envs
    assert planned.returncode == 0, planned.stderr
    queue = Queue(tmp_path / "sweeps" / "config")
    assert queue.sweep.num_envs == 3
    assert queue.sweep.trainer_args == ["--num-env=3"]
    # Each run's environments take ports base, base+1, base+2: the slots are 3 apart.
    base = queue.sweep.base_port
    assert [queue.port_for(slot) for slot in range(3)] == [base, base + 3, base + 6]


# The flags' values for the check below: each differs from mlagents-learn's default.
FLAG_VALUES = {
    int: "4321",
    float: "7.5",
    None: "from-the-command-line",
}
# Run in .venv-mlagents: for each option of mlagents-learn's parser, the config keys that
# RunOptions.from_argparse changes when only that option is given.
OVERRIDDEN_KEYS = """
import argparse, json, sys, warnings
warnings.simplefilter("ignore")
from mlagents.trainers.cli_utils import DetectDefault, _create_parser
from mlagents.plugins.trainer_type import register_trainer_plugins
from mlagents.trainers.settings import RunOptions
register_trainer_plugins()

def flat(node, path=()):
    if isinstance(node, dict):
        for key, child in node.items():
            yield from flat(child, (*path, str(key)))
    else:
        yield path, node

def options(argv):
    DetectDefault.non_default_args.clear()
    parsed = _create_parser().parse_args([sys.argv[1], *argv])
    return dict(flat(RunOptions.from_argparse(parsed).as_dict()))

values = json.loads(sys.argv[2])
base = options([])
found = {}
for action in _create_parser()._actions:
    if not action.option_strings or isinstance(action, argparse._HelpAction):
        continue
    option = action.option_strings[0]
    argv = [option]
    if action.nargs != 0:
        kind = action.type or type(action.default)  # some options have no type= but a default
        argv.append(values.get(kind.__name__, values["None"]))
    changed = options(argv)
    found[option] = sorted(".".join(k) for k in changed if changed[k] != base.get(k))
print(json.dumps(found))
"""


@real_test
def test_the_table_of_overriding_trainer_arguments_is_mlagents_own(
    tmp_path: Path, sim_learn: Path
) -> None:
    """learn_args.CONFIG_KEYS names, for every option of mlagents-learn, the config key that
    RunOptions.from_argparse sets from it, and no option that sets a key is missing."""
    from mlagents_grid.plan.learn_args import CONFIG_KEYS, EVERY, OTHER_OPTIONS

    fixed = PLAN_CONFIG.replace("{opt_values: [0.003, 0.001]}", "0.003")
    # An env_path, so that --num-envs may be above 1.
    (tmp_path / "config.yaml").write_text(fixed + "env_settings:\n  env_path: from-the-config\n")
    values = {"int": FLAG_VALUES[int], "float": FLAG_VALUES[float], "None": FLAG_VALUES[None]}
    found = subprocess.run(
        [str(MLAGENTS_BIN / "python"), "-c", OVERRIDDEN_KEYS, "config.yaml", json.dumps(values)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=PLAN_S,
    )
    assert found.returncode == 0, found.stderr
    # The last line: ML-Agents logs a warning for its removed options on stdout first.
    changed: dict[str, list[str]] = json.loads(found.stdout.splitlines()[-1])
    assert set(changed) | {"--help"} == set(CONFIG_KEYS) | set(OTHER_OPTIONS)
    for option, key in CONFIG_KEYS.items():
        expected = ".".join(key).replace(EVERY, "3DBall")
        assert expected in changed[option], (option, changed[option])
    assert all(changed[option] == [] for option in OTHER_OPTIONS if option != "--help")


@real_test
def test_mlagents_grid_plan_refuses_a_seed_argument_under_seeds(
    tmp_path: Path, sim_learn: Path
) -> None:
    planned = grid_plan(tmp_path, "--seeds", "3", "--seed=5")
    assert planned.returncode == 2, planned.stderr
    lines = planned.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("grid-plan: --seed: --seeds 3 sets"), lines
    assert tree(tmp_path) == {"config.yaml"}
