"""The operator as it runs in production: its own process (``retailctl operator``), watching
the real local API server and talking to moto over HTTP, and reading image signatures from a
real registry on loopback (crane's, standing in for ECR's registry endpoint)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.aws import free_port
from tests.support.cluster import LocalCluster
from tests.support.faults import FaultProxy
from tests.support.registry import private_registry, push_small_image

from retail_tools.images.config import ImagesConfig
from retail_tools.images.signing import sign_image
from retail_tools.polling import Timeout, answers, wait_until
from retail_tools.standin import AwsStandIn

ROOT = Path(__file__).resolve().parents[3]
REPOSITORY = "mlops/retail-api"
BUCKET = "retail-models"
REAL_NODE_POD_CIDR = "10.244.0.0/24"  # the real node's pods (retail_tools.cluster.config)


@dataclass
class OperatorProcess:
    env: dict[str, str]
    log: Path
    port: int
    process: subprocess.Popen[bytes] | None = field(default=None)

    def start(self) -> None:
        retailctl = Path(sys.executable).with_name("retailctl")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(retailctl), "operator"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = self.process

        def healthy() -> bool:
            if process.poll() is not None:
                raise RuntimeError(
                    f"operator exited; see {self.log}:\n{self.log.read_text()[-3000:]}"
                )
            return answers(f"http://127.0.0.1:{self.port}/healthz", timeout=1)

        try:
            wait_until(healthy, timeout=60, interval=0.2)
        except Timeout:
            raise RuntimeError(f"operator not healthy within 60 s; see {self.log}") from None

    def kill(self) -> None:
        """SIGKILL: no cleanup, as when a node dies mid-reconcile."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def reconciles(self) -> float:
        return sum(
            value
            for name, value in self.metrics().items()
            if name.startswith("retail_operator_reconciles_total")
        )

    def wait_reconciles(self, count: int, timeout: float = 60) -> None:
        """Until ``count`` more reconciles have finished (of any RetailModel)."""
        target = self.reconciles() + count
        wait_until(
            lambda: self.reconciles() >= target, timeout=timeout, what=f"{count} more reconciles"
        )

    def ready(self) -> bool:
        """Whether the operator's ``/readyz`` (on its metrics port) answers 200; 503: no."""
        port = self.env["RETAIL_OPERATOR_METRICS_PORT"]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
                return bool(answer.status == 200)
        except urllib.error.HTTPError as error:
            assert error.code == 503, f"/readyz answered {error.code}"
            return False

    def metrics(self) -> dict[str, float]:
        """The operator's /metrics as {"name{labels}": value}."""
        port = self.env["RETAIL_OPERATOR_METRICS_PORT"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples


@pytest.fixture(scope="session")
def crd_installed(local_cluster: LocalCluster) -> None:
    for file, name in (
        ("retailmodel", "retailmodels"),
        ("retailmodelpolicy", "retailmodelpolicies"),
    ):
        document = ROOT / "crds" / f"{file}.yaml"
        local_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(document))
        local_cluster.kubectl(
            "wait", "--for=condition=Established", f"crd/{name}.mlops.retail.io", "--timeout=60s"
        )


@pytest.fixture(scope="session")
def signature_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImagesConfig]:
    """The registry the operator reads image signatures from (RETAIL_OPERATOR_REGISTRY_URL)."""
    with private_registry(tmp_path_factory.mktemp("registry")) as config:
        yield config


