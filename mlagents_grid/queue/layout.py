"""Every path in a queue folder, named in one place.

sweep.json            the sweep: run ids in order, trainer args, results dir, ports
template.yaml         the trainer config shared by every run, before its values are set
config_info.txt       one line per run, in the original tool's format
events.jsonl          every transition, one JSON object per line
jobs/<run>.json       what a run is: its values, config assignments and stop conditions
claims/<run>/g<N>.json the owner of the run's claim of generation N (see ownership.py)
claims/<run>/g<N>.beat its lease, renewed while the claim is held
state/<run>.g<N>.json a started run that is not final (running, interrupted, paused or
                      pending a retry), as the owner of claim N wrote it
final/<run>.g<N>.json a final run: done, stopped or failed
exits/<run>.g<N>.json how the trainer of claim N ended, written by the process that reaped it
kill/<run>            a stop request (JSON: reason, by, time)
pause/<run>           a pause request at a rung (JSON: rung, step, by, time); opt_rungs only
rungs/<n>.json        rung n's decision (points promoted and stopped, scores, reasons)
configs/<run>.yaml    the run's trainer config, written when it first starts
logs/<run>.log        the trainer's output, one header line per attempt
slots/<host>.<n>/     the claim folder of a worker's port slot on its host
slurm/                grid-submit's batch script and the SLURM jobs it submitted
logs/slurm-<job>_<task>.out  a SLURM array task's worker output
scores/<run>.json     the run's metric as grid-report and grid-status read it (see scores.py)
locks/plan/           the claim folder held by grid-plan --extend and grid-retry while they
                      change the sweep
locks/monitor/        the claim folder of the one active grid-monitor
extending/            an extension being written: staged files, then manifest.json (committed)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# A state, final or exit file of claim generation N is `<run>.g<N>.json`; generation 0 is the
# name an older version wrote, `<run>.json`. Run ids end in `-<point>` (or `-s<seed>`), so
# no run id ends in `.g<N>` and the two forms never meet.
GENERATION_MARK = ".g"

# Folders a plan creates; the others appear when first needed.
PLANNED_FOLDERS = (
    "jobs",
    "claims",
    "locks",
    "locks/plan",
    "locks/monitor",
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

    def job_file(self, run_id: str) -> Path:
        return self.root / "jobs" / f"{run_id}.json"

    def state_file(self, run_id: str, generation: int) -> Path:
        return self.state_dir / generation_name(run_id, generation)

    def final_file(self, run_id: str, generation: int) -> Path:
        return self.final_dir / generation_name(run_id, generation)

    def exit_file(self, run_id: str, generation: int) -> Path:
        return self.exit_dir / generation_name(run_id, generation)

    def kill_file(self, run_id: str) -> Path:
        return self.kill_dir / run_id

    @property
    def claims_dir(self) -> Path:
        return self.root / "claims"

    def claim_folder(self, run_id: str) -> Path:
        return self.claims_dir / run_id

    @property
    def plan_claims(self) -> Path:
        """Held while the sweep itself changes (grid-plan --extend, grid-retry)."""
        return self.root / "locks" / "plan"

    @property
    def monitor_claims(self) -> Path:
        """Held by the one grid-monitor that acts on the queue."""
        return self.root / "locks" / "monitor"

    def slot_claims(self, host: str, slot: int) -> Path:
        return self.root / "slots" / f"{host}.{slot}"

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
    def extension_dir(self) -> Path:
        """Staging of an extension; with its manifest written, it is committed (see extend.py)."""
        return self.root / "extending"

    @property
    def extension_manifest(self) -> Path:
        return self.extension_dir / "manifest.json"

    @property
    def scores_dir(self) -> Path:
        return self.root / "scores"

    def score_file(self, run_id: str) -> Path:
        """A run's metric as read once it is final (or, while it trains, at the last look)."""
        return self.scores_dir / f"{run_id}.json"


def generation_name(run_id: str, generation: int) -> str:
    if generation == 0:
        return f"{run_id}.json"
    return f"{run_id}{GENERATION_MARK}{generation}.json"


def parse_generation_name(name: str) -> tuple[str, int] | None:
    """(run id, generation) of a state, final or exit file name; None for anything else."""
    if name.startswith(".") or not name.endswith(".json"):
        return None
    stem = name[: -len(".json")]
    run_id, mark, digits = stem.rpartition(GENERATION_MARK)
    if mark and run_id and digits.isdigit():
        return run_id, int(digits)
    return stem, 0
