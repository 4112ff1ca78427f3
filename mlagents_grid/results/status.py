"""What every run of a sweep is doing: a view that fits the screen, or every run as JSON.

A `Tracker` holds the runs as last seen. Its first look reads every started run's state;
each later look (grid-status --watch) reads only the runs that events.jsonl named since,
probes the runs recorded as running, and reads on in the event files of runs still
training: a look at a sweep where nothing changed costs a few stat calls. The whole
listing is read again only when the state folders changed and RESCAN_S have passed, in
case a process died between a state write and its event. Final runs' metrics come from
their kept records (scores.py).

The default view shows the runs that matter (training, failed, the best finished ones by
score, the latest ends), each group given a fair share of the terminal's height, and says
how many runs it hides and how to see them.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..errors import GridError
from ..plan.grid import format_value
from ..plan.seeds import run_seed
from ..queue.files import FileBusy
from ..queue.folder import Queue
from ..queue.job import (
    FAILED,
    FINAL,
    INTERRUPTED,
    PAUSED,
    PENDING,
    RUNNING,
    STATUSES,
    Job,
    JobState,
)
from ..queue.ownership import Liveness, OwnerView
from ..queue.rung_decision import RungDecision
from .metrics import DEFAULT_METRIC
from .rung_ranking import RunAtRung, entered
from .scores import DEFAULT_LAST, NO_METRICS, RunMetrics, ScoreBook, latest, score_run

UNREADABLE = "unreadable"
BUSY = "busy"  # a state file another process held open for longer than files.SHARING_WAIT
TRAINING = (RUNNING, PAUSED, INTERRUPTED)
PROBLEMS = (FAILED, UNREADABLE)
RESCAN_S = 30.0  # at most this often, a full read when the state folders changed
CLOCK_S = 30.0  # with nothing changed, the view is drawn again this often (its clock)
PIPE_HEIGHT = 50  # rows of the view when the output is not a terminal and $LINES is unset
MIN_ROWS = 5


def started_states(queue: Queue) -> tuple[dict[str, JobState], dict[str, str]]:
    """Every started run's state (running ones probed), and the unreadable ones' errors."""
    states: dict[str, JobState] = {}
    errors: dict[str, str] = {}
    for run_id, state in queue.states(queue.snapshot()).items():
        if isinstance(state, FileBusy):
            continue  # held open by another process (Windows): left out of this look
        if isinstance(state, GridError):
            errors[run_id] = str(state)
        else:
            states[run_id] = queue.effective(state)
    return states, errors


class EventTail:
    """The runs named by lines appended to events.jsonl since the last read."""

    def __init__(self, path: os.PathLike[str]) -> None:
        self.path = path
        self.offset: int | None = None
        self.inode: int | None = None

    def read(self) -> set[str] | None:
        """None the first time and when the file was replaced or cut: read every run."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return set()
        if self.offset is None or info.st_ino != self.inode or info.st_size < self.offset:
            self.offset, self.inode = info.st_size, info.st_ino
            return None
        if info.st_size == self.offset:
            return set()
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read(info.st_size - self.offset)
        whole = data[: data.rfind(b"\n") + 1]  # a line being appended waits for the next read
        self.offset += len(whole)
        runs = set()
        for line in whole.splitlines():
            try:
                run_id = json.loads(line).get("run_id")
            except (ValueError, AttributeError):
                continue
            if isinstance(run_id, str):
                runs.add(run_id)
        return runs


