"""Where the model comes from: MODEL_URI with pins, or a source file re-read on every poll."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from retail_contract.source import ModelSource, S3Uri
from retail_serving.app import locator
from retail_serving.errors import ModelTooLarge, SourceUnavailable
from retail_serving.settings import ServingSettings
from retail_serving.storage import FileStore, open_store, read_source_file


def test_a_source_file_is_read_afresh_and_empty_pins_mean_none(tmp_path: Path) -> None:
    path = tmp_path / "model-source.json"
    path.write_text(json.dumps({"uri": "s3://b/m.ubj", "versionId": "", "sha256": ""}))
    assert read_source_file(path) == ModelSource("s3://b/m.ubj")
    path.write_text(json.dumps({"uri": "s3://b/m.ubj", "versionId": "v3", "sha256": "ab" * 32}))
    assert read_source_file(path) == ModelSource("s3://b/m.ubj", "v3", "ab" * 32)


@pytest.mark.parametrize("text", [None, "not json", "[]", '{"versionId": "v1"}', '{"uri": 3}'])
def test_a_missing_or_malformed_source_file_is_temporarily_unavailable(
    tmp_path: Path, text: str | None
) -> None:
    path = tmp_path / "model-source.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(SourceUnavailable):
        read_source_file(path)


def test_settings_take_exactly_one_location(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        ServingSettings()
    source_file = tmp_path / "s.json"
    with pytest.raises(ValidationError, match="exactly one"):
        ServingSettings(model_uri="m.ubj", model_source_file=source_file)
    with pytest.raises(ValidationError, match="pins and trusted keys belong"):
        ServingSettings(model_source_file=source_file, model_version_id="v1")
    with pytest.raises(ValidationError, match="bucket and a key"):
        ServingSettings(model_uri="s3://bucket-only")


def test_settings_locate_a_pinned_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_URI", "s3://b/k.ubj")
    monkeypatch.setenv("MODEL_VERSION_ID", "v9")
    monkeypatch.setenv("MODEL_SHA256", "C" * 64)
    assert locator(ServingSettings())() == ModelSource("s3://b/k.ubj", "v9", "C" * 64)


def test_settings_locate_through_the_source_file(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    locate = locator(ServingSettings(model_source_file=path))
    path.write_text(json.dumps({"uri": "/models/a.ubj"}))
    assert locate() == ModelSource("/models/a.ubj")
    path.write_text(json.dumps({"uri": "/models/b.ubj"}))
    assert locate() == ModelSource("/models/b.ubj")


def test_locations_open_the_right_source(tmp_path: Path) -> None:
    assert isinstance(open_store(ModelSource(str(tmp_path / "m.ubj"))), FileStore)
    assert open_store(ModelSource("file:///models/m.ubj")).uri == "/models/m.ubj"
    with pytest.raises(SourceUnavailable, match="version pin"):
        open_store(ModelSource("/models/m.ubj", version_id="v1"))
    with pytest.raises(SourceUnavailable, match="invalid"):
        open_store(ModelSource("s3://"))
    assert S3Uri.parse("s3://b/a/b/c.ubj") == S3Uri("b", "a/b/c.ubj")


def test_a_file_store_reports_the_size_and_reads_no_more_than_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "m.ubj"
    path.write_bytes(b"x" * 100)
    store = FileStore(path)
    version = store.head()
    assert version.size == 100
    with store.fetch(version, 100) as fetched:
        assert bytes(fetched) == b"x" * 100
    with pytest.raises(ModelTooLarge, match="100 bytes, over the model size limit of 99"):
        store.fetch(version, 99)  # grown since its HEAD, say: refused all the same


def test_every_s3_call_names_the_bucket_owner_when_the_source_does() -> None:
    from retail_contract.source import ModelSource
    from retail_serving.storage import open_store

    calls: list[dict[str, object]] = []

    class Client:
        def head_object(self, **arguments: object) -> dict[str, object]:
            calls.append(arguments)
            return {"ETag": '"e"', "VersionId": "v1", "ContentLength": 3, "Metadata": {}}

    store = open_store(ModelSource("s3://models/m.ubj", bucket_owner="123456789012"))
    store._client = Client()  # type: ignore[attr-defined]
    store.head()
    assert calls[0]["ExpectedBucketOwner"] == "123456789012"
    plain = open_store(ModelSource("s3://models/m.ubj"))
    plain._client = Client()  # type: ignore[attr-defined]
    plain.head()
    assert "ExpectedBucketOwner" not in calls[1]
