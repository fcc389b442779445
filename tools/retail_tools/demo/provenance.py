"""The demo's provenance part: only signed images and signed models run. A key pair made with
``retailctl model keygen``; what runs signed with it first (its image pushed again with
``--signing-key``, its model object's signature stored beside it), so the RetailModel stays
Healthy once a RetailModelPolicy over the demo's namespace trusts the key for images and
models; then an unsigned image commit refused (ImageSignatureVerified Unsigned, Argo CD
Degraded, the pods untouched) and reverted in git, and an unsigned model upload refused (no
canary starts) before a signed one goes through a canary and is promoted.

``STEP`` goes at the end of the story, before "Events and logs" (the RetailModel is then
under the Canary strategy); the policy is recorded in ``demo.applied`` for the teardown.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from retail_contract.source import signature_key
from retail_provenance import modelsig
from retail_tools import candidates
from retail_tools.demo import canary, gitops
from retail_tools.demo.context import (
    BUCKET,
    MODEL_KEY,
    NAME,
    NAMESPACE,
    Demo,
    DemoError,
    Step,
    console,
    wait,
    wait_condition,
)
from retail_tools.demo.rollouts import (
    IMAGE_IDS,
    PREDICTOR_PODS,
    commit_refused,
    image_id,
    ready_pods,
    release,
    wait_ready,
)
from retail_tools.load import Load

POLICY = "demo-signed-only"
SIGNATURE_SECONDS = 120


def only_signed_runs(demo: Demo) -> None:
    private, public = demo.workdir / "team.pem", demo.workdir / "team.pub"
    for earlier in (private, public):  # a new key each run; keygen overwrites no key
        earlier.unlink(missing_ok=True)
    demo.run("retailctl", "model", "keygen", str(private), str(public))
    sign_what_runs(demo, private)
    trust(demo, public.read_text())
    for kind in ("ImageSignatureVerified", "ModelSignatureVerified"):
        wait_condition(demo, kind, "True", "SignatureVerified", SIGNATURE_SECONDS)
    wait_ready(demo, "True")
    # The pods are now told to require signed models: a rolling update of the same image.
    demo.kubectl("rollout", "status", f"deployment/{NAME}", "-n", NAMESPACE, "--timeout=240s")
    demo.kubectl("get", "rmodel", NAME, "-n", NAMESPACE, "-o", "wide")
    unsigned_image_refused(demo)
    unsigned_model_refused_then_signed_served(demo, private)


def sign_what_runs(demo: Demo, private: Path) -> None:
    """The running image pushed again under its tag with the key (the same digest: only the
    signature is new), and the running model object's signature stored beside it."""
    tag = demo.gitops_repo.read_yaml(gitops.MODEL_FILE)["spec"]["image"]["tag"]
    demo.run("retailctl", "image", "push", "serving", "--tag", tag, "--signing-key", str(private))
    s3 = demo.stand_in.client("s3")
    data = s3.get_object(Bucket=BUCKET, Key=MODEL_KEY)["Body"].read()
    running = demo.workdir / "model-running.ubj"
    running.write_bytes(data)
    key = signature_key(MODEL_KEY, hashlib.sha256(data).hexdigest())
    s3.put_object(Bucket=BUCKET, Key=key, Body=modelsig.sign(running, private))
    console.print(f"[dim]the running model's signature stored as s3://{BUCKET}/{key}")


def trust(demo: Demo, public: str) -> None:
    policy = {
        "apiVersion": "mlops.retail.io/v1alpha1",
        "kind": "RetailModelPolicy",
        "metadata": {"name": POLICY},
        "spec": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
            "images": {"trustedKeys": [public]},
            "models": {"trustedKeys": [public]},
        },
    }
    console.print(f"[bold cyan]$ kubectl apply -f -  [/][dim](RetailModelPolicy {POLICY})")
    demo.node.apply(policy)
    demo.applied.append((f"retailmodelpolicy/{POLICY}", NAMESPACE))


def unsigned_image_refused(demo: Demo) -> None:
    pods = {pod["metadata"]["name"]: image_id(pod) for pod in ready_pods(demo)}
    tag = release(demo, "unsigned", findings=[])
    commit_refused(demo, tag, "Unsigned", "Image refused", "the refused unsigned image")
    demo.kubectl("get", "pods", "-n", NAMESPACE, "-l", PREDICTOR_PODS, "-o", IMAGE_IDS)
    after = {pod["metadata"]["name"]: image_id(pod) for pod in ready_pods(demo)}
    # The autoscaler may add a pod meanwhile, on the same image.
    if not set(pods) <= set(after) or set(after.values()) != set(pods.values()):
        raise DemoError("an unsigned image replaced the running pods")
    console.print("the same pods, on the same signed digest")
    with Load(demo.port, workers=2, max_seconds=300) as load:
        gitops.revert(demo)
        wait_ready(demo, "True")
        gitops.wait_application(demo, "Healthy", health="Healthy")
    demo.measured("the revert of the unsigned image", load.report)


def unsigned_model_refused_then_signed_served(demo: Demo, private: Path) -> None:
    stable = canary.served_versions(demo)
    out = str(demo.workdir / "model-v4.ubj")
    trained = demo.run("retailctl", "train", "--out", out, "--rows", "20000", "--seed", "4")
    (version,) = [
        line.partition(":")[2].strip()
        for line in trained.splitlines()
        if line.startswith("model version:")
    ]
    with Load(
        demo.port, workers=4, max_seconds=canary.VERDICT_SECONDS + 120,
        baskets=candidates.traffic(),
    ) as load:  # fmt: skip
        demo.run("retailctl", "model", "push", out, demo.model_uri)
        refused = wait_condition(
            demo, "ModelSignatureVerified", "False", "Unsigned", SIGNATURE_SECONDS
        )
        console.print(f"refused: {refused['message']}")
        if canary.canary_pods(demo) or canary.served_versions(demo) != stable:
            raise DemoError("an unsigned model reached a pod")
        console.print(f"no canary; the pods still serve {', '.join(sorted(stable))}")
        demo.run("retailctl", "model", "push", out, demo.model_uri, "--signing-key", str(private))
        wait_condition(demo, "ModelSignatureVerified", "True", "SignatureVerified", 120)
        # ModelRolledOut already reads Promoted (the canary steps'): the pods tell.
        wait(
            f"every pod to serve {version}",
            lambda: canary.served_versions(demo) == {version},
            timeout=canary.VERDICT_SECONDS + 60,
        )
        wait("the canary to be gone", lambda: not canary.canary_pods(demo), timeout=120)
    demo.measured("the unsigned, then signed, model", load.report)
    console.print(f"answers by model version: {dict(load.report.models)}")
    demo.kubectl("get", "rmodel", NAME, "-n", NAMESPACE, "-o", "wide")


STEP = Step(
    "Only signed images and models run",
    "retailctl model keygen; what runs is signed first, then a RetailModelPolicy trusts the "
    "key for images and models. An unsigned image commit: ImageSignatureVerified Unsigned, "
    "Argo CD Degraded, the pods untouched; reverted. An unsigned model upload: "
    "ModelSignatureVerified Unsigned, no canary; the same model signed goes through a canary.",
    only_signed_runs,
)
