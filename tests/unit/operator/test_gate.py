"""What may run and how it is described: the blocked-image guarantee and the Ready summary."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from retail_operator.conditions import STARTING_GRACE, Check, describe
from retail_operator.facts import DeploymentState, ModelObject
from retail_operator.gate import check_model, choose_target, running_check
from retail_operator.rendering import Target
from retail_operator.scanpolicy import ImageDecision
from retail_operator.spec import ModelSpec

OLD = Target("repo@sha256:old", ModelSpec(s3_uri="s3://b/m.ubj"))
NEW = Target("repo@sha256:new", ModelSpec(s3_uri="s3://b/m.ubj"))
PASS = Check("True", "ScanClean", "clean")
BLOCKED = Check("False", "VulnerabilitiesFound", "1 finding(s) at or above HIGH (HIGH: 1)")
MODEL_OK = Check("True", "ModelFound", "s3://b/m.ubj")
NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


def deployment(image: str, *, ready: int = 2, replicas: int = 2, total: int = 2) -> DeploymentState:
    return DeploymentState(
        image=image,
        generation=2,
        observed_generation=2,
        replicas=replicas,
        updated_replicas=ready,
        ready_replicas=ready,
        available_replicas=ready,
        total_replicas=total,
        available=ready > 0,
    )


def test_passing_checks_choose_the_desired_target() -> None:
    assert choose_target(NEW, PASS, MODEL_OK, OLD) == NEW


def test_a_blocked_image_keeps_the_previous_target() -> None:
    assert choose_target(NEW, BLOCKED, MODEL_OK, OLD) == OLD
    assert choose_target(NEW, BLOCKED, MODEL_OK, None) is None


def test_a_missing_model_keeps_the_previous_target() -> None:
    missing = Check("False", "ModelNotFound", "no model")
    assert choose_target(NEW, PASS, missing, OLD) == OLD


def test_unknown_checks_never_roll_out() -> None:
    throttled = Check("Unknown", "Throttled", "slow down", retry_after=10)
    assert choose_target(NEW, throttled, MODEL_OK, OLD) == OLD


def described(deployed: Target | None = NEW, **overrides: Any) -> dict[str, Check]:
    """The conditions of NEW wanted, ``deployed`` deployed and available, with overrides."""
    arguments: dict[str, Any] = {
        "image": PASS,
        "model": MODEL_OK,
        "desired_image": NEW.image,
        "deployed_image": deployed.image if deployed else None,
        "deployment": deployment(deployed.image) if deployed else None,
        "minimum": 2,
        "now": NOW,
    }
    return describe(**(arguments | overrides))


def ready_of(verdicts: dict[str, Check]) -> tuple[str, str]:
    ready = verdicts["Ready"]
    return ready.status, ready.reason


def test_ready_when_rolled_out_and_available() -> None:
    verdicts = described()
    assert list(verdicts) == ["ImageScanPassed", "ModelAvailable", "Available", "Ready"]
    assert ready_of(verdicts) == ("True", "Ready")


def test_rollout_in_progress_while_old_pods_remain() -> None:
    verdicts = described(deployment=deployment(NEW.image, ready=1, total=3))
    assert ready_of(verdicts) == ("False", "RolloutInProgress")


def test_pods_starting_in_a_rollout_are_progress_for_a_while_and_lost_pods_are_not() -> None:
    """The template rolled out, no pod available yet: while the Deployment's own Progressing
    says a rollout began less than STARTING_GRACE ago, a rollout in progress (a Normal Event),
    not MinimumReplicasUnavailable (a Warning on every first rollout). Past the grace (pods
    that crash or never get ready), and once it said NewReplicaSetAvailable, a Warning."""
    began = NOW - STARTING_GRACE + timedelta(seconds=1)
    starting = replace(deployment(NEW.image, ready=0), updated_replicas=2, rolling_out_since=began)
    verdicts = described(deployment=starting)
    assert ready_of(verdicts) == ("False", "RolloutInProgress")
    assert verdicts["Ready"].message == "2/2 replicas updated, 0 available"
    assert verdicts["Available"].reason == "MinimumReplicasUnavailable"  # Available tells it
    stuck = replace(starting, rolling_out_since=NOW - STARTING_GRACE)
    assert ready_of(described(deployment=stuck)) == ("False", "MinimumReplicasUnavailable")
    lost = replace(deployment(NEW.image), ready_replicas=1, available_replicas=1)
    assert ready_of(described(deployment=lost)) == ("False", "MinimumReplicasUnavailable")
    started = replace(starting, ready_replicas=2, available_replicas=2)
    assert ready_of(described(deployment=started)) == ("True", "Ready")


def test_the_deployment_controllers_progress_is_read_from_its_condition() -> None:
    def live(reason: str, status: str = "True", since: str = "2026-12-07T10:00:00Z") -> Any:
        condition = {"type": "Progressing", "status": status, "reason": reason}
        if since:
            condition["lastTransitionTime"] = since
        return DeploymentState.from_live({"status": {"conditions": [condition]}}).rolling_out_since

    assert live("ReplicaSetUpdated") == datetime(2026, 12, 7, 10, tzinfo=UTC)
    assert live("NewReplicaSetCreated") is not None
    assert live("NewReplicaSetAvailable") is None
    assert live("ProgressDeadlineExceeded", "False") is None
    assert live("ReplicaSetUpdated", since="") is None  # since when unknown: no grace
    assert DeploymentState.from_live({}).rolling_out_since is None


def test_blocked_image_reports_reason_and_what_still_runs() -> None:
    verdicts = described(OLD, image=BLOCKED)
    status, reason = ready_of(verdicts)
    assert (status, reason) == ("False", "VulnerabilitiesFound")
    assert "still serving repo@sha256:old" in verdicts["Ready"].message
    assert verdicts["Available"].status == "True"  # the old Deployment is still available


def test_no_deployment_is_not_available() -> None:
    verdicts = described(None, image=BLOCKED, minimum=1)
    assert (verdicts["Available"].status, verdicts["Available"].reason) == ("False", "NotDeployed")


def test_checksum_is_compared_when_pinned() -> None:
    found = ModelObject(etag="e", version_id="v1", sha256="a" * 64)
    assert check_model(ModelSpec(s3_uri="s3://b/k"), found).passed
    assert check_model(ModelSpec(s3_uri="s3://b/k", sha256="a" * 64), found).passed
    mismatch = check_model(ModelSpec(s3_uri="s3://b/k", sha256="c" * 64), found)
    assert (mismatch.status, mismatch.reason) == ("False", "ChecksumMismatch")
    unverifiable = check_model(
        ModelSpec(s3_uri="s3://b/k", sha256="c" * 64), ModelObject("e", "", "")
    )
    assert unverifiable.reason == "ChecksumMismatch"


def decision(passed: bool, reason: str, message: str) -> ImageDecision:
    return ImageDecision(passed=passed, reason=reason, message=message)


def test_the_running_image_with_new_findings_is_not_compliant_and_keeps_serving() -> None:
    running = running_check(
        decision(False, "VulnerabilitiesFound", "1 finding(s) at or above HIGH: CVE-1"), NEW.image
    )
    assert (running.status, running.reason) == ("False", "NewVulnerabilities")
    assert "CVE-1" in running.message and "keeps serving" in running.message
    verdicts = described(image=BLOCKED, running=running)
    assert verdicts["RunningImageCompliant"].status == "False"
    assert verdicts["Available"].status == "True"  # nothing was stopped
    # Ready says what is wrong with what runs, not that a rollout is waiting.
    assert ready_of(verdicts) == ("False", "NewVulnerabilities")


def test_a_blocked_new_image_and_a_compliant_running_one_are_told_apart() -> None:
    running = running_check(decision(True, "ScanClean", "no findings"), OLD.image)
    assert (running.status, running.reason) == ("True", "Compliant")
    verdicts = described(OLD, image=BLOCKED, running=running)
    assert ready_of(verdicts) == ("False", "VulnerabilitiesFound")
    assert f"still serving {OLD.image}" in verdicts["Ready"].message


def test_a_running_image_that_cannot_be_judged_is_unknown() -> None:
    running = running_check(decision(False, "ScanUnavailable", "findings unavailable"), OLD.image)
    assert (running.status, running.reason) == ("Unknown", "ScanUnavailable")


def test_nothing_running_means_no_running_image_condition() -> None:
    verdicts = described(None, image=BLOCKED, running=None)
    assert "RunningImageCompliant" not in verdicts
