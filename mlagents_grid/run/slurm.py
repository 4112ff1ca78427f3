"""`grid-submit --slurm N`: workers as a SLURM array job. SLURM places them; the queue coordinates.

Each array task runs one `grid-worker --wait`. SLURM warns a task with SIGINT 120 s before
its time limit; the script `exec`s the worker so that the batch shell is the worker, which
stops its trainer gracefully and records the run `interrupted` for another task to resume.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import GridError
from ..queue.files import write_atomic
from ..queue.folder import Queue
from ..queue.job import Event

WARNING_SECONDS = 120


def slurm_label(env: dict[str, str] | None = None) -> str | None:
    """`slurm 1234_5` for array task 5 of job 1234, from the variables SLURM sets."""
    env = dict(os.environ) if env is None else env
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"slurm {env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    if env.get("SLURM_JOB_ID"):
        return f"slurm {env['SLURM_JOB_ID']}"
    return None


def batch_script(
    queue: Queue,
    tasks: int,
    gpus_per_worker: int = 0,
    trainer: str | None = None,
    polling: bool = False,
) -> str:
    root = Path(queue.root).absolute()
    worker = [str(Path(sys.executable).parent / "grid-worker"), "--queue", str(root), "--wait"]
    if trainer:
        worker += ["--trainer", trainer]
    if polling:
        worker.append("--polling")
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name=grid-{queue.sweep.prefix}",
        f"#SBATCH --array=0-{tasks - 1}",
        f"#SBATCH --output={queue.paths.slurm_output()}",
        f"#SBATCH --signal=B:INT@{WARNING_SECONDS}",
    ]
    if gpus_per_worker:
        lines.append(f"#SBATCH --gpus-per-task={gpus_per_worker}")
    lines += [
        "# One grid-worker per array task; it claims runs until every run is final.",
        f"# SIGINT {WARNING_SECONDS} s before the time limit reaches this shell, and `exec`",
        "# makes the worker this shell: its trainer saves a checkpoint, the run is recorded",
        "# interrupted, and another task (or a later submission) resumes it with --resume.",
        "set -euo pipefail",
        f"cd {shlex.quote(queue.sweep.cwd)}",
        "gpus=()",
    ]
    if gpus_per_worker:
        lines += [
            "# SLURM sets CUDA_VISIBLE_DEVICES to this task's GPUs, which the task then sees as",
            "# devices 0..G-1: the worker's port slots take them in turn.",
            'if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then',
            '    count=$(tr "," "\\n" <<< "$CUDA_VISIBLE_DEVICES" | wc -l)',
            '    gpus=(--gpus "$(seq -s, 0 $((count - 1)))")',
            "fi",
        ]
    lines.append(f'exec {shlex.join(worker)} "${{gpus[@]}}"')
    return "\n".join(lines) + "\n"


def submit(queue: Queue, script: str, tasks: int, sbatch_args: list[str]) -> str:
    """Submit `script`; once SLURM took it, keep it and the job id in the queue."""
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise GridError("sbatch not found; run grid-submit on a SLURM login node, or use --print")
    # sbatch keeps its own copy: the queue gets the script only once SLURM has taken it.
    with tempfile.NamedTemporaryFile("w", suffix=".sbatch", encoding="utf-8") as draft:
        draft.write(script)
        draft.flush()
        done = subprocess.run(
            [sbatch, "--parsable", *sbatch_args, draft.name], capture_output=True, text=True
        )
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise GridError(f"sbatch refused the job: {reason}")
    jobs_file = queue.paths.slurm_file("jobs.json")
    jobs_file.parent.mkdir(exist_ok=True)
    write_atomic(queue.paths.slurm_file("worker.sbatch"), script)
    job_id = done.stdout.strip().split(";")[0]
    try:
        jobs = json.loads(jobs_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        jobs = []
    jobs.append({"job_id": job_id, "tasks": tasks, "time": time.time(), "args": sbatch_args})
    write_atomic(jobs_file, json.dumps(jobs, indent=1))
    queue.record(Event.SLURM_SUBMITTED, slurm_job=job_id, tasks=tasks)
    return job_id
