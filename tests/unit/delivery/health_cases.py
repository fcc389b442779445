"""Every state the operator leaves a RetailModel in, and the health Argo CD must show for it.

One table, judged twice: by health.lua in lupa (test_argocd_health.py, fast, no binary) and by
Argo CD's own engine, ``argocd admin settings resource-overrides health`` with the project's
argocd-cm (test_argocd_health_engine.py), so a gopher-lua difference cannot hide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NOW = "2026-11-29T18:00:00Z"
BLOCKING_SCAN_REASONS = (
    "VulnerabilitiesFound",
    "ScanIncomplete",
    "ScanFailed",
    "ScanMissing",
    "ImageNotFound",
    "FindingsUnavailable",
    "ScanEligibilityExpired",
    "ImageArchived",
    "ScanUnsupported",
    "ScanUnavailable",
)
BLOCKING_MODEL_REASONS = ("ModelNotFound", "ChecksumMismatch", "AccessDenied")
REFUSED_SIGNATURE_REASONS = ("Unsigned", "SignatureInvalid", "UntrustedKey", "TrustedKeysInvalid")


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
    *conditions: dict[str, Any],
    generation: int = 3,
    observed: int | None = 3,
    rollout: dict[str, Any] | None = None,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "mlops.retail.io/v1alpha1",
        "kind": "RetailModel",
        "metadata": {"name": "price-sensitivity", "namespace": "retail", "generation": generation},
        "spec": {"image": {"repository": "r", "tag": "v1"}, "model": {"s3Uri": "s3://b/k"}},
    }
    if observed is not None:
        obj["status"] = {"observedGeneration": observed, "conditions": list(conditions)}
        if rollout is not None:
            obj["status"]["rollout"] = rollout
    return obj


@dataclass(frozen=True)
class Case:
    id: str
    obj: dict[str, Any]
    status: str
    message: str


SCANNED = condition("ImageScanPassed", "True", "ScanClean", "Scan complete: 0 findings")
MODEL_FOUND = condition("ModelAvailable", "True", "ModelFound", "s3://b/k (ETag e)")
AVAILABLE = condition("Available", "True", "MinimumReplicasAvailable", "2/2 replicas available")
COMPLIANT = condition("RunningImageCompliant", "True", "Compliant", "The running image passes")
READY = condition("Ready", "True", "Ready", "r:v1 is serving s3://b/k")
SERVING = (SCANNED, COMPLIANT, MODEL_FOUND, AVAILABLE, READY)


def _blocked_image(reason: str) -> Case:
    scan = condition("ImageScanPassed", "False", reason, "2 HIGH findings")
    # The old image keeps serving: Available stays True.
    not_ready = condition("Ready", "False", reason, "Image not rolled out; still serving r:v0")
    return Case(
        f"blocked-image-{reason}",
        retail_model(scan, MODEL_FOUND, AVAILABLE, not_ready),
        "Degraded",
        f"Image blocked: {reason}: 2 HIGH findings",
    )


def _unusable_model(reason: str) -> Case:
    model = condition("ModelAvailable", "False", reason, "s3://b/k")
    return Case(
        f"unusable-model-{reason}",
        retail_model(SCANNED, model, condition("Ready", "False", reason)),
        "Degraded",
        f"Model unavailable: {reason}: s3://b/k",
    )


def _refused_signature(reason: str) -> Case:
    refused = condition("ModelSignatureVerified", "False", reason, "The model is refused")
    return Case(
        f"refused-signature-{reason}",
        retail_model(SCANNED, MODEL_FOUND, refused, condition("Ready", "False", reason)),
        "Degraded",
        f"Model refused: {reason}: The model is refused",
    )


def _refused_image(reason: str) -> Case:
    refused = condition("ImageSignatureVerified", "False", reason, "The image is refused")
    ready = condition("Ready", "False", reason, "Image not rolled out: The image is refused")
    return Case(
        f"refused-image-signature-{reason}",
        retail_model(SCANNED, refused, MODEL_FOUND, ready),
        "Degraded",
        f"Image refused: {reason}: The image is refused",
    )


def _canary(phase: str, summary: str, *extra: dict[str, Any]) -> dict[str, Any]:
    rollout = {"phase": phase, "figures": {"summary": summary}}
    return retail_model(*SERVING, *extra, rollout=rollout)


CASES = (
    Case(
        "no-status",
        retail_model(observed=None),
        "Progressing",
        "Waiting for the operator to report status",
    ),
    Case("empty-conditions", retail_model(), "Progressing", "Rollout in progress"),
    Case(
        "stale-generation-even-if-ready",
        retail_model(*SERVING, generation=4, observed=3),
        "Progressing",
        "Waiting for the operator to observe generation 4",
    ),
    Case(
        "scan-in-progress",
        retail_model(
            condition("ImageScanPassed", "False", "ScanInProgress", "Waiting: scan running"),
            MODEL_FOUND,
            condition("Ready", "False", "ScanInProgress", "Image not rolled out"),
        ),
        "Progressing",
        "ScanInProgress: Image not rolled out",
    ),
    Case(
        "scan-pending",
        retail_model(
            condition("ImageScanPassed", "False", "ScanPending", "Waiting: not started"),
            MODEL_FOUND,
            condition("Ready", "False", "ScanPending", "Image not rolled out"),
        ),
        "Progressing",
        "ScanPending: Image not rolled out",
    ),
    Case(
        "aws-throttled-is-retried",
        retail_model(
            condition("ImageScanPassed", "Unknown", "Throttled", "AWS throttled the request"),
            MODEL_FOUND,
            condition("Ready", "False", "Throttled", "Image not rolled out"),
        ),
        "Progressing",
        "Throttled: Image not rolled out",
    ),
    *(_blocked_image(reason) for reason in BLOCKING_SCAN_REASONS),
    # Ready is the operator's summary: its blocking reason alone is Degraded, even without the
    # ImageScanPassed condition that the operator writes beside it.
    Case(
        "blocked-image-on-ready-alone",
        retail_model(condition("Ready", "False", "VulnerabilitiesFound", "CVE-2026-0001")),
        "Degraded",
        "Image blocked: VulnerabilitiesFound: CVE-2026-0001",
    ),
    *(_unusable_model(reason) for reason in BLOCKING_MODEL_REASONS),
    *(_refused_signature(reason) for reason in REFUSED_SIGNATURE_REASONS),
    *(_refused_image(reason) for reason in (*REFUSED_SIGNATURE_REASONS, "AccessDenied")),
    Case(
        "image-signature-unreadable-is-progressing",
        retail_model(
            SCANNED,
            condition("ImageSignatureVerified", "Unknown", "RegistryUnavailable", "unreachable"),
            MODEL_FOUND,
            condition("Ready", "False", "RegistryUnavailable", "Image not rolled out"),
        ),
        "Progressing",
        "RegistryUnavailable: Image not rolled out",
    ),
    Case(
        "model-refused-beside-a-verified-image",
        retail_model(
            SCANNED,
            condition("ImageSignatureVerified", "True", "SignatureVerified", "signed"),
            MODEL_FOUND,
            condition("ModelSignatureVerified", "False", "Unsigned", "The model is refused"),
            condition("Ready", "False", "Unsigned", "Model not rolled out"),
        ),
        "Degraded",
        "Model refused: Unsigned: The model is refused",
    ),
    Case(
        "unusable-model-on-ready-alone",
        retail_model(condition("Ready", "False", "ChecksumMismatch", "sha256 differs")),
        "Degraded",
        "Model unavailable: ChecksumMismatch: sha256 differs",
    ),
    Case(
        "rollout-pending",
        retail_model(
            SCANNED,
            MODEL_FOUND,
            condition("Available", "False", "NotDeployed", "No Deployment exists yet"),
            condition("Ready", "False", "RolloutPending", "Rolling out r:v1"),
        ),
        "Progressing",
        "RolloutPending: Rolling out r:v1",
    ),
    Case(
        "rollout-in-progress",
        retail_model(
            SCANNED,
            MODEL_FOUND,
            condition("Available", "False", "MinimumReplicasUnavailable", "1/2 available"),
            condition("Ready", "False", "RolloutInProgress", "1/2 replicas updated, 1 available"),
        ),
        "Progressing",
        "RolloutInProgress: 1/2 replicas updated, 1 available",
    ),
    Case(
        "rollout-failed",
        retail_model(
            SCANNED,
            MODEL_FOUND,
            condition("Available", "False", "ProgressDeadlineExceeded", "image pull failed"),
            condition("Ready", "False", "ProgressDeadlineExceeded", "image pull failed"),
        ),
        "Degraded",
        "Rollout failed: ProgressDeadlineExceeded: image pull failed",
    ),
    Case("ready", retail_model(*SERVING), "Healthy", "Ready: r:v1 is serving s3://b/k"),
    # Drift is never Degraded: a stale model still serves every request, and Degraded is what
    # pages and rolls back for outages. Healthy, with the drift in the message.
    Case(
        "ready-with-feature-drift",
        retail_model(
            *SERVING,
            condition("Drift", "True", "FeatureDrift", "inputs drifted: STORE_FORMAT PSI 3.10"),
        ),
        "Healthy",
        "Ready: r:v1 is serving s3://b/k (Drift: FeatureDrift: inputs drifted: STORE_FORMAT "
        "PSI 3.10)",
    ),
    Case(
        "ready-with-prediction-drift",
        retail_model(*SERVING, condition("Drift", "True", "PredictionDrift", "High 30% → 70%")),
        "Healthy",
        "Ready: r:v1 is serving s3://b/k (Drift: PredictionDrift: High 30% → 70%)",
    ),
    Case(
        "ready-no-drift-or-too-little-data",
        retail_model(*SERVING, condition("Drift", "Unknown", "InsufficientData", "12 rows")),
        "Healthy",
        "Ready: r:v1 is serving s3://b/k",
    ),
    Case(
        "drift-never-hides-a-blocked-image",
        retail_model(
            condition("ImageScanPassed", "False", "VulnerabilitiesFound", "2 HIGH findings"),
            MODEL_FOUND,
            AVAILABLE,
            condition("Ready", "False", "VulnerabilitiesFound", "not rolled out"),
            condition("Drift", "True", "FeatureDrift", "inputs drifted"),
        ),
        "Degraded",
        "Image blocked: VulnerabilitiesFound: 2 HIGH findings",
    ),
    Case(
        "scaled-to-zero",
        retail_model(
            SCANNED,
            MODEL_FOUND,
            condition("Available", "True", "ScaledToZero", "scaled to zero"),
            condition("Ready", "True", "Ready", "r:v1 is serving s3://b/k"),
        ),
        "Healthy",
        "Ready: r:v1 is serving s3://b/k",
    ),
    Case(
        "running-image-new-vulnerabilities",
        retail_model(
            SCANNED,
            condition("RunningImageCompliant", "False", "NewVulnerabilities", "CVE-2026-0002"),
            MODEL_FOUND,
            AVAILABLE,
            condition("Ready", "False", "NewVulnerabilities", "CVE-2026-0002"),
        ),
        "Degraded",
        "Running image out of policy: NewVulnerabilities: CVE-2026-0002",
    ),
    Case(
        "running-image-cannot-be-judged-now",
        retail_model(
            SCANNED,
            condition("RunningImageCompliant", "Unknown", "ScanUnavailable", "no findings now"),
            MODEL_FOUND,
            AVAILABLE,
            READY,
        ),
        "Healthy",
        "Ready: r:v1 is serving s3://b/k",
    ),
    Case(
        "canary-analyzing-while-ready",
        _canary("Analyzing", "120 requests, error rate 0.0%"),
        "Progressing",
        "Model canary under analysis: Analyzing: 120 requests, error rate 0.0%",
    ),
    Case(
        "canary-analyzing-condition",
        _canary(
            "Analyzing",
            "120 requests",
            condition("ModelRolledOut", "False", "Analyzing", "candidate v7 on 1 pod"),
        ),
        "Progressing",
        "Model canary under analysis: Analyzing: candidate v7 on 1 pod",
    ),
    Case(
        "canary-rolled-back",
        _canary("RolledBack", "error rate 12% > 1%"),
        "Degraded",
        "Model canary rolled back: RolledBack: error rate 12% > 1%",
    ),
    Case(
        "canary-rolled-back-condition",
        _canary(
            "RolledBack",
            "error rate 12% > 1%",
            condition("ModelRolledOut", "False", "RolledBack", "v7 rolled back: error rate 12%"),
        ),
        "Degraded",
        "Model canary rolled back: RolledBack: v7 rolled back: error rate 12%",
    ),
    Case(
        "canary-promoted",
        _canary(
            "Promoted",
            "passed",
            condition("ModelRolledOut", "True", "Promoted", "v7 promoted"),
        ),
        "Healthy",
        "Ready: r:v1 is serving s3://b/k",
    ),
    Case("canary-stable", _canary("Stable", ""), "Healthy", "Ready: r:v1 is serving s3://b/k"),
    *[
        Case(
            f"canary-{reason}",
            _canary(
                "RolledBack",
                "",
                condition("ModelRolledOut", "False", reason, f"v7: {reason}"),
            ),
            "Degraded",
            f"Model canary rolled back: {reason}: v7: {reason}",
        )
        for reason in ("Inconclusive", "RejectedBefore", "Sha256Required")
    ],
    *[
        Case(
            f"refused-{reason}",
            retail_model(
                SCANNED,
                MODEL_FOUND,
                AVAILABLE,
                condition("Ready", "False", reason, "Service prices already exists"),
            ),
            "Degraded",
            f"Spec not carried out: {reason}: Service prices already exists",
        )
        for reason in ("NameConflict", "SpecInvalid", "PolicyViolation")
    ],
)
