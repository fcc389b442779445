"""The canary verdict from two groups' metric samples: every rule, silence, and the windows."""

from __future__ import annotations

import pytest

from retail_operator.canary.analysis import (
    DEADLINE,
    ERROR_RATE,
    LATENCY_RATIO,
    POD_HEALTH,
    PREDICTION_SHIFT,
    Counts,
    Decision,
    GroupEvidence,
    judge,
)
from retail_operator.canary.evidence import GroupWindow, PodReading, PodState
from retail_operator.spec import Analysis
from retail_serving.metrics import LATENCY_BUCKETS, ServingMetrics

POLICY = Analysis(
    duration_seconds=120,
    min_requests=200,
    max_error_rate=0.01,
    max_latency_ratio=1.5,
    max_prediction_shift=0.10,
)
LONG_ENOUGH = 120.0


def group(
    requests: int,
    *,
    failed: int = 0,
    latency: float = 0.004,
    shares: tuple[float, float, float] = (0.3, 0.5, 0.2),
) -> GroupEvidence:
    """A group's window: ``requests`` each predicting one row, all at ``latency`` seconds."""
    return GroupEvidence(counts(requests, failed=failed, latency=latency, shares=shares))


def counts(
    requests: int,
    *,
    failed: int = 0,
    latency: float = 0.004,
    shares: tuple[float, float, float] = (0.3, 0.5, 0.2),
) -> Counts:
    answered = requests - failed
    bounds = [*LATENCY_BUCKETS, float("inf")]
    return Counts(
        requests=requests,
        failed=failed,
        latency={bound: float(requests if latency <= bound else 0) for bound in bounds},
        predictions={
            name: answered * share
            for name, share in zip(("Low", "Medium", "High"), shares, strict=True)
        },
    )


def test_a_candidate_like_the_stable_model_is_promoted_after_the_duration() -> None:
    verdict = judge(group(600), group(300), POLICY, LONG_ENOUGH)
    assert verdict.decision is Decision.PROMOTE
    figures = verdict.figures
    assert (figures.requests, figures.stable_requests) == (300, 600)
    assert figures.error_rate == 0 and figures.prediction_shift == pytest.approx(0)
    assert figures.latency_ratio == pytest.approx(1.0)
    assert "300 candidate / 600 stable requests" in verdict.message


def test_too_early_waits_even_when_every_rule_holds() -> None:
    verdict = judge(group(600), group(300), POLICY, LONG_ENOUGH - 1)
    assert verdict.decision is Decision.WAIT
    assert "119 s so far" in verdict.message


@pytest.mark.parametrize(
    ("stable", "candidate"),
    [(0, 0), (600, 0), (600, 199), (199, 600)],
    ids=["silence", "no candidate traffic", "one short", "stable short"],
)
def test_fewer_than_min_requests_never_promotes_however_long(stable: int, candidate: int) -> None:
    verdict = judge(group(stable), group(candidate), POLICY, POLICY.deadline_seconds - 1)
    assert verdict.decision is Decision.WAIT
    assert "Waiting for traffic" in verdict.message
    late = judge(group(stable), group(candidate), POLICY, POLICY.deadline_seconds)
    assert late.decision is Decision.ROLL_BACK and late.rule == DEADLINE
    assert late.message.startswith("no verdict within 1200 s (Waiting for traffic")


def test_the_deadline_defaults_to_ten_durations_and_can_be_set() -> None:
    assert POLICY.deadline_seconds == 1200
    assert POLICY.model_copy(update={"max_duration_seconds": 300}).deadline_seconds == 300


def test_a_canary_pod_incident_rolls_back_whatever_the_figures() -> None:
    incident = "pod prices-canary-x restarted (1 container restart(s))"
    crashed = GroupEvidence(counts(300), (incident,))
    verdict = judge(group(600), crashed, POLICY, 1.0)
    assert verdict.decision is Decision.ROLL_BACK and verdict.rule == POD_HEALTH
    assert verdict.message.startswith("pod prices-canary-x restarted")


