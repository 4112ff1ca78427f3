"""Thin argparse entry points: parse, call the module that does the work, map errors to codes."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import planner
from .claims import Claimer
from .errors import GridError
from .planner import (
    DEFAULT_MAX_RUNS,
    Plan,
    SweepRequest,
    check_results_clash,
    config_info_line,
    load_document,
    plan_document,
    positive_int,
    settle_sweep,
)
from .queue import DEFAULT_QUEUE_ROOT, Queue, resolve_queue, worker_identity
from .seeds import with_seeds
from .worker import (
    DEFAULT_MAX_ATTEMPTS,
    Worker,
    WorkerOptions,
    resume_mode,
    trainer_argv,
    trainer_command,
    uses_runner,
)

if TYPE_CHECKING:
    from .extend import Extension


def _run(prog: str, body: Callable[[], int]) -> int:
    """Bad input gives one line and exit code 2, never a traceback."""
    try:
        return body()
    except GridError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
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
    )
    sweep, notes = settle_sweep(document, the_plan, request, os.getcwd())
    for note in notes:
        print(f"grid-plan: {note}", file=sys.stderr)
    if args.dry_run:
        for run in the_plan.runs():
            print(config_info_line(run))
        print(f"{the_plan.count} runs ({the_plan.describe_dimensions()}); dry run: nothing written")
        return 0
    check_results_clash(sweep, _listdir(Path(sweep.results_dir)))
    queue = Queue(Path(args.queue) if args.queue else DEFAULT_QUEUE_ROOT / prefix)
    queue.create(the_plan, sweep)
    queue.record("planned", runs=the_plan.count, source=sweep.source)
    _print_plan_summary(queue, the_plan)
    return 0


def _extend(args: argparse.Namespace, trainer_args: list[str]) -> int:
    """grid-plan --extend: grow the sweep in --queue (default sweeps/PREFIX) in place."""
    from . import extend

    config_path = Path(args.config)
    document = load_document(config_path)
    queue = Queue(
        Path(args.queue)
        if args.queue
        else DEFAULT_QUEUE_ROOT / (args.run_id if args.run_id is not None else config_path.stem)
    )
    sweep = queue.sweep
    if args.run_id is not None and args.run_id != sweep.prefix:
        raise GridError(
            f"--run-id {args.run_id}: the sweep's run ids start with {sweep.prefix}; drop "
            "--run-id (--extend keeps the sweep's prefix)"
        )
    if args.force and not sweep.force:
        raise GridError(
            "--force: the sweep was planned without it and --extend cannot change that; drop it"
        )
    seeds = sweep.seeds if args.seeds is None else positive_int(args.seeds, "--seeds")
    if seeds < sweep.seeds:
        raise GridError(
            f"--seeds {seeds}: the sweep trains {sweep.seeds} seeds per grid point and --extend "
            f"never removes runs; give --seeds {sweep.seeds} or more, or leave it out"
        )
    the_plan = with_seeds(plan_document(document, str(config_path), sweep.prefix), seeds)
    request = SweepRequest(
        config=config_path,
        trainer_args=trainer_args or list(sweep.trainer_args),
        results_dir=args.results_dir or sweep.results_dir,
        base_port=args.base_port or sweep.base_port,
        force=sweep.force,
        max_runs=args.max_runs,
    )
    settled, notes = settle_sweep(document, the_plan, request, sweep.cwd)
    for label, old, new in (
        ("--results-dir", sweep.results_dir, settled.results_dir),
        ("--base-port", sweep.base_port, settled.base_port),
        ("--num-envs", sweep.num_envs, settled.num_envs),
    ):
        if old != new:
            raise GridError(
                f"--extend: {label} changed from {old} to {new}; drop it ({planner.EXTEND_RULE})"
            )
    given_args = trainer_args or None
    if args.dry_run:
        extension = extend.prepare(queue, the_plan, given_args, settled.source)
        _print_notes(notes)
        for run in extension.runs:
            print(config_info_line(run))
        _print_extension(queue, extension, dry_run=True)
        return 0
    lock = queue.plan_lock()
    if lock is None:
        raise GridError(
            f"--extend: {queue.paths.plan_lock} is held: another grid-plan --extend or "
            "grid-retry is changing this sweep; try again once it has ended"
        )
    try:
        queue.recover_extension()
        extension = extend.prepare(queue, the_plan, given_args, settled.source)
        check_results_clash(
            dataclasses.replace(extension.sweep, run_ids=[r.run_id for r in extension.runs]),
            _listdir(Path(sweep.results_dir)),
        )
        if not extension.empty:
            extend.publish(queue, extension)
    finally:
        lock.release()
    _print_notes(notes)
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
    if dry_run:
        print(f"Would add {len(runs)} run{'s' if len(runs) != 1 else ''}{span} to {q}")
    elif extension.empty:
        print(f"Nothing to add to {q}: the config plans no new run and no change")
        return
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


def _listdir(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


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
    from .metrics import DEFAULT_METRIC

    parser = argparse.ArgumentParser(prog="grid-status", description="Show every run's state.")
    _queue_argument(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--watch", action="store_true", help="redraw the table every 2 s until every run is final"
    )
    parser.add_argument(
        "--metric",
        metavar="TAG",
        default=DEFAULT_METRIC,
        help=f"scalar shown per run (default: {DEFAULT_METRIC})",
    )
    args = parser.parse_args(argv)
    from rich.console import Console

    from . import status

    queue = resolve_queue(args.queue)
    if args.watch:
        status.watch(queue, Console(), args.metric)
        return 0
    report = status.collect(queue, args.metric)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        # A pipe or a file gets the whole table rather than 80 folded columns.
        status.print_table(report, Console(width=None if sys.stdout.isatty() else 200))
    return 0


def status_main() -> None:
    sys.exit(_run("grid-status", status_command))


# -- grid-stop --------------------------------------------------------------------------
def stop_command(argv: Sequence[str] | None = None) -> int:
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
        unknown = [r for r in args.run_ids if r not in set(known)]
        if unknown:
            raise GridError(
                f"{queue.root}: no run {unknown[0]!r} in this sweep; see grid-status for run ids"
            )
        targets = args.run_ids
    by = f"grid-stop {worker_identity()}"
    claimer = Claimer(queue, by, max_attempts=DEFAULT_MAX_ATTEMPTS)
    for run_id in targets:
        if queue.request_stop(run_id, args.reason, by):
            print(f"{run_id}: stop requested ({args.reason})")
            claimer.settle(run_id)
        else:
            print(f"{run_id}: a stop was already requested")
    return 0


def stop_main() -> None:
    sys.exit(_run("grid-stop", stop_command))


# -- grid-show --------------------------------------------------------------------------
def show_command(argv: Sequence[str] | None = None) -> int:
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
    run_ids = queue.sweep.run_ids
    if args.run_id not in set(run_ids):
        close = difflib.get_close_matches(args.run_id, run_ids, n=3, cutoff=0.5)
        hint = f"closest: {', '.join(close)}" if close else f"run ids are {run_ids[0]} ..."
        raise GridError(f"{queue.root}: no run {args.run_id!r} in this sweep ({hint})")
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
    from .job import FAILED, STOPPED

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
    known = queue.sweep.run_ids
    unknown = [r for r in args.run_ids if r not in set(known)]
    if unknown:
        raise GridError(
            f"{queue.root}: no run {unknown[0]!r} in this sweep; see grid-status for run ids"
        )
    wanted = {FAILED} if args.failed else set()
    wanted |= {STOPPED} if args.stopped else set()
    final = set(queue.final_ids())
    targets = list(dict.fromkeys(args.run_ids))
    for run_id in known:
        if run_id in final and run_id not in targets and queue.recorded_status(run_id) in wanted:
            targets.append(run_id)
    if not targets:
        print(f"no {' or '.join(sorted(wanted))} run to retry in {queue.root}")
        return 0
    for state in queue.retry_runs(targets, args.reason, f"grid-retry {worker_identity()}"):
        print(f"{state.run_id}: retried (was {state.previous}; retry {state.retries})")
    q = shlex.quote(str(queue.root))
    print(f"Workers started with --wait pick them up; else: grid-worker --queue {q}")
    return 0


def retry_main() -> None:
    sys.exit(_run("grid-retry", retry_command))


# -- grid-worker ------------------------------------------------------------------------
def worker_command(argv: Sequence[str] | None = None) -> int:
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
        default=DEFAULT_MAX_ATTEMPTS,
        metavar="N",
        help="failures before a run is failed",
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
    if args.max_attempts < 1:
        raise GridError(f"--max-attempts: must be at least 1, got {args.max_attempts}")
    if args.grace < 0:
        raise GridError(f"--grace: must be 0 or more seconds, got {args.grace:g}")
    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else []
    if args.gpus is not None and not all(g.isdigit() for g in gpus):
        raise GridError(f"--gpus {args.gpus!r}: give GPU indices separated by commas, e.g. 0,1")
    queue = resolve_queue(args.queue)
    queue.sweep  # noqa: B018 - fail on a missing sweep before anything starts
    options = WorkerOptions(
        trainer=trainer_command(args.trainer),
        wait=args.wait,
        max_attempts=args.max_attempts,
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
    from .monitor import DEFAULT_INTERVAL, DEFAULT_TENSORBOARD, Monitor

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
    from . import report
    from .metrics import DEFAULT_METRIC

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
        default=report.DEFAULT_LAST,
        metavar="K",
        help=f"a run's score is the mean of its last K points (default: {report.DEFAULT_LAST})",
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
    out = Path(args.out) if args.out else queue.root / "report"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GridError(f"--out {out}: cannot create it ({exc.strerror})") from None
    paths = report.write_report(queue, out, args.metric, args.last)
    try:
        report.write_hparams(queue, paths.results, args.metric)
    except OSError as exc:
        print(
            f"grid-report: warning: HParams dashboard not updated: {exc}; check that the "
            "results folder is writable",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(report.point_records(paths.points), indent=1))
        return 0
    for line in report.summary_lines(paths.points, args.metric, args.last):
        print(line)
    print(f"\n  {paths.markdown}\n  {paths.csv}\n  {paths.runs}\n  {paths.plot}")
    return 0


def report_main() -> None:
    sys.exit(_run("grid-report", report_command))


# -- grid-submit ------------------------------------------------------------------------
def submit_command(argv: Sequence[str] | None = None) -> int:
    from . import slurm

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
