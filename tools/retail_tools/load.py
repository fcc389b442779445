"""Bounded load on a predictor, counting every failed request: for the end-to-end tests, the
demo and the real-path benchmark.

Each worker thread sends ``POST /predict`` to one address on this machine (a NodePort on
127.0.0.1) and records the status and latency of every request. A request fails when it gets
anything but a 200 or no answer at all. Each request opens its own connection, as a client
behind a load balancer that picks a backend per request would: a kept-alive connection would
stay pinned to one pod, so it would not show whether the Service moves traffic away from a pod
that is going away. The load stops by itself after ``max_seconds``. By default every request
sends ``BASKET``; ``baskets`` gives a traffic mix instead (each worker walks the list from its
own place), which a canary's prediction shift needs to mean anything. ``ramp_seconds`` starts
the workers one by one over that time instead of all at once (a load that grows, as an
autoscaler meets it); ``pause`` makes each worker wait between its requests (a trickle that
still counts every failure while it leaves the pods nearly idle).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

BASKET = {
    "BASKET_SIZE": "L",
    "BASKET_TYPE": "Full Shop",
    "STORE_REGION": "E02",
    "STORE_FORMAT": "LS",
    "SPEND": 84.5,
    "QUANTITY": 31,
    "PROD_CODE_20": "D00003",
    "PROD_CODE_30": "G00011",
}


@dataclass
class LoadReport:
    sent: int
    failed: int
    seconds: float
    failures: Counter[str] = field(default_factory=Counter)
    models: Counter[str] = field(default_factory=Counter)  # answers by model_version
    latencies: list[float] = field(default_factory=list)
    failed_at: list[float] = field(default_factory=list)  # seconds after the load started

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0

    def summary(self) -> str:
        return (
            f"{self.sent} requests in {self.seconds:.1f}s, {self.failed} failed"
            + (
                f" ({dict(self.failures)}, the first at {self._first_failures()})"
                if self.failures
                else ""
            )
            + f"; p50 {self.percentile(0.5) * 1000:.1f} ms"
            + f", p99 {self.percentile(0.99) * 1000:.1f} ms"
        )

    def _first_failures(self) -> str:
        return ", ".join(f"{at:.1f}s" for at in self.failed_at[:3])


class Load:
    def __init__(
        self,
        port: int,
        *,
        host: str = "127.0.0.1",
        workers: int = 4,
        max_seconds: float = 300.0,
        timeout: float = 10.0,
        baskets: Sequence[Mapping[str, Any]] = (BASKET,),
        ramp_seconds: float = 0.0,
        pause: float = 0.0,
    ) -> None:
        self.host, self.port, self.workers = host, port, workers
        self.ramp_seconds, self.pause = ramp_seconds, pause
        self._bodies = [json.dumps(basket).encode() for basket in baskets]
        self.max_seconds, self.timeout = max_seconds, timeout
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._report = LoadReport(0, 0, 0.0)
        self._started = 0.0

    def __enter__(self) -> Load:
        self._started = time.monotonic()
        for worker in range(self.workers):
            thread = threading.Thread(target=self._work, args=(worker,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> LoadReport:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout + 5)
        self._threads.clear()
        self._report.seconds = time.monotonic() - self._started
        return self._report

    @property
    def report(self) -> LoadReport:
        return self._report

    def _work(self, worker: int) -> None:
        deadline = self._started + self.max_seconds
        turn = worker * len(self._bodies) // self.workers
        self._stop.wait(worker * self.ramp_seconds / self.workers)
        while not self._stop.is_set() and time.monotonic() < deadline:
            started = time.perf_counter()
            failure, version = self._one(self._bodies[turn % len(self._bodies)])
            turn += 1
            elapsed = time.perf_counter() - started
            with self._lock:
                self._report.sent += 1
                self._report.latencies.append(elapsed)
                if failure:
                    self._report.failed += 1
                    self._report.failures[failure] += 1
                    self._report.failed_at.append(time.monotonic() - self._started)
                else:
                    self._report.models[version] += 1
            self._stop.wait(self.pause)

    def _one(self, body: bytes) -> tuple[str, str]:
        """One request on a fresh connection: ("", model version) or (failure, "")."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = response.read()
            if response.status != 200:
                return f"HTTP {response.status}", ""
            return "", str(json.loads(payload).get("model_version", ""))
        except (OSError, http.client.HTTPException, ValueError) as error:
            return type(error).__name__, ""
        finally:
            connection.close()
