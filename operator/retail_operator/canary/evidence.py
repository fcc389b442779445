"""A group's evidence, added up scrape by scrape from its pods' ``/metrics``. Pure.

``PodReading.parse`` reads one pod's Prometheus text: its prediction counters, the model it
says it serves (``retail_model_info``'s sha256) and, for that model, its rows per feature bin
and the drift reference it carries (``HoldOut``, which ``retail_operator.drift`` judges by).
Anything that is not that format, or a value that is not finite and non-negative, makes the
reading invalid (``InvalidMetrics``): that pod's scrape is left out, never believed and never
allowed to break the analysis.

``GroupWindow`` adds up what each pod did between consecutive scrapes of one analysis
window, the way Prometheus's ``increase()`` handles resets:

* a pod's first reading is its baseline, unless the pod was not there at the window's first
  scrape: then it is new and everything it did counts (it started within the window);
* a counter that went down means the process restarted: what it did before was counted at
  earlier scrapes and stays counted, and the new process's counts start a new segment;
* only readings from a pod serving the model the group is meant to serve (by sha256) count,
  and only between two such readings: a pod that served another model in between starts
  again from a new baseline;
* for the canary, a container restart or a pod that was Ready and no longer is becomes an
  incident: evidence against the candidate, which the judge rolls back on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families

from retail_contract import metrics as names
from retail_operator.canary.analysis import Bin, Counts, GroupEvidence

Key = TypeVar("Key", str, Bin)


class InvalidMetrics(ValueError):
    """A pod's /metrics answer that cannot be read as the predictor's."""


@dataclass(frozen=True)
class HoldOut:
    """A model's drift reference as its pod exports it: the hold-out rows predicted as each
    class and in each feature's bin."""

    predictions: Mapping[str, float]
    features: Mapping[Bin, float]

    @property
    def rows(self) -> float:
        return sum(self.predictions.values())


@dataclass(frozen=True)
class PodReading:
    """One pod's prediction counters at one moment, the model it says it serves, and that
    model's drift reference (None: it carries none)."""

    counts: Counts
    model_version: str = ""
    model_sha256: str = ""
    reference: HoldOut | None = None

    @classmethod
    def parse(cls, text: str) -> PodReading:
        """Read the predictor's Prometheus text; ``InvalidMetrics`` for anything else."""
        try:
            return cls._parse(text)
        except InvalidMetrics:
            raise
        except Exception as error:  # the parser's errors are not one documented type
            raise InvalidMetrics(f"not Prometheus text: {type(error).__name__}") from None

    @classmethod
    def _parse(cls, text: str) -> PodReading:
        requests = failed = 0.0
        latency: dict[float, float] = {}
        predictions: dict[str, float] = {}
        # By model version: only the served model's bins and reference are kept.
        bins: dict[str, dict[Bin, float]] = {}
        held_bins: dict[str, dict[Bin, float]] = {}
        held_predictions: dict[str, dict[str, float]] = {}
        version = sha256 = ""
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels, value = sample.labels, float(sample.value)
                if not math.isfinite(value) or value < 0:
                    raise InvalidMetrics(f"{sample.name} has the value {value}")
                route = labels.get(names.ROUTE_LABEL)
                if sample.name == f"{names.REQUESTS}_total":
                    if route in names.PREDICTION_ROUTES:
                        requests += value
                        if labels.get(names.STATUS_LABEL, "").startswith("5"):
                            failed += value
                elif sample.name == f"{names.LATENCY}_bucket":
                    if route in names.PREDICTION_ROUTES:
                        bound = _bucket_bound(labels.get("le"))
                        latency[bound] = latency.get(bound, 0.0) + value
                elif sample.name == f"{names.PREDICTIONS}_total":
                    name = labels.get(names.CLASS_LABEL, "")
                    predictions[name] = predictions.get(name, 0.0) + value
                elif sample.name == f"{names.FEATURE_ROWS}_total":
                    _put(bins, labels, (_label(labels, FEATURE), _label(labels, BIN)), value)
                elif sample.name == names.REFERENCE_FEATURE_ROWS:
                    _put(held_bins, labels, (_label(labels, FEATURE), _label(labels, BIN)), value)
                elif sample.name == names.REFERENCE_PREDICTIONS:
                    _put(held_predictions, labels, _label(labels, names.CLASS_LABEL), value)
                elif sample.name == names.MODEL_INFO and value == 1:
                    version = labels.get(names.MODEL_VERSION_LABEL, "")
                    sha256 = labels.get(names.MODEL_SHA256_LABEL, "")
        if failed > requests:
            raise InvalidMetrics(f"{failed} failed of {requests} requests")
        reference = None
        if version in held_predictions and version in held_bins:
            reference = HoldOut(held_predictions[version], held_bins[version])
        counts = Counts(requests, failed, latency, predictions, bins.get(version, {}))
        return cls(counts, version, sha256, reference)