@pytest.fixture(scope="session")
def operator(
    local_cluster: LocalCluster,
    crd_installed: None,
    aws_stand_in: AwsStandIn,
    fault_proxy: FaultProxy,
    signature_registry: ImagesConfig,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    # An operator running in the cluster (the real-pod stack's, or one left by a killed run)
    # would reconcile these tests' RetailModels too, behind another Lease: a race, not a test.
    in_cluster = local_cluster.get_json(
        "deployments", "--all-namespaces", "-l", "app.kubernetes.io/name=retail-operator"
    )["items"]
    running = [d["metadata"]["namespace"] for d in in_cluster if d["spec"].get("replicas", 1)]
    assert not running, f"an in-cluster operator runs in {running}: delete it first"
    port = free_port()
    env = {
        **os.environ,
        **aws_stand_in.env(),
        "AWS_ENDPOINT_URL": fault_proxy.endpoint,  # moto, behind a proxy tests can break
        "KUBECONFIG": str(local_cluster.kubeconfig),
        "RETAIL_OPERATOR_RESYNC_SECONDS": "2",
        "RETAIL_OPERATOR_PENDING_SECONDS": "1",
        "RETAIL_OPERATOR_TAG_TTL_SECONDS": "0.5",
        "RETAIL_OPERATOR_SCAN_TTL_SECONDS": "0.5",
        "RETAIL_OPERATOR_MODEL_TTL_SECONDS": "0.5",
        "RETAIL_OPERATOR_LIVENESS_PORT": str(port),
        "RETAIL_OPERATOR_METRICS_PORT": str(free_port()),
        "RETAIL_OPERATOR_LEASE_NAME": "retail-operator-tests",
        "RETAIL_OPERATOR_REGISTRY_URL": f"http://{signature_registry.registry_address}",
        "RETAIL_OPERATOR_REGISTRY_AUTH": "none",
        "RETAIL_OPERATOR_REGISTRY_TIMEOUT_SECONDS": "2",
        # Canary analysis reads pods' /metrics by pod IP: only the real node's bridge. kwok's
        # fake pods have addresses that exist nowhere; reading them would leave the machine.
        "RETAIL_OPERATOR_SCRAPE_NETWORKS": REAL_NODE_POD_CIDR,
    }
    process = OperatorProcess(env, tmp_path_factory.mktemp("operator") / "operator.log", port)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@dataclass
class Scenario:
    """One test's world: a namespace, an image repository and a model bucket."""

    cluster: LocalCluster
    aws: AwsStandIn
    namespace: str
    operator: OperatorProcess
    registry: ImagesConfig

    def model(self, key: str = "models/prices/model.ubj", body: bytes = b"model-v1") -> str:
        self.aws.put_model(BUCKET, key, body)
        return f"s3://{BUCKET}/{key}"

    def tag(self, tag: str) -> str:
        """Tags are per test: every test shares one moto registry, and moto lets a pushed tag
        stay on an older image."""
        return f"{tag}.{self.namespace}"

    def image(
        self, tag: str, findings: list[tuple[str, str]] | None = None, status: str = "COMPLETE"
    ) -> str:
        digest = self.aws.push_image(REPOSITORY, self.tag(tag))
        if status:
            self.aws.set_scan(REPOSITORY, digest, status, findings)
        return digest

    def pushed_image(self, tag: str) -> str:
        """An image in the registry and in ECR under the same digest, its scan clean (no
        signature yet: ``sign``); its digest."""
        digest = push_small_image(self.registry, self.aws, REPOSITORY, self.tag(tag))
        self.aws.set_scan(REPOSITORY, digest, "COMPLETE", None)
        return digest

    def sign(self, digest: str, private_key: bytes, folder: Path) -> None:
        """Sign ``digest`` as ``retailctl image push --signing-key`` does (into the registry,
        registered in ECR)."""
        key = folder / f"key-{uuid.uuid4().hex[:8]}.pem"
        key.write_bytes(private_key)
        sign_image(self.registry, REPOSITORY, digest, key, self.aws.client("ecr"))

    def manifest(self, name: str, tag: str, model_uri: str, **spec: Any) -> dict[str, Any]:
        return {
            "apiVersion": "mlops.retail.io/v1alpha1",
            "kind": "RetailModel",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {
                "image": {"repository": self.aws.repository_uri(REPOSITORY), "tag": self.tag(tag)},
                "model": {"s3Uri": model_uri},
                "replicas": 2,
                **spec,
            },
        }

    def apply(self, manifest: dict[str, Any]) -> None:
        self.cluster.apply(yaml.safe_dump(manifest), self.namespace)

    def get(self, kind: str, name: str) -> Any:
        result = self.cluster.kubectl(
            "get", kind, name, "-n", self.namespace, "-o", "json", check=False
        )
        if result.returncode != 0:
            return None
        return yaml.safe_load(result.stdout)

    def condition(self, name: str, type_: str) -> dict[str, Any] | None:
        """The condition, only if it speaks of the current generation of the spec."""
        body = self.get("retailmodel", name) or {}
        generation = body.get("metadata", {}).get("generation")
        for condition in body.get("status", {}).get("conditions", []):
            if condition["type"] == type_ and condition.get("observedGeneration") == generation:
                return dict(condition)
        return None

    def wait_for(self, what: str, probe: Callable[[], Any], timeout: float = 60) -> Any:
        try:
            return wait_until(probe, timeout=timeout, interval=0.3)
        except Timeout as timeout_error:
            raise AssertionError(
                f"timed out waiting for {what}; last={timeout_error.last!r}\n"
                "--- operator log tail ---\n" + self.operator.logs()[-4000:]
            ) from None

    def wait_condition(
        self, name: str, type_: str, status: str, reason: str | None = None, timeout: float = 60
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            condition = self.condition(name, type_)
            if (
                condition
                and condition["status"] == status
                and (reason is None or condition["reason"] == reason)
            ):
                return condition
            return None

        return dict(self.wait_for(f"{name} {type_}={status} {reason or ''}", probe, timeout))

    def lose_status(self, name: str) -> None:
        """With the operator stopped, wipe a RetailModel's status (an Argo CD replace, a
        restore without status, a crash before the status write)."""
        self.cluster.kubectl(
            "patch", "retailmodel", name, "-n", self.namespace,
            "--subresource=status", "--type=merge", "-p", '{"status": null}',
        )  # fmt: skip

    def deployment_image(self, name: str) -> str | None:
        deployment = self.get("deployment", name)
        if deployment is None:
            return None
        return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])

    def events(self, name: str) -> list[dict[str, Any]]:
        listing = self.cluster.get_json(
            "events", "-n", self.namespace, "--field-selector", f"involvedObject.name={name}"
        )
        return list(listing["items"])


