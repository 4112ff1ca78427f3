"""The results stage in process: reading event files, the metric source, scoring and deciding
rungs, ranking grid points, and the report's grouping, tables and plot."""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from mlagents_grid.plan.rungs import Rungs
from mlagents_grid.queue.job import Job, JobState, Status
from mlagents_grid.queue.rung_decision import RankedPoint, RungDecision, passed_rungs, passes
from mlagents_grid.results.metric_source import EventFileMetrics, TensorBoardMetrics, metric_source
from mlagents_grid.results.metrics import DEFAULT_METRIC, EventFileReader, Scalar, framed
from mlagents_grid.results.outlook import retry_outlook
from mlagents_grid.results.ranking import (
    best_first,
    bootstrap_intervals,
    conclusion,
    interquartile_means,
    rank,
    score_point,
    ties,
)
from mlagents_grid.results.report.plot import seed_band
from mlagents_grid.results.report.points import RunResult, group_points
from mlagents_grid.results.report.tables import parameter_table, point_records
from mlagents_grid.results.rung_ranking import (
    RunAtRung,
    decide_rung,
    entered,
    point_score,
    quota,
    run_score,
    rung_places,
    window_score,
)
from mlagents_grid.results.scores import Kept, RunMetrics, score_run

# The benchmark's successive-halving simulation: its figures rest on deciding rungs as here.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from bench_rungs import simulate

TAG = "Environment/Cumulative Reward"


# -- rungs: scores and decisions ------------------------------------------------------
def pts(*pairs: tuple[int, float]) -> list[Scalar]:
    return [Scalar(step, value, 0.0) for step, value in pairs]


def test_window_score_uses_points_at_or_before_the_rung_step() -> None:
    points = pts((1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 100.0))
    assert window_score(points, 4, 2) == 3.5  # the overshoot at step 5 is left out
    assert window_score(points, 4, 10) == 2.5
    assert window_score(points, 0, 3) is None
    assert window_score(pts((1, float("nan")), (2, 1.0)), 2, 5) == 1.0


def test_run_score_is_the_mean_over_behaviors_and_point_score_over_seeds() -> None:
    curves = {"A": pts((1, 1.0), (2, 3.0)), "B": pts((1, 10.0)), "C": []}
    assert run_score(curves, 2, 1) == (3.0 + 10.0) / 2
    assert run_score({"A": []}, 2, 1) is None
    assert point_score([1.0, None, 3.0]) == 2.0
    assert point_score([None]) is None


def test_quota_is_ceil_of_keep_times_points() -> None:
    assert quota(27, 1 / 3) == 9
    assert quota(9, 1 / 3) == 3
    assert quota(9, 0.34) == 4
    assert quota(2, 0.1) == 1
    assert quota(0, 0.5) == 0


def test_decide_rung_promotes_the_best_and_explains_the_others() -> None:
    scores: dict[int, float | None] = {p: float(p) / 10 for p in range(9)}
    scores[4] = None  # no data: ranks last
    runs = {p: [f"g-{p}"] for p in range(9)}
    decision = decide_rung(1, 20000, 1 / 3, scores, runs, eligible=set(range(9)) - {8})
    # 8 is the best score but was final before the rung: it takes no place.
    assert decision.promoted == [7, 6, 5]
    assert decision.cut == 0.5
    assert sorted(decision.stopped) == [0, 1, 2, 3, 4]
    by_point = {v.point: v for v in decision.points}
    assert by_point[8].rank == 1 and not by_point[8].eligible
    assert by_point[3].reason == "rung 1 (step 20000): rank 5 of 9, score 0.3 < cut 0.5"
    assert by_point[4].rank == 9 and "no score" in by_point[4].reason
    assert decision.listing("g-6") == by_point[6]
    again = RungDecision.from_dict(json.loads(json.dumps(decision.to_dict())))
    assert again == decision


def test_decide_rung_breaks_ties_by_grid_order_and_is_deterministic() -> None:
    scores: dict[int, float | None] = {0: 1.0, 1: 1.0, 2: 1.0}
    first = decide_rung(2, 10, 0.5, scores, {}, {0, 1, 2})
    assert first.promoted == [0, 1]
    assert "ties the cut" in first.points[2].reason
    assert decide_rung(2, 10, 0.5, dict(reversed(scores.items())), {}, {2, 1, 0}) == first


