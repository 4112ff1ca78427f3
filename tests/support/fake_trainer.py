#!/usr/bin/env python3
"""A stand-in for mlagents-learn: same arguments, same results-folder rules, real event files.

It follows ML-Agents 1.1.0 where the tool depends on it: existing results without --resume
or --force are refused, --resume without checkpoint.pt crashes, SIGINT saves a checkpoint
and exits 0. Behaviour is steered by $FAKE_TRAINER (JSON: {"default": {...}, "runs":
{run_id: {...}}}); every start and exit is appended to $FAKE_LEDGER.

Options: step_delay (s per tick), curve ({behavior or "*": [value per tick]}), crash (exit
code after the first tick, or after tick crash_after), crash_times (crash only on the
first N starts), hang, ignore_sigint,
spawn_child, port_in_use (bind --base-port for real; fail like Unity when taken),
checkpoint_every (ticks), sigint_delay (s spent saving after SIGINT), ledger_ticks (a ledger
line per tick, for latency benchmarks), kill_launcher (SIGKILL its parent, the worker's launcher,
after the first tick of its first start), kill_worker_at_end (SIGKILL its worker, the parent of
its parent, once trained, then exit 0; first start only), hold_at (steps at which it saves a
checkpoint and stays, as a run the monitor must catch there: until a SIGINT, which saves and
exits as usual, or hold_s seconds), gate_at ({step: path}: the same, until the test creates the
path; a state the test needs, held for as long as it needs it), hold_s (the longest hold; 60).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

PREVIOUS_DATA = (
    "Previous data from this run ID was found. Either specify a new run ID, use --resume to "
    "resume this run, or use the --force parameter to overwrite existing data."
)
PORT_TAKEN = (
    "mlagents_envs.exception.UnityWorkerInUseException: Couldn't start socket communication "
    "because worker number 0 is still in use. You may need to manually close a previously "
    "opened environment or use a different worker number."
)
REWARD = "Environment/Cumulative Reward"
LOSS = "Losses/Policy Loss"


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="fake-trainer")
    parser.add_argument("config")
    parser.add_argument("--run-id", default="ppo")
    parser.add_argument("--results-dir", default="results")
    parser.add_argument("--base-port", type=int, default=5005)
    parser.add_argument("--num-envs", type=int, default=1)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--torch-device")
    parser.add_argument("--seed", type=int)
    return parser.parse_known_args(argv)


def options_for(run_id: str) -> dict[str, Any]:
    spec = json.loads(os.environ.get("FAKE_TRAINER") or "{}")
    options = {"step_delay": 0.01}
    options.update(spec.get("default", {}))
    options.update(spec.get("runs", {}).get(run_id, {}))
    return options


def ledger(entry: dict[str, Any]) -> None:
    path = os.environ.get("FAKE_LEDGER")
    if not path:
        return
    entry = {"time": time.time(), "pid": os.getpid(), "pidns": pid_namespace(), **entry}
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(entry) + "\n").encode())
    finally:
        os.close(fd)


def pid_namespace() -> int | None:
    """The PID namespace this trainer's pid belongs to (a simulated host may have its own)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


def previous_starts(run_id: str) -> int:
    path = os.environ.get("FAKE_LEDGER")
    if not path or not os.path.exists(path):
        return 0
    count = 0
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            entry = json.loads(line)
            count += entry.get("run_id") == run_id and entry.get("event") == "start"
    return count


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Behavior:
    """One behavior's folder, checkpoint and event file, as ML-Agents lays them out."""

    def __init__(self, name: str, settings: dict[str, Any], results: Path, curve: list[float]):
        self.name = name
        self.folder = results / name.split("?")[0]
        self.max_steps = int(settings.get("max_steps", 500000))
        self.summary_freq = int(settings.get("summary_freq", 50000))
        self.curve = curve
        self.step = 0
        self.writer: Any = None

    def value(self, step: int) -> float:
        tick = step // self.summary_freq
        if self.curve:
            return float(self.curve[min(tick, len(self.curve)) - 1])
        return 100.0 * step / self.max_steps

    def write_scalars(self) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        if self.writer is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.writer = EventFileWriter(str(self.folder))
        summary = summary_pb2.Summary(
            value=[
                summary_pb2.Summary.Value(tag=REWARD, simple_value=self.value(self.step)),
                summary_pb2.Summary.Value(tag=LOSS, simple_value=1.0 / (1 + self.step)),
            ]
        )
        self.writer.add_event(
            event_pb2.Event(wall_time=time.time(), step=self.step, summary=summary)
        )
        self.writer.flush()

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(self.folder / "checkpoint.pt", json.dumps({"step": self.step}))


def env_seed(config: dict[str, Any]) -> Any:
    env = config.get("env_settings") or {}
    return env.get("seed", -1)