@pytest.fixture
def scenario(
    local_cluster: LocalCluster,
    aws_stand_in: AwsStandIn,
    operator: OperatorProcess,
    signature_registry: ImagesConfig,
) -> Iterator[Scenario]:
    namespace = local_cluster.test_namespace("rm")
    try:
        yield Scenario(local_cluster, aws_stand_in, namespace, operator, signature_registry)
    finally:
        local_cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


POLICY_LABEL = "retailmodel.io/policy-test"


@pytest.fixture
def team_policy(scenario: Scenario) -> Iterator[Callable[[dict[str, Any]], str]]:
    """Put a RetailModelPolicy over this test's namespace (only), so the session's other tests
    run under no policy: its name."""
    name = f"team-{uuid.uuid4().hex[:6]}"
    scenario.cluster.kubectl("label", "namespace", scenario.namespace, f"{POLICY_LABEL}={name}")

    def apply(rules: dict[str, Any]) -> str:
        document = {
            "apiVersion": "mlops.retail.io/v1alpha1",
            "kind": "RetailModelPolicy",
            "metadata": {"name": name},
            "spec": {"namespaceSelector": {"matchLabels": {POLICY_LABEL: name}}, **rules},
        }
        scenario.cluster.apply(json.dumps(document))
        return name

    try:
        yield apply
    finally:
        scenario.cluster.kubectl("delete", "retailmodelpolicy", name, "--ignore-not-found")
