"""Thin argparse entry points: parse, call the module that does the work, map errors to codes."""

from __future__ import annotations

import argparse
import difflib
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import GridError
from .plan.document import load_document, plan_document
from .plan.grid import Plan, config_info_line
from .plan.seeds import with_seeds
from .plan.sweep import (
    DEFAULT_LEASE,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_RUNS,
    MIN_LEASE,
    SweepRequest,
    check_results_clash,
    checked_sweep,
    positive_int,
)
from .queue.folder import DEFAULT_QUEUE_ROOT, Queue, resolve_queue
from .queue.job import Event
from .queue.ownership import Claims, Identity

if TYPE_CHECKING:
    from .queue.extend import Extension


def _run(prog: str, body: Callable[[], int]) -> int:
    """Bad input gives one line and exit code 2; a queue that cannot be written (a full
    disk), one line and exit code 1; never a traceback."""
    try:
        return body()
    except GridError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{prog}: cannot write to the queue: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _polling_argument(parser: argparse.ArgumentParser, who: str) -> None:
    # None, not False, when absent: the watcher then chooses by the filesystem it is on.
    parser.add_argument(
        "--polling",
        action="store_true",
        default=None,
        help=f"{who} poll folders instead of using inotify (chosen by itself on NFS and the like)",
    )


def _claims(queue: Queue) -> Claims:
    """This process's claims on `queue`, with the sweep's lease."""
    return Claims(Identity.this(), queue.sweep.lease)


def _queue_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--queue",
        metavar="DIR",
        help=f"the sweep's queue folder (default: $GRID_QUEUE, else the only sweep under "
        f"./{DEFAULT_QUEUE_ROOT})",
    )


