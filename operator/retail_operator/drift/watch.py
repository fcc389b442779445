"""One RetailModel's drift windows, one after another. Pure: the reconcile scrapes, this adds up.

A window is bound to the model the stable pods serve (the sha256 most of their readings name)
and adds up, scrape by scrape, what each pod did with the canary's own ``GroupWindow``: a
pod's first reading is its baseline, a counter that went down is a restarted predictor whose
earlier rows stay counted, a pod serving another model counts nothing. When ``windowSeconds``
have passed, the window is judged (``judge``) and the next one opens on the same scrape, so no
row is counted twice or lost between two windows. A reload to another model starts a window
afresh: rows of two models are not one distribution.

Scrapes come every ``windowSeconds / SCRAPES_PER_WINDOW`` (at least ``poll_seconds``, at most
``MAX_SCRAPE_SECONDS``) and at each window's end: more often loses fewer rows to a pod
restarting between scrapes, and costs the pods and the operator a scrape each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from retail_operator.canary.evidence import GroupWindow, PodReading, PodState
from retail_operator.conditions import Check
from retail_operator.drift.judge import INSUFFICIENT_DATA, Report, judge
from retail_operator.spec import DriftPolicy

SCRAPES_PER_WINDOW = 6
MAX_SCRAPE_SECONDS = 300.0

Scrape = Sequence[tuple[PodState, PodReading | None]]


def _served(scrape: Scrape) -> str:
    """The sha256 most readable pods say they serve ("" when none can be read)."""
    named = Counter(r.model_sha256 for _, r in scrape if r is not None and r.model_sha256)
    return named.most_common(1)[0][0] if named else ""


@dataclass
class DriftWatch:
    policy: DriftPolicy
    poll_seconds: float = 5.0
    window: GroupWindow | None = None
    opened_at: float = 0.0
    opened_text: str = ""
    next_scrape: float = 0.0
    last: Report | None = None  # the last window judged
    last_status: dict[str, Any] = field(default_factory=dict)

    @property
    def scrape_every(self) -> float:
        spread = self.policy.window_seconds / SCRAPES_PER_WINDOW
        return min(max(spread, self.poll_seconds), MAX_SCRAPE_SECONDS)

    def due(self, now: float) -> bool:
        return now >= self.next_scrape

    def wait(self, now: float) -> float:
        """Seconds until the next scrape."""
        return max(self.next_scrape - now, 1.0)

    def observe(self, scrape: Scrape, now: float, now_text: str) -> Report | None:
        """Add one scrape of the stable pods; the report when it ended a window."""
        served = _served(scrape)
        report = None
        if self.window is not None and served == self.window.expected_sha256:
            self.window.record(scrape)
            if now - self.opened_at >= self.policy.window_seconds:
                report = self._judge(scrape, now_text)
                self._open(served, scrape, now, now_text)
        elif served:
            self._open(served, scrape, now, now_text)
        self.next_scrape = min(now + self.scrape_every, self._ends_at(now))
        return report

    def _ends_at(self, now: float) -> float:
        if self.window is None:
            return now + self.scrape_every
        return self.opened_at + self.policy.window_seconds

    def _open(self, served: str, scrape: Scrape, now: float, now_text: str) -> None:
        self.window = GroupWindow(expected_sha256=served)
        self.window.record(scrape)  # every pod's baseline: what came before is not counted
        self.opened_at, self.opened_text = now, now_text

    def _judge(self, scrape: Scrape, now_text: str) -> Report:
        assert self.window is not None
        expected = self.window.expected_sha256
        references = (
            r.reference for _, r in scrape if r is not None and r.model_sha256 == expected
        )
        reference = next((found for found in references if found is not None), None)
        totals = self.window.totals
        report = judge(
            totals.predictions,
            totals.features,
            reference,
            self.policy,
            model_version=self.window.model_version,
        )
        self.last = report
        readable = sum(1 for _, r in scrape if r is not None and r.model_sha256 == expected)
        self.last_status = _status(report, self.window, self.opened_text, now_text, readable)
        return report

    def check(self, now: float) -> Check:
        """The Drift condition now: the last window's verdict, or, before the first one ends,
        when it will."""
        if self.last is not None:
            return self.last.check
        if self.window is None:
            return Check(
                "Unknown",
                INSUFFICIENT_DATA,
                "no stable pod's metrics could be read yet: no drift window has started",
            )
        remaining = max(int(self._ends_at(now) - now), 0)
        return Check(
            "Unknown",
            INSUFFICIENT_DATA,
            f"the first {self.policy.window_seconds} s drift window ends in about {remaining} s",
        )


def _status(report: Report, window: GroupWindow, start: str, end: str, pods: int) -> dict[str, Any]:
    status: dict[str, Any] = {
        "windowStart": start,
        "windowEnd": end,
        "modelVersion": window.model_version,
        "rows": report.rows,
        "referenceRows": report.reference_rows,
        "pods": pods,
        "features": [score.status() for score in report.features],
    }
    if report.predictions is not None:
        status["predictions"] = report.predictions.status()
    return status
