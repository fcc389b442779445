"""Drift: what the predictor exports reads back as the operator's evidence, the judge's
verdicts (and its guard against low traffic), and the windows one after another."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from retail_operator.canary.analysis import Bin, Counts
from retail_operator.canary.evidence import HoldOut, PodReading, PodState
from retail_operator.drift import judge as drift
from retail_operator.drift.watch import DriftWatch
from retail_operator.spec import DriftPolicy
from retail_serving import artifact
from retail_serving.metrics import ServingMetrics
from retail_training import dataset, training
from tests.unit.operator.fakes import World

SHA = "cd" * 32
POLICY = DriftPolicy(window_seconds=60, min_rows=1000)


def exported(trained: training.TrainedModel, columns: Mapping[str, list[Any]]) -> PodReading:
    """A pod's reading after serving ``columns``: the predictor's own metrics, parsed by the
    operator's own reader."""
    model = artifact.load(
        artifact.serialise(
            trained.booster, trained.encoder, trained.version, reference=trained.reference
        )
    )
    metrics = ServingMetrics()
    metrics.model_swapped(model.version, SHA, 0.0, model.reference)
    matrix = model.encoder.encode_columns(columns)
    winners = np.bincount(model.predict_proba(matrix).argmax(axis=1), minlength=3)
    metrics.predicted(model.version, model.classes, winners.tolist())
    assert model.reference is not None
    metrics.binned(model.version, model.reference, matrix)
    return PodReading.parse(metrics.render().decode())


def baskets(rows: int, seed: int, **fixed: str) -> dict[str, list[Any]]:
    columns = dataset.generate(rows, seed=seed).columns
    for name, value in fixed.items():
        columns[name] = [value] * rows
    return columns


def test_the_predictors_bins_and_reference_read_back(trained: training.TrainedModel) -> None:
    reading = exported(trained, baskets(50, seed=3))
    assert reading.reference is not None and reading.model_sha256 == SHA
    assert reading.reference.rows == trained.reference.rows
    formats = {b: n for (f, b), n in reading.counts.features.items() if f == "STORE_FORMAT"}
    assert sum(formats.values()) == 50 and set(formats) == {"<unknown>", "SS", "MS", "LS", "XLS"}
    held = {b: n for (f, b), n in reading.reference.features.items() if f == "STORE_FORMAT"}
    spec = next(f for f in trained.reference.features if f.name == "STORE_FORMAT")
    assert held == dict(zip(spec.labels, map(float, spec.reference), strict=True))


def test_a_model_without_a_reference_exports_no_bins(trained: training.TrainedModel) -> None:
    metrics = ServingMetrics()
    metrics.model_swapped("old", SHA, 0.0)
    metrics.predicted("old", ("Low", "Medium", "High"), [3, 2, 1])
    reading = PodReading.parse(metrics.render().decode())
    assert reading.reference is None and reading.counts.features == {}
    report = drift.judge(reading.counts.predictions, {}, None, POLICY, model_version="old")
    assert report.check.status == "Unknown" and report.check.reason == drift.INSUFFICIENT_DATA
    assert "no drift reference" in report.check.message


def judged(reading: PodReading, policy: DriftPolicy = POLICY) -> drift.Report:
    return drift.judge(
        reading.counts.predictions, reading.counts.features, reading.reference, policy
    )


def test_traffic_drawn_like_the_training_data_is_no_drift(
    trained: training.TrainedModel,
) -> None:
    report = judged(exported(trained, baskets(5_000, seed=99)))
    assert (report.check.status, report.check.reason) == ("False", drift.NO_DRIFT)
    assert report.rows == 5_000 and not report.drifted


def test_every_basket_from_one_store_format_is_feature_drift_naming_it(
    trained: training.TrainedModel,
) -> None:
    report = judged(exported(trained, baskets(2_000, seed=99, STORE_FORMAT="XLS")))
    assert (report.check.status, report.check.reason) == ("True", drift.FEATURE_DRIFT)
    top = report.features[0]
    assert top.name == "STORE_FORMAT" and top.drifted and top.bin == "XLS"
    assert top.live_share == 1.0 and top.psi > 1
    assert report.check.message.startswith("inputs drifted: STORE_FORMAT PSI")


