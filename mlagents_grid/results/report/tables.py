"""The report's tables: leaderboard.csv and runs.csv, report.md, the JSON records of
`grid-report --json`, and the summary grid-report prints."""

from __future__ import annotations

import csv
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from ...plan.grid import format_value
from ...plan.seeds import point_assignments
from ...queue.folder import Queue
from ...queue.job import STATUSES, Job
from ..ranking import CONFIDENCE, IQM_MIN_SEEDS, RESAMPLES, standing
from .points import PointResult, RunResult, conclusion, flat_values, recommended, swept_keys


def best_config_snippet(job: Job) -> str:
    """The winning values placed where they go in a trainer config, ready to paste."""
    tree: dict[Any, Any] = {}
    for path, value in point_assignments(job):
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return yaml.safe_dump(tree, sort_keys=False, allow_unicode=True)


def parameter_table(points: list[PointResult]) -> dict[str, list[tuple[str, float, float, int]]]:
    """For each swept key: (value, mean score, best score, scored points) per value."""
    table: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    order: dict[str, list[str]] = defaultdict(list)
    for point in sorted(points, key=lambda p: p.point):
        for key, value in flat_values(point.job).items():
            text = format_value(value)
            if text not in order[key]:
                order[key].append(text)
            if standing(point.score) == 0 and point.score.mean is not None:
                table[key][text].append(point.score.mean)
    return {
        key: [
            (
                text,
                statistics.fmean(table[key][text]) if table[key][text] else math.nan,
                max(table[key][text]) if table[key][text] else math.nan,
                len(table[key][text]),
            )
            for text in texts
        ]
        for key, texts in order.items()
    }


def number_text(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.4g}"


def _tied_text(tied: bool | None) -> str:
    return "" if tied is None else ("yes" if tied else "no")


def point_records(points: list[PointResult]) -> list[dict[str, Any]]:
    """The ranked points as `grid-report --json` prints them (null where there is no value;
    `reason` says why a point has no mean or ranks below points with a lower one)."""
    return [
        {
            "rank": rank_,
            "point": p.point,
            "name": p.name,
            "values": p.job.values,
            "mean": p.score.mean,
            "ci_low": None if p.score.ci is None else p.score.ci[0],
            "ci_high": None if p.score.ci is None else p.score.ci[1],
            "iqm": p.score.iqm,
            "seeds": len(p.score.scores),
            "diverged": p.score.diverged,
            "reason": p.reason,
            "tied": p.tied,
            "runs": p.status_counts(),
            "run_ids": [r.job.run_id for r in p.runs],
        }
        for rank_, p in enumerate(points, 1)
    ]


def write_leaderboard(path: Path, points: list[PointResult]) -> None:
    """One row per grid point, best first."""
    keys = swept_keys(p.job for p in points)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "rank",
                "point",
                *keys,
                "mean",
                "ci_low",
                "ci_high",
                "iqm",
                "seeds",
                "diverged",
                "tied",
                *[f"runs:{s}" for s in STATUSES],
                "run_ids",
            ]
        )
        for record, point in zip(point_records(points), points, strict=True):
            values = flat_values(point.job)
            writer.writerow(
                [
                    record["rank"],
                    point.point,
                    *[format_value(values[k]) if k in values else "" for k in keys],
                    number_text(record["mean"]),
                    number_text(record["ci_low"]),
                    number_text(record["ci_high"]),
                    number_text(record["iqm"]),
                    record["seeds"],
                    record["diverged"],
                    _tied_text(point.tied),
                    *record["runs"].values(),
                    " ".join(record["run_ids"]),
                ]
            )


def write_runs(path: Path, results: list[RunResult], behaviors: list[str]) -> None:
    """One row per run, best run first: what each seed did."""
    keys = swept_keys(r.job for r in results)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "rank",
                "run_id",
                "point",
                "seed",
                "score",
                *[f"score:{b}" for b in behaviors],
                "status",
                "steps",
                "stop_reason",
                "diverged",
                *keys,
            ]
        )
        for rank_, result in enumerate(results, 1):
            values = flat_values(result.job)
            writer.writerow(
                [
                    rank_,
                    result.job.run_id,
                    result.job.point,
                    "" if result.job.seed is None else result.job.seed,
                    number_text(result.score.value),
                    *[number_text(result.score.behaviors.get(b)) for b in behaviors],
                    result.state.status,
                    result.steps,
                    result.state.stop_reason or "",
                    result.score.diverged or "",
                    *[format_value(values[k]) if k in values else "" for k in keys],
                ]
            )


def _mean_text(point: PointResult) -> str:
    if standing(point.score) == 2:
        return "diverged"
    return number_text(point.score.mean) or "-"


def _interval_text(point: PointResult) -> str:
    ci = point.score.ci
    return "-" if ci is None else f"[{number_text(ci[0])}, {number_text(ci[1])}]"


