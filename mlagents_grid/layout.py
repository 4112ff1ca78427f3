"""Every path in a queue folder, named in one place.

sweep.json            the sweep: run ids in order, trainer args, results dir, ports
template.yaml         the trainer config shared by every run, before its values are set
config_info.txt       one line per run, in the original tool's format
events.jsonl          every transition, one JSON object per line
jobs/<run>.json       what a run is: its values, config assignments and stop conditions
locks/<run>.lock      held for as long as the run's trainer lives
locks/<run>.probe     taken by whoever looks at a run's lock without claiming it
locks/<run>.live      held by the trainer runner on Windows for as long as it lives
state/<run>.json      a started run that is not final: running, interrupted, or pending a retry
final/<run>.json      a final run: done, stopped or failed
exits/<run>.json      how the run's last trainer ended, written by the process that reaped it
kill/<run>            a stop request (JSON: reason, by, time)
pause/<run>           a pause request at a rung (JSON: rung, step, by, time); opt_rungs only
rungs/<n>.json        rung n's decision (points promoted and stopped, scores, reasons)
configs/<run>.yaml    the run's trainer config, written when it first starts
logs/<run>.log        the trainer's output, one header line per attempt
slots/<host>.<n>.lock a worker's port slot on its host
slurm/                grid-submit's batch script and the SLURM jobs it submitted
logs/slurm-<job>_<task>.out  a SLURM array task's worker output
cache/                what commands derived and may rebuild (metrics read so far)
plan.lock             held by grid-plan --extend and grid-retry while they change the sweep
extending/            an extension being written: staged files, then manifest.json (committed)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Folders a plan creates; the others appear when first needed.
PLANNED_FOLDERS = (
    "jobs",
    "locks",
    "state",
    "final",
    "exits",
    "kill",
    "pause",
    "rungs",
    "configs",
    "logs",
    "slots",
)


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def sweep_file(self) -> Path:
        return self.root / "sweep.json"

    @property
    def template_file(self) -> Path:
        return self.root / "template.yaml"

    @property
    def events_file(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def config_info(self) -> Path:
        return self.root / "config_info.txt"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def final_dir(self) -> Path:
        return self.root / "final"

    @property
    def exit_dir(self) -> Path:
        return self.root / "exits"

    @property
    def kill_dir(self) -> Path:
        return self.root / "kill"

    @property
    def pause_dir(self) -> Path:
        return self.root / "pause"

    @property
    def rungs_dir(self) -> Path:
        return self.root / "rungs"

    def pause_file(self, run_id: str) -> Path:
        return self.pause_dir / run_id

    def rung_file(self, number: int) -> Path:
        """Rung `number`'s decision (rungs are numbered from 1)."""
        return self.rungs_dir / f"{number}.json"

    @property
    def lock_dir(self) -> Path:
        return self.root / "locks"

    def job_file(self, run_id: str) -> Path:
        return self.root / "jobs" / f"{run_id}.json"

    def state_file(self, run_id: str) -> Path:
        return self.state_dir / f"{run_id}.json"

    def final_file(self, run_id: str) -> Path:
        return self.final_dir / f"{run_id}.json"

    def exit_file(self, run_id: str) -> Path:
        return self.exit_dir / f"{run_id}.json"

    def kill_file(self, run_id: str) -> Path:
        return self.kill_dir / run_id

    def lock_file(self, run_id: str) -> Path:
        return self.lock_dir / f"{run_id}.lock"

    def probe_file(self, run_id: str) -> Path:
        return self.lock_dir / f"{run_id}.probe"

    def live_file(self, run_id: str) -> Path:
        return self.lock_dir / f"{run_id}.live"

    def slot_file(self, host: str, slot: int) -> Path:
        return self.root / "slots" / f"{host}.{slot}.lock"

    def config_file(self, run_id: str) -> Path:
        return self.root / "configs" / f"{run_id}.yaml"

    def log_file(self, run_id: str) -> Path:
        return self.root / "logs" / f"{run_id}.log"

    def slurm_file(self, name: str) -> Path:
        return self.root / "slurm" / name

    def slurm_output(self) -> Path:
        """Where each array task's output goes (sbatch's %A job id, %a task id)."""
        return self.root.absolute() / "logs" / "slurm-%A_%a.out"

    @property
    def plan_lock(self) -> Path:
        """Held while the sweep itself changes (grid-plan --extend, grid-retry)."""
        return self.root / "plan.lock"

    @property
    def extension_dir(self) -> Path:
        """Staging of an extension; with its manifest written, it is committed (see extend.py)."""
        return self.root / "extending"

    @property
    def extension_manifest(self) -> Path:
        return self.extension_dir / "manifest.json"

    def cache_file(self, name: str) -> Path:
        """Derived data a command may rebuild at any time (never a source of truth)."""
        return self.root / "cache" / name
