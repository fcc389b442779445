"""Judging a canary: may the candidate model take all the traffic? Pure, tested without I/O.

The operator scrapes every pod of the stable group and of the canary group twice: when the
analysis starts and now (``PodSample.parse`` reads one pod's ``/metrics``). ``increase``
turns two scrapes of a group into what the group did in between, pod by pod, the way
Prometheus's ``increase()`` does: a pod that restarted (its counters went down) or appeared
since counts from zero. ``judge`` compares the two groups under the policy:

* fewer than ``minRequests`` prediction requests in either group: **Wait** (silence never
  promotes, and there is nothing to compare with);
* a rule broken: **RollBack**, naming the rule and the figures. Checked as soon as there are
  enough requests: a candidate failing requests need not be watched to the end;
  - error rate: the candidate's failed (5xx) prediction requests over all of them;
  - latency ratio: the candidate's p99 over the stable group's, from the latency histograms
    (interpolated inside a bucket, as Prometheus's ``histogram_quantile`` does);
  - prediction shift: the largest difference, over the classes, between the share of rows the
    candidate predicted as that class and the share the stable model did;
* every rule holds but ``durationSeconds`` has not passed: **Wait**;
* otherwise **Promote**.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families

from retail_contract import metrics as names
from retail_operator.spec import Analysis

QUANTILE = 0.99
ERROR_RATE = "errorRate"
LATENCY_RATIO = "latencyRatio"
PREDICTION_SHIFT = "predictionShift"

Key = TypeVar("Key", str, float)


@dataclass(frozen=True)
class PodSample:
    """One pod's prediction counters at one moment (or a group's increase over a window)."""

    requests: float = 0.0  # prediction requests, any status
    failed: float = 0.0  # of which answered 5xx
    latency: Mapping[float, float] = field(default_factory=dict)  # bucket bound → cumulative
    predictions: Mapping[str, float] = field(default_factory=dict)  # rows by predicted class
    model_version: str = ""  # the model the pod serves (retail_model_info)

    @classmethod
    def parse(cls, text: str) -> PodSample:
        """Read the predictor's Prometheus text; ``ValueError`` when it is not that format."""
        requests = failed = 0.0
        latency: dict[float, float] = {}
        predictions: dict[str, float] = {}
        version = ""
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if sample.name == f"{names.REQUESTS}_total":
                    if labels.get(names.ROUTE_LABEL) in names.PREDICTION_ROUTES:
                        requests += sample.value
                        if labels.get(names.STATUS_LABEL, "").startswith("5"):
                            failed += sample.value
                elif sample.name == f"{names.LATENCY}_bucket":
                    if labels.get(names.ROUTE_LABEL) in names.PREDICTION_ROUTES:
                        bound = float(labels["le"])
                        latency[bound] = latency.get(bound, 0.0) + sample.value
                elif sample.name == f"{names.PREDICTIONS}_total":
                    name = labels.get(names.CLASS_LABEL, "")
                    predictions[name] = predictions.get(name, 0.0) + sample.value
                elif sample.name == names.MODEL_INFO and sample.value == 1:
                    version = labels.get("version", "")
        return cls(requests, failed, latency, predictions, version)

    def since(self, earlier: PodSample | None) -> PodSample:
        """What this pod did since ``earlier``; all of it if it is new or restarted since."""
        if earlier is None or self.requests < earlier.requests:
            return self
        return PodSample(
            self.requests - earlier.requests,
            self.failed - earlier.failed,
            _subtract(self.latency, earlier.latency),
            _subtract(self.predictions, earlier.predictions),
            self.model_version,
        )

    def __add__(self, other: PodSample) -> PodSample:
        return PodSample(
            self.requests + other.requests,
            self.failed + other.failed,
            _add(self.latency, other.latency),
            _add(self.predictions, other.predictions),
            self.model_version or other.model_version,
        )

    def quantile(self, q: float) -> float | None:
        """The q-quantile of latency in seconds, or None without observations."""
        buckets = sorted(self.latency.items())
        total = buckets[-1][1] if buckets else 0.0
        if total <= 0:
            return None
        rank = q * total
        lower, below = 0.0, 0.0
        for bound, count in buckets:
            if count >= rank:
                if math.isinf(bound):  # past the last finite bucket: its bound is all we know
                    return lower
                return lower + (bound - lower) * (rank - below) / (count - below)
            lower, below = bound, count
        return lower

    def shares(self) -> dict[str, float]:
        total = sum(self.predictions.values())
        return {name: count / total for name, count in self.predictions.items()} if total else {}


