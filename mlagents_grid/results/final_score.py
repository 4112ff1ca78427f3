"""A run's score kept when it becomes final, by the worker that ended it.

The worker reads the run's event files once, keeps the metric in `scores/<run>.json`
(`ScoreBook`) and writes the run's HParams session with its status and score. Reports and
grid-status then read no event file of the run, and a 10,000-run report writes no session.
A report asked for another --metric or --last reads the event files for that, as before.
"""

from __future__ import annotations

from ..queue.folder import Queue
from ..queue.job import Job, JobState
from . import hparams
from .metrics import DEFAULT_METRIC
from .scores import DEFAULT_LAST, ScoreBook, score_run


def show_final(
    queue: Queue, book: ScoreBook, job: Job, state: JobState, score: float | None, steps: int
) -> None:
    """The final run's HParams session with its status and score, written once: the book
    remembers it (and `ScoreBook.save` keeps that)."""
    if book.session_written(job.run_id):
        return
    hparams.write_session(queue, job, state.status, score, steps)
    book.mark_session(job.run_id)


def keep_final_score(queue: Queue, job: Job, state: JobState) -> None:
    """Read the final run's metric (the report's default tag and window) and keep it with
    the run, its session shown. A run that made no results folder has nothing to keep, and
    must not get one from here: the folder decides a retry's --resume/--force. Raises
    OSError when the session cannot be written."""
    if not queue.run_results(job.run_id).is_dir():
        return
    book = ScoreBook(queue, DEFAULT_METRIC, DEFAULT_LAST)
    metrics = book.metrics(job.run_id, state)
    show_final(queue, book, job, state, score_run(metrics, book.last).value, metrics.steps)
    book.save()
