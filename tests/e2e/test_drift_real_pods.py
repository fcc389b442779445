"""Drift on real pods: a stable model watched window by window against its own hold-out.

One RetailModel with ``spec.monitoring.drift`` on the real node, serving a model trained by
``retail_tools.candidates`` (so it carries its drift reference), with load through its
NodePort. Baskets drawn from the same synthetic world the model learned keep ``NoDrift``;
then every basket from one store format (hypermarkets, ``XLS``) turns the condition to
``FeatureDrift`` naming ``STORE_FORMAT``, within a window of the shifted traffic. The
in-cluster operator reads the pod's bins and reference on its metrics port and judges.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from retail_tools import candidates
from retail_tools.load import Load
from tests.e2e.conftest import BUCKET, NAMESPACE, RETAILCTL, Stack

pytestmark = [pytest.mark.cluster, pytest.mark.realnode]

WINDOW = 30  # seconds; the CRD's shortest is 30
MIN_ROWS = 200
DRIFT = {"drift": {"windowSeconds": WINDOW, "minRows": MIN_ROWS}}
STABLE_SEED = 1
# The window under way when the shift starts holds some rows of both kinds; the next one holds
# shifted rows only. A verdict by the end of that one, plus a scrape's lag: two windows.
VERDICT_SECONDS = 2 * WINDOW + 20


@dataclass
class Watched:
    stack: Stack
    name: str
    port: int

    def drift(self) -> dict[str, Any]:
        body = self.stack.kubectl.get_json("retailmodel", self.name, "-n", NAMESPACE)
        return dict(body.get("status", {}).get("drift", {}))


@pytest.fixture
def watched(stack: Stack) -> Iterator[Watched]:
    name = f"drift-{uuid.uuid4().hex[:5]}"
    key = f"models/drift/{name}.ubj"
    data, _ = candidates.retrained(STABLE_SEED)
    stack.on_node.aws.put_model(BUCKET, key, data)
    manifest = stack.on_node.retail_model(
        name, NAMESPACE, f"e2e-{stack.run}", f"s3://{BUCKET}/{key}", replicas=1, monitoring=DRIFT
    )
    stack.on_node.apply(manifest)
    stack.wait_condition(name, "Ready", "True")
    port = stack.on_node.expose(NAMESPACE, name)
    try:
        yield Watched(stack, name, port)
    finally:
        stack.on_node.remove(NAMESPACE, name, wait=True)


def test_traffic_like_the_training_keeps_no_drift_and_one_store_format_is_feature_drift(
    watched: Watched,
) -> None:
    # Thousands of distinct baskets: a few hundred, sent over and over, would be a sample of
    # their own, whose departments' shares differ from the population's by chance.
    like_training = candidates.traffic(5_000)
    with Load(watched.port, workers=4, max_seconds=4 * WINDOW, baskets=like_training) as load:
        calm = watched.stack.wait_condition(
            watched.name, "Drift", "False", "NoDrift", timeout=3 * WINDOW + 60
        )
    assert load.report.failed == 0, load.report.summary()
    first = watched.drift()
    assert first["rows"] >= MIN_ROWS and first["pods"] == 1
    assert all(not score["drifted"] for score in first["features"]), first
    print(f"\nlike the training: {calm['message']}")

    shifted = [{**basket, "STORE_FORMAT": "XLS"} for basket in like_training]
    with Load(watched.port, workers=4, max_seconds=VERDICT_SECONDS + 30, baskets=shifted) as load:
        started = time.monotonic()
        found = watched.stack.wait_condition(
            watched.name, "Drift", "True", "FeatureDrift", timeout=VERDICT_SECONDS
        )
        elapsed = time.monotonic() - started
    assert load.report.failed == 0, load.report.summary()
    assert found["message"].startswith("inputs drifted: STORE_FORMAT PSI"), found["message"]
    report = watched.drift()
    top = report["features"][0]
    assert (top["name"], top["bin"], top["drifted"]) == ("STORE_FORMAT", "XLS", True), report
    # The first verdict may be the window in which the shift began: XLS's share well up anyway.
    assert top["psi"] > 0.25 and top["liveShare"] > top["referenceShare"] + 0.2
    warnings = watched.stack.events(watched.name, "FeatureDrift")
    assert len(warnings) == 1 and warnings[0]["type"] == "Warning"
    print(f"every basket XLS: FeatureDrift {elapsed:.1f} s after the shift; {found['message']}")

    shown = subprocess.run(
        [RETAILCTL, "model", "drift", watched.name, "-n", NAMESPACE],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    print(shown)
    assert "Drift:     True FeatureDrift" in shown
    lines = shown.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("│ predictions"))
    assert "STORE_FORMAT" in lines[first + 1] and "drift" in lines[first + 1]  # the top feature