# -- grid-plan --------------------------------------------------------------------------
def _plan_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grid-plan",
        allow_abbrev=False,
        description="Expand every opt_values list of an ML-Agents trainer config into one "
        "queued run per combination. Arguments it does not know are passed to every "
        "mlagents-learn run.",
        epilog="example: grid-plan config/3DBall.yaml --env=Builds/3DBall --no-graphics",
    )
    parser.add_argument("config", help="trainer config YAML with opt_values / opt_stop")
    parser.add_argument(
        "--queue", metavar="DIR", help=f"queue folder (default: ./{DEFAULT_QUEUE_ROOT}/PREFIX)"
    )
    parser.add_argument("--run-id", metavar="PREFIX", help="run-id prefix (default: config stem)")
    parser.add_argument(
        "--results-dir", metavar="DIR", help="mlagents-learn results folder (default: results)"
    )
    parser.add_argument("--base-port", type=int, metavar="N", help="first port (default: 5005)")
    parser.add_argument(
        "--max-runs",
        type=int,
        metavar="N",
        default=DEFAULT_MAX_RUNS,
        help=f"refuse grids larger than N runs (default: {DEFAULT_MAX_RUNS:,})",
    )
    parser.add_argument(
        "--seeds",
        metavar="K",
        help="train every grid point K times with env_settings.seed = the config's seed "
        "(or 0) plus 0..K-1 (default: 1, the config's own seed; with --extend: the sweep's, "
        "and a larger K adds seeds to every grid point)",
    )
    parser.add_argument(
        "--lease",
        type=float,
        metavar="SECONDS",
        help=f"how long a worker's claim on a run lasts without renewal: a crashed host's runs "
        f"are taken over this long after its last renewal (default: {DEFAULT_LEASE:g})",
    )
    parser.add_argument(
        "--max-attempts",
        type=int,
        metavar="N",
        help=f"failures before a run is failed (default: {DEFAULT_MAX_ATTEMPTS})",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the runs, write nothing")
    parser.add_argument(
        "--force",
        action="store_true",
        help="overwrite existing results folders of these run ids on their first attempt",
    )
    parser.add_argument(
        "--extend",
        action="store_true",
        help="plan a changed config into the existing sweep: new values, new swept keys and "
        "opt_stop may change; existing runs keep their ids",
    )
    return parser


def plan(argv: Sequence[str] | None = None) -> int:
    args, trainer_args = _plan_parser().parse_known_args(argv)
    if args.extend:
        return _extend(args, trainer_args)
    config_path = Path(args.config)
    document = load_document(config_path)
    prefix = args.run_id if args.run_id is not None else config_path.stem
    seeds = positive_int(1 if args.seeds is None else args.seeds, "--seeds")
    the_plan = with_seeds(plan_document(document, str(config_path), prefix), seeds)
    request = SweepRequest(
        config=config_path,
        trainer_args=trainer_args,
        results_dir=args.results_dir,
        base_port=args.base_port,
        force=args.force,
        max_runs=args.max_runs,
        lease=_lease(args.lease),
        max_attempts=positive_int(
            DEFAULT_MAX_ATTEMPTS if args.max_attempts is None else args.max_attempts,
            "--max-attempts",
        ),
    )
    sweep, notes = checked_sweep(document, the_plan, request, os.getcwd())
    _print_notes(notes)
    if args.dry_run:
        for run in the_plan.runs():
            print(config_info_line(run))
        print(f"{the_plan.count} runs ({the_plan.describe_dimensions()}); dry run: nothing written")
        return 0
    check_results_clash(sweep)
    queue = Queue(Path(args.queue) if args.queue else DEFAULT_QUEUE_ROOT / prefix)
    queue.create(the_plan, sweep)
    queue.record(Event.PLANNED, runs=the_plan.count, source=sweep.source)
    _print_plan_summary(queue, the_plan)
    return 0


def _lease(given: float | None) -> float:
    if given is None:
        return DEFAULT_LEASE
    if not MIN_LEASE <= given < float("inf"):
        raise GridError(
            f"--lease {given:g}: give the seconds a claim lasts without renewal, at least "
            f"{MIN_LEASE:g} (default {DEFAULT_LEASE:g}; see README: Running on a cluster)"
        )
    return given


def _extend(args: argparse.Namespace, trainer_args: list[str]) -> int:
    """grid-plan --extend: grow the sweep in --queue (default sweeps/PREFIX) in place."""
    from .queue import extend

    config_path = Path(args.config)
    prefix = args.run_id if args.run_id is not None else config_path.stem
    queue = Queue(Path(args.queue) if args.queue else DEFAULT_QUEUE_ROOT / prefix)
    request = extend.ExtendRequest(
        config=config_path,
        trainer_args=trainer_args,
        run_id=args.run_id,
        results_dir=args.results_dir,
        base_port=args.base_port,
        max_runs=args.max_runs,
        seeds=args.seeds,
        lease=args.lease,
        max_attempts=args.max_attempts,
        force=args.force,
    )
    replanned = extend.replan(queue, request)
    if args.dry_run:
        extension = extend.preview(queue, replanned, print)
        _print_notes(replanned.notes)
        for run in extension.runs:
            print(config_info_line(run))
        _print_extension(queue, extension, dry_run=True)
        return 0
    extension = extend.grow(queue, _claims(queue), replanned, print)
    _print_notes(replanned.notes)
    _print_extension(queue, extension, dry_run=False)
    return 0


def _print_notes(notes: list[str]) -> None:
    for note in notes:
        print(f"grid-plan: {note}", file=sys.stderr)


def _print_extension(queue: Queue, extension: Extension, dry_run: bool) -> None:
    runs = extension.runs
    q = shlex.quote(str(queue.root))
    span = f" ({runs[0].run_id} ... {runs[-1].run_id})" if len(runs) > 1 else ""
    if len(runs) == 1:
        span = f" ({runs[0].run_id})"
    total = len(extension.sweep.run_ids)
    if extension.empty:
        done = "; dry run: nothing written" if dry_run else ""
        print(f"Nothing to add to {q}: the config plans no new run and no change{done}")
        return
    if dry_run:
        print(f"Would add {len(runs)} run{'s' if len(runs) != 1 else ''}{span} to {q}")
    else:
        print(f"Extended {q}: {len(runs)} new run{'s' if len(runs) != 1 else ''}{span}")
    for line in extension.describe():
        print(f"  {line}")
    if extension.rewritten:
        print(f"  job files rewritten: {len(extension.rewritten)}")
    print(f"  runs:     {total} in all, listed in {queue.paths.config_info}")
    if dry_run:
        print("dry run: nothing written")
    elif runs:
        print(f"Workers started with --wait pick them up; else: grid-worker --queue {q}")


def _print_plan_summary(queue: Queue, the_plan: Plan) -> None:
    sweep = queue.sweep
    q = shlex.quote(str(queue.root))
    count = the_plan.count
    print(f"Planned {count} run{'s' if count != 1 else ''} of {sweep.prefix} in {q}")
    print(f"  swept:    {the_plan.describe_dimensions()}")
    conditions = the_plan.conditions
    for condition in conditions:
        print(f"  opt_stop: {condition.describe()}")
    rungs = sweep.rung_plan
    if rungs is not None:
        print(f"  rungs:    {rungs.describe()}")
    print(f"  results:  {sweep.results_dir}  (ports from {sweep.base_port})")
    print(f"  runs:     {queue.paths.config_info}")
    print("Next:")
    print(f"  grid-worker --queue {q}    # start one per run to train at once")
    if conditions or rungs is not None:
        logdir = shlex.quote(sweep.results_dir)
        what = "applies opt_stop and the rungs" if rungs is not None else "applies opt_stop"
        print(f"  grid-monitor --queue {q} --logdir {logdir}    # {what}")
    print(f"  grid-status --queue {q}")


def plan_main() -> None:
    sys.exit(_run("grid-plan", plan))


# -- grid-status ------------------------------------------------------------------------
def status_command(argv: Sequence[str] | None = None) -> int:
    from .results.metrics import DEFAULT_METRIC

    parser = argparse.ArgumentParser(
        prog="grid-status",
        description="Show what the sweep's runs are doing: the runs that matter, in a view "
        "that fits the terminal.",
    )
    _queue_argument(parser)
    parser.add_argument(
        "--json", action="store_true", help="print every run as JSON instead of a view"
    )
    parser.add_argument(
        "--watch", action="store_true", help="redraw the view every 2 s until every run is final"
    )
    parser.add_argument(
        "--metric",
        metavar="TAG",
        default=DEFAULT_METRIC,
        help=f"scalar shown per run (default: {DEFAULT_METRIC})",
    )
    parser.add_argument("--all", action="store_true", help="show every run, in run order")
    parser.add_argument(
        "--status",
        metavar="S[,S...]",
        help="only runs of these statuses (pending, running, paused, interrupted, done, "
        "stopped, failed, unreadable)",
    )
    parser.add_argument("--top", metavar="K", help="the K runs with the best scores")
    args = parser.parse_args(argv)
    from rich.console import Console

    from .output import strict_json
    from .results import status

    statuses = _statuses(args.status)
    top = None if args.top is None else positive_int(args.top, "--top")
    queue = resolve_queue(args.queue)
    if args.json:
        report = status.collect(queue, args.metric)
        if statuses or top is not None:
            entries = [
                status.Entry(r["run_id"], r["status"], r["ended"], r["score"])
                for r in report["runs"]
            ]
            chosen = status.select(entries, 0, statuses, top, every=True)
            order = [run_id for section in chosen.sections for run_id in section.run_ids]
            by_id = {r["run_id"]: r for r in report["runs"]}
            report["runs"] = [by_id[run_id] for run_id in order]
        print(strict_json(report))
        return 0
    # A pipe or a file gets wide lines rather than 80 folded columns.
    console = Console(width=None if sys.stdout.isatty() else 200)
    options = status.ViewOptions(statuses, top, args.all)
    if args.watch:
        status.watch(queue, console, args.metric, options)
    else:
        status.print_view(queue, console, args.metric, options)
    return 0


def _statuses(given: str | None) -> list[str]:
    from .queue.job import STATUSES
    from .results.status import UNREADABLE

    if given is None:
        return []
    known = (*STATUSES, UNREADABLE)
    wanted = [s.strip() for s in given.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in known]
    if unknown or not wanted:
        raise GridError(
            f"--status {given!r}: {'unknown status ' + repr(unknown[0]) if unknown else 'empty'}"
            f"; give one or more of {', '.join(known)}, separated by commas"
        )
    return wanted


def status_main() -> None:
    sys.exit(_run("grid-status", status_command))


def _check_known(queue: Queue, run_ids: list[str]) -> None:
    """Refuse the first run id the sweep does not have, naming the closest ones."""
    known = queue.sweep.run_ids
    unknown = [r for r in run_ids if r not in set(known)]
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=3, cutoff=0.5)
        hint = f"closest: {', '.join(close)}" if close else f"run ids are {known[0]} ..."
        raise GridError(f"{queue.root}: no run {unknown[0]!r} in this sweep ({hint})")