Samples = Mapping[str, PodSample]  # pod (name and uid) → its sample


def _add(a: Mapping[Key, float], b: Mapping[Key, float]) -> dict[Key, float]:
    result = dict(a)
    for key, value in b.items():
        result[key] = result.get(key, 0.0) + value
    return result


def _subtract(a: Mapping[Key, float], b: Mapping[Key, float]) -> dict[Key, float]:
    return {key: value - b.get(key, 0.0) for key, value in a.items()}


def increase(start: Samples, now: Samples) -> PodSample:
    """What a group of pods did between two scrapes (pods gone since are not counted)."""
    total = PodSample()
    for pod, sample in now.items():
        total = total + sample.since(start.get(pod))
    return total


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

    def summary(self, policy: Analysis) -> str:
        parts = [
            f"{self.requests} candidate / {self.stable_requests} stable requests "
            f"(min {policy.min_requests})"
        ]
        if self.error_rate is not None:
            parts.append(f"error rate {self.error_rate:.2%} (max {policy.max_error_rate:.2%})")
        if self.latency_ratio is not None:
            parts.append(f"p99 ratio {self.latency_ratio:.2f} (max {policy.max_latency_ratio:g})")
        if self.prediction_shift is not None:
            parts.append(
                f"prediction shift {self.prediction_shift:.3f} on {self.shifted_class} "
                f"(max {policy.max_prediction_shift:g})"
            )
        return ", ".join(parts)


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    figures: Figures
    message: str
    rule: str = ""  # the rule a RollBack broke: errorRate, latencyRatio or predictionShift


def measure(stable: PodSample, candidate: PodSample) -> Figures:
    error_rate = candidate.failed / candidate.requests if candidate.requests else None
    stable_p99, candidate_p99 = stable.quantile(QUANTILE), candidate.quantile(QUANTILE)
    latency_ratio = candidate_p99 / stable_p99 if stable_p99 and candidate_p99 is not None else None
    stable_shares, candidate_shares = stable.shares(), candidate.shares()
    shift: float | None = None
    shifted = ""
    if stable_shares and candidate_shares:
        shift, shifted = max(
            (abs(candidate_shares.get(c, 0.0) - stable_shares.get(c, 0.0)), c)
            for c in sorted(set(stable_shares) | set(candidate_shares))
        )
    return Figures(
        int(candidate.requests), int(stable.requests), error_rate, latency_ratio, shift, shifted
    )


def _broken(figures: Figures, policy: Analysis) -> tuple[str, float, float] | None:
    """The first rule the figures break: (rule, measured, limit)."""
    limits = (
        (ERROR_RATE, figures.error_rate, policy.max_error_rate),
        (LATENCY_RATIO, figures.latency_ratio, policy.max_latency_ratio),
        (PREDICTION_SHIFT, figures.prediction_shift, policy.max_prediction_shift),
    )
    return next(
        (
            (rule, value, limit)
            for rule, value, limit in limits
            if value is not None and value > limit
        ),
        None,
    )


def judge(stable: PodSample, candidate: PodSample, policy: Analysis, elapsed: float) -> Verdict:
    """The verdict on a candidate after ``elapsed`` seconds of analysis."""
    figures = measure(stable, candidate)
    summary = figures.summary(policy)
    if figures.requests < policy.min_requests or figures.stable_requests < policy.min_requests:
        return Verdict(Decision.WAIT, figures, f"Waiting for traffic: {summary}")
    broken = _broken(figures, policy)
    if broken is not None:
        rule, value, limit = broken
        return Verdict(
            Decision.ROLL_BACK, figures, f"{rule} {value:.3g} > {limit:g}: {summary}", rule
        )
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