def test_simulate_trains_about_a_quarter_of_the_full_grid() -> None:
    rng = random.Random(1)
    curves = {p: [p + rng.gauss(0, 0.1) for _ in range(90)] for p in range(27)}
    finalists, trained = simulate(curves, Rungs(TAG, (10, 30), 1 / 3, 5), 90)
    assert finalists == [26, 25, 24]
    assert trained == 27 * 10 + 9 * 20 + 3 * 60
    assert trained / (27 * 90) < 0.27


def ranked_of(
    point: int, runs: tuple[str, ...], promoted: bool, eligible: bool = True
) -> RankedPoint:
    return RankedPoint(point, runs, 1.0, 1, promoted, eligible, f"reason of {point}")


def test_runs_pass_decided_rungs_that_let_them_through() -> None:
    one = RungDecision(
        1,
        5,
        0.5,
        1.0,
        (
            ranked_of(0, ("g-0-s0",), True),
            ranked_of(1, ("g-1-s0",), False),
            ranked_of(2, ("g-2-s0",), False, eligible=False),
        ),
    )
    two = RungDecision(2, 9, 0.5, 1.0, (ranked_of(0, ("g-0-s0",), True),))
    decisions = {1: one, 2: two}
    assert passes(one, "g-0-s1", 0)  # a seed added later follows its promoted point
    assert not passes(one, "g-1-s1", 1)  # ... and its stopped point
    assert passes(one, "g-2-s1", 2) and passes(one, "g-9-s0", 9)  # final before; new point
    assert passed_rungs(0, decisions, "g-9-s0", 9) == 2
    assert passed_rungs(0, decisions, "g-1-s1", 1) == 0
    assert passed_rungs(1, decisions, "g-1-s0", 1) == 2  # retried past rung 1
    runs = [
        RunAtRung("g-0-s0", 0, 2, True),  # promoted at 2, then final
        RunAtRung("g-1-s0", 1, 0, True),  # stopped at rung 1
        RunAtRung("g-9-s0", 9, 0, False),  # added after rung 2 was decided
        RunAtRung("g-1-s1", 1, 0, False),  # a seed added to a point stopped at rung 1
        RunAtRung("g-0-s1", 0, 3, False),  # promoted past rung 3 by hand
    ]
    assert entered(3, decisions, runs) == ["g-0-s0", "g-9-s0"]
    assert entered(1, {}, runs) == ["g-1-s0", "g-9-s0", "g-1-s1"]


# -- a rung's places: retried losers add none (issue 22, item 3) --------------------------
def decided(promoted: list[int], refused: list[int]) -> RungDecision:
    ranked = [ranked_of(p, (f"g-{p}",), True) for p in promoted]
    ranked += [ranked_of(p, (f"g-{p}",), False) for p in refused]
    return RungDecision(1, 5, 0.5, 1.0, tuple(ranked))


@pytest.mark.parametrize(
    ("entered", "previous", "places"),
    [
        ([0, 1, 2, 3, 4, 5], None, 3),  # rung 1: ceil(0.5 x 6)
        ([0, 1, 2], decided([0, 1, 2], [3, 4, 5]), 2),  # rung 2: ceil(0.5 x 3)
        ([0, 1, 2, 3, 4], decided([0, 1, 2], [3, 4, 5]), 2),  # 3 and 4 retried: still 2
        ([0, 1, 2, 9], decided([0, 1, 2], [3, 4, 5]), 2),  # 9 added by --extend: ceil(2)
        ([0, 1, 2, 9, 10], decided([0, 1, 2], [3, 4, 5]), 3),  # two added: ceil(2.5)
        ([3, 4], decided([0, 1, 2], [3, 4, 5]), 1),  # only retried losers: at least 1
        ([], decided([0], [1]), 0),
    ],
)
def test_rung_places_count_the_points_the_previous_rung_promoted_or_never_ranked(
    entered: list[int], previous: RungDecision | None, places: int
) -> None:
    assert rung_places(entered, 0.5, previous) == places


