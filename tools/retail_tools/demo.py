"""``retailctl demo``: the whole story on this machine, step by step, then a clean shutdown.

Every step runs the same commands a team would run (``retailctl …``, ``kubectl …``) against
the real local control plane and moto's server standing in for ECR and S3. Pods are played by
kwok, so the demo also runs one predictor process locally to show predictions and a hot
reload. Whatever the demo starts, it stops, even when a step fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel

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

console = Console(highlight=False)


class DemoError(RuntimeError):
    pass


def _http(method: str, url: str, body: Any = None, timeout: float = 10) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        payload = response.read()
    return json.loads(payload) if payload else None


def _wait(what: str, probe: Callable[[], Any], timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    with console.status(f"waiting for {what}…"):
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                result = probe()
                if result:
                    return result
            time.sleep(0.5)
    raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Demo:
    workdir: Path
    retailctl: str = field(default_factory=lambda: str(Path(sys.executable).with_name("retailctl")))
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    cluster_started: bool = False
    aws: AwsStandIn | None = None
    step_number: int = 0

    # -- presentation -----------------------------------------------------------------------
    def step(self, title: str, why: str) -> None:
        self.step_number += 1
        console.print()
        console.print(Panel(why, title=f"[bold]Step {self.step_number}. {title}", expand=False))

    def run(
        self, *argv: str, show: bool = True, check: bool = True, stdin: str = "", as_typed: str = ""
    ) -> str:
        """Run a command and show it as the reader would type it (``as_typed``, else argv);
        ``retailctl`` is this installation's."""
        if show:
            console.print(f"[bold cyan]$ {as_typed or ' '.join(argv)}")
        command = [self.retailctl, *argv[1:]] if argv[0] == "retailctl" else list(argv)
        result = subprocess.run(
            command,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        output = (result.stdout + result.stderr).rstrip()
        if show and output:
            console.print(output, markup=False)
        if check and result.returncode != 0:
            last = result.stderr.strip().splitlines()[-1:] or [f"exit {result.returncode}"]
            raise DemoError(f"{as_typed or ' '.join(argv)} failed: {last[0]}")
        return result.stdout

    def kubectl(self, *args: str, show: bool = True, check: bool = True, stdin: str = "") -> str:
        return self.run(
            "retailctl",
            "cluster",
            "kubectl",
            "--",
            *args,
            show=show,
            check=check,
            stdin=stdin,
            as_typed=f"kubectl {' '.join(args)}",
        )

    def background(self, name: str, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        console.print(f"[bold cyan]$ {' '.join(argv)} &[/]  [dim](log: {log})")
        command = [self.retailctl, *argv[1:]] if argv[0] == "retailctl" else argv
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append((name, process))
        return process

    # -- AWS ----------------------------------------------------------------------------------
    def register_image(self, tag: str, findings: list[tuple[str, str]]) -> str:
        """What `docker push` plus ECR's scan-on-push would do: an image and its scan."""
        assert self.aws is not None
        digest = self.aws.push_image(REPOSITORY, tag)
        self.aws.set_scan(REPOSITORY, digest, "COMPLETE", findings)
        return digest

    # -- lifecycle ----------------------------------------------------------------------------
    def shutdown(self) -> None:
        self.step("Shut everything down", "Stop what the demo started; leave nothing running.")
        for name, process in reversed(self.processes):
            if process.poll() is None:
                console.print(f"stopping {name} (pid {process.pid})")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, 15)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, 9)
                    process.wait()
        if self.aws is not None:
            console.print("stopping the AWS stand-in")
            self.aws.stop()
        if self.cluster_started:
            self.run("retailctl", "cluster", "down", check=False)
        else:
            console.print("the local control plane was already running before the demo: left up")


