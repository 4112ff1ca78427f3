"""The monitor: drops a kill file for each running run that meets one of its `opt_stop` conditions.

It never touches a trainer; kill files are its whole interface with the workers, and the
queue holds all its state, so it can be stopped and restarted at any time.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from .conditions import StopCondition
from .metrics import (
    EventFileSource,
    MetricsUnavailable,
    Scalar,
    TensorBoardSource,
    tensorboard_run,
)
from .output import say
from .queue import Job, Queue, worker_identity
from .watch import FolderWatch

DEFAULT_TENSORBOARD = "http://localhost:6006"
DEFAULT_INTERVAL = 15.0
# Event files change in bursts (one write per summary tag); gather a burst into one check.
SETTLE = 0.1


@dataclass(frozen=True)
class Verdict:
    run_id: str
    condition: StopCondition
    reason: str


def judge(
    jobs: list[Job], latest: dict[tuple[str, str], Scalar | None], several_behaviors: bool
) -> list[Verdict]:
    """The first holding condition of each run; no data never holds."""
    verdicts = []
    for job in jobs:
        for condition in job.conditions:
            point = latest.get((tensorboard_run(job.run_id, condition.behavior), condition.tag))
            if point is None:
                continue
            reason = condition.holds(point.step, point.value)
            if reason is not None:
                if several_behaviors:
                    reason = f"{condition.behavior}: {reason}"
                verdicts.append(Verdict(job.run_id, condition, reason))
                break
    return verdicts


class Monitor:
    def __init__(
        self,
        queue: Queue,
        tensorboard: str = DEFAULT_TENSORBOARD,
        logdir: Path | None = None,
        interval: float = DEFAULT_INTERVAL,
        forever: bool = False,
        polling: bool | None = None,
    ) -> None:
        self.queue = queue
        self.interval = interval
        self.forever = forever
        self.polling = polling
        self.logdir = logdir
        self.tensorboard = TensorBoardSource(tensorboard) if logdir is None else None
        self.events = EventFileSource(logdir) if logdir is not None else None
        self.identity = f"grid-monitor {worker_identity()}"
        self.wake = threading.Event()
        self.outage: str | None = None
        self._jobs: dict[str, Job] = {}
        self._jobs_of: object = None

    def watched_jobs(self) -> list[Job]:
        """Running runs with conditions and no kill file yet."""
        asked = self.queue.stop_requested()
        if self._jobs_of is not self.queue.sweep:
            # --extend may have rewritten the runs' opt_stop conditions: read them again.
            self._jobs.clear()
            self._jobs_of = self.queue.sweep
        jobs = []
        for run_id in self.queue.running():
            if run_id in asked:
                continue
            if run_id not in self._jobs:
                self._jobs[run_id] = self.queue.job(run_id)
            if self._jobs[run_id].conditions:
                jobs.append(self._jobs[run_id])
        return jobs

    def latest(self, jobs: list[Job]) -> dict[tuple[str, str], Scalar | None]:
        wanted: dict[str, list[str]] = defaultdict(list)
        for job in jobs:
            for condition in job.conditions:
                wanted[condition.tag].append(tensorboard_run(job.run_id, condition.behavior))
        found: dict[tuple[str, str], Scalar | None] = {}
        if self.events is not None:
            self.events.refresh({run for runs in wanted.values() for run in runs})
            for tag, runs in wanted.items():
                for run in runs:
                    found[(run, tag)] = self.events.latest(run, tag)
            return found
        assert self.tensorboard is not None
        for tag, runs in wanted.items():
            for run, point in self.tensorboard.fetch(sorted(set(runs)), tag).items():
                found[(run, tag)] = point
        return found

    def check(self) -> list[Verdict]:
        """One pass: read the latest points of watched runs and stop those that qualify."""
        jobs = self.watched_jobs()
        if not jobs:
            return []
        try:
            latest = self.latest(jobs)
        except MetricsUnavailable as exc:
            if self.outage is None:
                say(f"metrics unavailable ({exc}); no run is stopped until they return")
            self.outage = str(exc)
            return []
        if self.outage is not None:
            say("metrics available again")
            self.outage = None
        verdicts = judge(jobs, latest, len(self.queue.sweep.behaviors) > 1)
        for verdict in verdicts:
            if self.queue.request_stop(verdict.run_id, verdict.reason, self.identity):
                say(f"{verdict.run_id}: {verdict.reason}, stop requested")
        return verdicts

    def run(self) -> int:
        source = f"event files under {self.logdir}" if self.logdir else "TensorBoard"
        if self.tensorboard is not None:
            source = f"TensorBoard at {self.tensorboard.url}"
        say(f"monitor watching {self.queue.root} with {source}, every {self.interval:g}s")
        if self.logdir is None:
            return self._loop()
        # Event files: react to each write; the queue: pick up runs as they start.
        queue_folders = [self.queue.paths.state_dir, self.queue.paths.final_dir]
        with (
            FolderWatch(queue_folders, self._wake, self.polling),
            FolderWatch([self.logdir], self._wake, self.polling, recursive=True),
        ):
            return self._loop()

    def _wake(self, _path: str) -> None:
        self.wake.set()

    def _loop(self) -> int:
        while True:
            self.check()
            if not self.forever and self.queue.all_final():
                say("every run is final; monitor exiting")
                return 0
            if self.events is not None:
                self.wake.wait(self.interval)
                time.sleep(SETTLE)
            else:
                time.sleep(self.interval)
            self.wake.clear()
