"""The canary verdict from two groups' metric samples: every rule, silence, and the windows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from retail_operator.canary.analysis import (
    DEADLINE,
    ERROR_ALPHA,
    ERROR_RATE,
    LATENCY_RATIO,
    POD_HEALTH,
    PREDICTION_SHIFT,
    SHIFT_ALPHA,
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
    max_prediction_shift=0.03,
)
LONG_ENOUGH = 120.0
BOUNDS = (*LATENCY_BUCKETS, float("inf"))
SHARES = (0.28, 0.43, 0.29)  # the trained model's predicted classes on fresh baskets
FIVE_POINTS = (0.305, 0.38, 0.315)  # Medium five points down, the others up in proportion
SLOW = 0.02


def group(
    requests: int,
    *,
    failed: int = 0,
    latency: float = 0.004,
    slow: int = 0,
    shares: tuple[float, float, float] = SHARES,
) -> GroupEvidence:
    """A group's window: ``requests`` each predicting one row, all at ``latency`` seconds but
    ``slow`` of them at ``SLOW``."""
    return GroupEvidence(counts(requests, failed=failed, latency=latency, slow=slow, shares=shares))


def counts(
    requests: int,
    *,
    failed: int = 0,
    latency: float = 0.004,
    slow: int = 0,
    shares: tuple[float, float, float] = SHARES,
) -> Counts:
    answered = requests - failed
    return Counts(
        requests=requests,
        failed=failed,
        latency={
            bound: float((requests - slow) * (latency <= bound) + slow * (SLOW <= bound))
            for bound in BOUNDS
        },
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
    assert figures.shift_p_value == 1 and figures.error_p_value == 1
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


def test_the_error_rule_rolls_back_a_candidate_that_fails_more_than_the_stable_pods() -> None:
    verdict = judge(group(600), group(300, failed=6), POLICY, elapsed=5)  # 2 % against 0 %
    assert verdict.decision is Decision.ROLL_BACK and verdict.rule == ERROR_RATE
    assert verdict.figures.error_rate == pytest.approx(0.02)
    assert verdict.figures.error_p_value is not None
    assert verdict.figures.error_p_value <= ERROR_ALPHA
    assert verdict.message.startswith("errorRate 2.00% vs 0.00% stable, 2.00% more > 1.00% (p 0.0")


def test_a_few_failures_are_not_a_verdict() -> None:
    """Four failures in 200 (2 %) beside a stable group failing 0.5 %: chance can do it."""
    verdict = judge(group(1_200, failed=6), group(200, failed=4), POLICY, elapsed=5)
    assert verdict.decision is Decision.WAIT
    assert verdict.figures.error_p_value is not None and verdict.figures.error_p_value > 0.1


def test_failing_as_often_as_the_stable_pods_is_no_regression() -> None:
    verdict = judge(group(6_000, failed=300), group(3_000, failed=150), POLICY, LONG_ENOUGH)
    assert verdict.decision is Decision.PROMOTE  # 5 % on both sides


@pytest.mark.parametrize(
    ("stable_failed", "candidate_failed"),
    [(0, 150), (1_200, 840)],
    ids=["0% to 0.5%", "2% to 2.8%"],
)
def test_a_clear_rise_in_failures_smaller_than_max_error_rate_passes(
    stable_failed: int, candidate_failed: int
) -> None:
    """On 60,000 and 30,000 requests the rise is beyond chance, but within the tolerated point
    above the stable pods' rate (the 2.8 % is above 1 % on its own: the excess is what counts)."""
    verdict = judge(
        group(60_000, failed=stable_failed),
        group(30_000, failed=candidate_failed),
        POLICY,
        LONG_ENOUGH,
    )
    assert verdict.figures.error_p_value is not None
    assert verdict.figures.error_p_value <= ERROR_ALPHA
    assert verdict.decision is Decision.PROMOTE


def test_the_latency_rule_compares_p99s() -> None:
    verdict = judge(group(600, latency=0.004), group(300, latency=0.02), POLICY, LONG_ENOUGH)
    assert verdict.decision is Decision.ROLL_BACK and verdict.rule == LATENCY_RATIO
    # both p99s interpolated in their buckets: (0.01, 0.025] over (0.0025, 0.005]
    assert verdict.figures.latency_ratio == pytest.approx(0.024850 / 0.004975, rel=1e-3)
    assert verdict.figures.latency_ratio_low is not None
    assert 1.5 < verdict.figures.latency_ratio_low < verdict.figures.latency_ratio
    assert verdict.message.startswith("latencyRatio 4.99, at least 4.9")


def test_a_few_slow_requests_do_not_make_a_slow_p99() -> None:
    """4 of 300 requests slow put the p99 in the slow bucket, but its rank could be below it."""
    verdict = judge(group(600), group(300, slow=4), POLICY, LONG_ENOUGH)
    assert verdict.figures.latency_ratio is not None and verdict.figures.latency_ratio > 2
    assert verdict.decision is Decision.PROMOTE


