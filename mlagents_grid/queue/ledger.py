"""The one writer of a run's state (state/, final/) and of events.jsonl.

Every write of a run's state happens under a claim (`ownership.Hold`) and carries its
generation in the file name, so that an owner who lost its claim without knowing can never
overwrite its successor's state; readers take the highest generation. Each change is written
durably (`files.write_atomic`) together with its events, so no caller pairs the two.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import files
from .files import fsync_dir, write_atomic
from .job import Event
from .layout import Layout
from .ownership import Hold
from .transitions import Change, ClaimSteps, Request, Unreadable


class Ledger:
    def __init__(self, paths: Layout) -> None:
        self.paths = paths

    def record(self, event: Event, run_id: str | None = None, **fields: Any) -> None:
        """Append one JSON line; `files.append_line` keeps concurrent writers' lines whole."""
        entry = {"time": round(time.time(), 3), "event": str(event), "run_id": run_id}
        entry.update({k: v for k, v in fields.items() if v is not None})
        files.append_line(self.paths.events_file, json.dumps(entry) + "\n")

    def write(self, hold: Hold, change: Change, stale: Iterable[Path] = ()) -> bool:
        """Write `change` under `hold`; False, with nothing written, once it is taken over.

        A final state goes to final/ and then its state/ file of the same generation goes
        (a crash between the two leaves both, and final wins). `stale`: older files of the
        run that the claimer read, dropped once this generation has written its own state.
        """
        if hold.fenced():
            return False
        run_id = change.state.run_id
        generation = hold.generation
        # The requests it answers go first: a crash in between leaves the run as it was,
        # without a request that is answered anyway (a kill file of a final run, a pause
        # request of a paused one), never a retried run with its old kill file.
        for request in change.answers:
            path = (
                self.paths.pause_file(run_id)
                if request is Request.PAUSE
                else self.paths.kill_file(run_id)
            )
            with contextlib.suppress(FileNotFoundError):
                files.unlink(path)
                fsync_dir(path.parent)
        target = (
            self.paths.final_file(run_id, generation)
            if change.final
            else self.paths.state_file(run_id, generation)
        )
        write_atomic(target, change.state.to_json())
        if change.final:
            with contextlib.suppress(FileNotFoundError):
                files.unlink(self.paths.state_file(run_id, generation))
        hold.wrote = True
        for event, details in change.events:
            self.record(event, run_id, worker=hold.owner.by, gen=generation, **details)
        for path in stale:
            if path != target:
                with contextlib.suppress(OSError):
                    files.unlink(path)
        return True

    def set_aside(self, hold: Hold, unreadable: Unreadable) -> Path:
        """Keep an unreadable state file for inspection, out of the way of a retry."""
        path = Path(unreadable.path)
        kept = path.with_name(path.name + ".unreadable")
        files.replace(path, kept)
        fsync_dir(path.parent)
        hold.wrote = True
        self.record(
            Event.UNREADABLE_STATE,
            hold.folder.name,
            worker=hold.owner.by,
            gen=hold.generation,
            file=str(kept),
            reason=unreadable.problem,
        )
        return kept

    def apply(self, hold: Hold, steps: ClaimSteps, stale: Iterable[Path] = ()) -> bool:
        """Carry out what the claimer decided (`transitions.claim_steps`); False when taken
        over meanwhile (then nothing more is written)."""
        for unreadable in steps.unreadable:
            if hold.fenced():
                return False
            self.set_aside(hold, unreadable)
        for change in steps.changes:
            if not self.write(hold, change, stale):
                return False
            stale = ()
        return True
