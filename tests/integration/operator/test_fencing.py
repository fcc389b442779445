"""Never two leaders acting, against the real API server: each replica talks to it through its
own proxy, which records every write it forwards. The leader's Lease calls stop being answered
while its other calls still go through (the partial failure that lets a stale leader go on
writing); the standby takes over. Every write the old leader made must have been answered
before the new leader's first write was sent."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.operator.apiproxy import ApiProxy, Write
from tests.integration.operator.conftest import OperatorProcess, Scenario
from tests.integration.operator.test_failover import LEASE_SECONDS, holder, replica

pytestmark = [pytest.mark.cluster, pytest.mark.aws]

MODELS = 6


class Churn(threading.Thread):
    """Changes the RetailModels' replicas (1 and 2 in turn, one RetailModel after another) until
    stopped, so whichever replica leads has writes to make: a look at an unchanged RetailModel
    writes nothing."""

    def __init__(self, scenario: Scenario, manifests: list[dict[str, Any]]) -> None:
        super().__init__(daemon=True)
        self.scenario, self.manifests = scenario, manifests
        self.stopped = threading.Event()

    def run(self) -> None:
        turn = 0
        while not self.stopped.is_set():
            manifest = self.manifests[turn % len(self.manifests)]
            manifest["spec"]["replicas"] = 1 + (turn // len(self.manifests)) % 2
            self.scenario.apply(manifest)
            turn += 1


def lease_call(method: str, path: str, body: bytes) -> bool:
    return "/leases/" in path or path.endswith("/leases")


def work(writes: list[Write]) -> list[Write]:
    """The writes that act on the world: everything but the Lease's own calls."""
    return [w for w in writes if not lease_call(w.method, w.path, b"")]


@pytest.fixture
def proxied(
    scenario: Scenario, tmp_path: Path
) -> Iterator[tuple[tuple[OperatorProcess, ApiProxy], tuple[OperatorProcess, ApiProxy]]]:
    scenario.operator.stop()  # the session's operator would reconcile these too
    lease = f"failover-{scenario.namespace}"
    pairs = []
    for name in ("replica-a", "replica-b"):
        folder = tmp_path / name
        folder.mkdir()
        proxy = ApiProxy(scenario.cluster.kubeconfig, folder)
        process = replica(scenario, name, lease, tmp_path)
        process.env = process.env | {"KUBECONFIG": str(proxy.kubeconfig())}
        pairs.append((process, proxy))
    try:
        yield pairs[0], pairs[1]
    finally:
        for process, proxy in pairs:
            process.stop()
            proxy.close()
        scenario.operator.start()


def test_a_leader_whose_lease_calls_hang_stops_writing_before_the_standby_starts(
    scenario: Scenario,
    proxied: tuple[tuple[OperatorProcess, ApiProxy], tuple[OperatorProcess, ApiProxy]],
) -> None:
    (old, old_proxy), (new, new_proxy) = proxied
    old.start()
    scenario.wait_for("replica-a to lead", lambda: holder(scenario).startswith("replica-a_"))
    new.start()
    model = scenario.model()
    scenario.image("v1")
    names = [f"model-{n}" for n in range(MODELS)]
    manifests = [scenario.manifest(name, "v1", model) for name in names]
    for manifest in manifests:
        scenario.apply(manifest)
    for name in names:
        scenario.wait_condition(name, "Ready", "True")
    assert work(new_proxy.writes) == []  # a standby writes nothing

    churn = Churn(scenario, manifests)
    churn.start()
    try:
        old_proxy.stall = lease_call  # its renewals hang; its other calls still go through
        stalled = time.monotonic()
        scenario.wait_for(
            "replica-b to take over",
            lambda: holder(scenario).startswith("replica-b_"),
            timeout=LEASE_SECONDS * 4,
        )
        scenario.wait_for("replica-b's first write", lambda: work(new_proxy.writes), timeout=30)
        time.sleep(LEASE_SECONDS)  # let a stale leader show itself, if it would
    finally:
        churn.stopped.set()
        churn.join()

    first_new = min(w.received for w in work(new_proxy.writes))
    old_writes = work(old_proxy.writes)
    last_old = max(w.answered for w in old_writes)
    late = [w for w in old_writes if w.answered >= first_new]
    print(
        f"\nfailover: the old leader's last write {last_old - stalled:.2f}s after its lease "
        f"calls hung, the new leader's first {first_new - stalled:.2f}s after "
        f"(lease {LEASE_SECONDS}s); {len(old_writes)} writes by the old leader in all"
    )
    assert any(w.received > stalled for w in old_writes), "the old leader never wrote meanwhile"
    assert late == [], (
        f"the old leader wrote {len(late)} times after the new one started: {late[:3]}"
    )
    assert "standing by" in old.logs()
    for name in names:  # and the new leader does the work
        scenario.wait_condition(name, "Ready", "True")
