"""The demo's steps, in order: each a small function of the shared ``Demo`` context.

``STORY`` is the list ``run_demo`` walks; ``TEARDOWN`` always runs last, even after a failure.
A step that needs another's result reads it from the context (``image_tag``, ``good_digest``,
``model_uri``, ``predictor_url``), so a step can be replaced (say, the local predictor by one on
a real node) without touching the others.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from retail_tools.demo.context import Demo, DemoError, console, http, wait
from retail_tools.ports import free_port
from retail_tools.standin import ACCOUNT, REGION, AwsStandIn

REPOSITORY = "mlops/retail-api"
BUCKET = "mlops-retail-forecast-models"
MODEL_KEY = "models/retail-price-sensitivity/model.ubj"
NAMESPACE = "retail"
NAME = "price-sensitivity"
REQUEST = {
    "BASKET_SIZE": "L",
    "BASKET_TYPE": "Top Up",
    "STORE_REGION": "E02",
    "STORE_FORMAT": "LS",
    "SPEND": 42.5,
    "QUANTITY": 12,
    "PROD_CODE_20": "D00008",
    "PROD_CODE_30": "G00016",
}


@dataclass(frozen=True)
class Step:
    title: str
    why: str  # shown in the step's panel
    run: Callable[[Demo], None]


def control_plane_up(demo: Demo) -> None:
    was_up = (
        subprocess.run(
            [demo.retailctl, "cluster", "status"], env=demo.env, capture_output=True, check=False
        ).returncode
        == 0
    )
    demo.run("retailctl", "cluster", "up")
    demo.cluster_started = not was_up
    demo.env["KUBECONFIG"] = demo.run("retailctl", "cluster", "kubeconfig", show=False).strip()
    demo.kubectl("get", "nodes")


def aws_stand_in_up(demo: Demo) -> None:
    demo.aws = AwsStandIn().start()
    demo.env.update(demo.aws.env())
    console.print(f"ECR and S3 at {demo.aws.endpoint} (region {REGION})")


def ecr_bootstrap(demo: Demo) -> None:
    demo.run("retailctl", "ecr", "bootstrap")
    console.print("[dim]a second run changes nothing:")
    demo.run("retailctl", "ecr", "bootstrap")


def register_image(demo: Demo, tag: str, findings: list[tuple[str, str]]) -> str:
    """What `docker push` plus ECR's scan-on-push would do: an image and its scan."""
    digest = demo.stand_in.push_image(REPOSITORY, tag)
    demo.stand_in.set_scan(REPOSITORY, digest, "COMPLETE", findings)
    return digest


def image_tag(demo: Demo, sha: str) -> str:
    return demo.run(
        "retailctl", "image", "tag", "--branch", "main", "--sha", sha, show=False
    ).strip()


def register_serving_image(demo: Demo) -> None:
    demo.image_tag = image_tag(demo, "abc1234def")
    demo.good_digest = register_image(demo, demo.image_tag, [("CVE-2023-0001", "LOW")])
    console.print(f"pushed {REPOSITORY}:{demo.image_tag} → {demo.good_digest}")
    demo.run("retailctl", "ecr", "findings", "--repository", REPOSITORY, "--tag", demo.image_tag)


def train_and_push(demo: Demo, model: str, seed: int) -> None:
    out = str(demo.workdir / model)
    demo.run("retailctl", "train", "--out", out, "--rows", "20000", "--seed", str(seed))
    demo.run("retailctl", "model", "push", out, demo.model_uri)


def publish_model(demo: Demo) -> None:
    s3 = demo.stand_in.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    demo.model_uri = f"s3://{BUCKET}/{MODEL_KEY}"
    train_and_push(demo, "model-v1.ubj", seed=1)


