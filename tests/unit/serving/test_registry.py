"""The registry's reload step: verify, load, swap; and keep the old model on any failure."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any

import pytest

from retail_contract.source import ModelSource
from retail_serving import artifact, checker
from retail_serving.errors import SourceUnavailable
from retail_serving.memory import ModelLimit
from retail_serving.metrics import ServingMetrics
from retail_serving.modelbytes import ModelBytes
from retail_serving.registry import ModelRegistry
from retail_serving.versions import ObjectVersion
from retail_training.training import TrainedModel
from tests.support.signing import KeyPair


class MemoryStore:
    """An S3-like object held in memory: each ``put`` is a new version."""

    uri = "memory://model"
    records_sha256 = True

    def __init__(self) -> None:
        self.versions: dict[str, bytes] = {}
        self.current: ObjectVersion | None = None
        self.down = False  # HEAD fails
        self.downloads_dropped = False  # HEAD answers, the GET fails
        self.downloads = 0
        self.signatures: dict[str, bytes] = {}  # by the signed bytes' sha256

    def put(self, data: bytes, *, sha256: str | None = None) -> None:
        version_id = f"v{len(self.versions) + 1}"
        self.versions[version_id] = data
        recorded = artifact.sha256_hex(data) if sha256 is None else sha256
        self.current = ObjectVersion(
            f"etag-{version_id}", version_id, sha256=recorded, size=len(data)
        )

    def head(self) -> ObjectVersion:
        if self.down or self.current is None:
            raise SourceUnavailable("HEAD memory://model failed: unreachable")
        return self.current

    def fetch(self, version: ObjectVersion, limit: int) -> ModelBytes:
        assert version.version_id is not None
        self.downloads += 1
        if self.downloads_dropped:
            raise SourceUnavailable("GET memory://model failed: connection dropped")
        data = self.versions[version.version_id]
        assert len(data) <= limit  # the registry refuses larger objects on their HEAD
        return ModelBytes.of(data)

    def fetch_signature(self, sha256: str) -> bytes | None:
        return self.signatures.get(sha256)


def counter(metrics: ServingMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


@pytest.fixture
def source() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def metrics() -> ServingMetrics:
    return ServingMetrics()


def registry_for(
    source: MemoryStore,
    metrics: ServingMetrics,
    location: ModelSource | None = None,
    **options: Any,
) -> ModelRegistry:
    where = location or ModelSource(source.uri)
    return ModelRegistry(lambda: where, metrics, connect=lambda _: source, **options)


def version_bytes(trained: TrainedModel, version: str) -> bytes:
    return artifact.serialise(trained.booster, trained.encoder, version)


def test_first_poll_loads_and_later_polls_swap_only_on_change(
    source: MemoryStore, metrics: ServingMetrics, trained: TrainedModel
) -> None:
    registry = registry_for(source, metrics)
    assert not registry.poll() and not registry.ready  # nothing uploaded yet
    source.put(version_bytes(trained, "one"))
    assert registry.poll()
    first = registry.current
    assert first is not None and first.model.version == "one"
    assert not registry.poll()
    assert registry.current is first
    source.put(version_bytes(trained, "two"))
    assert registry.poll()
    assert registry.current is not None and registry.current.model.version == "two"
    assert registry.current.origin.version_id == "v2"
    assert counter(metrics, "retail_model_reloads_total", outcome="ok") == 2
    sha256 = registry.current.model.sha256
    assert counter(metrics, "retail_model_info", version="two", sha256=sha256) == 1


@pytest.mark.parametrize(
    ("upload", "reason"),
    [
        (lambda good: (b"\x80\x05garbage", None), "format"),
        (lambda good: (good, "0" * 64), "checksum"),
        (lambda good: (good[: len(good) // 3], None), "format"),
    ],
)
def test_a_bad_new_version_keeps_the_old_model_and_is_counted_and_logged_once(
    source: MemoryStore,
    metrics: ServingMetrics,
    trained: TrainedModel,
    caplog: pytest.LogCaptureFixture,
    upload: object,
    reason: str,
) -> None:
    registry = registry_for(source, metrics)
    source.put(version_bytes(trained, "good"))
    registry.poll()
    data, recorded = upload(version_bytes(trained, "bad"))  # type: ignore[operator]
    source.put(data, sha256=recorded)
    with caplog.at_level(logging.ERROR, logger="retail_serving.reload"):
        for _ in range(3):
            assert not registry.poll()
    assert registry.current is not None and registry.current.model.version == "good"
    assert counter(metrics, "retail_model_reload_failures_total", reason=reason) == 1
    assert len(caplog.records) == 1
    assert registry.last_error is not None and registry.last_error.startswith(reason)


def test_an_object_over_the_size_limit_is_refused_unread_until_it_changes(
    source: MemoryStore, metrics: ServingMetrics, trained: TrainedModel
) -> None:
    good = version_bytes(trained, "good")
    limit = ModelLimit(2 * len(good), "MAX_MODEL_BYTES")
    registry = registry_for(source, metrics, model_limit=limit)
    source.put(good)
    assert registry.poll()
    downloads = source.downloads
    source.put(good + b" " * 2 * len(good))  # three times the size of a good model
    for _ in range(3):
        assert not registry.poll()
    assert source.downloads == downloads  # refused on its HEAD, never downloaded
    assert registry.current is not None and registry.current.model.version == "good"
    assert counter(metrics, "retail_model_reload_failures_total", reason="too_large") == 1
    assert registry.last_error is not None
    assert registry.last_error.startswith("too_large") and "MAX_MODEL_BYTES" in registry.last_error
    source.put(version_bytes(trained, "next"))
    assert registry.poll() and registry.current.model.version == "next"


def test_a_json_model_over_its_share_of_the_limit_is_refused_where_ubjson_is_served(
    source: MemoryStore, metrics: ServingMetrics, trained: TrainedModel
) -> None:
    """XGBoost's JSON parse takes about five times the memory of its UBJSON one: a JSON model
    may be a quarter of the limit. Told from its first bytes, once downloaded."""
    as_json = artifact.serialise(trained.booster, trained.encoder, "json", as_json=True)
    limit = ModelLimit(2 * len(as_json), "(memory limit 1 MiB - 0 MiB) / 5")
    assert limit.json_bytes < len(as_json) <= limit.bytes
    registry = registry_for(source, metrics, model_limit=limit)
    source.put(version_bytes(trained, "ubjson"))
    assert registry.poll()
    source.put(as_json)
    assert not registry.poll()
    assert counter(metrics, "retail_model_reload_failures_total", reason="too_large") == 1
    assert registry.last_error is not None and "(JSON)" in registry.last_error
    assert "memory limit" in registry.last_error  # the rule that set the limit
    assert registry.current is not None and registry.current.model.version == "ubjson"


def test_an_unreachable_source_keeps_serving_and_logs_once(
    source: MemoryStore,
    metrics: ServingMetrics,
    trained: TrainedModel,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = registry_for(source, metrics)
    source.put(version_bytes(trained, "good"))
    registry.poll()
    source.down = True
    with caplog.at_level(logging.WARNING, logger="retail_serving.reload"):
        for _ in range(4):
            registry.poll()
    assert registry.ready
    assert counter(metrics, "retail_model_poll_errors_total") == 4
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_a_dropped_download_is_retried_every_poll_logged_once_and_then_loaded(
    source: MemoryStore,
    metrics: ServingMetrics,
    trained: TrainedModel,
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = registry_for(source, metrics)
    source.put(version_bytes(trained, "good"))
    registry.poll()
    source.downloads_dropped = True
    source.put(version_bytes(trained, "next"))
    downloads = source.downloads
    with caplog.at_level(logging.WARNING, logger="retail_serving.reload"):
        for _ in range(4):
            assert not registry.poll()
    assert source.downloads == downloads + 4  # a temporary failure: tried again on every poll
    assert registry.current is not None and registry.current.model.version == "good"
    assert counter(metrics, "retail_model_reload_failures_total", reason="unavailable") == 4
    assert counter(metrics, "retail_model_poll_errors_total") == 0  # the HEAD answered
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["not loading memory://model"]
    assert "connection dropped" in caplog.records[0].getMessage()
    source.downloads_dropped = False
    assert registry.poll()
    assert registry.current.model.version == "next"


def test_a_check_without_a_verdict_is_retried_on_the_next_poll(
    source: MemoryStore,
    metrics: ServingMetrics,
    trained: TrainedModel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = registry_for(source, metrics)
    source.put(version_bytes(trained, "good"))
    registry.poll()
    source.put(version_bytes(trained, "next"))
    real = checker.HELPER
    monkeypatch.setattr(checker, "HELPER", checker.Helper([sys.executable, "-c", "exit(9)"]))
    assert not registry.poll()  # the helper died: no verdict on these bytes
    assert counter(metrics, "retail_model_reload_failures_total", reason="check") == 1
    assert registry.current is not None and registry.current.model.version == "good"
    assert registry.last_error is not None and "did not finish" in registry.last_error
    monkeypatch.setattr(checker, "HELPER", checker.Helper(real.command))
    try:
        assert registry.poll()  # the same bytes, checked again, and served
    finally:
        checker.HELPER.close()
    assert registry.current.model.version == "next"


def test_a_pinned_digest_refuses_other_models(
    source: MemoryStore, metrics: ServingMetrics, trained: TrainedModel
) -> None:
    good = version_bytes(trained, "pinned")
    pinned = ModelSource(source.uri, sha256=artifact.sha256_hex(good))
    registry = registry_for(source, metrics, pinned)
    source.put(version_bytes(trained, "other"))
    assert not registry.poll() and not registry.ready
    source.put(good)
    assert registry.poll()


def test_a_changed_location_is_a_new_version_even_for_the_same_object(
    source: MemoryStore, metrics: ServingMetrics, trained: TrainedModel
) -> None:
    where = [ModelSource(source.uri)]
    registry = ModelRegistry(lambda: where[0], metrics, connect=lambda _: source)
    source.put(version_bytes(trained, "one"))
    assert registry.poll()
    where[0] = ModelSource(source.uri, sha256="f" * 64)  # a new pin the model fails
    assert not registry.poll()
    assert registry.current is not None and registry.current.model.version == "one"
    assert counter(metrics, "retail_model_reload_failures_total", reason="checksum") == 1
    assert registry.current.origin.location == ModelSource(source.uri)


def test_one_source_per_uri_and_version_pin(metrics: ServingMetrics) -> None:
    connected: list[ModelSource] = []
    where = [ModelSource("s3://b/k")]

    def connect(location: ModelSource) -> MemoryStore:
        connected.append(location)
        return MemoryStore()

    registry = ModelRegistry(lambda: where[0], metrics, connect=connect)
    registry.poll()
    registry.poll()
    where[0] = ModelSource("s3://b/k", sha256="a" * 64)  # same object, same source
    registry.poll()
    where[0] = ModelSource("s3://b/k", version_id="v7")
    registry.poll()
    assert connected == [ModelSource("s3://b/k"), ModelSource("s3://b/k", version_id="v7")]


def _model_files_open() -> int:
    """This process's descriptors on model memory files (``ModelBytes``)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the listing's own, closed by now
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:model")
    return count


