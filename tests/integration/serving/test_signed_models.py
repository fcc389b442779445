"""Signed models end to end on one machine: ``retailctl model push --signing-key`` against
S3 (moto over HTTP), and a predictor process told to require signatures. Tampered bytes, a
signature by an untrusted key and a missing signature are each refused, counted, and the
signed model keeps serving."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from retail_contract.source import signature_key
from retail_serving import artifact
from tests.support.signing import KeyPair

from .conftest import PredictorProcess, VersionedBucket, wait_for

pytestmark = pytest.mark.aws

Start = Callable[..., PredictorProcess]
Versions = Callable[[str], bytes]


def retailctl(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = Path(sys.executable).with_name("retailctl")
    return subprocess.run(
        [str(command), *arguments],
        capture_output=True,
        text=True,
        env=env | {"PATH": str(Path(sys.executable).parent)},
        timeout=120,
        check=False,
    )


def test_only_models_a_trusted_key_signed_are_served(
    tmp_path: Path, bucket: VersionedBucket, model_version: Versions, start_predictor: Start
) -> None:
    env = bucket.moto.env()
    private, public = tmp_path / "team.pem", tmp_path / "team.pub"
    made = retailctl("model", "keygen", str(private), str(public), env=env)
    assert made.returncode == 0, made.stderr
    assert private.stat().st_mode & 0o777 == 0o600

    def push(version: str) -> str:
        path = tmp_path / f"{version}.ubj"
        path.write_bytes(model_version(version))
        pushed = retailctl(
            "model", "push", str(path), bucket.uri, "--signing-key", str(private), env=env
        )
        assert pushed.returncode == 0, pushed.stderr
        return pushed.stdout

    pushed = push("one")
    digest = artifact.sha256_hex(model_version("one"))
    where = f"s3://{bucket.name}/{signature_key(bucket.key, digest)}"
    assert f"signature: {where}" in pushed

    predictor = start_predictor(
        bucket.uri,
        env | {"REQUIRE_MODEL_SIGNATURE": "true", "MODEL_TRUSTED_KEYS": public.read_text()},
    )
    wait_for(lambda: predictor.serving("one"), "the signed model")
    assert predictor.metric("retail_model_signature_checks_total", outcome="SignatureVerified") == 1

    s3 = bucket.moto.client("s3")  # type: ignore[attr-defined]

    def refused(data: bytes, outcome: str) -> None:
        failures = predictor.metric("retail_model_reload_failures_total", reason="signature")
        bucket.put(data)
        wait_for(
            lambda: predictor.metric("retail_model_signature_checks_total", outcome=outcome) == 1,
            f"the model to be refused as {outcome}",
        )
        after = predictor.metric("retail_model_reload_failures_total", reason="signature")
        assert after == failures + 1
        assert predictor.serving("one")  # the signed model keeps serving
        assert predictor.info()["last_reload_error"].startswith(f"signature: {outcome}: ")

    # Tampered: bytes changed after signing, stored under the signed bytes' signature.
    tampered = model_version("tampered")
    bundle = s3.get_object(Bucket=bucket.name, Key=signature_key(bucket.key, digest))["Body"]
    s3.put_object(
        Bucket=bucket.name,
        Key=signature_key(bucket.key, artifact.sha256_hex(tampered)),
        Body=bundle.read(),
    )
    refused(tampered, "SignatureInvalid")
    # Signed, but by a key the predictor does not trust.
    stranger = model_version("stranger")
    s3.put_object(
        Bucket=bucket.name,
        Key=signature_key(bucket.key, artifact.sha256_hex(stranger)),
        Body=KeyPair.new().sign(stranger),
    )
    refused(stranger, "UntrustedKey")
    # Not signed at all.
    refused(model_version("unsigned"), "Unsigned")

    push("two")
    wait_for(lambda: predictor.serving("two"), "the next signed model")
