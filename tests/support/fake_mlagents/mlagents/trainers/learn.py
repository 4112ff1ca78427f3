"""A fake mlagents-learn entry point: "trains" until stopped, saves a checkpoint on Ctrl-C.

Like ML-Agents' learn.main it reads sys.argv. It writes to RESULTS_DIR/RUN_ID/:
pid (its pid, once training), console.json (Windows: the pids attached to its console),
child.pid (--spawn-child), step (the step counter),
checkpoint.txt (the step saved on KeyboardInterrupt) and interrupts.txt (how many arrived).
Options beyond mlagents-learn's are for the tests: --steps, --exit-code, --ignore-interrupt
(catch KeyboardInterrupt and keep training), --ignore-exit (also catch SystemExit), --block
(each step is one long sleep, as a trainer blocked waiting for its environment), --block-recv
(each step waits in multiprocessing's Connection.recv() for data that never comes, as
mlagents-learn's main thread waits for its environment workers and Unity).

Given a trainer config (as a worker gives it), it also keeps ML-Agents' layout: each
behavior's `checkpoint.pt` holds the step saved, `--resume` continues from it, and every
start and end is a line of RESULTS_DIR/RUN_ID/ledger.jsonl.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mlagents-learn")
    parser.add_argument("config", nargs="?")
    parser.add_argument("--run-id", default="ppo")
    parser.add_argument("--results-dir", default="results")
    parser.add_argument("--steps", type=int, default=0, help="0: until stopped")
    parser.add_argument("--step-delay", type=float, default=0.02)
    parser.add_argument("--exit-code", type=int, default=0)
    parser.add_argument("--spawn-child", action="store_true")
    parser.add_argument("--ignore-interrupt", action="store_true")
    parser.add_argument("--ignore-exit", action="store_true")
    parser.add_argument("--block", action="store_true", help="each step sleeps 600 s")
    parser.add_argument("--block-recv", action="store_true", help="each step waits in recv()")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--force", action="store_true")
    args, _unknown = parser.parse_known_args(sys.argv[1:])
    return args


def _behaviors(config: str | None) -> list[str]:
    if not config or not Path(config).is_file():
        return []
    import yaml

    document = yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}
    return [str(name) for name in document.get("behaviors") or {}]


def _ledger(out: Path, **entry: object) -> None:
    with open(out / "ledger.jsonl", "a", encoding="utf-8") as ledger:
        ledger.write(json.dumps({"pid": os.getpid(), "time": time.time(), **entry}) + "\n")


def _console_processes() -> list[int]:
    """Windows: the processes attached to this process's console (none without one)."""
    import ctypes

    pids = (ctypes.c_uint32 * 64)()
    count = ctypes.windll.kernel32.GetConsoleProcessList(pids, 64)  # type: ignore[attr-defined]
    return list(pids[: min(count, 64)])


def _save(out: Path, behaviors: list[str], step: int) -> None:
    (out / "checkpoint.txt").write_text(str(step))
    for name in behaviors:
        (out / name).mkdir(exist_ok=True)
        (out / name / "checkpoint.pt").write_text(json.dumps({"step": step}))


def main() -> None:
    args = _parse()
    out = Path(args.results_dir) / args.run_id
    out.mkdir(parents=True, exist_ok=True)
    behaviors = _behaviors(args.config)
    start = 0
    if args.resume and behaviors:
        start = json.loads((out / behaviors[0] / "checkpoint.pt").read_text())["step"]
    _ledger(out, event="start", resume=args.resume, force=args.force, step=start)
    if args.spawn_child:
        child = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(600)"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        (out / "child.pid").write_text(str(child.pid))
    ignored = (BaseException,) if args.ignore_exit else (KeyboardInterrupt,)
    # The sending end stays open (and silent): recv() waits, and never sees end of file.
    silent, _sender = multiprocessing.Pipe(duplex=False)
    step = start
    interrupts = 0
    if sys.platform == "win32":
        (out / "console.json").write_text(json.dumps(_console_processes()))
    (out / "pid").write_text(str(os.getpid()))
    while not args.steps or step < args.steps:
        try:
            step += 1
            (out / "step").write_text(str(step))
            if args.block_recv:
                silent.recv()
            else:
                time.sleep(600 if args.block else args.step_delay)
        except ignored as exc:
            interrupts += 1
            (out / "interrupts.txt").write_text(str(interrupts))
            if args.ignore_interrupt or args.ignore_exit:
                print(f"fake trainer: ignoring {type(exc).__name__}", flush=True)
                continue
            _save(out, behaviors, step)
            _ledger(out, event="exit", reason="interrupt", step=step)
            print("Learning was interrupted. Please wait while the graph is generated.", flush=True)
            # Stay a moment: a second interrupt would arrive here and be counted.
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                try:
                    time.sleep(0.05)
                except KeyboardInterrupt:
                    interrupts += 1
                    (out / "interrupts.txt").write_text(str(interrupts))
            return
    _save(out, behaviors, step)
    _ledger(out, event="exit", reason="end", step=step)
    if args.exit_code:
        sys.exit(args.exit_code)