def test_a_reloads_bytes_are_released_once_it_ends_however_it_ends(
    source: MemoryStore, metrics: ServingMetrics, trained: TrainedModel
) -> None:
    registry = registry_for(source, metrics)
    before = _model_files_open()
    good = version_bytes(trained, "one")
    for upload, sha256 in [(good, None), (good[:-9], None), (good, "0" * 64)]:
        source.put(upload, sha256=sha256)
        registry.poll()
        assert _model_files_open() == before
    assert registry.current is not None and registry.current.model.version == "one"


@pytest.fixture(scope="module")
def team() -> KeyPair:
    return KeyPair.new()


def signed_source(source: MemoryStore, team: KeyPair) -> ModelSource:
    return ModelSource(source.uri, trusted_keys=(team.public,))


def put_signed(source: MemoryStore, data: bytes, signer: KeyPair) -> None:
    source.signatures[artifact.sha256_hex(data)] = signer.sign(data)
    source.put(data)


def test_a_model_signed_by_a_trusted_key_is_served_and_the_check_counted(
    source: MemoryStore, metrics: ServingMetrics, trained: TrainedModel, team: KeyPair
) -> None:
    registry = registry_for(source, metrics, signed_source(source, team), require_signature=True)
    put_signed(source, version_bytes(trained, "signed"), team)
    assert registry.poll()
    assert registry.current is not None and registry.current.signed_by == team.fingerprint
    assert counter(metrics, "retail_model_signature_checks_total", outcome="SignatureVerified") == 1
    assert counter(metrics, "retail_model_signature_check_seconds_count") == 1