def test_retried_losers_compete_for_the_places_the_rung_had_without_them() -> None:
    previous = decided([0, 1, 2], [3, 4, 5])
    scores: dict[int, float | None] = {0: 1.0, 1: 2.0, 2: 3.0, 3: 10.0, 4: 0.5}
    decision = decide_rung(2, 9, 0.5, scores, {}, set(scores), previous)
    assert decision.promoted == [3, 2]  # a retried loser may win a place, not add one
    assert "promoted (best 2 of 5)" in decision.points[0].reason
    assert decide_rung(2, 9, 0.5, scores, {}, set(scores)).promoted == [3, 2, 1]  # before


def test_done_points_and_decisions_without_promotions_say_what_happened() -> None:
    scores: dict[int, float | None] = {0: 1.0, 1: 2.0}
    decision = decide_rung(1, 5, 0.5, scores, {0: ["g-0"], 1: ["g-1"]}, set(), done={1})
    by_point = {v.point: v.reason for v in decision.points}
    assert by_point[1].endswith("; done: trained to the end before the rung was decided")
    assert by_point[0].endswith("; final before the rung")
    assert decision.cut is None
    assert decision.summary() == ("none of 2 points promoted: every run was final before the rung")
    promoted = decide_rung(1, 5, 0.5, scores, {0: ["g-0"], 1: ["g-1"]}, {0, 1})
    assert promoted.summary() == "1 of 2 points promoted (g-1), cut 2"


@pytest.mark.parametrize(
    ("run_id", "point", "passed", "decisions", "outlook"),
    [
        ("g-3", 3, 0, {}, "it takes part in rung 1 (step 5)"),
        (
            "g-3",
            3,
            1,
            {1: decided([0, 1, 2], [3, 4, 5])},
            "it joins rung 2 (step 9) without adding a place: the rung keeps 2 places for the "
            "3 points rung 1 promoted (ceil(0.5 x 3)), and it competes for them",
        ),
        (
            "g-9",
            9,
            1,
            {1: decided([0, 1, 2], [3, 4, 5])},
            "it joins rung 2 (step 9) as a point rung 1 did not rank: it adds to the 2 places "
            "for the 3 points rung 1 promoted",
        ),
        (
            "g-3",
            3,
            1,
            {1: decided([0, 1, 2], [3]), 2: decided([0], [1, 2])},
            "it trains to max_steps: no rung is left ahead of it",  # rung 2 let it through
        ),
        (
            "g-1-s1",
            1,
            1,
            {1: decided([0, 1], [2]), 2: decided([0], [1])},
            "rung 2 (step 9) stopped its grid point: it trains to that step and is stopped there",
        ),
    ],
)
def test_retry_outlook_says_which_rung_a_retried_run_meets_and_its_places(
    run_id: str, point: int, passed: int, decisions: dict[int, RungDecision], outlook: str
) -> None:
    rungs = Rungs(TAG, (5, 9), 0.5, 2)
    assert retry_outlook(run_id, point, passed, rungs, decisions) == outlook


# -- reading event files ---------------------------------------------------------------------
def record(step: int, value: float) -> bytes:
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    class Buffer:
        data = b""

        def write(self, chunk: bytes) -> None:
            self.data += chunk

    buffer = Buffer()
    scalar = summary_pb2.Summary.Value(tag=DEFAULT_METRIC, simple_value=value)
    event = event_pb2.Event(step=step, summary=summary_pb2.Summary(value=[scalar]))
    RecordWriter(buffer).write(event.SerializeToString())
    return buffer.data


