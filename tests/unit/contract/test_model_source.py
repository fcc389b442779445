"""The contract between the operator and its pods, held from both ends: what the operator
renders, the predictor reads back unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from retail_contract import env
from retail_contract.source import MODEL_SOURCE_FILENAME, MODEL_SOURCE_PATH, ModelSource, S3Uri
from retail_operator.rendering import Owner, Target, render_config_map, render_deployment
from retail_operator.spec import ModelSpec, RetailModelSpec
from retail_serving.settings import ServingSettings
from retail_serving.storage import read_source_file

REPO = "123456789012.dkr.ecr.ap-southeast-1.amazonaws.com/mlops/retail-api"
OWNER = Owner("price", "retail", "uid-1")


def spec(**model: str) -> RetailModelSpec:
    return RetailModelSpec.from_body(
        {"image": {"repository": REPO, "tag": "v1"}, "model": {"s3Uri": "s3://b/m.ubj", **model}}
    )


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({}, ModelSource("s3://b/m.ubj")),
        ({"versionId": "v7"}, ModelSource("s3://b/m.ubj", "v7")),
        ({"versionId": "v7", "sha256": "ab" * 32}, ModelSource("s3://b/m.ubj", "v7", "ab" * 32)),
    ],
)
def test_the_predictor_reads_what_the_operator_renders(
    tmp_path: Path, model: dict[str, str], expected: ModelSource
) -> None:
    rendered = spec(**model)
    config_map = render_config_map(OWNER, Target(f"{REPO}@sha256:{'c' * 64}", rendered.model))
    mounted = tmp_path / MODEL_SOURCE_FILENAME  # what the kubelet writes for the ConfigMap volume
    mounted.write_text(config_map["data"][MODEL_SOURCE_FILENAME])
    assert read_source_file(mounted) == expected
    # …and the operator can read its own document back (crash recovery reads the live child).
    assert ModelSpec.from_source(ModelSource.from_json(mounted.read_text())) == rendered.model


def test_the_operator_mounts_the_document_where_it_tells_the_predictor_to_look() -> None:
    deployment = render_deployment(spec(), OWNER, Target(f"{REPO}@sha256:{'c' * 64}", spec().model))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    variables = {item["name"]: item["value"] for item in container["env"]}
    assert variables[env.MODEL_SOURCE_FILE] == MODEL_SOURCE_PATH
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert f"{mounts['model-source']}/{MODEL_SOURCE_FILENAME}" == MODEL_SOURCE_PATH


def test_every_variable_the_operator_sets_is_a_predictor_setting() -> None:
    deployment = render_deployment(spec(), OWNER, Target(f"{REPO}@sha256:{'c' * 64}", spec().model))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    contract_names = {item["name"] for item in container["env"]} - {"TMPDIR"}
    # Set only when they differ from the predictor's defaults: METRICS_PORT (the contract's
    # metrics.METRICS_PORT) and MAX_MODEL_BYTES (a RetailModelPolicy's limit).
    # REQUIRE_MODEL_SIGNATURE too, only once a model's signature is required.
    optional = {env.METRICS_PORT, env.MAX_MODEL_BYTES, env.REQUIRE_MODEL_SIGNATURE}
    assert contract_names - optional == set(env.PREDICTOR_ENV) - optional
    assert {name.lower() for name in env.PREDICTOR_ENV} <= set(ServingSettings.model_fields)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "Expecting value"),
        ("[]", "JSON object"),
        ('{"versionId": "v1"}', "string 'uri'"),
        ('{"uri": "s3://b/k", "sha256": 7}', "'sha256' must be a string"),
    ],
)
def test_a_malformed_document_says_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        ModelSource.from_json(text)


@pytest.mark.parametrize("uri", ["s3://bucket-only", "s3:///key", "gs://b/k", "b/k"])
def test_the_one_s3_uri_parser_refuses_what_is_not_bucket_and_key(uri: str) -> None:
    with pytest.raises(ValueError):
        S3Uri.parse(uri)
    assert S3Uri.parse("s3://b/a/b.ubj").uri == "s3://b/a/b.ubj"


def test_the_bucket_owner_travels_in_the_document_only_when_required() -> None:
    plain = ModelSource("s3://b/k", "v1", "a" * 64)
    assert "bucketOwner" not in plain.to_json()  # documents without one stay as they were
    owned = ModelSource("s3://b/k", "v1", "a" * 64, "123456789012")
    assert ModelSource.from_json(owned.to_json()) == owned
    with pytest.raises(ValueError, match="'bucketOwner' must be a string"):
        ModelSource.from_json('{"uri": "s3://b/k", "bucketOwner": 1}')
