"""The drift judge: has what the stable pods see and predict moved away from the model's
hold-out? Pure, tested without I/O.

``judge`` takes one window's live rows (per predicted class and per feature bin, added up from
the stable pods' counters by ``canary.evidence.GroupWindow``), the reference the model carries
(``HoldOut``) and ``spec.monitoring.drift``, and answers with the ``Drift`` condition and the
figures behind it. For the predicted classes and for each input feature it computes

* the population stability index, ``PSI = sum_i (live_i - ref_i) * ln(live_i / ref_i)`` over
  the shares of the bins, each count smoothed by half a row so that a bin empty on one side
  (the unknown category, never seen in the hold-out) has a finite score; and
* Pearson's chi-squared test of homogeneity between the two samples' counts, its p-value read
  with the Wilson-Hilferty approximation of the chi-squared distribution.

A score is drift only when both agree: the PSI is above its ``max…PSI`` *and* the p-value is
below ``ALPHA`` shared equally among the tests of the window (Bonferroni: one for the
predictions, one per feature). The PSI says the shift is large enough to matter; the test says
it is not what sampling alone does to a few rows (with ``n`` live and ``m`` reference rows the
PSI of two samples of one distribution is about ``(bins - 1) * (1/n + 1/m)``, which for a
fifty-bin feature and a few hundred rows is near the usual 0.25 threshold). Below ``minRows``
nothing is judged: ``InsufficientData``. bench/drift_judge.py measures the false-alarm rate of
windows of same-distribution rows (bench/RESULTS.md).

Reasons, in order: ``InsufficientData`` (no reference, or too few rows), ``FeatureDrift`` (at
least one feature drifted: naming the top ones, with the predictions' score too, since an
input shift is what to act on), ``PredictionDrift`` (only the predicted classes moved: a shift
no single feature shows), ``NoDrift``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from retail_operator.canary.analysis import Bin
from retail_operator.canary.evidence import HoldOut
from retail_operator.conditions import Check
from retail_operator.spec import DriftPolicy

# A window's false-alarm rate over all its tests together, for same-distribution rows.
ALPHA = 0.01
SMOOTHING = 0.5  # rows added to every bin's count on both sides before taking shares
TOP = 3  # features named in the condition's message
PREDICTIONS = "predictions"

NO_DRIFT = "NoDrift"
PREDICTION_DRIFT = "PredictionDrift"
FEATURE_DRIFT = "FeatureDrift"
INSUFFICIENT_DATA = "InsufficientData"


@dataclass(frozen=True)
class Score:
    """One distribution's shift: the PSI, the test's p-value, and the bin that moved most."""

    name: str
    psi: float
    p_value: float
    drifted: bool
    bin: str  # the bin whose share moved most
    reference_share: float
    live_share: float

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "psi": round(self.psi, 4),
            "pValue": float(f"{self.p_value:.3g}"),
            "drifted": self.drifted,
            "bin": self.bin,
            "referenceShare": round(self.reference_share, 4),
            "liveShare": round(self.live_share, 4),
        }

    def describe(self) -> str:
        return (
            f"{self.name} PSI {self.psi:.2f} ({self.bin} {self.reference_share:.0%} → "
            f"{self.live_share:.0%}, p {self.p_value:.2g})"
        )


@dataclass(frozen=True)
class Report:
    """A window judged: the condition, and the figures (None when nothing could be scored)."""

    check: Check
    rows: int
    reference_rows: int
    predictions: Score | None = None
    features: tuple[Score, ...] = ()  # highest PSI first

    @property
    def drifted(self) -> tuple[Score, ...]:
        return tuple(score for score in self.features if score.drifted)


def chi2_survival(statistic: float, degrees: int) -> float:
    """P(X >= statistic) for X chi-squared on ``degrees`` degrees of freedom (Wilson and
    Hilferty's cube-root normal approximation: within a few per cent of the exact tail for
    three degrees or more, and for fewer still of the right order)."""
    if degrees <= 0:
        return 1.0
    if statistic <= 0:
        return 1.0
    k = float(degrees)
    z = ((statistic / k) ** (1 / 3) - (1 - 2 / (9 * k))) / math.sqrt(2 / (9 * k))
    return 0.5 * math.erfc(z / math.sqrt(2))


def psi(reference: Mapping[str, float], live: Mapping[str, float]) -> float:
    """The population stability index of ``live``'s counts against ``reference``'s."""
    bins = set(reference) | set(live)
    reference_total = sum(reference.values()) + SMOOTHING * len(bins)
    live_total = sum(live.values()) + SMOOTHING * len(bins)
    total = 0.0
    for key in bins:
        expected = (reference.get(key, 0.0) + SMOOTHING) / reference_total
        actual = (live.get(key, 0.0) + SMOOTHING) / live_total
        total += (actual - expected) * math.log(actual / expected)
    return total


def homogeneity_p_value(reference: Mapping[str, float], live: Mapping[str, float]) -> float:
    """Pearson's chi-squared test that two samples' counts come from one distribution."""
    n_reference, n_live = sum(reference.values()), sum(live.values())
    if n_reference <= 0 or n_live <= 0:
        return 1.0
    n = n_reference + n_live
    statistic, seen = 0.0, 0
    for key in set(reference) | set(live):
        pooled = reference.get(key, 0.0) + live.get(key, 0.0)
        if pooled <= 0:
            continue
        seen += 1
        for count, size in ((reference.get(key, 0.0), n_reference), (live.get(key, 0.0), n_live)):
            expected = pooled * size / n
            statistic += (count - expected) ** 2 / expected
    return chi2_survival(statistic, seen - 1)


def score(
    name: str,
    reference: Mapping[str, float],
    live: Mapping[str, float],
    *,
    threshold: float,
    alpha: float,
) -> Score:
    """``live`` against ``reference``: drifted when the PSI exceeds ``threshold`` and the test
    rejects at ``alpha``."""
    index = psi(reference, live)
    p_value = homogeneity_p_value(reference, live)
    n_reference, n_live = sum(reference.values()) or 1.0, sum(live.values()) or 1.0
    moved = max(
        set(reference) | set(live),
        key=lambda key: abs(live.get(key, 0.0) / n_live - reference.get(key, 0.0) / n_reference),
    )
    return Score(
        name=name,
        psi=index,
        p_value=p_value,
        drifted=index > threshold and p_value < alpha,
        bin=moved,
        reference_share=reference.get(moved, 0.0) / n_reference,
        live_share=live.get(moved, 0.0) / n_live,
    )


def _by_feature(counts: Mapping[Bin, float]) -> dict[str, dict[str, float]]:
    features: dict[str, dict[str, float]] = {}
    for (feature, bin_), count in counts.items():
        features.setdefault(feature, {})[bin_] = count
    return features


def judge(
    live_predictions: Mapping[str, float],
    live_features: Mapping[Bin, float],
    reference: HoldOut | None,
    policy: DriftPolicy,
    *,
    model_version: str = "",
) -> Report:
    """One window's verdict (see the module's docstring)."""
    rows = int(sum(live_predictions.values()))
    of_model = f"model {model_version}" if model_version else "the model"
    if reference is None:
        return Report(
            Check(
                "Unknown",
                INSUFFICIENT_DATA,
                f"{of_model} carries no drift reference (trained before retailctl train "
                "recorded one): train it again to watch drift",
            ),
            rows,
            0,
        )
    reference_rows = int(reference.rows)
    if rows < policy.min_rows:
        return Report(
            Check(
                "Unknown",
                INSUFFICIENT_DATA,
                f"{rows} rows in the last {policy.window_seconds} s window, at least "
                f"{policy.min_rows} needed to judge drift",
            ),
            rows,
            reference_rows,
        )
    held, live = _by_feature(reference.features), _by_feature(live_features)
    alpha = ALPHA / (1 + len(held))
    predictions = score(
        PREDICTIONS,
        reference.predictions,
        live_predictions,
        threshold=policy.max_prediction_psi,
        alpha=alpha,
    )
    features = sorted(
        (
            score(name, bins, live.get(name, {}), threshold=policy.max_feature_psi, alpha=alpha)
            for name, bins in held.items()
        ),
        key=lambda found: -found.psi,
    )
    report = Report(
        Check("False", NO_DRIFT, ""), rows, reference_rows, predictions, tuple(features)
    )
    window = f"{rows} rows against {reference_rows} hold-out rows, {of_model}"
    if report.drifted:
        named = "; ".join(found.describe() for found in report.drifted[:TOP])
        check = Check(
            "True",
            FEATURE_DRIFT,
            f"inputs drifted: {named} (max PSI {policy.max_feature_psi:g}); predictions PSI "
            f"{predictions.psi:.2f}; {window}",
        )
    elif predictions.drifted:
        check = Check(
            "True",
            PREDICTION_DRIFT,
            f"predicted classes drifted: {predictions.describe()} (max PSI "
            f"{policy.max_prediction_psi:g}); no input feature did; {window}",
        )
    else:
        top = features[0].describe() if features else "no features"
        check = Check(
            "False",
            NO_DRIFT,
            f"predictions PSI {predictions.psi:.2f}, highest feature {top}; {window}",
        )
    return Report(check, rows, reference_rows, predictions, tuple(features))