def test_event_files_are_read_on_from_where_the_last_read_stopped(tmp_path: Path) -> None:
    folder = tmp_path / "run" / "3DBall"
    folder.mkdir(parents=True)
    path = folder / "events.out.tfevents.1.host"
    path.write_bytes(record(1, 1.0) + record(2, 2.0))
    source = EventFileReader(tmp_path)
    source.refresh(["run/3DBall"])
    assert [(p.step, p.value) for p in source.series("run/3DBall", DEFAULT_METRIC)] == [
        (1, 1.0),
        (2, 2.0),
    ]
    assert source.tags("run/3DBall") == {DEFAULT_METRIC}
    third = record(3, 3.0)
    with open(path, "ab") as handle:
        handle.write(third[:10])  # a record being written: left for the next read
    source.refresh(["run/3DBall"])
    assert source.records_read == 2
    with open(path, "ab") as handle:
        handle.write(third[10:])
    source.refresh(["run/3DBall"])
    assert source.records_read == 3  # only the new record was read
    assert source.latest("run/3DBall", DEFAULT_METRIC).value == 3.0  # type: ignore[union-attr]
    broken = bytearray(record(4, 4.0))
    broken[-6] ^= 0xFF  # its data no longer matches its checksum
    with open(path, "ab") as handle:
        handle.write(bytes(broken))
    source.refresh(["run/3DBall"])  # no exception: the error is kept, the points too
    assert "bad record checksum" in source.errors[str(path)]
    assert len(source.series("run/3DBall", DEFAULT_METRIC)) == 3


def test_records_are_framed_as_tensorboards_writer_frames_them() -> None:
    from tensorboard.summary.writer.record_writer import RecordWriter

    class Buffer:
        data = b""

        def write(self, chunk: bytes) -> None:
            self.data += chunk

    records = [b"", b"abc", bytes(range(256)) * 5]
    buffer = Buffer()
    writer = RecordWriter(buffer)
    for data in records:
        writer.write(data)
    assert framed(records) == buffer.data


# -- ranking and its conclusion ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("unscored", "expected"),
    [
        (
            ("running", "pending"),
            "Point g-0 leads with one scored seed, so it has no 95% interval yet; wait for its "
            "other 2 seeds (1 running, 1 pending).",
        ),
        (
            ("failed", "stopped"),
            "Point g-0 leads with one scored seed, so it has no 95% interval yet; its other 2 "
            "seeds ended without a score (1 failed, 1 stopped): retry them with grid-retry, or "
            "add seeds with grid-plan --extend --seeds.",
        ),
        (
            ("interrupted", "failed"),
            "Point g-0 leads with one scored seed, so it has no 95% interval yet; wait for its "
            "other 1 seed (1 interrupted); its other 1 seed ended without a score (1 failed): "
            "retry it with grid-retry, or add seeds with grid-plan --extend --seeds.",
        ),
    ],
)
def test_the_conclusion_says_what_the_best_point_misses(
    unscored: tuple[str, ...], expected: str
) -> None:
    ranked = rank(
        [score_point(0, [9.0], unscored=unscored), score_point(1, [1.0, 2.0], unscored=("done",))]
    )
    assert conclusion(ranked, ties(ranked), "g-0") == expected


def test_conclusions_with_diverged_points() -> None:
    ranked = rank(
        [score_point(0, [9.0], diverged=2), score_point(1, [1.0, 2.0]), score_point(2, [])]
    )
    assert [p.point for p in ranked] == [1, 0, 2]  # a higher mean with a diverged seed: below
    assert ties(ranked) == {1: False, 0: None, 2: None}
    assert conclusion(ranked, ties(ranked), "g-1") == (
        "Only point g-1 has a score so far: nothing to compare it with yet. 1 point with a "
        "diverged seed (a NaN or infinite score) ranks below every point whose seeds are all "
        "finite."
    )
    every = rank([score_point(0, [], diverged=1), score_point(1, [4.0], diverged=1)])
    assert [p.point for p in every] == [1, 0]
    assert conclusion(every, ties(every), "g-1").startswith("Every point with data has a diverged")