@pytest.mark.parametrize(
    ("upload", "outcome"),
    [
        ("tampered", "SignatureInvalid"),
        ("untrusted", "UntrustedKey"),
        ("unsigned", "Unsigned"),
    ],
)
def test_a_model_without_a_trusted_signature_is_refused_and_the_old_one_keeps_serving(
    source: MemoryStore,
    metrics: ServingMetrics,
    trained: TrainedModel,
    team: KeyPair,
    upload: str,
    outcome: str,
) -> None:
    registry = registry_for(source, metrics, signed_source(source, team), require_signature=True)
    put_signed(source, version_bytes(trained, "good"), team)
    assert registry.poll()
    bad = version_bytes(trained, "bad")
    if upload == "tampered":  # signed, then changed after signing
        source.signatures[artifact.sha256_hex(bad)] = team.sign(version_bytes(trained, "good"))
    elif upload == "untrusted":
        source.signatures[artifact.sha256_hex(bad)] = KeyPair.new().sign(bad)
    source.put(bad)
    for _ in range(2):
        assert not registry.poll()  # refused once, not retried until the object changes
    assert registry.current is not None and registry.current.model.version == "good"
    assert counter(metrics, "retail_model_reload_failures_total", reason="signature") == 1
    assert counter(metrics, "retail_model_signature_checks_total", outcome=outcome) == 1
    assert registry.last_error is not None
    assert registry.last_error.startswith(f"signature: {outcome}: ")


