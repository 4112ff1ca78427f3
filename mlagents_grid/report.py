"""What the sweep found: runs ranked by score, which values matter, and the learning curves.

A run's score for a behavior is the mean of the last K points of the primary metric; a
run's score is the mean of its behaviors' scores. Runs without data have no score and rank
last.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .job import Job, JobState
from .metrics import EventFileSource, Scalar, tensorboard_run
from .planner import format_value
from .queue import Queue

DEFAULT_LAST = 5
HIGHLIGHT = 3


@dataclass
class RunResult:
    job: Job
    state: JobState
    curves: dict[str, list[Scalar]]
    behavior_scores: dict[str, float] = field(default_factory=dict)

    @property
    def score(self) -> float | None:
        scores = list(self.behavior_scores.values())
        return statistics.fmean(scores) if scores else None

    @property
    def steps(self) -> int:
        return max((points[-1].step for points in self.curves.values() if points), default=0)


def score_points(points: list[Scalar], last: int) -> float | None:
    tail = [p.value for p in points[-last:] if math.isfinite(p.value)]
    return statistics.fmean(tail) if tail else None


def collect(queue: Queue, metric: str, last: int) -> list[RunResult]:
    """Every run with its curves and scores, best first."""
    source = EventFileSource(Path(queue.sweep.results_dir))
    folders = queue.sweep.behavior_folders
    results = []
    runs = {run_id: [tensorboard_run(run_id, b) for b in folders] for run_id in queue.sweep.run_ids}
    source.refresh([name for names in runs.values() for name in names])
    for run_id, names in runs.items():
        curves = {b: source.series(name, metric) for b, name in zip(folders, names, strict=True)}
        result = RunResult(queue.job(run_id), queue.effective(queue.read_state(run_id)), curves)
        for behavior, points in curves.items():
            value = score_points(points, last)
            if value is not None:
                result.behavior_scores[behavior] = value
        results.append(result)
    results.sort(key=lambda r: (r.score is None, -(r.score or 0.0), r.job.index))
    return results


def _flat_values(job: Job) -> dict[str, Any]:
    return {
        f"{owner}.{key}": value
        for owner, named in job.values.items()
        for key, value in named.items()
    }


def best_config_snippet(job: Job) -> str:
    """The winning values placed where they go in a trainer config, ready to paste."""
    tree: dict[Any, Any] = {}
    for path, value in job.assignments:
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return yaml.safe_dump(tree, sort_keys=False, allow_unicode=True)


def parameter_table(results: list[RunResult]) -> dict[str, list[tuple[str, float, float, int]]]:
    """For each swept key: (value, mean score, best score, scored runs) per value."""
    table: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    order: dict[str, list[str]] = defaultdict(list)
    for result in sorted(results, key=lambda r: r.job.index):
        for key, value in _flat_values(result.job).items():
            text = format_value(value)
            if text not in order[key]:
                order[key].append(text)
            if result.score is not None:
                table[key][text].append(result.score)
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


def _number(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.4g}"


def write_csv(path: Path, results: list[RunResult], behaviors: list[str]) -> None:
    keys = list(dict.fromkeys(k for r in results for k in _flat_values(r.job)))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "rank",
                "run_id",
                "score",
                *[f"score:{b}" for b in behaviors],
                "status",
                "steps",
                "stop_reason",
                *keys,
            ]
        )
        for rank, result in enumerate(results, 1):
            values = _flat_values(result.job)
            writer.writerow(
                [
                    rank,
                    result.job.run_id,
                    _number(result.score),
                    *[_number(result.behavior_scores.get(b)) for b in behaviors],
                    result.state.status,
                    result.steps,
                    result.state.stop_reason or "",
                    *[format_value(values[k]) if k in values else "" for k in keys],
                ]
            )


def write_markdown(
    path: Path, queue: Queue, results: list[RunResult], metric: str, last: int
) -> None:
    keys = list(dict.fromkeys(k for r in results for k in _flat_values(r.job)))
    lines = [
        f"# Sweep report: {queue.sweep.prefix}",
        "",
        f"Score: the mean of the last {last} points of `{metric}` for each behavior, averaged "
        "over the run's behaviors. Runs still training count with what they have; runs "
        "without data rank last.",
        "",
        "| rank | run | score | status | steps | " + " | ".join(keys) + " | stop reason |",
        "|---:|---|---:|---|---:|" + "---|" * len(keys) + "---|",
    ]
    for rank, result in enumerate(results, 1):
        values = _flat_values(result.job)
        cells = [format_value(values[k]) if k in values else "" for k in keys]
        lines.append(
            f"| {rank} | {result.job.run_id} | {_number(result.score)} | {result.state.status} "
            f"| {result.steps} | " + " | ".join(cells) + f" | {result.state.stop_reason or ''} |"
        )
    best = next((r for r in results if r.score is not None), None)
    if best is not None:
        lines += [
            "",
            f"## Best configuration: {best.job.run_id} (score {_number(best.score)})",
            "",
            "```yaml",
            best_config_snippet(best.job).rstrip(),
            "```",
        ]
    lines += rung_history(queue)
    lines += ["", "## Which values matter", ""]
    for key, rows in parameter_table(results).items():
        lines += [
            f"### {key}",
            "",
            "| value | mean score | best score | runs |",
            "|---|---:|---:|---:|",
        ]
        lines += [f"| {v} | {_number(m)} | {_number(b)} | {n} |" for v, m, b, n in rows]
        lines.append("")
    lines += ["![learning curves](curves.png)", ""]
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
            f"{len(decision.verdicts)} points promoted, cut {_number(decision.cut) or 'none'}",
            "",
            "| rank | point | runs | score | promoted | values |",
            "|---:|---:|---|---:|---|---|",
        ]
        for verdict in decision.verdicts:
            values = ""
            if verdict.runs:
                flat = _flat_values(queue.job(verdict.runs[0]))
                values = ", ".join(f"{k}={format_value(v)}" for k, v in flat.items())
            outcome = "yes" if verdict.promoted else ("no" if verdict.eligible else "final before")
            lines.append(
                f"| {verdict.rank} | {verdict.point} | {' '.join(verdict.runs)} "
                f"| {_number(verdict.score)} | {outcome} | {values} |"
            )
    return lines


def plot(path: Path, results: list[RunResult], behaviors: list[str], metric: str) -> None:
    """One panel per behavior with every run's curve, plus a panel per swept key."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = parameter_table(results)
    columns = max(len(behaviors), len(params), 1)
    rows = 2 if params else 1
    figure, axes = plt.subplots(rows, columns, figsize=(6 * columns, 4.5 * rows), squeeze=False)
    best = [r.job.run_id for r in results if r.score is not None][:HIGHLIGHT]
    colors = plt.get_cmap("tab10")
    for column, behavior in enumerate(behaviors):
        ax = axes[0][column]
        for result in sorted(results, key=lambda r: r.job.run_id in best):
            points = result.curves.get(behavior, [])
            if not points:
                continue
            steps = [p.step for p in points]
            values = [p.value for p in points]
            stopped = result.state.status == "stopped"
            if result.job.run_id in best:
                rank = best.index(result.job.run_id)
                ax.plot(
                    steps,
                    values,
                    color=colors(rank),
                    linewidth=2.4,
                    zorder=3,
                    label=f"#{rank + 1} {result.job.run_id} ({_number(result.score)})",
                )
            else:
                ax.plot(
                    steps, values, color="0.65", linewidth=1, linestyle="--" if stopped else "-"
                )
            if stopped:
                ax.plot(steps[-1], values[-1], marker="x", color="crimson", markersize=8, zorder=4)
        ax.plot([], [], marker="x", color="crimson", linestyle="none", label="stopped early")
        ax.plot([], [], color="0.65", label="other runs")
        ax.set_title(f"{behavior}: {metric}")
        ax.set_xlabel("step")
        ax.set_ylabel(metric.split("/")[-1])
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8, framealpha=0.8)
    for column in range(len(behaviors), columns):
        axes[0][column].axis("off")
    if params:
        for column, (key, table) in enumerate(params.items()):
            ax = axes[1][column]
            labels = [value for value, _, _, _ in table]
            ax.bar(
                range(len(table)),
                [m if math.isfinite(m) else 0 for _, m, _, _ in table],
                color="steelblue",
                label="mean score",
            )
            ax.scatter(
                range(len(table)),
                [b if math.isfinite(b) else 0 for _, _, b, _ in table],
                color="darkorange",
                zorder=3,
                label="best score",
            )
            ax.set_xticks(range(len(table)), labels, rotation=20, fontsize=8)
            ax.set_title(f"score by {key}")
            ax.set_xlabel(key)
            ax.set_ylabel("score")
            ax.legend(fontsize=8)
        for column in range(len(params), columns):
            axes[1][column].axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


@dataclass
class ReportFiles:
    results: list[RunResult]
    markdown: Path
    csv: Path
    plot: Path


def write_report(queue: Queue, out: Path, metric: str, last: int) -> ReportFiles:
    results = collect(queue, metric, last)
    behaviors = queue.sweep.behavior_folders
    files = ReportFiles(results, out / "report.md", out / "leaderboard.csv", out / "curves.png")
    write_csv(files.csv, results, behaviors)
    write_markdown(files.markdown, queue, results, metric, last)
    plot(files.plot, results, behaviors, metric)
    return files


def summary_lines(results: list[RunResult], metric: str, last: int, top: int = 5) -> list[str]:
    lines = [f"Top runs by the mean of the last {last} points of {metric}:"]
    for rank, result in enumerate(results[:top], 1):
        values = ", ".join(f"{k}={format_value(v)}" for k, v in _flat_values(result.job).items())
        lines.append(
            f"  {rank}. {result.job.run_id:<14} {_number(result.score):>10}  "
            f"{result.state.status:<8} {values}"
        )
    return lines