# -- grid-stop --------------------------------------------------------------------------
def stop_command(argv: Sequence[str] | None = None) -> int:
    # Imported here, as in the other commands: grid-status need not load the worker's modules.
    from .queue.claims import Claimer

    parser = argparse.ArgumentParser(
        prog="grid-stop", description="Stop runs by hand: drops their kill files."
    )
    _queue_argument(parser)
    parser.add_argument("run_ids", nargs="*", metavar="RUN_ID")
    parser.add_argument("--reason", default="stopped by hand", help="recorded stop reason")
    parser.add_argument("--all", action="store_true", help="stop every run not yet final")
    args = parser.parse_args(argv)
    queue = resolve_queue(args.queue)
    known = queue.sweep.run_ids
    if args.all:
        targets = [r for r in known if r not in set(queue.final_ids())]
    else:
        if not args.run_ids:
            raise GridError("give the run ids to stop, or --all")
        _check_known(queue, args.run_ids)
        targets = args.run_ids
    claims = _claims(queue)
    by = f"grid-stop {claims.identity.by}"
    claimer = Claimer(queue, claims)
    for run_id in targets:
        if queue.request_stop(run_id, args.reason, by):
            print(f"{run_id}: stop requested ({args.reason})")
            claimer.carry_out_waiting(run_id)
        else:
            print(f"{run_id}: a stop was already requested")
    return 0