def test_the_same_share_of_slow_requests_on_many_requests_rolls_back() -> None:
    verdict = judge(group(40_000), group(20_000, slow=300), POLICY, LONG_ENOUGH)
    assert verdict.decision is Decision.ROLL_BACK and verdict.rule == LATENCY_RATIO


def test_the_shift_rule_rolls_back_a_candidate_that_predicts_one_class() -> None:
    verdict = judge(group(600), group(300, shares=(0.0, 0.0, 1.0)), POLICY, LONG_ENOUGH)
    assert verdict.decision is Decision.ROLL_BACK and verdict.rule == PREDICTION_SHIFT
    assert verdict.figures.prediction_shift == pytest.approx(0.71)
    assert verdict.figures.shifted_class == "High"
    assert verdict.message.startswith("predictionShift 0.71 on High > 0.03 (p ")
    assert "prediction shift 0.710 on High" in verdict.message


def test_a_five_point_shift_rolls_back_once_the_rows_show_it() -> None:
    verdict = judge(group(12_000), group(6_000, shares=FIVE_POINTS), POLICY, elapsed=60)
    assert verdict.decision is Decision.ROLL_BACK and verdict.rule == PREDICTION_SHIFT
    assert verdict.figures.shifted_class == "Medium"


def test_a_shift_on_too_few_rows_is_not_yet_evidence() -> None:
    """Five points measured on 300 rows: well within what chance does to 300 rows."""
    verdict = judge(group(600), group(300, shares=FIVE_POINTS), POLICY, elapsed=5)
    assert verdict.figures.prediction_shift == pytest.approx(0.05)
    assert verdict.decision is Decision.WAIT


def test_a_real_shift_smaller_than_max_prediction_shift_passes() -> None:
    """Two trainings on different seeds predict High 1.3 points apart: beyond chance on
    120,000 rows, within the floor."""
    seed_11, seed_7 = (0.2764, 0.4285, 0.2951), (0.2776, 0.4402, 0.2822)
    verdict = judge(
        group(240_000, shares=seed_11), group(120_000, shares=seed_7), POLICY, LONG_ENOUGH
    )
    assert verdict.figures.shift_p_value is not None
    assert verdict.figures.shift_p_value <= SHIFT_ALPHA
    assert verdict.decision is Decision.PROMOTE


def test_without_predictions_on_one_side_there_is_nothing_to_compare() -> None:
    """Every stable request failed: no shares to compare the candidate's with."""
    stable = group(600, failed=600)
    verdict = judge(stable, group(300), POLICY, LONG_ENOUGH)
    assert verdict.decision is Decision.WAIT
    assert "No predictions to compare" in verdict.message


def test_same_model_canaries_are_rarely_rolled_back_however_often_the_judge_looks() -> None:
    """A/A at low traffic (a canary pod at 10 requests/s beside two stable ones), judged every
    5 s up to the deadline. Comparing raw figures with the floors rolls back most such runs;
    bench/canary_judge.py measures this properly, with thousands of runs."""
    rng = np.random.default_rng(2203)
    watched = POLICY.model_copy(update={"duration_seconds": 600, "max_duration_seconds": 600})
    latency = np.diff([0.0, *(_lognormal_cdf(b, 0.0036, 0.48) for b in BOUNDS)])
    runs, rolled_back = 200, 0
    for _ in range(runs):
        totals = {"stable": np.zeros(5 + len(BOUNDS)), "canary": np.zeros(5 + len(BOUNDS))}
        for look in range(1, 120):
            for name, rate in (("stable", 20), ("canary", 10)):
                requests = rng.poisson(rate * 5)
                failed = rng.binomial(requests, 0.005)
                rows = rng.multinomial(requests - failed, SHARES)
                slow = rng.multinomial(requests, latency)
                totals[name] += np.concatenate(([requests, failed], rows, slow))
            verdict = judge(
                _evidence(totals["stable"]), _evidence(totals["canary"]), watched, look * 5
            )
            if verdict.decision is not Decision.WAIT:
                rolled_back += verdict.decision is Decision.ROLL_BACK
                break
    assert rolled_back <= runs * (ERROR_ALPHA + SHIFT_ALPHA)


def _lognormal_cdf(bound: float, median: float, sigma: float) -> float:
    return 1.0 if math.isinf(bound) else 0.5 * math.erfc(-math.log(bound / median) / sigma / 2**0.5)


def _evidence(totals: np.ndarray) -> GroupEvidence:
    requests, failed, *rest = totals.tolist()
    rows, per_bucket = rest[:3], rest[3:]
    cumulative = np.cumsum(per_bucket).tolist()
    return GroupEvidence(
        Counts(
            requests,
            failed,
            dict(zip(BOUNDS, cumulative, strict=True)),
            dict(zip(("Low", "Medium", "High"), rows, strict=True)),
        )
    )


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