def test_fewer_rows_than_min_rows_are_not_judged(trained: training.TrainedModel) -> None:
    report = judged(exported(trained, baskets(999, seed=99, STORE_FORMAT="XLS")))
    assert (report.check.status, report.check.reason) == ("Unknown", drift.INSUFFICIENT_DATA)
    assert "999 rows" in report.check.message and report.features == ()


def test_a_few_rows_of_many_bins_score_high_by_chance_and_are_not_drift(
    trained: training.TrainedModel,
) -> None:
    """The guard: 150 rows drawn like the hold-out over fifty departments have a PSI well
    above 0.25 from sampling alone; the test says so, and nothing alarms."""
    policy = DriftPolicy(window_seconds=60, min_rows=100)
    report = judged(exported(trained, baskets(150, seed=5)), policy)
    departments = next(s for s in report.features if s.name == "PROD_CODE_20")
    assert departments.psi > policy.max_feature_psi
    assert departments.p_value > 0.05 and not departments.drifted
    assert report.check.reason == drift.NO_DRIFT


def test_predictions_moving_with_no_feature_moving_is_prediction_drift() -> None:
    held = HoldOut({"Low": 300, "Medium": 400, "High": 300}, {("F", "a"): 500, ("F", "b"): 500})
    live_features: dict[Bin, float] = {("F", "a"): 2_500, ("F", "b"): 2_500}
    live = {"Low": 500, "Medium": 1_000, "High": 3_500}
    report = drift.judge(live, live_features, held, POLICY, model_version="m1")
    assert (report.check.status, report.check.reason) == ("True", drift.PREDICTION_DRIFT)
    assert report.predictions is not None and report.predictions.bin == "High"
    assert "model m1" in report.check.message


@pytest.mark.parametrize(
    ("statistic", "degrees", "p"),
    [
        (18.307, 10, 0.05),
        (23.209, 10, 0.01),
        (67.505, 50, 0.05),
        (76.154, 50, 0.01),
        (7.815, 3, 0.05),
    ],
)
def test_the_chi_squared_tail_is_close_to_the_tables(
    statistic: float, degrees: int, p: float
) -> None:
    assert drift.chi2_survival(statistic, degrees) == pytest.approx(p, rel=0.1)


def test_psi_of_one_distribution_is_zero_and_grows_with_the_shift() -> None:
    same = {"a": 500.0, "b": 500.0}
    assert drift.psi(same, same) == pytest.approx(0.0)
    small = drift.psi(same, {"a": 550.0, "b": 450.0})
    large = drift.psi(same, {"a": 900.0, "b": 100.0})
    assert 0 < small < 0.05 < large
    assert math.isfinite(drift.psi(same, {"a": 1000.0, "c": 5.0}))  # a bin one side never saw


# The windows, one after another.


def pod(uid: str) -> PodState:
    return PodState(uid, uid, ready=True, restarts=0)


def reading_of(rows: float, held: HoldOut, sha256: str = SHA, fmt: str = "SS") -> PodReading:
    counts = Counts(rows, 0.0, {}, {"Low": rows}, {("STORE_FORMAT", fmt): rows})
    return PodReading(counts, "m1", sha256, held)


HELD = HoldOut({"Low": 500}, {("STORE_FORMAT", "SS"): 250, ("STORE_FORMAT", "XLS"): 250})


def test_a_window_is_judged_at_its_end_and_the_next_opens_on_the_same_scrape() -> None:
    policy = DriftPolicy(window_seconds=60, min_rows=100)
    watch = DriftWatch(policy, poll_seconds=5)
    assert watch.observe([(pod("a"), reading_of(1_000, HELD))], 0.0, "t0") is None
    assert watch.check(10.0).reason == drift.INSUFFICIENT_DATA
    assert watch.next_scrape == 10.0  # a sixth of the window
    watch.observe([(pod("a"), reading_of(1_300, HELD))], 30.0, "t30")
    # The predictor restarted (its counters start again) and a second pod came up.
    watch.observe([(pod("a"), reading_of(200, HELD)), (pod("b"), reading_of(100, HELD))], 45, "")
    report = watch.observe(
        [(pod("a"), reading_of(250, HELD)), (pod("b"), reading_of(150, HELD))], 60.0, "t60"
    )
    assert report is not None and report.rows == 300 + 200 + 100 + 50 + 50
    assert report.check.reason == drift.FEATURE_DRIFT  # every row SS, half the hold-out's
    assert watch.last_status["windowStart"] == "t0" and watch.last_status["pods"] == 2
    # The next window starts from the scrape that ended this one: nothing counted twice.
    assert watch.observe([(pod("a"), reading_of(260, HELD))], 70.0, "") is None
    assert watch.window is not None and watch.window.totals.predictions["Low"] == 10


