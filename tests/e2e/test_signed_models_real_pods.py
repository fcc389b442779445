"""Signed models on real pods: a RetailModel whose spec names a trusted key runs predictor
pods told to require signatures (REQUIRE_MODEL_SIGNATURE, the keys in the model-source
document); each pod checks every new object version itself before it swaps it in. Tampered
bytes, a signature by an untrusted key and a missing signature are each refused by the pods
(counted, named in /model/info), the signed model keeps serving, and a signed one is then
taken. The operator says the same in ModelSignatureVerified."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator

import pytest

from retail_contract.source import signature_key
from retail_serving import artifact
from retail_tools.polling import wait_until
from retail_training import training
from tests.e2e.conftest import BUCKET, NAMESPACE, Stack
from tests.support.signing import KeyPair

pytestmark = [pytest.mark.cluster, pytest.mark.realnode]

KEY = "models/signed/model.ubj"


@pytest.fixture(scope="module")
def versions() -> Iterator[dict[str, bytes]]:
    trained = training.train(2_000, seed=7)
    yield {
        name: artifact.serialise(trained.booster, trained.encoder, name)
        for name in ("signed-1", "tampered", "stranger", "unsigned", "signed-2")
    }


def test_pods_refuse_models_no_trusted_key_signed(stack: Stack, versions: dict[str, bytes]) -> None:
    team, stranger = KeyPair.new(), KeyPair.new()
    aws = stack.on_node.aws
    s3 = aws.client("s3")

    def put(name: str, signature: bytes | None) -> None:
        data = versions[name]
        if signature is not None:
            aws.ensure_bucket(BUCKET)
            digest = hashlib.sha256(data).hexdigest()
            s3.put_object(Bucket=BUCKET, Key=signature_key(KEY, digest), Body=signature)
        aws.put_model(BUCKET, KEY, data)

    put("signed-1", team.sign(versions["signed-1"]))
    name = f"signed-{uuid.uuid4().hex[:5]}"
    manifest = stack.on_node.retail_model(
        name, NAMESPACE, f"e2e-{stack.run}", f"s3://{BUCKET}/{KEY}", replicas=1
    )
    manifest["spec"]["model"]["trustedKeys"] = [team.public]
    stack.on_node.apply(manifest)
    try:
        stack.wait_condition(name, "Ready", "True")
        assert stack.condition(name, "ModelSignatureVerified")["status"] == "True"
        (pod,) = stack.running_pods(name)
        pod_name = pod["metadata"]["name"]
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert env["REQUIRE_MODEL_SIGNATURE"] == "true"
        assert stack.model_info(pod_name)["version"] == "signed-1"

        refusals = (
            ("tampered", team.sign(versions["signed-1"]), "SignatureInvalid"),
            ("stranger", stranger.sign(versions["stranger"]), "UntrustedKey"),
            ("unsigned", None, "Unsigned"),
        )
        for version, signature, outcome in refusals:
            put(version, signature)

            def refused(outcome: str = outcome) -> bool:
                error = stack.model_info(pod_name).get("last_reload_error") or ""
                return error.startswith(f"signature: {outcome}: ")

            wait_until(refused, timeout=90, what=f"the pod to refuse {version}")
            info = stack.model_info(pod_name)
            assert info["version"] == "signed-1", info  # the signed model keeps serving
            stack.wait_condition(name, "ModelSignatureVerified", "False", outcome)

        put("signed-2", team.sign(versions["signed-2"]))
        wait_until(
            lambda: stack.model_info(pod_name)["version"] == "signed-2",
            timeout=90,
            what="the pod to take the next signed model",
        )
        stack.wait_condition(name, "ModelSignatureVerified", "True")
    finally:
        stack.on_node.remove(NAMESPACE, name)
