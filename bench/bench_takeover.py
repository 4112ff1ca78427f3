"""Takeover time after a host crash, against the lease (root: simulated hosts).

Host A is a PID and UTS namespace running one worker; host B, another UTS namespace, runs a
`--wait` worker. Once A trains its run, every process of A is killed at once; measured is the
time from the crash to B's trainer start for that run. B takes over after seeing A's lease
unchanged for a whole lease, looking every quarter of it: expect the lease plus up to a
quarter, minus up to the sixth since A's last renewal.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
from common import BIN, FAKE_TRAINER, Row, behavior, ledger, plan, start, trainer_env

LEASES = (4.0, 8.0, 16.0)
ROUNDS = 3


def as_host(name: str, command: list[str], pid_namespace: bool = False) -> list[str]:
    spaces = ["--uts", "--pid", "--fork", "--mount-proc"] if pid_namespace else ["--uts"]
    return ["unshare", *spaces, "sh", "-c", 'hostname "$0" && exec "$@"', name, *command]


def one_takeover(root: Path, lease: float) -> float:
    queue = plan(root, behavior(100000), 1, ("--lease", f"{lease:g}"))
    env = trainer_env(root / "ledger.jsonl", {"step_delay": 0.05})
    command = [str(BIN / "grid-worker"), "--queue", str(queue), "--trainer", FAKE_TRAINER]
    crashing = start(as_host("bench-alpha", command, pid_namespace=True), root / "a.log", env)
    survivor = None
    try:
        deadline = time.monotonic() + 60
        while not ledger(root / "ledger.jsonl"):
            assert time.monotonic() < deadline, "host A never started its trainer"
            time.sleep(0.05)
        survivor = start(as_host("bench-beta", [*command, "--wait"]), root / "b.log", env)
        time.sleep(1.0)  # B is up and looking at A's claim
        init = psutil.Process(crashing.pid).children()[0].pid
        crashed = time.time()
        os.kill(init, signal.SIGKILL)
        while len(ledger(root / "ledger.jsonl")) < 2:
            assert time.monotonic() < deadline + 4 * lease, "no takeover"
            time.sleep(0.02)
        return float(ledger(root / "ledger.jsonl")[1]["time"]) - crashed
    finally:
        # Host A's processes died with its namespace; B's trainer is its worker's grandchild.
        if survivor is not None:
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(survivor.pid).children(recursive=True):
                    child.kill()
        for proc in (crashing, survivor):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def main() -> list[Row]:
    probe = subprocess.run(as_host("bench-probe", ["true"]), capture_output=True)
    if shutil.which("unshare") is None or probe.returncode != 0:
        return [Row("takeover after a host crash", "not measured: needs root and unshare")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for lease in LEASES:
            times = [one_takeover(Path(tmp) / f"l{lease:g}-{k}", lease) for k in range(ROUNDS)]
            low, high = lease * 5 / 6, lease * 5 / 4
            rows.append(
                Row(
                    f"takeover after a host crash, lease {lease:g} s ({ROUNDS} crashes)",
                    ", ".join(f"{t:.1f} s" for t in times),
                    f"{low:.1f}-{high:.1f} s",
                    all(low - 0.5 <= t <= high + 1.0 for t in times),
                )
            )
    return rows


if __name__ == "__main__":
    print(json.dumps([row.__dict__ for row in main()], indent=1))
