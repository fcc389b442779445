"""The Argo CD health check for RetailModel, run in Lua 5.1 (Argo CD's gopher-lua dialect).

Each test builds a RetailModel as the operator would leave it and checks the health Argo CD
would show. The last test keeps argocd-cm-health.yaml in step with health.lua.
"""

from __future__ import annotations

from typing import Any

import lupa.lua51 as lua51
import pytest
import yaml

from tests.unit.delivery.argocd_configmap import CONFIGMAP_FILE, HEALTH_KEY, LUA_FILE, render

SCRIPT = LUA_FILE.read_text(encoding="utf-8")
NOW = "2026-11-29T18:00:00Z"


def condition(kind: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": NOW,
        "observedGeneration": 3,
    }


def retail_model(
    *conditions: dict[str, Any], generation: int = 3, observed: int | None = 3
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "mlops.retail.io/v1alpha1",
        "kind": "RetailModel",
        "metadata": {"name": "price-sensitivity", "namespace": "retail", "generation": generation},
        "spec": {"image": {"repository": "r", "tag": "v1"}, "model": {"s3Uri": "s3://b/k"}},
    }
    if observed is not None:
        obj["status"] = {"observedGeneration": observed, "conditions": list(conditions)}
    return obj


def health(obj: dict[str, Any]) -> tuple[str, str]:
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute(SCRIPT)
    return str(result["status"]), str(result["message"])


SCANNED = condition("ImageScanPassed", "True", "ScanClean")
MODEL_FOUND = condition("ModelAvailable", "True", "ModelFound")
AVAILABLE = condition("Available", "True", "MinimumReplicasAvailable")


def test_no_status_yet_is_progressing() -> None:
    assert health(retail_model(observed=None)) == (
        "Progressing",
        "Waiting for the operator to report status",
    )


def test_empty_conditions_are_progressing() -> None:
    assert health(retail_model())[0] == "Progressing"


def test_ready_is_healthy() -> None:
    ready = condition("Ready", "True", "RolledOut", "2/2 replicas serving v1")
    assert health(retail_model(SCANNED, MODEL_FOUND, AVAILABLE, ready)) == (
        "Healthy",
        "RolledOut: 2/2 replicas serving v1",
    )


def test_lagging_observed_generation_is_progressing_even_if_ready() -> None:
    ready = condition("Ready", "True", "RolledOut")
    status, message = health(retail_model(SCANNED, ready, generation=4, observed=3))
    assert status == "Progressing"
    assert "generation 4" in message


@pytest.mark.parametrize(
    "reason",
    [
        "VulnerabilitiesFound",
        "ScanFailed",
        "ScanMissing",
        "ImageNotFound",
        "ScanIncomplete",
        "ScanUnavailable",
        "ScanUnsupported",
        "FindingsUnavailable",
        "ScanEligibilityExpired",
        "ImageArchived",
    ],
)
def test_blocked_image_is_degraded(reason: str) -> None:
    scan = condition("ImageScanPassed", "False", reason, "2 HIGH findings")
    not_ready = condition("Ready", "False", reason)
    status, message = health(retail_model(scan, MODEL_FOUND, not_ready))
    assert status == "Degraded"
    assert message == f"Image blocked: {reason}: 2 HIGH findings"


def test_blocked_image_is_degraded_while_the_old_one_keeps_serving() -> None:
    scan = condition("ImageScanPassed", "False", "VulnerabilitiesFound", "CVE-2026-0001")
    not_ready = condition("Ready", "False", "VulnerabilitiesFound")
    assert health(retail_model(scan, MODEL_FOUND, AVAILABLE, not_ready))[0] == "Degraded"


def test_new_findings_on_the_running_image_are_degraded_while_it_serves() -> None:
    running = condition("RunningImageCompliant", "False", "NewVulnerabilities", "CVE-2026-0002")
    scan = condition("ImageScanPassed", "False", "VulnerabilitiesFound", "CVE-2026-0002")
    not_ready = condition("Ready", "False", "NewVulnerabilities")
    status, message = health(retail_model(scan, running, MODEL_FOUND, AVAILABLE, not_ready))
    assert status == "Degraded"
    assert message == "Running image out of policy: NewVulnerabilities: CVE-2026-0002"


def test_a_compliant_running_image_does_not_change_a_healthy_verdict() -> None:
    running = condition("RunningImageCompliant", "True", "Compliant")
    ready = condition("Ready", "True", "Ready", "serving")
    assert health(retail_model(SCANNED, running, MODEL_FOUND, AVAILABLE, ready))[0] == "Healthy"


def test_scan_in_progress_is_progressing() -> None:
    scan = condition("ImageScanPassed", "False", "ScanInProgress", "waiting for ECR")
    not_ready = condition("Ready", "False", "ScanInProgress", "waiting for ECR")
    assert health(retail_model(scan, MODEL_FOUND, not_ready)) == (
        "Progressing",
        "ScanInProgress: waiting for ECR",
    )


@pytest.mark.parametrize("reason", ["ModelNotFound", "ChecksumMismatch", "AccessDenied"])
def test_unusable_model_is_degraded(reason: str) -> None:
    model = condition("ModelAvailable", "False", reason, "s3://b/k")
    status, message = health(retail_model(SCANNED, model, condition("Ready", "False", reason)))
    assert status == "Degraded"
    assert message == f"Model unavailable: {reason}: s3://b/k"


def test_rollout_under_way_is_progressing() -> None:
    rolling = condition("Available", "False", "Progressing", "1/2 replicas available")
    not_ready = condition("Ready", "False", "Progressing", "1/2 replicas available")
    assert health(retail_model(SCANNED, MODEL_FOUND, rolling, not_ready)) == (
        "Progressing",
        "Progressing: 1/2 replicas available",
    )


def test_failed_rollout_is_degraded() -> None:
    stuck = condition("Available", "False", "ProgressDeadlineExceeded", "image pull failed")
    not_ready = condition("Ready", "False", "ProgressDeadlineExceeded")
    assert health(retail_model(SCANNED, MODEL_FOUND, stuck, not_ready))[0] == "Degraded"


def test_configmap_embeds_exactly_the_lua_file() -> None:
    text = CONFIGMAP_FILE.read_text(encoding="utf-8")
    configmap = yaml.safe_load(text)
    assert configmap["metadata"]["name"] == "argocd-cm"
    assert configmap["data"][HEALTH_KEY] == SCRIPT
    assert text == render(SCRIPT), "regenerate: python -m tests.unit.delivery.argocd_configmap"
