"""The judge: may the candidate model take all the traffic? Pure, tested without I/O.

``judge`` compares two groups' evidence over the analysis window, the stable pods' and the
canary pods' (``evidence`` adds it up from their ``/metrics``), under the RetailModel's
``spec.rollout.canary.analysis``. It is asked again every few seconds on growing counts, so
its statistical rules are tests whose false-alarm rates hold over any number of looks
(``statistics``), each paired with a floor below which a difference is not worth a rollback:

* a canary pod restarted, or stopped being Ready, during the window: **RollBack** at once
  (rule ``podHealth``): a candidate that crashes under load has lost requests nobody counted;
* fewer than ``minRequests`` prediction requests in either group: **Wait** (silence never
  promotes, and there is nothing to compare with);
* a rule broken: **RollBack**, naming the rule and the figures. Checked at every look from
  ``minRequests`` on: a candidate failing requests need not be watched to the end;
  - error rate: the test says the candidate fails (5xx) more often than the stable pods
    (anytime-valid p-value at most ``ERROR_ALPHA``) *and* its measured rate exceeds theirs by
    more than ``maxErrorRate``;
  - latency ratio: the candidate's p99 over the stable group's, from the latency histograms
    (interpolated inside a bucket, as Prometheus's ``histogram_quantile`` does), is above
    ``maxLatencyRatio`` even read at its least: the candidate's quantile at a rank
    ``LATENCY_RANK_Z`` standard errors below 0.99, over the stable group's that far above.
    With few observations those ranks reach the ends of the data, so the rule cannot fire
    on a handful of slow requests;
  - prediction shift: the test says the candidate's rows fall into the classes in other
    proportions than the stable model's (anytime-valid p-value at most ``SHIFT_ALPHA``) *and*
    the largest difference in a class's share exceeds ``maxPredictionShift``;
* past ``maxDurationSeconds`` with no verdict: **RollBack** (rule ``deadline``, reported as
  Inconclusive): a candidate that cannot earn its traffic in time does not keep a canary;
* every rule holds but ``durationSeconds`` has not passed: **Wait**;
* otherwise **Promote**.

A same-model candidate is rolled back by the two tests with probability at most
``ERROR_ALPHA + SHIFT_ALPHA`` over the whole window, however long it runs; docs/operator.md
has the maths and bench/canary_judge.py measures it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from retail_operator.canary import statistics
from retail_operator.spec import Analysis

QUANTILE = 0.99
# Each test's false-alarm rate over the whole window: together 1 % for a same-model candidate.
ERROR_ALPHA = 0.005
SHIFT_ALPHA = 0.005
# How far from 0.99, in standard errors of a sample quantile's rank, the two p99s are read
# before their ratio may roll back: the rank falls within it about 98 times in 100, each side.
# Not an anytime bound; the bench measures what it leaves of false alarms across looks.
LATENCY_RANK_Z = 2.0
ERROR_RATE = "errorRate"
LATENCY_RATIO = "latencyRatio"
PREDICTION_SHIFT = "predictionShift"
POD_HEALTH = "podHealth"
DEADLINE = "deadline"

Key = TypeVar("Key", str, float, tuple[str, str])
Bin = tuple[str, str]  # (input feature, bin)


@dataclass(frozen=True)
class Counts:
    """What pods did: prediction requests, how many failed, their latency histogram and the
    rows predicted per class. One pod's counters at one moment, or a group's sum over a
    window."""

    requests: float = 0.0  # prediction requests, any status
    failed: float = 0.0  # of which answered 5xx
    latency: Mapping[float, float] = field(default_factory=dict)  # bucket bound → cumulative
    predictions: Mapping[str, float] = field(default_factory=dict)  # rows by predicted class
    # Rows by input feature and bin, of the model the pod serves (drift; empty for a model
    # without a drift reference).
    features: Mapping[Bin, float] = field(default_factory=dict)

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.requests + other.requests,
            self.failed + other.failed,
            _add(self.latency, other.latency),
            _add(self.predictions, other.predictions),
            _add(self.features, other.features),
        )

    def __sub__(self, earlier: Counts) -> Counts:
        return Counts(
            self.requests - earlier.requests,
            self.failed - earlier.failed,
            _subtract(self.latency, earlier.latency),
            _subtract(self.predictions, earlier.predictions),
            _subtract(self.features, earlier.features),
        )

    def values(self) -> list[float]:
        return [
            self.requests,
            self.failed,
            *self.latency.values(),
            *self.predictions.values(),
            *self.features.values(),
        ]

    def quantile(self, q: float) -> float | None:
        """The q-quantile of latency in seconds, or None without observations."""
        buckets = sorted(self.latency.items())
        total = buckets[-1][1] if buckets else 0.0
        if total <= 0:
            return None
        rank = q * total
        lower, below = 0.0, 0.0
        for bound, count in buckets:
            if count >= rank and count > below:  # an empty bucket holds no quantile, not even q=0
                if math.isinf(bound):  # past the last finite bucket: its bound is all we know
                    return lower
                return lower + (bound - lower) * (rank - below) / (count - below)
            lower, below = bound, count
        return lower

    @property
    def observations(self) -> float:
        """How many latencies the histogram holds (its +Inf bucket)."""
        return max(self.latency.values(), default=0.0)

    def shares(self) -> dict[str, float]:
        total = sum(self.predictions.values())
        return {name: count / total for name, count in self.predictions.items()} if total else {}


def _add(a: Mapping[Key, float], b: Mapping[Key, float]) -> dict[Key, float]:
    result = dict(a)
    for key, value in b.items():
        result[key] = result.get(key, 0.0) + value
    return result


def _subtract(a: Mapping[Key, float], b: Mapping[Key, float]) -> dict[Key, float]:
    return {key: value - b.get(key, 0.0) for key, value in a.items()}


@dataclass(frozen=True)
class GroupEvidence:
    """A group's window: what its pods did, and what went wrong with the pods themselves
    (a restart, a pod that stopped being Ready), each said in words."""

    counts: Counts = Counts()
    incidents: tuple[str, ...] = ()


class Decision(StrEnum):
    WAIT = "Wait"
    PROMOTE = "Promote"
    ROLL_BACK = "RollBack"


@dataclass(frozen=True)
class Figures:
    """What was measured over the analysis window; None where it cannot be measured yet."""

    requests: int = 0  # the candidate's prediction requests
    stable_requests: int = 0
    error_rate: float | None = None
    latency_ratio: float | None = None
    prediction_shift: float | None = None
    shifted_class: str = ""  # the class whose share moved most
    stable_error_rate: float | None = None
    # Anytime-valid p-values: how surprising the counts would be from a candidate that fails
    # no more often than the stable model, or predicts the classes in the same proportions.
    error_p_value: float | None = None
    shift_p_value: float | None = None
    # The least the p99 ratio can be given the counts (the ranks LATENCY_RANK_Z apart).
    latency_ratio_low: float | None = None

    @property
    def error_excess(self) -> float | None:
        if self.error_rate is None or self.stable_error_rate is None:
            return None
        return self.error_rate - self.stable_error_rate

    def summary(self, policy: Analysis) -> str:
        parts = [
            f"{self.requests} candidate / {self.stable_requests} stable requests "
            f"(min {policy.min_requests})"
        ]
        if self.error_rate is not None and self.stable_error_rate is not None:
            parts.append(
                f"error rate {self.error_rate:.2%} vs {self.stable_error_rate:.2%} stable "
                f"(max +{policy.max_error_rate:.2%}, p {self.error_p_value:.2g})"
            )
        if self.latency_ratio is not None and self.latency_ratio_low is not None:
            parts.append(
                f"p99 ratio {self.latency_ratio:.2f}, at least {self.latency_ratio_low:.2f} "
                f"(max {policy.max_latency_ratio:g})"
            )
        if self.prediction_shift is not None:
            parts.append(
                f"prediction shift {self.prediction_shift:.3f} on {self.shifted_class} "
                f"(max {policy.max_prediction_shift:g}, p {self.shift_p_value:.2g})"
            )
        return ", ".join(parts)


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    figures: Figures
    message: str
    rule: str = ""  # the rule a RollBack broke: one of the rule names above


def measure(stable: Counts, candidate: Counts) -> Figures:
    error_rate = candidate.failed / candidate.requests if candidate.requests else None
    stable_error_rate = stable.failed / stable.requests if stable.requests else None
    error_p = None
    if error_rate is not None and stable_error_rate is not None:
        error_p = statistics.excess_p_value(
            stable.failed, stable.requests, candidate.failed, candidate.requests
        )
    latency_ratio = latency_ratio_low = None
    stable_p99, candidate_p99 = stable.quantile(QUANTILE), candidate.quantile(QUANTILE)
    if stable_p99 and candidate_p99 is not None:
        latency_ratio = candidate_p99 / stable_p99
        low, _ = statistics.quantile_ranks(QUANTILE, candidate.observations, LATENCY_RANK_Z)
        _, high = statistics.quantile_ranks(QUANTILE, stable.observations, LATENCY_RANK_Z)
        candidate_least, stable_most = candidate.quantile(low), stable.quantile(high)
        if candidate_least is not None and stable_most:
            latency_ratio_low = candidate_least / stable_most
    stable_shares, candidate_shares = stable.shares(), candidate.shares()
    shift: float | None = None
    shifted = ""
    shift_p = None
    if stable_shares and candidate_shares:
        shift, shifted = max(
            (abs(candidate_shares.get(c, 0.0) - stable_shares.get(c, 0.0)), c)
            for c in sorted(set(stable_shares) | set(candidate_shares))
        )
        shift_p = statistics.shift_p_value(stable.predictions, candidate.predictions)
    return Figures(
        int(candidate.requests),
        int(stable.requests),
        error_rate,
        latency_ratio,
        shift,
        shifted,
        stable_error_rate,
        error_p,
        shift_p,
        latency_ratio_low,
    )


def _broken(figures: Figures, policy: Analysis) -> tuple[str, str] | None:
    """The first rule the figures break: (rule, why in words)."""
    excess = figures.error_excess
    if (
        excess is not None
        and figures.error_p_value is not None
        and figures.error_p_value <= ERROR_ALPHA
        and excess > policy.max_error_rate
    ):
        return ERROR_RATE, (
            f"{ERROR_RATE} {figures.error_rate:.2%} vs {figures.stable_error_rate:.2%} stable, "
            f"{excess:.2%} more > {policy.max_error_rate:.2%} "
            f"(p {figures.error_p_value:.2g} ≤ {ERROR_ALPHA:g})"
        )
    if figures.latency_ratio_low is not None and (
        figures.latency_ratio_low > policy.max_latency_ratio
    ):
        return LATENCY_RATIO, (
            f"{LATENCY_RATIO} {figures.latency_ratio:.3g}, at least "
            f"{figures.latency_ratio_low:.3g} > {policy.max_latency_ratio:g}"
        )
    if (
        figures.prediction_shift is not None
        and figures.shift_p_value is not None
        and figures.shift_p_value <= SHIFT_ALPHA
        and figures.prediction_shift > policy.max_prediction_shift
    ):
        return PREDICTION_SHIFT, (
            f"{PREDICTION_SHIFT} {figures.prediction_shift:.3g} on {figures.shifted_class} > "
            f"{policy.max_prediction_shift:g} (p {figures.shift_p_value:.2g} ≤ {SHIFT_ALPHA:g})"
        )
    return None


def judge(
    stable: GroupEvidence, candidate: GroupEvidence, policy: Analysis, elapsed: float
) -> Verdict:
    """The verdict on a candidate after ``elapsed`` seconds of analysis."""
    figures = measure(stable.counts, candidate.counts)
    summary = figures.summary(policy)
    if candidate.incidents:
        return Verdict(
            Decision.ROLL_BACK,
            figures,
            f"{'; '.join(candidate.incidents)}: {summary}",
            POD_HEALTH,
        )
    verdict = _on_the_figures(figures, policy, elapsed, summary)
    if verdict.decision is Decision.WAIT and elapsed >= policy.deadline_seconds:
        return Verdict(
            Decision.ROLL_BACK,
            figures,
            f"no verdict within {policy.deadline_seconds} s ({verdict.message})",
            DEADLINE,
        )
    return verdict


def _on_the_figures(figures: Figures, policy: Analysis, elapsed: float, summary: str) -> Verdict:
    if figures.requests < policy.min_requests or figures.stable_requests < policy.min_requests:
        return Verdict(Decision.WAIT, figures, f"Waiting for traffic: {summary}")
    broken = _broken(figures, policy)
    if broken is not None:
        rule, why = broken
        return Verdict(Decision.ROLL_BACK, figures, f"{why}: {summary}", rule)
    if figures.prediction_shift is None:
        # Requests, but no row predicted on one side (every one failed there): nothing to
        # compare the candidate's predictions with yet.
        return Verdict(Decision.WAIT, figures, f"No predictions to compare yet: {summary}")
    if elapsed < policy.duration_seconds:
        return Verdict(
            Decision.WAIT,
            figures,
            f"Watching for {policy.duration_seconds} s ({elapsed:.0f} s so far): {summary}",
        )
    return Verdict(Decision.PROMOTE, figures, f"Every rule holds: {summary}")