def test_the_error_rule_rolls_back_a_candidate_that_fails_requests() -> None:
    verdict = judge(group(600), group(300, failed=6), POLICY, elapsed=5)  # 2% > 1%, early
    assert verdict.decision is Decision.ROLL_BACK and verdict.rule == ERROR_RATE
    assert verdict.figures.error_rate == pytest.approx(0.02)
    assert verdict.message.startswith("errorRate 0.02 > 0.01")


def test_an_error_rate_at_the_limit_passes() -> None:
    verdict = judge(group(600), group(300, failed=3), POLICY, LONG_ENOUGH)  # exactly 1%
    assert verdict.decision is Decision.PROMOTE


def test_the_latency_rule_compares_p99s() -> None:
    verdict = judge(group(600, latency=0.004), group(300, latency=0.02), POLICY, LONG_ENOUGH)
    assert verdict.decision is Decision.ROLL_BACK and verdict.rule == LATENCY_RATIO
    # both p99s interpolated in their buckets: (0.01, 0.025] over (0.0025, 0.005]
    assert verdict.figures.latency_ratio == pytest.approx(0.024850 / 0.004975, rel=1e-3)


def test_the_shift_rule_rolls_back_a_candidate_that_predicts_one_class() -> None:
    verdict = judge(group(600), group(300, shares=(0.0, 0.0, 1.0)), POLICY, LONG_ENOUGH)
    assert verdict.decision is Decision.ROLL_BACK and verdict.rule == PREDICTION_SHIFT
    assert verdict.figures.prediction_shift == pytest.approx(0.8)
    assert verdict.figures.shifted_class == "High"
    assert "prediction shift 0.800 on High" in verdict.message


def test_a_shift_within_the_limit_passes() -> None:
    verdict = judge(group(600), group(300, shares=(0.25, 0.45, 0.3)), POLICY, LONG_ENOUGH)
    assert verdict.decision is Decision.PROMOTE
    assert verdict.figures.prediction_shift == pytest.approx(0.1)


def test_without_predictions_on_one_side_there_is_nothing_to_compare() -> None:
    """Every stable request failed: no shares to compare the candidate's with."""
    stable = group(600, failed=600)
    verdict = judge(stable, group(300), POLICY, LONG_ENOUGH)
    assert verdict.decision is Decision.WAIT
    assert "No predictions to compare" in verdict.message


def test_a_window_is_what_each_pod_did_between_the_scrapes() -> None:
    sha = "ab" * 32

    def scrape(**pods: int) -> list[tuple[PodState, PodReading | None]]:
        return [
            (PodState(name, f"uid-{name}", ready=True, restarts=0), PodReading(counts(n), "", sha))
            for name, n in pods.items()
        ]

    window = GroupWindow(sha)
    window.record(scrape(a=1000, b=500))  # the baseline
    window.record(scrape(a=1100, b=50, c=30))  # b restarted since; c is new since the start
    window.record(scrape(a=1200, b=80, c=40))
    assert window.totals.requests == 200 + (50 + 30) + (30 + 10)
    assert window.totals.latency[float("inf")] == 320
    assert sum(window.totals.predictions.values()) == pytest.approx(320)


def test_the_predictors_own_metrics_parse_into_a_sample() -> None:
    """The operator reads what the predictor writes: the names are the contract's."""
    metrics = ServingMetrics()
    for status, count in (("200", 8), ("500", 2), ("422", 5)):
        metrics.requests.labels("/predict", "POST", status).inc(count)
    metrics.requests.labels("/model/info", "GET", "500").inc(7)  # not a prediction route
    for _ in range(15):
        metrics.latency.labels("/predict").observe(0.003)
    metrics.latency.labels("/metrics").observe(2.0)
    metrics.predicted("v7", ("Low", "Medium", "High"), [1, 0, 7])
    metrics.model_swapped("v7", "ab" * 32, 0.0)

    reading = PodReading.parse(metrics.render().decode())
    sample = reading.counts
    assert (sample.requests, sample.failed) == (15, 2)
    assert sample.predictions == {"Low": 1, "Medium": 0, "High": 7}
    assert sample.latency[0.005] == 15 and sample.latency[float("inf")] == 15
    assert (reading.model_version, reading.model_sha256) == ("v7", "ab" * 32)
