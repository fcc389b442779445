"""Conditions keep their transition time unless their status changes; transitions are Events."""

from __future__ import annotations

from collections.abc import Sequence

from retail_operator import conditions
from retail_operator.conditions import (
    AVAILABLE,
    IMAGE_SCAN_PASSED,
    MODEL_AVAILABLE,
    READY,
    Check,
    announcements,
    transitions,
)
from retail_operator.status import Condition, ConditionStatus

Row = tuple[str, Check]


def Verdict(type_: str, status: ConditionStatus, reason: str, message: str) -> Row:  # noqa: N802
    """One condition's check, by type (the rows read like the conditions they become)."""
    return type_, Check(status, reason, message)


def merge(existing: Sequence[Condition], rows: Sequence[Row], **stamp: object) -> list[Condition]:
    return conditions.merge(existing, dict(rows), **stamp)  # type: ignore[arg-type]


def test_new_conditions_are_stamped_and_ordered() -> None:
    merged = merge(
        [],
        [
            Verdict(READY, "False", "RolloutPending", "x"),
            Verdict("ImageScanPassed", "True", "ScanClean", "y"),
        ],
        generation=3,
        now="T1",
    )
    assert [c["type"] for c in merged] == ["ImageScanPassed", READY]
    assert all(c["lastTransitionTime"] == "T1" and c["observedGeneration"] == 3 for c in merged)


def test_same_status_keeps_transition_time_even_if_reason_changes() -> None:
    first = merge([], [Verdict(READY, "False", "RolloutPending", "a")], generation=1, now="T1")
    second = merge(
        first, [Verdict(READY, "False", "RolloutInProgress", "b")], generation=2, now="T2"
    )
    assert second[0]["lastTransitionTime"] == "T1"
    assert second[0]["reason"] == "RolloutInProgress" and second[0]["observedGeneration"] == 2


def test_status_change_moves_transition_time() -> None:
    first = merge([], [Verdict(READY, "False", "RolloutPending", "a")], generation=1, now="T1")
    second = merge(first, [Verdict(READY, "True", "Ready", "b")], generation=1, now="T2")
    assert second[0]["lastTransitionTime"] == "T2"


def test_unchanged_world_is_byte_for_byte_stable() -> None:
    verdicts = [Verdict(READY, "True", "Ready", "serving")]
    first = merge([], verdicts, generation=1, now="T1")
    assert merge(first, verdicts, generation=1, now="T9") == first
    assert transitions(first, first) == []


def test_transitions_report_status_or_reason_changes_only() -> None:
    old = merge([], [Verdict(READY, "False", "ScanInProgress", "a")], generation=1, now="T1")
    message_only = merge(
        old, [Verdict(READY, "False", "ScanInProgress", "b")], generation=1, now="T2"
    )
    assert transitions(old, message_only) == []
    reason = merge(
        old, [Verdict(READY, "False", "VulnerabilitiesFound", "c")], generation=1, now="T2"
    )
    assert [c["reason"] for c in transitions(old, reason)] == ["VulnerabilitiesFound"]


def _conditions(*verdicts: Row) -> list[Condition]:
    return merge([], list(verdicts), generation=1, now="T")


def test_a_clean_rollout_is_announced_by_ready_alone() -> None:
    first = _conditions(
        Verdict(IMAGE_SCAN_PASSED, "True", "ScanClean", "clean"),
        Verdict(MODEL_AVAILABLE, "True", "ModelFound", "found"),
        Verdict(AVAILABLE, "False", "RolloutInProgress", "0/1"),
        Verdict(READY, "False", "RolloutInProgress", "rolling out"),
    )
    started = announcements([], first)
    assert [(e.type, e.reason) for e in started] == [("Normal", "RolloutInProgress")]
    assert started[0].message == "Ready: rolling out"
    done = merge(
        first,
        [
            Verdict(IMAGE_SCAN_PASSED, "True", "ScanClean", "clean"),
            Verdict(MODEL_AVAILABLE, "True", "ModelFound", "found"),
            Verdict(AVAILABLE, "True", "MinimumReplicasAvailable", "1/1"),
            Verdict(READY, "True", "RolledOut", "serving"),
        ],
        generation=1,
        now="T2",
    )
    assert [(e.type, e.reason) for e in announcements(first, done)] == [("Normal", "RolledOut")]


def test_problems_are_warnings_and_pending_scans_are_progress() -> None:
    blocked = _conditions(
        Verdict(IMAGE_SCAN_PASSED, "False", "VulnerabilitiesFound", "CVE-1 HIGH"),
        Verdict(MODEL_AVAILABLE, "Unknown", "Throttled", "slow down"),
        Verdict(AVAILABLE, "False", "NotDeployed", "nothing yet"),
        Verdict(READY, "False", "VulnerabilitiesFound", "blocked"),
    )
    assert [(e.type, e.reason) for e in announcements([], blocked)] == [
        ("Warning", "VulnerabilitiesFound"),
        ("Warning", "Throttled"),
        ("Warning", "VulnerabilitiesFound"),
    ]
    scanning = _conditions(Verdict(IMAGE_SCAN_PASSED, "Unknown", "ScanInProgress", "wait"))
    assert [(e.type, e.reason) for e in announcements([], scanning)] == [
        ("Normal", "ScanInProgress")
    ]