class Tracker:
    """The sweep's runs as last seen; `look` reads what changed since the previous look."""

    def __init__(self, queue: Queue, metric: str, live: bool = False) -> None:
        self.queue = queue
        self.metric = metric
        self.book = ScoreBook(queue, metric, DEFAULT_LAST, live=live)
        self.recorded: dict[str, JobState] = {}
        self.states: dict[str, JobState] = {}
        self.errors: dict[str, str] = {}
        self.busy: dict[str, str] = {}  # runs whose state file was held open: read next look
        self.metrics: dict[str, RunMetrics] = {}
        self.owners: dict[str, OwnerView] = {}  # who holds each run recorded running
        self.tail = EventTail(queue.paths.events_file)
        self._sweep: object = None
        self._stamp: tuple[int, ...] | None = None
        self._scanned = 0.0
        self._decisions: tuple[frozenset[int], dict[int, RungDecision]] | None = None
        self._jobs: dict[str, Job] = {}
        self._scores: dict[str, tuple[RunMetrics, float | None]] = {}
        self._training: set[str] = set()  # started runs not final: read at every look
        self._entries: list[Entry] | None = None

    def look(self) -> bool:
        """Read what changed since the last look; True when what is shown may have changed."""
        sweep = self.queue.sweep
        named = self.tail.read()
        stamp = self.queue.runs_stamp()
        stale = stamp != self._stamp and time.monotonic() - self._scanned > RESCAN_S
        if named is None or sweep is not self._sweep or stale:
            self._scanned = time.monotonic()
            kept: list[Any] = [self.recorded, self.states, self.errors, self.metrics, self._jobs]
            for held in [*kept, self._training, self.owners, self.busy]:
                held.clear()
            changed = set(self.queue.snapshot())
        else:
            changed = named
        self._stamp, self._sweep = stamp, sweep
        for run_id in changed | set(self.busy):
            self._read(run_id)
        flipped = False
        for run_id in [r for r in self._training if self.recorded[r].status == RUNNING]:
            owner = self.owners[run_id] = self.queue.owner(run_id)
            state = self.queue.effective(self.recorded[run_id], owner)
            flipped = flipped or state.status != self.states[run_id].status
            self.states[run_id] = state
        read = self.book.source.records_read
        for run_id in changed | self._training:
            if run_id in self.states:
                self.metrics[run_id] = self.book.metrics(run_id, self.states[run_id])
            else:
                self.metrics.pop(run_id, None)
        self.book.save()
        moved = bool(changed) or flipped or self.book.source.records_read != read
        if moved:
            self._entries = None
        return moved

    def _read(self, run_id: str) -> None:
        """The run's recorded state; a run with neither state nor final record is pending."""
        self.errors.pop(run_id, None)
        self.recorded.pop(run_id, None)
        self.states.pop(run_id, None)
        self._training.discard(run_id)
        self.owners.pop(run_id, None)
        self.busy.pop(run_id, None)
        try:
            state = self.queue.state_of(run_id)
        except FileBusy as exc:
            self.busy[run_id] = str(exc)  # not broken: read again at the next look
            return
        except GridError as exc:
            self.errors[run_id] = str(exc)
            return
        if state.attempts or state.status != PENDING or state.retries:
            self.recorded[run_id] = state
            self.states[run_id] = state
            if state.status not in FINAL:
                self._training.add(run_id)

    # -- what the views show --------------------------------------------------------------
    def status(self, run_id: str) -> str:
        if run_id in self.errors:
            return UNREADABLE
        if run_id in self.busy:
            return BUSY
        state = self.states.get(run_id)
        return PENDING if state is None else state.status

    def job(self, run_id: str) -> Job:
        """The run's job, read once per sweep (--extend may rewrite it); GridError if broken."""
        if run_id not in self._jobs:
            self._jobs[run_id] = self.queue.job(run_id)
        return self._jobs[run_id]

    def score(self, run_id: str) -> float | None:
        """The run's finite score, computed again only when its metrics changed."""
        metrics = self.metrics.get(run_id, NO_METRICS)
        kept = self._scores.get(run_id)
        if kept is None or kept[0] is not metrics:
            kept = (metrics, score_run(metrics, DEFAULT_LAST).value)
            self._scores[run_id] = kept
        return kept[1]

    def entries(self) -> list[Entry]:
        """Every run as the choice of rows sees it; made again only after a change."""
        if self._entries is None:
            found = []
            for run_id in self.queue.sweep.run_ids:
                state = self.states.get(run_id)
                ended = None if state is None else state.ended
                found.append(Entry(run_id, self.status(run_id), ended, self.score(run_id)))
            self._entries = found
        return self._entries

    def all_final(self) -> bool:
        return all(e.status in FINAL for e in self.entries())

    def decisions(self) -> dict[int, RungDecision]:
        """The rung decisions, read again only when a rung was decided since."""
        numbers = frozenset(self.queue.decided_rungs())
        if self._decisions is None or self._decisions[0] != numbers:
            self._decisions = (numbers, self.queue.rung_decisions())
        return self._decisions[1]

    def summary(self) -> dict[str, Any]:
        """Everything but the runs: counts, progress, rungs, a half-applied extension."""
        run_ids = self.queue.sweep.run_ids
        counts = Counter(self.status(r) for r in run_ids)
        report: dict[str, Any] = {
            "queue": str(self.queue.root),
            "metric": self.metric,
            "progress": self._progress(run_ids),
            "counts": {status: counts.get(status, 0) for status in (*STATUSES, UNREADABLE)}
            | ({BUSY: counts[BUSY]} if counts.get(BUSY) else {}),
            "extension": ("half-applied" if self.queue.paths.extension_manifest.exists() else None),
        }
        if self.queue.sweep.rung_plan is not None:
            report["rungs"] = self._rungs()
        return report

    def _progress(self, run_ids: Sequence[str]) -> dict[str, Any]:
        """Final/total, time since the first start, and an ETA from the final runs' durations."""
        states = [self.states[r] for r in run_ids if r in self.states]
        final = [s for s in states if s.status in FINAL]
        starts = [s.started for s in states if s.started]
        elapsed = time.time() - min(starts) if starts else 0.0
        durations = [s.ended - s.started for s in final if s.ended and s.started]
        running = sum(s.status == RUNNING for s in states)
        remaining = len(run_ids) - len(final)
        eta = None
        if durations and remaining:
            eta = statistics.fmean(durations) * remaining / max(1, running)
        return {"final": len(final), "total": len(run_ids), "elapsed": elapsed, "eta": eta}

    def _rungs(self) -> dict[str, Any]:
        """The rung being played: its step and its runs, as the monitor counts them."""
        rungs = self.queue.sweep.rung_plan
        assert rungs is not None
        decided = self.decisions()
        number = 1
        while number in decided:
            number += 1
        total = len(rungs.steps)
        if number > total:
            return {"current": None, "of": total, "decided": sorted(decided)}
        runs = []
        for run_id in self.queue.sweep.run_ids:
            state = self.states.get(run_id)
            point = self._point(run_id)
            if state is None:
                runs.append(RunAtRung(run_id, point, 0, False))
            else:
                runs.append(RunAtRung(run_id, point, state.rung, state.status in FINAL))
        taking_part = entered(number, decided, runs)
        statuses = [self.status(r) for r in taking_part]
        paused = statuses.count(PAUSED)
        final = sum(s in FINAL for s in statuses)
        by_hand = sum(
            1
            for r in self.queue.sweep.run_ids
            if r in self.states
            and self.states[r].status not in FINAL
            and self.states[r].rung >= number
            and self.states[r].retries
        )
        return {
            "current": number,
            "of": total,
            "step": rungs.steps[number - 1],
            "runs": len(taking_part),
            "paused": paused,
            "final": final,
            "training": len(taking_part) - paused - final,
            "promoted_by_hand": by_hand,
            "decided": sorted(decided),
        }

    def _point(self, run_id: str) -> int:
        try:
            return self.job(run_id).point
        except GridError:
            return -1

    def row(self, run_id: str) -> dict[str, Any]:
        """One run as `--json` prints it."""
        row: dict[str, Any] = {"run_id": run_id}
        state = self.states.get(run_id, JobState(run_id))
        if run_id in self.errors or run_id in self.busy:
            error = self.errors.get(run_id) or self.busy[run_id]
            row.update(status=self.status(run_id), error=error, values={}, point=None, seed=None)
        else:
            row.update(vars(state))  # flat: asdict's deep copy costs more than the row
            try:
                job = self.job(run_id)
                row.update(values=job.values, point=job.point, seed=self._seed(job))
            except GridError as exc:
                row.update(status=UNREADABLE, error=str(exc), values={}, point=None, seed=None)
        owner = self.owners.get(run_id)
        if owner is not None:
            row["lease"] = {
                "owner": owner.by,
                "renewed": owner.renewed,
                "seconds": owner.lease,
                "expired": owner.liveness == Liveness.EXPIRED,
            }
        config = self.queue.paths.config_file(run_id)
        row["config"] = str(config) if config.exists() else None
        row["log"] = str(self.queue.paths.log_file(run_id))
        metrics = self.metrics.get(run_id, NO_METRICS)
        step, value, reason = latest(metrics)
        score = score_run(metrics, DEFAULT_LAST)
        row["step"] = step
        row["metric"] = value
        row["score"] = score.value
        why = score.diverged or reason
        row["metric_reason"] = f"diverged: {why}" if why else None
        row["metrics"] = {}
        for behavior in self.queue.sweep.behavior_folders:
            kept = metrics.series.get(behavior)
            point = None if kept is None else kept.latest
            row["metrics"][behavior] = None if point is None else _finite(point[1])
        return row

    def _seed(self, job: Job) -> int | None:
        return run_seed(job, None if job.seed is not None else self.queue.template)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def collect(queue: Queue, metric: str = DEFAULT_METRIC) -> dict[str, Any]:
    """The sweep's runs in run order, with counts per status and their latest metric."""
    tracker = Tracker(queue, metric)
    tracker.look()
    report = tracker.summary()
    report["runs"] = [tracker.row(run_id) for run_id in queue.sweep.run_ids]
    return report


