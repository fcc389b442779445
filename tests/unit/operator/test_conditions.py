"""Conditions keep their transition time unless their status changes; transitions are Events."""

from __future__ import annotations

from retail_operator.conditions import READY, Verdict, merge, transitions


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
