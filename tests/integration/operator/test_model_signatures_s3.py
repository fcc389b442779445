"""The operator's model signature check against S3 (moto's server over HTTP, in its own
process): the signature found beside the object by its digest, an untrusted key refused
without downloading the model, tampered bytes and a missing signature refused, and a verdict
downloaded once per object version and key set."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from tests.support.signing import KeyPair

from retail_contract.source import signature_key
from retail_operator.aws.objects import ModelInspector
from retail_operator.spec import ModelSpec
from retail_provenance.verdict import Outcome, Verdict
from retail_tools.standin import AwsStandIn

pytestmark = pytest.mark.aws

BUCKET, KEY = "signed-models", "prices/model.ubj"
TEAM, ROTATED = KeyPair.new(), KeyPair.new()


def put(aws: AwsStandIn, body: bytes, signature: bytes | None) -> str:
    if signature is not None:
        aws.ensure_bucket(BUCKET)
        digest = hashlib.sha256(body).hexdigest()
        aws.client("s3").put_object(Bucket=BUCKET, Key=signature_key(KEY, digest), Body=signature)
    return aws.put_model(BUCKET, KEY, body)


def check(inspector: ModelInspector, version: str, *trusted: KeyPair) -> Verdict:
    spec = ModelSpec(s3_uri=f"s3://{BUCKET}/{KEY}", version_id=version)

    async def run() -> Verdict:
        found = await inspector.head(spec)
        return await inspector.signature(spec, found, tuple(k.public for k in trusted))

    return asyncio.run(run())


def test_each_object_version_is_judged_by_its_own_signature(aws_env: AwsStandIn) -> None:
    inspector = ModelInspector()
    signed = put(aws_env, b"model-one" * 1000, TEAM.sign(b"model-one" * 1000))
    tampered = put(aws_env, b"model-two" * 1000, TEAM.sign(b"model-one" * 1000))
    stranger = put(aws_env, b"model-three", KeyPair.new().sign(b"model-three"))
    unsigned = put(aws_env, b"model-four", None)

    found = check(inspector, signed, ROTATED, TEAM)  # the old pinned version: its own
    assert found.verified and found.key == TEAM.fingerprint
    assert check(inspector, tampered, TEAM).outcome is Outcome.INVALID
    downloads = inspector.downloads
    assert check(inspector, stranger, TEAM).outcome is Outcome.UNTRUSTED
    assert inspector.downloads == downloads  # refused on the signature alone
    missing = check(inspector, unsigned, TEAM)
    assert missing.outcome is Outcome.UNSIGNED and "no signature at s3://" in missing.message

    downloads = inspector.downloads
    assert check(inspector, signed, ROTATED, TEAM).verified
    assert inspector.downloads == downloads  # the verdict is cached per version and keys
    assert check(inspector, signed, TEAM).verified
    assert inspector.downloads == downloads + 1  # another key set: checked again