def write_markdown(
    path: Path, queue: Queue, points: list[PointResult], metric: str, last: int
) -> None:
    keys = swept_keys(p.job for p in points)
    lines = [
        f"# Sweep report: {queue.sweep.prefix}",
        "",
        f"Score: the mean of the last {last} points of `{metric}` for each behavior, averaged "
        "over the run's behaviors. A grid point's score is the mean over its seeds' scores; "
        "runs still training count with what they have, seeds without data do not count, "
        "a point with a diverged seed (a NaN or infinite score) ranks below every point whose "
        "seeds are all finite, and points without a scored seed rank last.",
        "",
        f"Interval: the {CONFIDENCE:.0%} percentile bootstrap interval of that mean "
        f"({RESAMPLES:,} resamples, fixed resampling seed), from 2 scored seeds; IQM: the "
        f"interquartile mean of the seeds' scores, from {IQM_MIN_SEEDS}. A point is tied with "
        "the best when their intervals overlap.",
        "",
        f"**{conclusion(points)}**",
        "",
        "| rank | point | "
        + " | ".join(keys)
        + f" | mean | {CONFIDENCE:.0%} interval | IQM | seeds | tied with the best | runs |",
        "|---:|---|" + "---|" * len(keys) + "---:|---|---:|---:|---|---|",
    ]
    for rank_, point in enumerate(points, 1):
        values = flat_values(point.job)
        cells = [format_value(values[k]) if k in values else "" for k in keys]
        lines.append(
            f"| {rank_} | {point.name} | "
            + " | ".join(cells)
            + f" | {_mean_text(point)} | {_interval_text(point)} "
            f"| {number_text(point.score.iqm) or '-'} | {len(point.score.scores)} "
            f"| {_tied_text(point.tied) or '-'} | {point.runs_text()} |"
        )
    best = recommended(points)
    if best is not None:
        lines += [
            "",
            f"## Best configuration: {best.name} (score {number_text(best.score.mean)})",
            "",
            "```yaml",
            best_config_snippet(best.job).rstrip(),
            "```",
        ]
    lines += rung_history(queue)
    lines += ["", "## Which values matter", ""]
    for key, rows in parameter_table(points).items():
        lines += [
            f"### {key}",
            "",
            "| value | mean score | best score | points |",
            "|---|---:|---:|---:|",
        ]
        lines += [f"| {v} | {number_text(m)} | {number_text(b)} | {n} |" for v, m, b, n in rows]
        lines.append("")
    lines += [
        "## Runs",
        "",
        "| run | point | seed | score | status | steps | stop reason |",
        "|---|---:|---:|---:|---|---:|---|",
    ]
    for point in points:
        for result in point.runs:
            seed = "" if result.job.seed is None else result.job.seed
            score = number_text(result.score.value)
            if result.score.diverged:
                score = f"diverged ({result.score.diverged})"
            lines.append(
                f"| {result.job.run_id} | {point.name} | {seed} | {score} "
                f"| {result.state.status} | {result.steps} | {result.state.stop_reason or ''} |"
            )
    lines += ["", "![learning curves](curves.png)", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def rung_history(queue: Queue) -> list[str]:
    """Which grid points each rung promoted, with their scores (rungs/<n>.json)."""
    rungs = queue.sweep.rung_plan
    if rungs is None:
        return []
    lines = [
        "",
        "## Rungs",
        "",
        f"Successive halving: at each rung a point's score is the mean of the last "
        f"{rungs.window} points of `{rungs.tag}` at or before the rung's step (mean over "
        f"behaviors and seeds); the best {rungs.keep:.3g} of the points are promoted.",
    ]
    decisions = queue.rung_decisions()
    for number, step in enumerate(rungs.steps, 1):
        decision = decisions.get(number)
        if decision is None:
            lines += ["", f"### Rung {number} (step {step}): not decided yet"]
            continue
        lines += [
            "",
            f"### Rung {number} (step {step}): {len(decision.promoted)} of "
            f"{len(decision.points)} points promoted, cut {number_text(decision.cut) or 'none'}",
            "",
            "| rank | point | runs | score | promoted | values |",
            "|---:|---:|---|---:|---|---|",
        ]
        for ranked in decision.points:
            values = ""
            if ranked.runs:
                flat = flat_values(queue.job(ranked.runs[0]))
                values = ", ".join(f"{k}={format_value(v)}" for k, v in flat.items())
            outcome = "yes" if ranked.promoted else ("no" if ranked.eligible else "final before")
            lines.append(
                f"| {ranked.rank} | {ranked.point} | {' '.join(ranked.runs)} "
                f"| {number_text(ranked.score)} | {outcome} | {values} |"
            )
    return lines


def summary_lines(points: list[PointResult], metric: str, last: int, top: int = 5) -> list[str]:
    """What grid-report prints: the best points and the conclusion."""
    lines = [f"Top grid points by the mean over seeds of the last {last} points of {metric}:"]
    for rank_, point in enumerate(points[:top], 1):
        values = ", ".join(f"{k}={format_value(v)}" for k, v in flat_values(point.job).items())
        lines.append(
            f"  {rank_}. {point.name:<14} {_mean_text(point):>10} "
            f"{_interval_text(point):>22}  {point.runs_text():<18} {values}"
        )
    lines.append(conclusion(points))
    return lines
