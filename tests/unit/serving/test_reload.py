"""The reload state machine: when to load, when to skip, and what is news worth logging."""

from __future__ import annotations

import pytest

from retail_contract.source import ModelSource
from retail_serving import reload
from retail_serving.errors import ChecksumMismatch, ModelFormatError, SourceUnavailable
from retail_serving.reload import Action, ReloadState
from retail_serving.versions import ObjectVersion

V1 = ObjectVersion(etag="e1", version_id="v1", sha256="a" * 64)
V2 = ObjectVersion(etag="e2", version_id="v2", sha256="b" * 64)


def test_nothing_served_yet_means_load() -> None:
    assert reload.plan(ReloadState(), V1) is Action.LOAD


def test_the_served_version_is_kept_and_a_new_one_loaded() -> None:
    state = reload.after_success(ReloadState(), V1)
    assert reload.plan(state, V1) is Action.KEEP
    assert reload.plan(state, V2) is Action.LOAD


def test_same_etag_in_a_new_version_is_still_a_change() -> None:
    state = reload.after_success(ReloadState(), V1)
    assert reload.plan(state, ObjectVersion(etag="e1", version_id="v9")) is Action.LOAD


def test_a_rejected_version_is_not_retried_until_the_object_changes() -> None:
    state = reload.after_success(ReloadState(), V1)
    state, news = reload.after_failure(state, V2, ModelFormatError("garbage"))
    assert news
    assert state.serving == V1
    assert reload.plan(state, V2) is Action.KEEP
    v3 = ObjectVersion(etag="e3", version_id="v3")
    assert reload.plan(state, v3) is Action.LOAD


def test_a_temporary_failure_is_retried_but_logged_once() -> None:
    state = reload.after_success(ReloadState(), V1)
    state, first = reload.after_failure(state, V2, SourceUnavailable("GET failed"))
    assert first
    assert reload.plan(state, V2) is Action.LOAD
    state, again = reload.after_failure(state, V2, SourceUnavailable("GET failed"))
    assert not again
    state = reload.after_success(state, V2)
    assert state == ReloadState(serving=V2)


def test_head_failures_are_news_only_when_they_start_and_when_they_end() -> None:
    state = ReloadState()
    news = []
    for ok in (True, False, False, False, True, True, False):
        state, is_news = reload.after_head(state, ok=ok)
        news.append(is_news)
    assert news == [False, True, False, False, True, False, True]


def test_verify_accepts_the_recorded_digest_in_any_case() -> None:
    reload.verify("a" * 64, V1, require_recorded=True)
    pinned_upper = ModelSource("s3://b/k", None, "A" * 64)
    upper = ObjectVersion("e", None, sha256="A" * 64, location=pinned_upper)
    reload.verify("a" * 64, upper, require_recorded=True)


def test_verify_refuses_a_mismatch_a_wrong_pin_and_a_missing_record() -> None:
    with pytest.raises(ChecksumMismatch, match="recorded"):
        reload.verify("c" * 64, V1, require_recorded=True)
    pinned = ObjectVersion("e1", "v1", "a" * 64, location=ModelSource("s3://b/k", None, "d" * 64))
    with pytest.raises(ChecksumMismatch, match="pinned"):
        reload.verify("a" * 64, pinned, require_recorded=True)
    unrecorded = ObjectVersion(etag="e", version_id=None)
    with pytest.raises(ChecksumMismatch, match="no sha256"):
        reload.verify("a" * 64, unrecorded, require_recorded=True)
    reload.verify("a" * 64, unrecorded, require_recorded=False)


def test_a_new_pin_on_the_same_object_is_a_change() -> None:
    here = ObjectVersion("e1", "v1", location=ModelSource("s3://b/k"))
    state = reload.after_success(ReloadState(), here)
    pinned = ObjectVersion("e1", "v1", location=ModelSource("s3://b/k", sha256="a" * 64))
    assert reload.plan(state, here) is Action.KEEP
    assert reload.plan(state, pinned) is Action.LOAD