# -- choosing the rows ---------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """What choosing a run's row needs to know of it."""

    run_id: str
    status: str
    ended: float | None
    score: float | None  # a finite score, else None


@dataclass(frozen=True)
class Section:
    title: str
    run_ids: list[str]
    total: int  # the runs of the section, shown or not


@dataclass(frozen=True)
class Selection:
    """Which rows to show, under which titles, and how many runs of each status stay hidden."""

    sections: list[Section]
    hidden: dict[str, int]


def allot(sizes: Sequence[int], budget: int) -> list[int]:
    """Rows for each group: an equal share of `budget`, what a group does not fill going to
    the others; a remainder goes to the first groups."""
    given = [0] * len(sizes)
    left = budget
    while left > 0:
        wanting = [i for i, size in enumerate(sizes) if given[i] < size]
        if not wanting:
            break
        share = max(1, left // len(wanting))
        for i in wanting:
            take = min(share, sizes[i] - given[i], left)
            given[i] += take
            left -= take
    return given


def _by_end(entries: Sequence[Entry]) -> list[Entry]:
    return sorted(entries, key=lambda e: -(e.ended or 0.0))


def _best(entries: Sequence[Entry]) -> list[Entry]:
    return sorted((e for e in entries if e.score is not None), key=lambda e: -(e.score or 0.0))


def _counted(title: str, shown: int, total: int) -> str:
    return f"{title}: {total:,}" if shown == total else f"{title}: {shown:,} of {total:,}"


def select(
    entries: Sequence[Entry],
    rows: int,
    statuses: Sequence[str] = (),
    top: int | None = None,
    every: bool = False,
) -> Selection:
    """The rows of the view, in at most `rows` lines of runs and titles (unless `every`).

    `statuses` keeps the runs of these statuses, in run order; `top` shows the K best
    scored runs. With neither, a sweep that fits is shown whole in run order; else the
    runs training, the failed and unreadable ones, the best finished runs by score and the
    latest ends share the rows, and the next pending runs fill what is left.
    """
    chosen = [e for e in entries if not statuses or e.status in statuses]
    if top is not None:
        best = _best(chosen)[:top]
        sections = [Section(f"best {top} by score", [e.run_id for e in best], len(best))]
    elif every or statuses or len(chosen) <= rows:
        shown = chosen if every or len(chosen) <= rows else chosen[: max(1, rows - 1)]
        title = f"status {','.join(statuses)}" if statuses else ""
        sections = [Section(title, [e.run_id for e in shown], len(chosen))]
    else:
        sections = _groups(chosen, rows)
    shown_ids = {r for s in sections for r in s.run_ids}
    hidden = Counter(e.status for e in entries if e.run_id not in shown_ids)
    return Selection(sections, {s: hidden[s] for s in (*STATUSES, UNREADABLE) if hidden[s]})


def _groups(entries: Sequence[Entry], rows: int) -> list[Section]:
    """Runs training, failed and unreadable ones, the best finished runs and the latest ends
    share the rows (a title each); the next pending runs take what is left."""
    training = [e for e in entries if e.status in TRAINING]
    problems = _by_end([e for e in entries if e.status in PROBLEMS])
    finished = [e for e in entries if e.status in FINAL and e.status != FAILED]
    groups = [
        ("training", training),
        (str(FAILED), problems),
        ("best", _best(finished)),
        ("latest", _by_end(finished)),
    ]
    present = [(title, found) for title, found in groups if found]
    pending = [e for e in entries if e.status == PENDING]
    titles = len(present) + bool(pending)
    sizes = allot([len(found) for _, found in present], max(len(present), rows - titles))
    sections = []
    shown: set[str] = set()
    for (title, found), size in zip(present, sizes, strict=True):
        picked = [e.run_id for e in found if e.run_id not in shown][:size]
        shown.update(picked)
        if picked:
            sections.append(Section(_counted(title, len(picked), len(found)), picked, len(found)))
    room = rows - titles - len(shown)
    if pending and room > 0:
        picked = [e.run_id for e in pending[:room]]
        sections.append(Section(_counted("next", len(picked), len(pending)), picked, len(pending)))
    return sections


# -- drawing ---------------------------------------------------------------------------------
def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _clock(stamp: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(stamp)) if stamp else ""


def _rung_line(rungs: dict[str, Any]) -> str:
    if rungs["current"] is None:
        return f"rungs: all {rungs['of']} decided; the promoted runs train to max_steps"
    by_hand = rungs.get("promoted_by_hand", 0)
    extra = f", {by_hand} promoted past it by hand" if by_hand else ""
    return (
        f"rung {rungs['current']} of {rungs['of']} (step {rungs['step']}): "
        f"{rungs['paused'] + rungs['final']}/{rungs['runs']} runs there ({rungs['paused']} "
        f"paused, {rungs['final']} final{extra}), {rungs['training']} still to reach it"
    )


EXTENSION_LINE = (
    "an extension of the sweep is committed but not applied yet (extending/manifest.json): "
    "the next grid-worker, grid-retry or grid-plan --extend applies it"
)


def header(summary: dict[str, Any]) -> Text:
    counts = ", ".join(f"{n:,} {status}" for status, n in summary["counts"].items() if n)
    progress = summary["progress"]
    text = Text.assemble(
        (summary["queue"], "bold"),
        f": {progress['final']:,}/{progress['total']:,} final ({counts}); elapsed "
        f"{_duration(progress['elapsed'])}, ETA {_duration(progress['eta'])}",
    )
    if "rungs" in summary:
        text.append("\n" + _rung_line(summary["rungs"]))
    if summary.get("extension"):
        text.append("\n" + EXTENSION_LINE, style="yellow")
    return text


def _value_columns(jobs: Sequence[Job]) -> list[tuple[str, str, str]]:
    """(owner, key, header) for every swept key; the owner is shown only when several exist."""
    keys = list(
        dict.fromkeys(
            (owner, key) for job in jobs for owner, named in job.values.items() for key in named
        )
    )
    owners = {owner for owner, _ in keys}
    return [(o, k, f"{o}.{k}" if len(owners) > 1 else k) for o, k in keys]


def _lease_note(lease: dict[str, Any] | None) -> str:
    """For a running run: when its owner last renewed its claim, or that the lease lapsed."""
    if not lease or lease.get("renewed") is None:
        return ""
    ago = _duration(max(0.0, time.time() - lease["renewed"]))
    if lease["expired"]:
        return f"lease of {lease['owner']} expired: last renewed {ago} ago"
    return f"lease renewed {ago} ago"


def _note(row: dict[str, Any]) -> str:
    note = row.get("stop_reason") or row.get("error") or _lease_note(row.get("lease"))
    if row.get("status") == FAILED and row.get("exit_code") is not None:
        note = f"exit code {row['exit_code']}"
    if row.get("retries"):
        times = "once" if row["retries"] == 1 else f"{row['retries']} times"
        history = f"retried {times}, last {row.get('previous')}"
        note = f"{note}; {history}" if note else history
    return str(note)


def _rung_cell(row: dict[str, Any], total: int) -> str:
    """The rung a run trains towards or is paused at (`1/2`); `past` after the last one."""
    passed = row.get("rung")
    if not isinstance(passed, int):
        return ""
    return f"{passed + 1}/{total}" if passed < total else "past"


def _cells(
    row: dict[str, Any], job: Job | None, columns: list[tuple[str, str, str]], rungs: int | None
) -> list[str]:
    values = job.values if job is not None else {}
    metric = "" if row["metric"] is None else f"{row['metric']:.4g}"
    score = "" if row["score"] is None else f"{row['score']:.4g}"
    if row["metric_reason"]:
        metric, score = "diverged", row["metric_reason"].removeprefix("diverged: ")
    return [
        row["run_id"],
        row["status"],
        str(row.get("attempts", "")),
        " ".join(filter(None, (row.get("worker"), row.get("slurm") and f"({row['slurm']})"))),
        str(row.get("port") or ""),
        _clock(row.get("started")),
        _clock(row.get("ended")),
        "" if row.get("step") is None else str(row["step"]),
        *([_rung_cell(row, rungs)] if rungs is not None else []),
        metric,
        score,
        *(
            format_value(values[owner][key]) if key in values.get(owner, {}) else ""
            for owner, key, _ in columns
        ),
        _note(row),
    ]


@dataclass(frozen=True)
class ViewOptions:
    """--status, --top and --all."""

    statuses: Sequence[str] = ()
    top: int | None = None
    every: bool = False


def render(tracker: Tracker, height: int, options: ViewOptions) -> Group:
    """The header, the chosen rows (each cell printed literally) and what is hidden.

    In the grouped view a first column names each group in its first row, and a rule
    separates the groups; every row takes one line.
    """
    summary = tracker.summary()
    head = header(summary)
    fixed = len(head.plain.splitlines()) + 4  # header, column titles and rule, hidden line, prompt
    every = options.every
    rows = max(MIN_ROWS, height - fixed)
    selection = select(tracker.entries(), rows, options.statuses, options.top, every)
    ids = [r for s in selection.sections for r in s.run_ids]
    jobs: dict[str, Job | None] = {}
    for run_id in ids:
        try:
            jobs[run_id] = tracker.job(run_id)
        except GridError:
            jobs[run_id] = None
    columns = _value_columns([j for j in jobs.values() if j is not None])
    rungs = summary["rungs"]["of"] if "rungs" in summary else None
    grouped = len(selection.sections) > 1
    table = Table(show_edge=False, pad_edge=False)
    if grouped:
        table.add_column("", no_wrap=True, style="bold")
    for title in ("run", "status", "att.", "worker", "port", "started", "ended", "step"):
        table.add_column(Text(title), no_wrap=True)
    if rungs is not None:
        table.add_column("rung", no_wrap=True)
    for title in (tracker.metric.split("/")[-1], "score"):
        table.add_column(Text(title), no_wrap=True, justify="right")
    for _, _, name in columns:
        table.add_column(Text(name), no_wrap=True)
    table.add_column(
        "note", no_wrap=not every, overflow="fold" if every else "ellipsis", min_width=20
    )
    for number, section in enumerate(selection.sections):
        if number:
            table.add_section()
        for place, run_id in enumerate(section.run_ids):
            cells = _cells(tracker.row(run_id), jobs[run_id], columns, rungs)
            label = [section.title if place == 0 else ""] if grouped else []
            table.add_row(*(Text(cell) for cell in [*label, *cells]))
    parts: list[Any] = [head, table]
    if selection.hidden:
        hidden = ", ".join(f"{n:,} {status}" for status, n in selection.hidden.items())
        parts.append(
            Text(
                f"{sum(selection.hidden.values()):,} runs not shown ({hidden}): --all shows "
                "every run, --status S[,S...] the runs of these statuses, --top K the K best",
                style="dim",
            )
        )
    return Group(*parts)


def view_height(console: Console) -> int:
    """The terminal's height; when the output is not a terminal, $LINES or PIPE_HEIGHT."""
    if console.is_terminal:
        return console.size.height
    try:
        return int(os.environ.get("LINES", ""))
    except ValueError:
        return PIPE_HEIGHT


def print_view(queue: Queue, console: Console, metric: str, options: ViewOptions) -> None:
    tracker = Tracker(queue, metric)
    tracker.look()
    console.print(render(tracker, view_height(console), options))


def watch(
    queue: Queue, console: Console, metric: str, options: ViewOptions, interval: float = 2.0
) -> None:
    """Redraw the view in place until every run is final; each look reads what changed."""
    tracker = Tracker(queue, metric, live=True)
    tracker.look()

    def draw() -> Group:
        return render(tracker, view_height(console), options)

    with Live(draw(), console=console, auto_refresh=False) as live:
        drawn = (time.monotonic(), console.size)
        while not tracker.all_final():
            time.sleep(interval)
            changed = tracker.look()
            if changed or console.size != drawn[1] or time.monotonic() - drawn[0] >= CLOCK_S:
                live.update(draw(), refresh=True)
                drawn = (time.monotonic(), console.size)