def test_intervals_and_iqms_computed_together_equal_scipys_one_by_one() -> None:
    samples = np.random.default_rng(3).normal(size=(70, 4)).tolist() + [[2.0, 2.0, 2.0, 2.0]]
    together = bootstrap_intervals(samples)
    for sample, interval in zip(samples, together, strict=True):
        alone = stats.bootstrap(
            (np.asarray(sample),),
            np.mean,
            confidence_level=0.95,
            n_resamples=9999,
            method="percentile",
            rng=np.random.default_rng(0),
        ).confidence_interval
        # The same resamples and quantiles; the interpolation rounds in its own order.
        assert interval == pytest.approx((float(alone.low), float(alone.high)), rel=1e-12)
    iqms = interquartile_means(samples)
    for sample, iqm in zip(samples, iqms, strict=True):
        assert iqm == pytest.approx(float(stats.trim_mean(sample, 0.25)), rel=1e-12)
    five = [[1.0, 9.0, 2.0, 8.0, 5.0]]  # int(5 / 4) = 1 cut from each end
    assert interquartile_means(five) == [5.0] == [float(stats.trim_mean(five[0], 0.25))]


# -- best first -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([(1.0, 0, 0), (3.0, 1, 0), (2.0, 2, 0)], [1, 2, 0]),  # highest score first
        ([(None, 0, 0), (-5.0, 1, 0)], [1, 0]),  # no score last, below any negative score
        ([(0.0, 1, 0), (None, 0, 0), (0.0, 0, 0)], [2, 0, 1]),  # ties in order; 0.0 is a score
        ([(9.0, 0, 1), (1.0, 1, 0), (None, 2, 0)], [1, 2, 0]),  # a lower group first
    ],
)
def test_best_first_orders_by_group_then_score_then_no_score_then_order(
    items: list[tuple[float | None, int, int]], expected: list[int]
) -> None:
    ranked = sorted(range(len(items)), key=lambda i: best_first(*items[i]))
    assert ranked == expected


# -- the metric source ----------------------------------------------------------------------
def test_the_monitor_reads_event_files_with_a_logdir_else_tensorboard(tmp_path: Path) -> None:
    files = metric_source("http://127.0.0.1:6006", tmp_path)
    assert isinstance(files, EventFileMetrics)
    assert files.folder == tmp_path  # watched for writes instead of polled
    assert files.description == f"event files under {tmp_path}"
    server = metric_source("http://127.0.0.1:6006/", None)
    assert isinstance(server, TensorBoardMetrics)
    assert server.folder is None
    assert server.description == "TensorBoard at http://127.0.0.1:6006"


def test_event_file_metrics_give_latest_points_and_series_and_forget_runs_not_asked(
    tmp_path: Path,
) -> None:
    for run, values in {"a/B": [1.0, 2.0], "b/B": [5.0]}.items():
        folder = tmp_path / run
        folder.mkdir(parents=True)
        data = b"".join(record(step, value) for step, value in enumerate(values, 1))
        (folder / "events.out.tfevents.1.host").write_bytes(data)
    source = EventFileMetrics(tmp_path)
    latest = source.latest({DEFAULT_METRIC: ["a/B", "b/B", "c/B"], "Other": ["a/B"]})
    assert {key: None if p is None else p.value for key, p in latest.items()} == {
        ("a/B", DEFAULT_METRIC): 2.0,
        ("b/B", DEFAULT_METRIC): 5.0,
        ("c/B", DEFAULT_METRIC): None,  # no such run yet
        ("a/B", "Other"): None,
    }
    source.latest({DEFAULT_METRIC: ["b/B"]})
    assert source.reader.tags("a/B") == set()  # a run no longer watched is dropped
    series = source.series(["a/B"], DEFAULT_METRIC)
    assert [(p.step, p.value) for p in series["a/B"]] == [(1, 1.0), (2, 2.0)]


# -- the report: grouping, tables and the seed band ----------------------------------------------
def seeded(
    point: int, seed: int, values: dict[str, dict[str, float]], curve: list[tuple[int, float]]
) -> RunResult:
    """A run of the report: seed `seed` of grid point `point`; without a curve it is pending."""
    run_id = f"g-{point}-s{seed}"
    job = Job(run_id, point * 2 + seed, values, (), (), point, seed)
    series = {"B": Kept.of_pairs(curve)} if curve else {}
    metrics = RunMetrics(frozenset({DEFAULT_METRIC}) if curve else frozenset(), series)
    state = JobState(run_id, status=Status.DONE if curve else Status.PENDING)
    return RunResult(job, state, metrics, score_run(metrics, 5))