def stop_main() -> None:
    sys.exit(_run("grid-stop", stop_command))


# -- grid-show --------------------------------------------------------------------------
def show_command(argv: Sequence[str] | None = None) -> int:
    from .run.worker import resume_mode, trainer_argv, trainer_command

    parser = argparse.ArgumentParser(
        prog="grid-show",
        description="Print a run's trainer config as mlagents-learn will get it, or the "
        "command a worker would run for it now.",
    )
    _queue_argument(parser)
    parser.add_argument("run_id", metavar="RUN_ID")
    parser.add_argument(
        "--command",
        action="store_true",
        help="print the command line instead (--resume/--force as a worker would decide now)",
    )
    parser.add_argument("--trainer", metavar="CMD", help="as for grid-worker")
    args = parser.parse_args(argv)
    queue = resolve_queue(args.queue)
    _check_known(queue, [args.run_id])
    job = queue.job(args.run_id)
    if not args.command:
        print(queue.render_config(job), end="")
        return 0
    try:
        trainer = trainer_command(args.trainer)
    except GridError:
        trainer = shlex.split(args.trainer or os.environ.get("GRID_TRAINER") or "mlagents-learn")
    mode = resume_mode(queue, job.run_id)
    port = queue.port_for(0)
    print(shlex.join(trainer_argv(trainer, queue, job.run_id, port, mode)))
    return 0


def show_main() -> None:
    sys.exit(_run("grid-show", show_command))


# -- grid-retry -------------------------------------------------------------------------
def retry_command(argv: Sequence[str] | None = None) -> int:
    from .queue import retry
    from .queue.job import FAILED, STOPPED

    parser = argparse.ArgumentParser(
        prog="grid-retry",
        description="Make failed or stopped runs claimable again: they resume from their "
        "checkpoints. A run stopped by a rung decision, or paused at a rung, is promoted past "
        "that rung by hand. Workers started with --wait pick them up.",
    )
    _queue_argument(parser)
    parser.add_argument("run_ids", nargs="*", metavar="RUN_ID")
    parser.add_argument("--failed", action="store_true", help="retry every failed run")
    parser.add_argument("--stopped", action="store_true", help="retry every stopped run")
    parser.add_argument("--reason", default="retried by hand", help="recorded with each retry")
    args = parser.parse_args(argv)
    if not args.run_ids and not (args.failed or args.stopped):
        raise GridError(
            "give the run ids to retry, or --failed / --stopped to retry every failed / stopped run"
        )
    queue = resolve_queue(args.queue)
    _check_known(queue, args.run_ids)
    wanted = {FAILED} if args.failed else set()
    wanted |= {STOPPED} if args.stopped else set()
    targets = retry.choose(queue, args.run_ids, wanted)
    if not targets:
        print(f"no {' or '.join(sorted(wanted))} run to retry in {queue.root}")
        return 0
    if retry.all_retryable(queue, targets):
        from .results.outlook import retry_notes

        lines, warnings = retry_notes(queue, targets)
        for line in warnings:
            print(f"grid-retry: {line}", file=sys.stderr)
        for line in lines:
            print(line)
    for state in retry.retry_runs(queue, _claims(queue), targets, args.reason):
        print(f"{state.run_id}: retried (was {state.previous}; retry {state.retries})")
    q = shlex.quote(str(queue.root))
    print(f"Workers started with --wait pick them up; else: grid-worker --queue {q}")
    return 0


def retry_main() -> None:
    sys.exit(_run("grid-retry", retry_command))