def operator_up(demo: Demo) -> None:
    demo.kubectl("apply", "--server-side", "-f", str(_repo_file("crds/retailmodel.yaml")))
    demo.kubectl(
        "wait", "--for=condition=Established", "crd/retailmodels.mlops.retail.io", show=False
    )
    health = free_port()
    demo.env["RETAIL_OPERATOR_LIVENESS_PORT"] = str(health)
    demo.env["RETAIL_OPERATOR_RESYNC_SECONDS"] = "5"
    demo.background("operator", ["retailctl", "operator"], demo.workdir / "operator.log")
    wait("the operator", lambda: urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz"))


def apply_retailmodel(demo: Demo) -> None:
    # The cluster keeps its state between runs: start from an empty namespace.
    demo.kubectl(
        "delete",
        "namespace",
        NAMESPACE,
        "--ignore-not-found",
        "--wait=true",
        "--timeout=120s",
        show=False,
    )
    demo.kubectl("create", "namespace", NAMESPACE, show=False)
    manifest = _retailmodel(demo.image_tag, demo.model_uri)
    console.print(manifest, markup=False)
    demo.kubectl("apply", "-f", "-", stdin=manifest)
    try:
        wait("Ready=True", lambda: _ready(demo) == "True")
    except DemoError:
        demo.kubectl("describe", "rmodel", NAME, "-n", NAMESPACE, check=False)
        raise
    demo.kubectl("get", "rmodel", "-n", NAMESPACE, "-o", "wide")
    demo.kubectl("describe", "rmodel", NAME, "-n", NAMESPACE)
    demo.kubectl("get", "deployment,service,configmap,pods", "-n", NAMESPACE)


def predictor_up(demo: Demo) -> None:
    port = free_port()
    demo.env["RELOAD_INTERVAL_SECONDS"] = "2"
    demo.background(
        "predictor",
        ["retailctl", "serve", "--model-uri", demo.model_uri, "--port", str(port)],
        demo.workdir / "predictor.log",
    )
    demo.predictor_url = f"http://127.0.0.1:{port}"
    wait("the predictor to be ready", lambda: http("GET", f"{demo.predictor_url}/ready"))
    console.print(f"$ curl -X POST {demo.predictor_url}/predict -d '{json.dumps(REQUEST)}'")
    predict(demo)


def predict(demo: Demo) -> None:
    console.print_json(data=http("POST", f"{demo.predictor_url}/predict", REQUEST))


def hot_reload(demo: Demo) -> None:
    info_url = f"{demo.predictor_url}/model/info"
    first = http("GET", info_url)
    train_and_push(demo, "model-v2.ubj", seed=2)
    second = wait(
        "the new model to be served",
        lambda: info if (info := http("GET", info_url))["sha256"] != first["sha256"] else None,
    )
    console.print(
        f"model {first.get('version')} → {second.get('version')} "
        f"(sha256 {str(second['sha256'])[:12]}…)"
    )
    predict(demo)
    metrics = urllib.request.urlopen(f"{demo.predictor_url}/metrics", timeout=5).read().decode()
    console.print(
        "\n".join(
            line
            for line in metrics.splitlines()
            if "reload" in line and not line.startswith("#") and "_created" not in line
        ),
        markup=False,
    )


def refuse_blocked_image(demo: Demo) -> None:
    bad_tag = image_tag(demo, "bad9876fed") + "-1"
    register_image(demo, bad_tag, [("CVE-2024-3094", "CRITICAL"), ("CVE-2024-6387", "HIGH")])
    patch = json.dumps({"spec": {"image": {"tag": bad_tag}}})
    demo.kubectl("patch", "rmodel", NAME, "-n", NAMESPACE, "--type=merge", "-p", patch)
    wait("the rollout to be refused", lambda: _ready(demo, reason=True) == "VulnerabilitiesFound")
    demo.kubectl("get", "rmodel", "-n", NAMESPACE)
    demo.kubectl("describe", "rmodel", NAME, "-n", NAMESPACE)
    running = demo.kubectl(
        "get",
        "deployment",
        NAME,
        "-n",
        NAMESPACE,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
        show=False,
    )
    console.print(f"the Deployment still runs [bold]{running}[/]")
    if not running.endswith(demo.good_digest):
        raise DemoError("the blocked image replaced the running one")
    predict(demo)


def shut_down(demo: Demo) -> None:
    for name, process in reversed(demo.processes):
        if process.poll() is None:
            console.print(f"stopping {name} (pid {process.pid})")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 15)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()
    if demo.aws is not None:
        console.print("stopping the AWS stand-in")
        demo.aws.stop()
    if demo.cluster_started:
        demo.run("retailctl", "cluster", "down", check=False)
    else:
        console.print("the local control plane was already running before the demo: left up")


