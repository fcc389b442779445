"""The canary judge on simulated traffic: how often it rolls back a candidate that is the same
model (A/A), and how surely and how soon it catches one that is worse.

``python -m bench.canary_judge`` (a few minutes on one core) writes
``bench/results/canary_judge.json``; ``bench.report`` turns it into RESULTS.md's section with
the verdicts against issue 22's targets.

What is simulated, per run: one canary pod beside two stable ones behind a Service, so each
request goes to the canary with probability 1/3; requests arrive as a Poisson stream at a
fixed rate, each predicting one row. Each group's model has its class shares (rows per
predicted class), a failure (5xx) rate and a log-normal latency, counted into the predictor's
own histogram buckets. Every 5 s (the operator's pending interval) the real ``judge`` is
called on both groups' totals since the window opened, exactly as the operator calls it,
until it promotes or rolls back. The class shares are those of the model ``retail_training``
makes, predicted on fresh baskets; the latency is the real path's (p50 3.6 ms, p99 11 ms).
Everything is drawn from one seeded generator, so a rerun gives the same figures.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.common import machine, step, write_result
from retail_operator.canary.analysis import (
    ERROR_ALPHA,
    LATENCY_RANK_Z,
    SHIFT_ALPHA,
    Counts,
    Decision,
    GroupEvidence,
    judge,
)
from retail_operator.canary.statistics import RATE_RATIOS, SHIFT_SCALE
from retail_operator.spec import Analysis
from retail_serving.metrics import LATENCY_BUCKETS
from retail_serving.schema import CLASSES
from retail_tools.candidates import ROWS, TRAFFIC_SEED
from retail_training import dataset, training

SEED = 22
LOOK_SECONDS = 5
CANARY_SHARE = 1 / 3  # one canary pod beside two stable ones
BOUNDS = (*LATENCY_BUCKETS, math.inf)
BUSY, MODERATE, QUIET = 300, 150, 30  # requests per second, both groups together
STABLE_SEED, RETRAINED_SEED = 11, 7  # the unit tests' training seed, and another
FRESH_BASKETS = 20_000
# The documented sample size: 6,000 candidate rows beside 12,000 stable (MODERATE traffic
# reaches it at the default durationSeconds).
SAMPLE_SIZE = 6_000
# Candidate requests at which the share of runs already rolled back is recorded.
CURVE = (500, 1_000, 2_000, 3_000, 4_000, 5_000, 6_000, 8_000, 12_000)

Row = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Model:
    """What a group's pods do with the traffic."""

    shares: tuple[float, ...]  # rows per predicted class, in CLASSES order
    error_rate: float = 0.005
    latency_median: float = 0.0036  # seconds
    latency_sigma: float = 0.48  # log-normal: p99 = median × exp(2.326 σ) ≈ 11 ms

    def buckets(self) -> Row:
        """The chance of a request landing in each latency bucket."""
        cumulative = [
            1.0
            if math.isinf(bound)
            else 0.5
            * math.erfc(-math.log(bound / self.latency_median) / self.latency_sigma / 2**0.5)
            for bound in BOUNDS
        ]
        return np.diff([0.0, *cumulative])


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    stable: Model
    candidate: Model
    rate: int  # requests per second, both groups
    runs: int
    expected: Decision
    watched: bool = False  # never promoted: judged every look up to the deadline
    duration_seconds: int | None = None  # the analysis's, where not the default


@dataclass(frozen=True)
class Outcome:
    decision: Decision
    rule: str
    seconds: float
    canary_requests: float


def predicted_shares(seed: int) -> tuple[float, ...]:
    """The share of fresh baskets the model trained from ``seed`` puts in each class."""
    trained = training.train(ROWS, seed=seed)
    columns = dataset.generate(FRESH_BASKETS, seed=TRAFFIC_SEED).columns
    probabilities = trained.booster.inplace_predict(trained.encoder.encode_columns(columns))
    counts = np.bincount(np.asarray(probabilities).argmax(axis=1), minlength=len(CLASSES))
    return tuple(round(float(share), 4) for share in counts / counts.sum())


def shifted(shares: tuple[float, ...], points: float) -> tuple[float, ...]:
    """``shares`` with the most common class moved by ``points``, the others the other way in
    proportion to their shares."""
    top = int(np.argmax(shares))
    rest = sum(share for i, share in enumerate(shares) if i != top)
    return tuple(
        share + points if i == top else share - points * share / rest
        for i, share in enumerate(shares)
    )