# -- grid-worker ------------------------------------------------------------------------
def worker_command(argv: Sequence[str] | None = None) -> int:
    from .run.worker import Worker, WorkerOptions, trainer_command, uses_runner

    parser = argparse.ArgumentParser(
        prog="grid-worker",
        description="Claim runs from the queue one at a time and train them. Start one per "
        "run to train at once, on any host that sees the queue folder.",
    )
    _queue_argument(parser)
    parser.add_argument(
        "--trainer",
        metavar="CMD",
        help="command to run instead of mlagents-learn (default: $GRID_TRAINER or mlagents-learn)",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="stay until every run is final, taking over runs that dead workers leave behind",
    )
    parser.add_argument(
        "--max-attempts",
        type=int,
        metavar="N",
        help="set when planning (grid-plan --max-attempts); accepted here when it agrees",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="time a stopped trainer gets to save its model before SIGTERM (default: 60)",
    )
    parser.add_argument(
        "--gpus", metavar="LIST", help="GPU indices, e.g. 0,1: each port slot gets one in turn"
    )
    parser.add_argument(
        "--console",
        action="store_true",
        help="echo trainer output here too (Windows: a console window per trainer, titled "
        "with its run id)",
    )
    _polling_argument(parser, "the worker should")
    args = parser.parse_args(argv)
    if args.grace < 0:
        raise GridError(f"--grace: must be 0 or more seconds, got {args.grace:g}")
    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else []
    if args.gpus is not None and not all(g.isdigit() for g in gpus):
        raise GridError(f"--gpus {args.gpus!r}: give GPU indices separated by commas, e.g. 0,1")
    queue = resolve_queue(args.queue)
    sweep = queue.sweep  # fails on a missing sweep before anything starts
    if args.max_attempts is not None and args.max_attempts != sweep.max_attempts:
        # Every worker must decide a run's failures alike: the sweep holds the one value.
        raise GridError(
            f"--max-attempts {args.max_attempts}: this sweep allows {sweep.max_attempts} "
            "attempts, for every worker alike; drop the flag (grid-plan --max-attempts N "
            "sets it when planning)"
        )
    options = WorkerOptions(
        trainer=trainer_command(args.trainer),
        wait=args.wait,
        grace=args.grace,
        gpus=gpus,
        console=args.console,
        runner=uses_runner(args.trainer),
        polling=args.polling,
    )
    return Worker(queue, options).run()


def worker_main() -> None:
    sys.exit(_run("grid-worker", worker_command))


# -- grid-monitor -----------------------------------------------------------------------
def monitor_command(argv: Sequence[str] | None = None) -> int:
    from .results.monitor import DEFAULT_INTERVAL, DEFAULT_TENSORBOARD, Monitor

    parser = argparse.ArgumentParser(
        prog="grid-monitor",
        description="Stop running runs that meet their opt_stop conditions, reading TensorBoard's "
        "HTTP API or (with --logdir) the event files themselves.",
    )
    _queue_argument(parser)
    parser.add_argument(
        "--tensorboard",
        metavar="URL",
        default=DEFAULT_TENSORBOARD,
        help=f"TensorBoard to poll (default: {DEFAULT_TENSORBOARD})",
    )
    parser.add_argument(
        "--logdir",
        metavar="DIR",
        help="read event files under DIR (e.g. the sweep's results folder) instead of TensorBoard",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL,
        metavar="SECONDS",
        help=f"seconds between polls (default: {DEFAULT_INTERVAL:g})",
    )
    parser.add_argument(
        "--forever", action="store_true", help="keep running after every run is final"
    )
    _polling_argument(parser, "the monitor should")
    args = parser.parse_args(argv)
    if not args.interval > 0:
        raise GridError(f"--interval: must be more than 0 seconds, got {args.interval:g}")
    if not args.tensorboard.startswith(("http://", "https://")):
        raise GridError(
            f"--tensorboard {args.tensorboard!r}: give a URL like {DEFAULT_TENSORBOARD}"
        )
    queue = resolve_queue(args.queue)
    queue.sweep  # noqa: B018 - fail on a missing sweep before watching anything
    logdir = Path(args.logdir) if args.logdir else None
    if logdir is not None and logdir.exists() and not logdir.is_dir():
        raise GridError(f"--logdir {args.logdir}: not a folder; give the sweep's results folder")
    monitor = Monitor(
        queue,
        tensorboard=args.tensorboard,
        logdir=logdir,
        interval=args.interval,
        forever=args.forever,
        polling=args.polling,
    )
    return monitor.run()


