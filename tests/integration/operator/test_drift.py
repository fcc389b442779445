"""Drift on the real API server: the Drift condition and status.drift as the operator writes
them, and what the status schema keeps of them. kwok's pods serve no /metrics, so no window
can be judged here: the verdicts on real traffic are tests/e2e/test_drift_real_pods.py's."""

from __future__ import annotations

import pytest
import yaml
from tests.integration.operator.conftest import Scenario

from retail_operator.canary.analysis import Counts
from retail_operator.canary.evidence import HoldOut, PodReading, PodState
from retail_operator.drift.watch import DriftWatch
from retail_operator.spec import DriftPolicy

pytestmark = [pytest.mark.cluster, pytest.mark.aws]
DRIFT = {"drift": {"windowSeconds": 30, "minRows": 100}}


def test_drift_is_reported_as_a_condition_apart_from_ready(scenario: Scenario) -> None:
    scenario.image("v1")
    uri = scenario.model()
    scenario.apply(scenario.manifest("prices", "v1", uri, monitoring=DRIFT))
    scenario.wait_condition("prices", "Ready", "True")
    drift = scenario.wait_condition("prices", "Drift", "Unknown", "InsufficientData")
    assert "no stable pod's metrics could be read yet" in drift["message"]
    wide = scenario.cluster.kubectl(
        "get", "rmodel", "prices", "-n", scenario.namespace, "-o", "wide"
    )
    assert "InsufficientData" in wide.stdout.splitlines()[1]

    scenario.apply(scenario.manifest("prices", "v1", uri))  # no longer asked for
    scenario.wait_for(
        "the Drift condition to go",
        lambda: all(
            c["type"] != "Drift"
            for c in (scenario.get("retailmodel", "prices") or {})
            .get("status", {})
            .get("conditions", [{"type": "Drift"}])
        ),
    )


def test_the_status_schema_keeps_every_figure_of_a_judged_window(scenario: Scenario) -> None:
    """The status is structural: a field the schema does not name is pruned in silence. What
    the operator writes for a judged window must come back whole."""
    held = HoldOut({"Low": 500.0}, {("STORE_FORMAT", "SS"): 250.0, ("STORE_FORMAT", "XLS"): 250.0})

    def reading(rows: float) -> PodReading:
        counts = Counts(rows, 0.0, {}, {"Low": rows}, {("STORE_FORMAT", "XLS"): rows})
        return PodReading(counts, "m1", "ab" * 32, held)

    watch = DriftWatch(DriftPolicy(window_seconds=30, min_rows=100))
    pod = PodState("p", "p", ready=True, restarts=0)
    watch.observe([(pod, reading(0))], 0.0, "2026-12-05T19:00:00Z")
    assert watch.observe([(pod, reading(500))], 31.0, "2026-12-05T19:00:31Z") is not None
    written = watch.last_status

    scenario.image("v1")
    scenario.apply(scenario.manifest("kept", "v1", scenario.model()))
    scenario.wait_condition("kept", "Ready", "True")
    scenario.operator.stop()  # nothing else writes the status meanwhile
    try:
        patch = yaml.safe_dump({"status": {"drift": written}})
        scenario.cluster.kubectl(
            "patch", "retailmodel", "kept", "-n", scenario.namespace,
            "--subresource=status", "--type=merge", "-p", patch,
        )  # fmt: skip
        assert scenario.get("retailmodel", "kept")["status"]["drift"] == written
    finally:
        scenario.operator.start()
