"""A small sweep driven by real grid-worker processes and the fake trainer."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlagents_grid import cli
from mlagents_grid.queue.folder import Queue
from mlagents_grid.queue.layout import parse_generation_name
from mlagents_grid.results import status

from ..conftest import BIN, fake_trainer_command, run_cli, write
from .bounds import REAP_S, STATE_S


def _pid_namespace() -> int | None:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


class Sweep:
    """A planned sweep in `root`, with helpers to start workers and read what happened."""

    def __init__(
        self,
        root: Path,
        runs: int = 4,
        behaviors: tuple[str, ...] = ("3DBall",),
        ticks: int = 10,
        options: dict[str, Any] | None = None,
        extra: str = "",
        plan_args: tuple[str, ...] = (),
        stops: dict[str, str] | None = None,
        queue_dir: Path | None = None,
    ) -> None:
        self.root = root
        self.queue_dir = queue_dir or root / "q"
        self.ledger = root / "ledger.jsonl"
        stops = stops or {}
        behavior_text = "".join(
            f"  {name}:\n    trainer_type: ppo\n    max_steps: {ticks}\n    summary_freq: 1\n"
            + (f"    opt_stop: {stops[name]}\n" if name in stops else "")
            for name in behaviors
        )
        values = ", ".join(str(i) for i in range(runs))
        text = (
            extra
            + "behaviors:\n"
            + behavior_text
            + f"environment_parameters:\n  index:\n    opt_values: [{values}]\n"
        )
        config = write(root / "grid.yaml", text)
        self.options = options or {}
        result = run_cli(
            cli.plan,
            "grid-plan",
            [str(config), "--queue", str(self.queue_dir), "--results-dir", str(root / "results")]
            + list(plan_args),
        )
        assert result.code == 0, result.err
        self.queue = Queue(self.queue_dir)
        self.processes: list[subprocess.Popen[str]] = []

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["FAKE_LEDGER"] = str(self.ledger)
        env["FAKE_TRAINER"] = json.dumps(self.options)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def command(self, tool: str, *args: str) -> list[str]:
        return [str(BIN / tool), "--queue", str(self.queue_dir), *args]

    def start_worker(
        self, *args: str, preexec: Callable[[], None] | None = None
    ) -> subprocess.Popen[str]:
        command = self.command("grid-worker", "--trainer", fake_trainer_command(), *args)
        return self.start(command, preexec)

    def start(
        self,
        command: list[str],
        preexec: Callable[[], None] | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[str]:
        log = open(self.root / f"proc-{len(self.processes)}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            command,
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=preexec is None,
            preexec_fn=preexec,
        )
        log.close()
        self.processes.append(proc)
        return proc

    def output(self, proc: subprocess.Popen[str]) -> str:
        return (self.root / f"proc-{self.processes.index(proc)}.log").read_text()

    def stop_all(self) -> None:
        """Kill by pid whatever is still running (workers, and trainers through their groups)."""
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=REAP_S)
        here = _pid_namespace()
        for entry in self.ledger_entries():
            pid = entry.get("pid")
            # A pid from another PID namespace (a simulated host) is not this one's to kill.
            if isinstance(pid, int) and entry.get("pidns", here) == here:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)

    def ledger_entries(self) -> list[dict[str, Any]]:
        if not self.ledger.exists():
            return []
        return [json.loads(line) for line in self.ledger.read_text().splitlines() if line]

    def starts(self, run_id: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.ledger_entries()
            if e.get("event", "start") == "start" and run_id in (None, e["run_id"])
        ]

    def exits(self, run_id: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.ledger_entries()
            if e.get("event") == "exit" and run_id in (None, e["run_id"])
        ]

    def exit_record(self, run_id: str) -> dict[str, Any] | None:
        """The exit record of the run's newest claim that wrote one."""
        found = {}
        for path in self.queue.paths.exit_dir.glob(f"{run_id}*.json"):
            parsed = parse_generation_name(path.name)
            if parsed is not None and parsed[0] == run_id:
                found[parsed[1]] = path
        if not found:
            return None
        record: dict[str, Any] = json.loads(found[max(found)].read_text())
        return record

    def report(self) -> dict[str, Any]:
        return status.collect(self.queue)

    def statuses(self) -> dict[str, str]:
        return {run["run_id"]: run["status"] for run in self.report()["runs"]}

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.queue.events() if kind in (None, e["event"])]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = STATE_S) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")

    def wait_for_training(self, run_id: str, behavior: str = "3DBall") -> None:
        """Until the run's trainer has written its first summary."""
        folder = self.root / "results" / run_id / behavior
        self.wait_for(
            lambda: folder.is_dir() and any("tfevents" in p.name for p in folder.iterdir())
        )

    def stop(self, *run_ids: str, reason: str = "by test") -> None:
        result = run_cli(
            cli.stop_command,
            "grid-stop",
            ["--queue", str(self.queue_dir), *run_ids, "--reason", reason],
        )
        assert result.code == 0, result.err