FEATURE, BIN = names.FEATURE_LABEL, names.BIN_LABEL


def _label(labels: Mapping[str, str], name: str) -> str:
    if name not in labels:
        raise InvalidMetrics(f"a drift sample without its {name!r} label")
    return labels[name]


def _put(
    by_version: dict[str, dict[Key, float]], labels: Mapping[str, str], key: Key, value: float
) -> None:
    version = labels.get(names.VERSION_LABEL, "")
    held = by_version.setdefault(version, {})
    held[key] = held.get(key, 0.0) + value


def _bucket_bound(text: str | None) -> float:
    if text is None:
        raise InvalidMetrics("a latency bucket without its 'le' bound")
    try:
        bound = float(text)
    except ValueError:
        raise InvalidMetrics(f"a latency bucket bound {text!r}") from None
    if math.isnan(bound):
        raise InvalidMetrics("a latency bucket bound NaN")
    return bound


@dataclass(frozen=True)
class PodState:
    """What the API server says of one pod of the group at a scrape."""

    name: str
    uid: str
    ready: bool
    restarts: int  # the sum of its containers' restart counts
    terminating: bool = False


def _went_down(now: Counts, before: Counts) -> bool:
    """Whether any counter is lower than before: the process started again."""
    difference = now - before
    return any(value < 0 for value in difference.values()) or any(
        key not in now.latency for key in before.latency
    )


@dataclass
class GroupWindow:
    """One group's evidence over one analysis window, updated at every scrape."""

    expected_sha256: str  # the model the group is meant to serve
    watch_health: bool = False  # the canary: restarts and lost readiness are incidents
    totals: Counts = Counts()
    scrapes: int = 0
    _baseline: dict[str, Counts] = field(default_factory=dict)  # pod uid → last counted reading
    # Pods whose counters may hold requests from before the window or for another model: they
    # count only from a baseline reading on.
    _tainted: set[str] = field(default_factory=set)
    _was_ready: set[str] = field(default_factory=set)
    _incidents: dict[str, str] = field(default_factory=dict)  # pod uid → what happened
    model_versions: dict[str, str] = field(default_factory=dict)  # sha256 → version seen
    unbound: int = 0  # readings from pods serving another model (at the last scrape)

    def record(self, pods: Iterable[tuple[PodState, PodReading | None]]) -> None:
        """Add one scrape: every pod of the group, with its reading (None if unreadable)."""
        first = self.scrapes == 0
        self.scrapes += 1
        self.unbound = 0
        for pod, reading in pods:
            if first:
                self._tainted.add(pod.uid)  # it was there before the window started
            if self.watch_health:
                self._check_health(pod)
            if reading is None:
                continue
            if reading.model_sha256 != self.expected_sha256:
                self.unbound += 1
                self._baseline.pop(pod.uid, None)  # counts across a model change mean nothing
                self._tainted.add(pod.uid)
                continue
            self.model_versions[reading.model_sha256] = reading.model_version
            before = self._baseline.get(pod.uid)
            if before is None:
                if pod.uid not in self._tainted:  # new since the window started: all of it
                    self.totals = self.totals + reading.counts
            elif _went_down(reading.counts, before):
                self.totals = self.totals + reading.counts  # a new segment, from zero
                if self.watch_health:
                    self._incidents.setdefault(pod.uid, f"pod {pod.name} restarted its predictor")
            else:
                self.totals = self.totals + (reading.counts - before)
            self._baseline[pod.uid] = reading.counts

    def _check_health(self, pod: PodState) -> None:
        if pod.restarts > 0:
            self._incidents.setdefault(
                pod.uid, f"pod {pod.name} restarted ({pod.restarts} container restart(s))"
            )
        if pod.ready:
            self._was_ready.add(pod.uid)
        elif pod.uid in self._was_ready and not pod.terminating:
            self._incidents.setdefault(pod.uid, f"pod {pod.name} stopped being Ready")

    @property
    def model_version(self) -> str:
        """The model version the group's pods report for the expected sha256, if any did."""
        return self.model_versions.get(self.expected_sha256, "")

    def evidence(self) -> GroupEvidence:
        return GroupEvidence(self.totals, tuple(sorted(self._incidents.values())))