def _story(demo: Demo) -> None:
    work = demo.workdir
    demo.step(
        "Local control plane",
        "etcd, kube-apiserver, controller-manager, scheduler and "
        "kwok (fake nodes), built from the Go module proxy and cached.",
    )
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

    demo.step("AWS stand-in", "moto's server plays ECR and S3 over HTTP on loopback.")
    demo.aws = AwsStandIn().start()
    demo.env.update(demo.aws.env())
    console.print(f"ECR and S3 at {demo.aws.endpoint} (region {REGION})")

    demo.step(
        "ECR repositories as code",
        "Immutable tags, scan on push, AES-256, lifecycle "
        "rules and pull policies from deploy/ecr/repositories.yaml.",
    )
    demo.run("retailctl", "ecr", "bootstrap")
    console.print("[dim]a second run changes nothing:")
    demo.run("retailctl", "ecr", "bootstrap")

    demo.step("Register a serving image", "CI pushes the predictor image; ECR scans it.")
    tag = demo.run(
        "retailctl", "image", "tag", "--branch", "main", "--sha", "abc1234def", show=False
    ).strip()
    good = demo.register_image(tag, [("CVE-2023-0001", "LOW")])
    console.print(f"pushed {REPOSITORY}:{tag} → {good}")
    demo.run("retailctl", "ecr", "findings", "--repository", REPOSITORY, "--tag", tag)

    demo.step(
        "Train and publish a model",
        "XGBoost on synthetic dunnhumby-shaped baskets; one "
        "UBJSON file with its schema inside, uploaded with its sha256.",
    )
    s3 = demo.aws.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    uri = f"s3://{BUCKET}/{MODEL_KEY}"
    demo.run(
        "retailctl", "train", "--out", str(work / "model-v1.ubj"), "--rows", "20000", "--seed", "1"
    )
    demo.run("retailctl", "model", "push", str(work / "model-v1.ubj"), uri)

    demo.step("Run the operator", "It watches RetailModels in every namespace.")
    demo.kubectl("apply", "--server-side", "-f", str(_repo_file("crds/retailmodel.yaml")))
    demo.kubectl(
        "wait", "--for=condition=Established", "crd/retailmodels.mlops.retail.io", show=False
    )
    health = free_port()
    demo.env["RETAIL_OPERATOR_LIVENESS_PORT"] = str(health)
    demo.env["RETAIL_OPERATOR_RESYNC_SECONDS"] = "5"
    demo.background("operator", ["retailctl", "operator"], work / "operator.log")
    _wait("the operator", lambda: urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz"))

    demo.step("Apply a RetailModel", "What Argo CD would apply from git.")
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
    manifest = _retailmodel(tag, uri)
    console.print(manifest, markup=False)
    demo.kubectl("apply", "-f", "-", stdin=manifest)
    try:
        _wait("Ready=True", lambda: _ready(demo) == "True")
    except DemoError:
        demo.kubectl("describe", "rmodel", NAME, "-n", NAMESPACE, check=False)
        raise
    demo.kubectl("get", "rmodel", "-n", NAMESPACE, "-o", "wide")
    demo.kubectl("describe", "rmodel", NAME, "-n", NAMESPACE)
    demo.kubectl("get", "deployment,service,configmap,pods", "-n", NAMESPACE)

    demo.step(
        "A predictor answering",
        "The same image's code, run locally (kwok pods run no "
        "containers), serving the model straight from S3.",
    )
    serve_port = free_port()
    demo.env["RELOAD_INTERVAL_SECONDS"] = "2"
    demo.background(
        "predictor",
        ["retailctl", "serve", "--model-uri", uri, "--port", str(serve_port)],
        work / "predictor.log",
    )
    base = f"http://127.0.0.1:{serve_port}"
    _wait("the predictor to be ready", lambda: _http("GET", f"{base}/ready"))
    first = _http("GET", f"{base}/model/info")
    console.print(f"$ curl -X POST {base}/predict -d '{json.dumps(REQUEST)}'")
    console.print_json(data=_http("POST", f"{base}/predict", REQUEST))

    demo.step(
        "Hot reload a new model",
        "Retrain and upload to the same key: running predictors pick it up without a restart.",
    )
    demo.run(
        "retailctl", "train", "--out", str(work / "model-v2.ubj"), "--rows", "20000", "--seed", "2"
    )
    demo.run("retailctl", "model", "push", str(work / "model-v2.ubj"), uri)
    second = _wait(
        "the new model to be served",
        lambda: (
            info
            if (info := _http("GET", f"{base}/model/info"))["sha256"] != first["sha256"]
            else None
        ),
    )
    console.print(
        f"model {first.get('version')} → {second.get('version')} "
        f"(sha256 {str(second['sha256'])[:12]}…)"
    )
    console.print_json(data=_http("POST", f"{base}/predict", REQUEST))
    metrics = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
    console.print(
        "\n".join(
            line
            for line in metrics.splitlines()
            if "reload" in line and not line.startswith("#") and "_created" not in line
        ),
        markup=False,
    )

    demo.step(
        "A blocked image is refused",
        "A new tag with a CRITICAL finding: the operator "
        "keeps the good digest running and says why.",
    )
    bad_tag = (
        demo.run(
            "retailctl", "image", "tag", "--branch", "main", "--sha", "bad9876fed", show=False
        ).strip()
        + "-1"
    )
    demo.register_image(bad_tag, [("CVE-2024-3094", "CRITICAL"), ("CVE-2024-6387", "HIGH")])
    demo.kubectl(
        "patch",
        "rmodel",
        NAME,
        "-n",
        NAMESPACE,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"image": {"tag": bad_tag}}}),
    )
    _wait("the rollout to be refused", lambda: _ready(demo, reason=True) == "VulnerabilitiesFound")
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
    if not running.endswith(good):
        raise DemoError("the blocked image replaced the running one")
    console.print_json(data=_http("POST", f"{base}/predict", REQUEST))
    console.print("\n[bold green]The whole story ran: scanned, pinned, hot-reloaded, refused.")


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


@contextlib.contextmanager
def _workdir(path: Path | None) -> Iterator[Path]:
    workdir = path or Path.cwd() / ".demo"
    workdir.mkdir(parents=True, exist_ok=True)
    yield workdir


def run_demo(workdir: Path | None = None) -> None:
    with _workdir(workdir) as work:
        demo = Demo(work)
        try:
            _story(demo)
        finally:
            demo.shutdown()