def four_points() -> list[RunResult]:
    """Two seeds per point: 0 scores 1 and 3, 1 scores 5 and 7, 2 has no data, and 3 scores
    4 with a diverged seed."""
    curves: dict[int, list[list[tuple[int, float]]]] = {
        0: [[(1, 1.0)], [(1, 3.0)]],
        1: [[(1, 5.0)], [(1, 7.0)]],
        2: [[], []],
        3: [[(1, 4.0)], [(1, math.nan)]],
    }
    values = {
        0: {"B": {"beta": 1, "lr": 0.1}},
        1: {"B": {"beta": 2, "lr": 0.1}},
        2: {"B": {"beta": 1, "lr": 0.2}},
        3: {"B": {"beta": 2, "lr": 0.2}},
    }
    return [seeded(p, s, values[p], curves[p][s]) for p in curves for s in range(2)]


def test_group_points_ranks_points_by_their_seeds_and_marks_ties_to_the_best() -> None:
    points = group_points(list(reversed(four_points())), "g")
    assert [p.name for p in points] == ["g-1", "g-0", "g-3", "g-2"]  # names as run_id_for has
    assert [p.point for p in points] == [1, 0, 3, 2]
    assert [r.job.run_id for r in points[0].runs] == ["g-1-s0", "g-1-s1"]  # in seed order
    assert [p.score.mean for p in points] == [6.0, 2.0, 4.0, None]  # 3: below, diverged
    assert [p.tied for p in points] == [False, False, None, None]  # [5, 7] and [1, 3] apart
    assert points[2].reason is not None and points[2].reason.startswith("1 of 2 seeds diverged")
    assert points[3].reason == "no seed has a score yet"


def test_point_records_are_the_ranked_points_with_null_where_there_is_no_value() -> None:
    records = point_records(group_points(four_points(), "g"))
    assert [r["rank"] for r in records] == [1, 2, 3, 4]
    best = records[0]
    interval = score_point(1, [5.0, 7.0]).ci
    assert interval is not None
    assert best == {
        "rank": 1,
        "point": 1,
        "name": "g-1",
        "values": {"B": {"beta": 2, "lr": 0.1}},
        "mean": 6.0,
        "ci_low": interval[0],
        "ci_high": interval[1],
        "iqm": None,  # fewer than 4 seeds
        "seeds": 2,
        "diverged": 0,
        "reason": None,
        "tied": False,
        "runs": {s: 2 if s == Status.DONE else 0 for s in Status},
        "run_ids": ["g-1-s0", "g-1-s1"],
    }
    empty = records[3]
    assert (empty["name"], empty["mean"], empty["ci_low"], empty["seeds"]) == ("g-2", None, None, 0)
    assert empty["runs"][Status.PENDING] == 2
    assert (records[2]["diverged"], records[2]["seeds"]) == (1, 1)


def test_parameter_table_counts_only_points_whose_seeds_are_all_finite() -> None:
    table = parameter_table(group_points(four_points(), "g"))
    assert list(table) == ["B.beta", "B.lr"]
    assert table["B.beta"] == [("1", 2.0, 2.0, 1), ("2", 6.0, 6.0, 1)]
    assert table["B.lr"][0] == ("0.1", 4.0, 6.0, 2)
    value, mean, best, count = table["B.lr"][1]  # points 2 (no data) and 3 (diverged)
    assert (value, count) == ("0.2", 0) and math.isnan(mean) and math.isnan(best)


def test_seed_band_interpolates_each_seed_within_its_own_steps() -> None:
    steps, mean, low, high = seed_band([[(1, 0.0), (3, 2.0)], [(2, 10.0), (4, 10.0)], []])
    assert steps == [1, 2, 3, 4]
    assert mean == [0.0, 5.5, 6.0, 10.0]  # step 1 and 4: one seed each, the other out of range
    assert low == [0.0, 1.0, 2.0, 10.0]
    assert high == [0.0, 10.0, 10.0, 10.0]
    assert seed_band([[], []]) == ([], [], [], [])