def test_a_reload_to_another_model_starts_a_window_afresh() -> None:
    watch = DriftWatch(DriftPolicy(window_seconds=60, min_rows=100))
    watch.observe([(pod("a"), reading_of(1_000, HELD))], 0.0, "t0")
    watch.observe([(pod("a"), reading_of(50, HELD, sha256="ef" * 32))], 30.0, "t30")
    assert watch.window is not None and watch.window.expected_sha256 == "ef" * 32
    assert watch.observe([(pod("a"), reading_of(500, HELD, "ef" * 32))], 65.0, "") is None


def test_no_readable_pod_starts_no_window() -> None:
    watch = DriftWatch(POLICY)
    assert watch.observe([(pod("a"), None)], 0.0, "t0") is None
    assert watch.window is None
    assert "could be read" in watch.check(1.0).message


# Carried out by the reconcile (the unit stand-ins for the API server and the pods).


def test_the_reconcile_reports_drift_announces_changes_and_changes_nothing_that_runs() -> None:
    world = World()
    now = [0.0]
    world.reconciler.clock = lambda: now[0]
    traffic = {"rows": 0.0, "format": "SS"}

    def answer(_deployment: Any) -> list[tuple[PodState, PodReading | None]]:
        return [(pod("p1"), reading_of(traffic["rows"], HELD_EVEN, fmt=str(traffic["format"])))]

    world.pods.answer = answer
    drift_spec = {"drift": {"windowSeconds": 60, "minRows": 100}}
    tracked = world.retailmodel(monitoring=drift_spec)
    world.reconcile(tracked)  # applies the children; no pod to read yet
    assert world.condition(tracked, "Drift")[:2] == ("Unknown", drift.INSUFFICIENT_DATA)
    assert world.condition(tracked, "Ready")[0] == "True"  # drift is never part of Ready
    applied = len(world.store.applied)
    assert applied > 0

    def look(at: float, rows: float, fmt: str = "SS") -> Any:
        now[0], traffic["rows"], traffic["format"] = at, rows, fmt
        return world.reconcile(tracked)

    outcome = look(0.0, 1_000)  # the window opens on this scrape
    assert outcome.retry_after == 10.0  # the next scrape: a sixth of the window
    look(61.0, 1_500, fmt="XLS")  # half the hold-out is SS, half XLS: 500 rows of XLS only
    assert world.condition(tracked, "Drift")[:2] == ("True", drift.FEATURE_DRIFT)
    assert tracked.written is not None and tracked.written["drift"]["rows"] == 500
    assert ("Warning", drift.FEATURE_DRIFT) in [(t, r) for t, r, _ in world.events]
    look(122.0, 1_800, fmt="XLS")  # still drift: no second Event
    assert [r for _, r, _ in world.events].count(drift.FEATURE_DRIFT) == 1
    look(183.0, 1_810, fmt="XLS")  # 10 rows: too few to judge
    assert world.condition(tracked, "Drift")[:2] == ("Unknown", drift.INSUFFICIENT_DATA)
    assert ("Normal", drift.INSUFFICIENT_DATA) in [(t, r) for t, r, _ in world.events]
    # Watching changed nothing: every reconcile applied the very children the first one did.
    first = world.store.applied[:applied]
    assert all(m in first for m in world.store.applied[applied:])

    tracked.body["spec"].pop("monitoring")  # no longer asked for: no condition, no report
    world.reconcile(tracked)
    written = tracked.written or {}
    assert "Drift" not in [c["type"] for c in written.get("conditions", [])]
    assert "drift" not in written


HELD_EVEN = HoldOut({"Low": 500}, {("STORE_FORMAT", "SS"): 250, ("STORE_FORMAT", "XLS"): 250})
