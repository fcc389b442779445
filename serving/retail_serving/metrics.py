"""Prometheus metrics of one predictor process, in a registry of its own.

A registry per app (not the library's global one) keeps several apps in one process, as in the
tests, from sharing counters. Request metrics are labelled by route template, never by raw
path, so a client cannot inflate the label set. The names the operator reads to judge a canary
(requests and their status, latency, predictions per class, rows per feature bin and the
model's drift reference) come from ``retail_contract``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from retail_contract import metrics as names
from retail_serving.encoding import Matrix
from retail_serving.reference import Bins, Reference

CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)


# Model calls with at most this many rows are counted row by row in Python, larger ones with
# numpy (``Reference.count_few`` and ``count``; the crossover measured in bench/RESULTS.md).
FEW_ROWS = 12


@dataclass(frozen=True)
class _Binned:
    """One model version's reference and the live rows counted in its bins, over every
    feature's bins: a list for small calls, an array for large ones, added up when scraped."""

    reference: Reference
    few: list[int]
    many: Bins

    def counts(self) -> list[int]:
        return (self.many + np.asarray(self.few, dtype=np.int64)).tolist()  # type: ignore[no-any-return]


class _DriftCollector(Collector):
    """Exposes the live feature bins and the references at scrape time, from the arrays:
    a prometheus_client child per bin would cost a lock and a call per bin per model call."""

    def __init__(self, binned: dict[str, _Binned]) -> None:
        self._binned = binned

    def collect(self) -> Iterator[Metric]:
        version, feature, bin_ = names.VERSION_LABEL, names.FEATURE_LABEL, names.BIN_LABEL
        live = CounterMetricFamily(
            names.FEATURE_ROWS,
            "Rows predicted, by model version, input feature and the feature's bin.",
            labels=[version, feature, bin_],
        )
        held_out = GaugeMetricFamily(
            names.REFERENCE_FEATURE_ROWS,
            "The model's hold-out rows in each feature's bin (its drift reference).",
            labels=[version, feature, bin_],
        )
        predicted = GaugeMetricFamily(
            names.REFERENCE_PREDICTIONS,
            "The model's hold-out rows by predicted class (its drift reference).",
            labels=[version, names.CLASS_LABEL],
        )
        for name, binned in list(self._binned.items()):
            reference, counts = binned.reference, binned.counts()
            for bins, offset in zip(reference.features, reference.offsets, strict=True):
                for at, label in enumerate(bins.labels):
                    live.add_metric([name, bins.name, label], counts[offset + at])
                    held_out.add_metric([name, bins.name, label], bins.reference[at])
            for label, rows in reference.predictions.items():
                predicted.add_metric([name, label], rows)
        yield from (live, held_out, predicted)


class ServingMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.requests = Counter(
            names.REQUESTS,
            "HTTP requests handled, by route template, method and status code.",
            [names.ROUTE_LABEL, "method", names.STATUS_LABEL],
            registry=self.registry,
        )
        self.latency = Histogram(
            names.LATENCY,
            "Time from request start to the end of the response, by route template.",
            [names.ROUTE_LABEL],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model_calls = Histogram(
            "retail_model_call_rows",
            "Rows per model call (micro-batches of single requests and explicit batches).",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            names.PREDICTIONS,
            "Rows predicted, by model version and predicted class.",
            [names.VERSION_LABEL, names.CLASS_LABEL],
            registry=self.registry,
        )
        # One child per (version, class), made once: labels() on every model call would cost
        # a lock and a dict look-up per class. The same for each request's two children.
        self._predicted: dict[tuple[str, tuple[str, ...]], tuple[Counter, ...]] = {}
        self._answered: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._binned: dict[str, _Binned] = {}  # model version → its reference and live bins
        self.registry.register(_DriftCollector(self._binned))
        self.model_info = Gauge(
            names.MODEL_INFO,
            "The model being served (value 1), labelled by version and sha256.",
            [names.MODEL_VERSION_LABEL, names.MODEL_SHA256_LABEL],
            registry=self.registry,
        )
        self.model_loaded_at = Gauge(
            "retail_model_loaded_timestamp_seconds",
            "Unix time the current model was loaded.",
            registry=self.registry,
        )
        self.reloads = Counter(
            "retail_model_reloads",
            "Model load attempts by outcome (ok or failed).",
            ["outcome"],
            registry=self.registry,
        )
        self.reload_failures = Counter(
            "retail_model_reload_failures",
            "Failed model load attempts by reason (format, schema, checksum, unavailable, ...).",
            ["reason"],
            registry=self.registry,
        )
        self.signature_checks = Counter(
            "retail_model_signature_checks",
            "Model signature checks by outcome (SignatureVerified, Unsigned, SignatureInvalid, "
            "UntrustedKey); only in pods that require signed models.",
            ["outcome"],
            registry=self.registry,
        )
        self.signature_seconds = Histogram(
            "retail_model_signature_check_seconds",
            "Time to check a model's signature: fetch it, hash the bytes, verify.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.poll_errors = Counter(
            "retail_model_poll_errors",
            "Polls whose HEAD of the model object failed.",
            registry=self.registry,
        )
        self.shed_requests = Counter(
            "retail_http_shed",
            "Requests answered 503 with Retry-After at a bound (in_flight, body_bytes).",
            ["reason"],
            registry=self.registry,
        )
        self.read_timeouts = Counter(
            "retail_http_read_timeouts",
            "Connections closed because a request's headers or body did not arrive in time.",
            ["phase"],
            registry=self.registry,
        )
        for outcome in ("ok", "failed"):
            self.reloads.labels(outcome)
        for reason in ("in_flight", "body_bytes"):
            self.shed_requests.labels(reason)
        for phase in ("headers", "body"):
            self.read_timeouts.labels(phase)

    def answered(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its duration under its route template."""
        key = (route, method, status)
        children = self._answered.get(key)
        if children is None:
            children = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route),
            )
            self._answered[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def predicted(self, version: str, classes: Sequence[str], counts: Sequence[int]) -> None:
        """Count one model call's rows by predicted class (``counts`` in ``classes`` order)."""
        key = (version, tuple(classes))
        children = self._predicted.get(key)
        if children is None:
            children = tuple(self.predictions.labels(version, name) for name in classes)
            self._predicted[key] = children
        for child, count in zip(children, counts, strict=True):
            if count:
                child.inc(count)

    def binned(self, version: str, reference: Reference, matrix: Matrix) -> None:
        """Count one model call's rows in the bins of the model's drift reference."""
        binned = self._binned.get(version)
        if binned is None:
            binned = self._track(version, reference)
        if len(matrix) <= FEW_ROWS:
            reference.count_few(matrix, binned.few)
        else:
            np.add(binned.many, reference.count(matrix), out=binned.many)

    def _track(self, version: str, reference: Reference) -> _Binned:
        binned = _Binned(reference, [0] * reference.size, np.zeros(reference.size, np.int64))
        self._binned[version] = binned
        return binned

    def shed(self, reason: str) -> None:
        self.shed_requests.labels(reason).inc()

    def timed_out(self, phase: str) -> None:
        self.read_timeouts.labels(phase).inc()

    def model_swapped(
        self, version: str, sha256: str, loaded_at: float, reference: Reference | None = None
    ) -> None:
        """The model being served changed; its reference is exported from now on, with no rows
        counted yet, when it has one."""
        if reference is not None and version not in self._binned:
            self._track(version, reference)
        self.model_info.clear()
        self.model_info.labels(version, sha256).set(1)
        self.model_loaded_at.set(loaded_at)

    def signature_checked(self, outcome: str, seconds: float) -> None:
        self.signature_checks.labels(outcome).inc()
        self.signature_seconds.observe(seconds)

    def reload_failed(self, reason: str) -> None:
        self.reloads.labels("failed").inc()
        self.reload_failures.labels(reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