STORY: tuple[Step, ...] = (
    Step(
        "Local control plane",
        "etcd, kube-apiserver, controller-manager, scheduler and "
        "kwok (fake nodes), built from the Go module proxy and cached.",
        control_plane_up,
    ),
    Step("AWS stand-in", "moto's server plays ECR and S3 over HTTP on loopback.", aws_stand_in_up),
    Step(
        "ECR repositories as code",
        "Immutable tags, scan on push, AES-256, lifecycle "
        "rules and pull policies from deploy/ecr/repositories.yaml.",
        ecr_bootstrap,
    ),
    Step(
        "Register a serving image",
        "CI pushes the predictor image; ECR scans it.",
        register_serving_image,
    ),
    Step(
        "Train and publish a model",
        "XGBoost on synthetic dunnhumby-shaped baskets; one "
        "UBJSON file with its schema inside, uploaded with its sha256.",
        publish_model,
    ),
    Step("Run the operator", "It watches RetailModels in every namespace.", operator_up),
    Step("Apply a RetailModel", "What Argo CD would apply from git.", apply_retailmodel),
    Step(
        "A predictor answering",
        "The same image's code, run locally (kwok pods run no "
        "containers), serving the model straight from S3.",
        predictor_up,
    ),
    Step(
        "Hot reload a new model",
        "Retrain and upload to the same key: running predictors pick it up without a restart.",
        hot_reload,
    ),
    Step(
        "A blocked image is refused",
        "A new tag with a CRITICAL finding: the operator "
        "keeps the good digest running and says why.",
        refuse_blocked_image,
    ),
)
TEARDOWN = Step(
    "Shut everything down", "Stop what the demo started; leave nothing running.", shut_down
)


def run_demo(
    workdir: Path | None = None, story: Sequence[Step] = STORY, teardown: Step = TEARDOWN
) -> None:
    """Walk ``story`` step by step; ``teardown`` runs at the end whatever happened."""
    work = workdir or Path.cwd() / ".demo"
    work.mkdir(parents=True, exist_ok=True)
    demo = Demo(work)
    try:
        for step in story:
            demo.step(step.title, step.why)
            step.run(demo)
        console.print("\n[bold green]The whole story ran: scanned, pinned, hot-reloaded, refused.")
    finally:
        demo.step(teardown.title, teardown.why)
        teardown.run(demo)


def _repo_file(relative: str) -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / relative).exists():
            return parent / relative
    raise DemoError(f"{relative} not found next to the installed package")


def _retailmodel(tag: str, uri: str) -> str:
    return (
        f"apiVersion: mlops.retail.io/v1alpha1\nkind: RetailModel\nmetadata:\n"
        f"  name: {NAME}\n  namespace: {NAMESPACE}\nspec:\n"
        f"  image:\n    repository: {ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{REPOSITORY}\n"
        f"    tag: {tag}\n  model:\n    s3Uri: {uri}\n  replicas: 2\n"
        f"  reloadIntervalSeconds: 30\n  scanPolicy:\n    blockSeverity: HIGH\n"
    )


def _ready(demo: Demo, *, reason: bool = False) -> str:
    path = "reason" if reason else "status"
    return demo.kubectl(
        "get",
        "rmodel",
        NAME,
        "-n",
        NAMESPACE,
        "-o",
        f'jsonpath={{.status.conditions[?(@.type=="Ready")].{path}}}',
        show=False,
        check=False,
    ).strip()