def scenarios(stable_shares: tuple[float, ...], retrained: tuple[float, ...]) -> list[Scenario]:
    same = Model(stable_shares)
    slower = replace(same, latency_median=3 * same.latency_median)
    clean = replace(same, error_rate=0.0)
    down, up = Model(shifted(stable_shares, -0.05)), Model(shifted(stable_shares, 0.05))
    return [
        Scenario("aa-busy-watched", "A/A, watched to the deadline", same, same, BUSY, 10_000,
                 Decision.PROMOTE, watched=True),
        Scenario("aa-quiet-watched", "A/A, watched to the deadline", same, same, QUIET, 10_000,
                 Decision.PROMOTE, watched=True),
        Scenario("aa-busy", "A/A", same, same, BUSY, 4000, Decision.PROMOTE),
        Scenario("aa-quiet", "A/A", same, same, QUIET, 4000, Decision.PROMOTE),
        Scenario("shift-down-moderate", "most common class 5 points down", same, down, MODERATE,
                 4000, Decision.ROLL_BACK),
        Scenario("shift-up-moderate", "most common class 5 points up", same, up, MODERATE, 4000,
                 Decision.ROLL_BACK),
        Scenario("shift-down-busy", "most common class 5 points down", same, down, BUSY, 4000,
                 Decision.ROLL_BACK),
        Scenario("retrained-busy", f"another training (seed {RETRAINED_SEED}'s shares)", same,
                 Model(retrained), BUSY, 4000, Decision.PROMOTE),
        Scenario("errors-busy", "errors 0.5 % → 2.5 %", same, replace(same, error_rate=0.025),
                 BUSY, 4000, Decision.ROLL_BACK),
        Scenario("errors-from-zero-busy", "errors 0 % → 2 %", clean,
                 replace(clean, error_rate=0.02), BUSY, 4000, Decision.ROLL_BACK),
        Scenario("errors-quiet", "errors 0.5 % → 2.5 %", same, replace(same, error_rate=0.025),
                 QUIET, 4000, Decision.ROLL_BACK),
        Scenario("errors-quiet-longer", "errors 0.5 % → 2.5 %, durationSeconds 180", same,
                 replace(same, error_rate=0.025), QUIET, 4000, Decision.ROLL_BACK,
                 duration_seconds=180),
        Scenario("errors-from-zero-quiet", "errors 0 % → 2 %", clean,
                 replace(clean, error_rate=0.02), QUIET, 4000, Decision.ROLL_BACK),
        Scenario("errors-below-floor-busy", "errors 0.5 % → 1.2 % (under maxErrorRate)", same,
                 replace(same, error_rate=0.012), BUSY, 4000, Decision.PROMOTE),
        Scenario("latency-busy", "every request 3× slower (bucketed p99 ratio 2.8)", same, slower,
                 BUSY, 4000, Decision.ROLL_BACK),
    ]  # fmt: skip


def _evidence(totals: Row) -> GroupEvidence:
    """A group's totals row (requests, failed, rows per class, requests per latency bucket)
    as the evidence the operator hands the judge."""
    requests, failed, *rest = totals.tolist()
    rows, per_bucket = rest[: len(CLASSES)], rest[len(CLASSES) :]
    latency = dict(zip(BOUNDS, np.cumsum(per_bucket).tolist(), strict=True))
    return GroupEvidence(Counts(requests, failed, latency, dict(zip(CLASSES, rows, strict=True))))


def _draw(rng: np.random.Generator, model: Model, requests: npt.NDArray[np.int64]) -> Row:
    """What ``requests`` (one count per run) did in one look's interval, a row per run."""
    failed = rng.binomial(requests, model.error_rate)
    rows = rng.multinomial(requests - failed, model.shares)
    latency = rng.multinomial(requests, model.buckets())
    return np.column_stack((requests, failed, rows, latency)).astype(np.float64)