def monitor_main() -> None:
    sys.exit(_run("grid-monitor", monitor_command))


# -- grid-report ------------------------------------------------------------------------
def report_command(argv: Sequence[str] | None = None) -> int:
    from .output import strict_json
    from .results.metrics import DEFAULT_METRIC
    from .results.report.files import write_hparams, write_report
    from .results.report.points import collect
    from .results.report.tables import point_records, summary_lines
    from .results.scores import DEFAULT_LAST, TAIL, ScoreBook

    parser = argparse.ArgumentParser(
        prog="grid-report",
        description="Rank the grid points by score over their seeds, show which values matter, "
        "and plot the curves.",
    )
    _queue_argument(parser)
    parser.add_argument(
        "--metric", metavar="TAG", default=DEFAULT_METRIC, help=f"default: {DEFAULT_METRIC}"
    )
    parser.add_argument(
        "--last",
        type=int,
        default=DEFAULT_LAST,
        metavar="K",
        help=f"a run's score is the mean of its last K points (default: {DEFAULT_LAST}; above "
        f"{TAIL}, final runs' event files are read again)",
    )
    parser.add_argument("--out", metavar="DIR", help="output folder (default: <queue>/report)")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the ranked grid points as JSON on stdout, nothing else (files still written)",
    )
    args = parser.parse_args(argv)
    if args.last < 1:
        raise GridError(f"--last: must be at least 1, got {args.last}")
    queue = resolve_queue(args.queue)
    book = ScoreBook(queue, args.metric, args.last)
    results = collect(queue, book)  # bad input fails here, before anything is written
    out = Path(args.out) if args.out else queue.root / "report"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GridError(f"--out {out}: cannot create it ({exc.strerror})") from None
    paths = write_report(queue, results, out, args.metric, args.last)
    try:
        write_hparams(queue, paths.results, book)
    except OSError as exc:
        print(
            f"grid-report: warning: HParams dashboard not updated: {exc}; check that the "
            "results folder is writable",
            file=sys.stderr,
        )
    book.save()
    if args.json:
        print(strict_json(point_records(paths.points)))
        return 0
    for line in summary_lines(paths.points, args.metric, args.last):
        print(line)
    print(f"\n  {paths.markdown}\n  {paths.csv}\n  {paths.runs}\n  {paths.plot}")
    return 0


def report_main() -> None:
    sys.exit(_run("grid-report", report_command))


# -- grid-submit ------------------------------------------------------------------------
def submit_command(argv: Sequence[str] | None = None) -> int:
    from .run import slurm

    args_list = list(sys.argv[1:] if argv is None else argv)
    split = args_list.index("--") if "--" in args_list else len(args_list)
    own, sbatch_args = args_list[:split], args_list[split + 1 :]
    parser = argparse.ArgumentParser(
        prog="grid-submit",
        description="Start workers as a SLURM array job: N tasks, each a grid-worker --wait. "
        "Arguments after -- go to sbatch.",
    )
    _queue_argument(parser)
    parser.add_argument("--slurm", type=int, required=True, metavar="N", help="array tasks")
    parser.add_argument("--print", action="store_true", help="print the script, submit nothing")
    parser.add_argument(
        "--gpus-per-worker", type=int, default=0, metavar="G", help="GPUs for each task"
    )
    parser.add_argument("--trainer", metavar="CMD", help="passed to each grid-worker")
    _polling_argument(parser, "every worker should")
    args = parser.parse_args(own)
    if args.slurm < 1:
        raise GridError(f"--slurm: give the number of workers, at least 1 (got {args.slurm})")
    if args.gpus_per_worker < 0:
        raise GridError(f"--gpus-per-worker: must be 0 or more (got {args.gpus_per_worker})")
    queue = resolve_queue(args.queue)
    script = slurm.batch_script(queue, args.slurm, args.gpus_per_worker, args.trainer, args.polling)
    if args.print:
        print(script, end="")
        return 0
    job_id = slurm.submit(queue, script, args.slurm, sbatch_args)
    q = shlex.quote(str(queue.root))
    print(f"Submitted SLURM job {job_id}: {args.slurm} workers on {q}")
    print(f"  squeue -j {job_id}              # the tasks")
    print(f"  grid-status --queue {q} --watch  # the runs")
    output = str(queue.paths.slurm_output()).replace("%A_%a", f"{job_id}_<task>")
    print(f"  {output}  # each worker's log")
    return 0


def submit_main() -> None:
    sys.exit(_run("grid-submit", submit_command))