def test_a_pod_that_requires_signatures_refuses_a_document_without_keys(
    source: MemoryStore, metrics: ServingMetrics, trained: TrainedModel, team: KeyPair
) -> None:
    registry = registry_for(source, metrics, require_signature=True)
    put_signed(source, version_bytes(trained, "signed"), team)
    assert not registry.poll() and not registry.ready
    assert registry.last_error == ("signature: signed models are required, but no key is trusted")


def test_without_keys_or_the_requirement_no_signature_is_asked_for(
    source: MemoryStore, metrics: ServingMetrics, trained: TrainedModel
) -> None:
    registry = registry_for(source, metrics)
    source.put(version_bytes(trained, "unsigned"))
    assert registry.poll()
    assert counter(metrics, "retail_model_signature_checks_total", outcome="Unsigned") == 0


def test_a_change_of_trusted_keys_checks_the_served_object_again(
    source: MemoryStore, metrics: ServingMetrics, trained: TrainedModel, team: KeyPair
) -> None:
    """A rotation's last step (the old key no longer trusted) re-checks what is loaded: the
    refusal is counted and named, and the loaded model keeps serving."""
    where = [signed_source(source, team)]
    registry = ModelRegistry(
        lambda: where[0], metrics, connect=lambda _: source, require_signature=True
    )
    put_signed(source, version_bytes(trained, "old-key"), team)
    assert registry.poll()
    where[0] = ModelSource(source.uri, trusted_keys=(KeyPair.new().public,))
    assert not registry.poll()
    assert counter(metrics, "retail_model_signature_checks_total", outcome="UntrustedKey") == 1
    assert registry.current is not None and registry.current.model.version == "old-key"