def hold(seconds: float, until: str | None) -> None:
    """Stay at this step for `seconds`, or until the path `until` exists; SIGINT still works."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (until and os.path.exists(until)):
        time.sleep(0.02)


def main() -> int:
    args, _ = parse(sys.argv[1:])
    options = options_for(args.run_id)
    results = Path(args.results_dir) / args.run_id
    config = yaml.safe_load(Path(args.config).read_text())
    curves = options.get("curve", {})
    behaviors = [
        Behavior(name, settings or {}, results, curves.get(name, curves.get("*", [])))
        for name, settings in config["behaviors"].items()
    ]
    saved = [b.folder / "checkpoint.pt" for b in behaviors]
    resumable = args.resume and all(path.exists() for path in saved)
    ledger(
        {
            "event": "start",
            "run_id": args.run_id,
            "port": args.base_port,
            "resume": args.resume,
            "force": args.force,
            "device": args.torch_device,
            # What mlagents-learn trains with: its --seed wins over the config's.
            "seed": args.seed if args.seed is not None else env_seed(config),
            "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "start_step": min(json.loads(p.read_text())["step"] for p in saved) if resumable else 0,
        }
    )
    if results.exists() and not (args.resume or args.force):
        print(PREVIOUS_DATA, file=sys.stderr)
        return 1
    if args.force:
        shutil.rmtree(results, ignore_errors=True)
    if args.resume:
        for behavior in behaviors:
            checkpoint = behavior.folder / "checkpoint.pt"
            if not checkpoint.exists():
                raise FileNotFoundError(f"[Errno 2] No such file or directory: '{checkpoint}'")
            behavior.step = json.loads(checkpoint.read_text())["step"]
        print(f"Resuming training from step {min(b.step for b in behaviors)}.", flush=True)
    results.mkdir(parents=True, exist_ok=True)

    held = None
    if options.get("port_in_use"):
        held = socket.socket()
        try:
            held.bind(("127.0.0.1", args.base_port))
        except OSError:
            print(PORT_TAKEN, file=sys.stderr)
            return 1

    def finish(reason: str, code: int) -> None:
        for behavior in behaviors:
            behavior.save()
        step = min(b.step for b in behaviors)
        ledger({"event": "exit", "run_id": args.run_id, "reason": reason, "step": step})
        sys.stdout.flush()
        os._exit(code)

    def on_sigint(_signum: int, _frame: object) -> None:
        ledger({"event": "sigint", "run_id": args.run_id})
        print("Learning was interrupted. Please wait while the graph is generated.", flush=True)
        time.sleep(float(options.get("sigint_delay", 0)))
        finish("sigint", 0)

    if options.get("ignore_sigint"):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGINT, on_sigint)
    if options.get("spawn_child"):
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import signal,time; signal.signal(2, signal.SIG_IGN); time.sleep(1000)",
            ]
        )
        write_atomic(results / "child.pid", str(child.pid))

    ticks = 0
    while any(b.step < b.max_steps for b in behaviors):
        time.sleep(float(options.get("step_delay", 0.01)))
        for behavior in behaviors:
            if behavior.step < behavior.max_steps:
                behavior.step = min(behavior.max_steps, behavior.step + behavior.summary_freq)
                behavior.write_scalars()
                print(
                    f"[INFO] {behavior.name}. Step: {behavior.step}. "
                    f"Mean Reward: {behavior.value(behavior.step):.3f}.",
                    flush=True,
                )
        ticks += 1
        if options.get("kill_launcher") and ticks == 1 and previous_starts(args.run_id) == 1:
            ledger({"event": "kill-launcher", "run_id": args.run_id, "target": os.getppid()})
            os.kill(os.getppid(), signal.SIGKILL)
        if options.get("ledger_ticks"):
            ledger({"event": "tick", "run_id": args.run_id, "step": behaviors[0].step})
        if (
            "crash" in options
            and ticks >= int(options.get("crash_after", 1))
            and previous_starts(args.run_id) <= int(options.get("crash_times", 1 << 30))
        ):
            print("Traceback (most recent call last):\nRuntimeError: fake crash", file=sys.stderr)
            return int(options["crash"])
        if options.get("hang"):
            while True:
                time.sleep(3600)
        every = int(options.get("checkpoint_every", 0))
        if every and ticks % every == 0:
            for behavior in behaviors:
                behavior.save()
        step = min(b.step for b in behaviors)
        gate = options.get("gate_at", {}).get(str(step))
        if step in options.get("hold_at", ()) or gate:
            for behavior in behaviors:
                behavior.save()
            hold(float(options.get("hold_s", 60)), gate)
    for behavior in behaviors:
        (behavior.folder / f"{behavior.folder.name}.onnx").write_bytes(b"onnx")
    del held
    if options.get("kill_worker_at_end") and previous_starts(args.run_id) == 1:
        os.kill(parent_of(os.getppid()), signal.SIGKILL)
    finish("end", 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