def simulate(scenario: Scenario, policy: Analysis, rng: np.random.Generator) -> list[Outcome]:
    if scenario.watched:  # no promotion before the deadline: every look counts
        policy = policy.model_copy(update={"duration_seconds": policy.deadline_seconds})
    elif scenario.duration_seconds is not None:
        policy = policy.model_copy(update={"duration_seconds": scenario.duration_seconds})
    width = 2 + len(CLASSES) + len(BOUNDS)
    stable, canary = np.zeros((scenario.runs, width)), np.zeros((scenario.runs, width))
    outcomes: dict[int, Outcome] = {}
    look = 0
    while len(outcomes) < scenario.runs:
        look += 1
        active = np.array([run for run in range(scenario.runs) if run not in outcomes])
        arrived = rng.poisson(scenario.rate * LOOK_SECONDS, len(active))
        to_canary = rng.binomial(arrived, CANARY_SHARE)
        stable[active] += _draw(rng, scenario.stable, arrived - to_canary)
        canary[active] += _draw(rng, scenario.candidate, to_canary)
        elapsed = float(look * LOOK_SECONDS)
        for run in active:
            verdict = judge(_evidence(stable[run]), _evidence(canary[run]), policy, elapsed)
            if verdict.decision is not Decision.WAIT:
                outcomes[run] = Outcome(verdict.decision, verdict.rule, elapsed, canary[run, 0])
    return [outcomes[run] for run in range(scenario.runs)]


def wilson(hits: int, runs: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a rate measured as ``hits`` in ``runs``."""
    rate = hits / runs
    centre = (rate + z * z / (2 * runs)) / (1 + z * z / runs)
    half = z * math.sqrt(rate * (1 - rate) / runs + z * z / (4 * runs * runs)) / (1 + z * z / runs)
    return max(centre - half, 0.0), min(centre + half, 1.0)


def summarise(scenario: Scenario, outcomes: list[Outcome], seconds: float) -> dict[str, Any]:
    rolled_back = [o for o in outcomes if o.decision is Decision.ROLL_BACK]
    expected = [o for o in outcomes if o.decision is scenario.expected]
    by_rule = Counter(o.rule for o in rolled_back)
    low, high = wilson(len(rolled_back), len(outcomes))
    times = np.array([o.seconds for o in expected])
    requests = np.array([o.canary_requests for o in expected])
    return {
        "name": scenario.name,
        "what": scenario.what,
        "rate": scenario.rate,
        "runs": scenario.runs,
        "watched": scenario.watched,
        "expected": scenario.expected.value,
        "stable": asdict(scenario.stable),
        "candidate": asdict(scenario.candidate),
        "promoted": sum(o.decision is Decision.PROMOTE for o in outcomes),
        "rolled_back": len(rolled_back),
        "rolled_back_by_rule": dict(sorted(by_rule.items())),
        "rolled_back_interval": [low, high],
        "rolled_back_by_canary_requests": {
            str(n): sum(o.canary_requests <= n for o in rolled_back) / len(outcomes) for n in CURVE
        },
        "verdict_seconds": _percentiles(times),
        "verdict_canary_requests": _percentiles(requests),
        "seconds": round(seconds, 1),
    }


def _percentiles(values: Row) -> dict[str, float] | None:
    if not len(values):
        return None
    return {"median": float(np.median(values)), "p95": float(np.percentile(values, 95))}


def main() -> None:
    step(f"training seeds {STABLE_SEED} and {RETRAINED_SEED} for their predicted class shares")
    stable_shares = predicted_shares(STABLE_SEED)
    retrained = predicted_shares(RETRAINED_SEED)
    step(f"shares {dict(zip(CLASSES, stable_shares, strict=True))}, retrained {retrained}")
    policy = Analysis()
    rng = np.random.default_rng(SEED)
    results = []
    for scenario in scenarios(stable_shares, retrained):
        started = time.perf_counter()
        outcomes = simulate(scenario, policy, rng)
        result = summarise(scenario, outcomes, time.perf_counter() - started)
        step(
            f"{scenario.name}: {result['rolled_back']} of {scenario.runs} rolled back "
            f"{result['rolled_back_by_rule']}, verdict {result['verdict_seconds']} s "
            f"({result['seconds']:.0f} s)"
        )
        results.append(result)
    write_result(
        "canary_judge",
        {
            "settings": {
                "seed": SEED,
                "look_seconds": LOOK_SECONDS,
                "canary_share": CANARY_SHARE,
                "sample_size": SAMPLE_SIZE,
                "policy": policy.model_dump(by_alias=True),
                "deadline_seconds": policy.deadline_seconds,
                "error_alpha": ERROR_ALPHA,
                "shift_alpha": SHIFT_ALPHA,
                "shift_scale": SHIFT_SCALE,
                "rate_ratios": list(RATE_RATIOS),
                "latency_rank_z": LATENCY_RANK_Z,
                "stable_shares": dict(zip(CLASSES, stable_shares, strict=True)),
                "retrained_shares": dict(zip(CLASSES, retrained, strict=True)),
            },
            "machine": machine(),
            "scenarios": results,
        },
    )


if __name__ == "__main__":
    main()
