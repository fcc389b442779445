"""What the end-to-end tests on the real node share: one bring-up of the whole stack.

``stack`` brings it up once for this folder (cluster with its node, registry, the AWS stand-in
on the node's bridge, both images built and pushed, the operator deployed in-cluster from its
image with AWS credentials by IRSA, the ``retail`` namespace with the stand-in's endpoint) for
every test file here (test_real_pods.py, test_canary_real_pods.py, test_irsa.py,
test_operator_upgrade.py, test_operations_real_pods.py, ...); ``Stack`` is what the tests act
through. Its scope is the package: the in-cluster operator is deleted before the integration
tests start operators of their own, which would otherwise stand by behind its Lease or race it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from retail_contract.metrics import METRICS_PORT
from retail_serving import artifact
from retail_tools.cluster.kubectl import Kubectl
from retail_tools.images import registry
from retail_tools.images.build import target_named
from retail_tools.images.config import ImagesConfig
from retail_tools.images.podman import remove_tags
from retail_tools.images.push import push_image
from retail_tools.onnode import OnNode
from retail_tools.polling import wait_until
from retail_tools.settings import current
from retail_training import training
from tests.support.cluster import LocalCluster

REPO_ROOT = Path(__file__).resolve().parents[2]
RETAILCTL = str(Path(sys.executable).with_name("retailctl"))
NAMESPACE = "retail"
BUCKET = "retail-models"
KEY = "models/prices/model.ubj"
API = "mlops/retail-api"
OPERATOR = "mlops/retail-operator"


@dataclass
class Stack:
    on_node: OnNode
    images: ImagesConfig
    tags: dict[str, str]  # serving image tag → digest
    run: str

    @property
    def kubectl(self) -> Kubectl:
        return self.on_node.kubectl

    def condition(self, name: str, kind: str) -> dict[str, Any]:
        return self.on_node.condition(NAMESPACE, name, kind)

    def wait_condition(
        self, name: str, kind: str, status: str, reason: str | None = None, timeout: float = 240
    ) -> dict[str, Any]:
        def matches() -> dict[str, Any]:
            found = self.condition(name, kind)
            ok = found.get("status") == status and reason in (None, found.get("reason"))
            return found if ok else {}

        try:
            return dict(wait_until(matches, timeout=timeout, what=f"{name} {kind}={status}"))
        except TimeoutError:
            pytest.fail(f"{name} never had {kind}={status} {reason or ''}: " + self.diagnose(name))

    def diagnose(self, name: str) -> str:
        pods = self.kubectl.output("get", "pods", "-A", "-o", "wide")
        events = self.kubectl.output("get", "events", "-n", NAMESPACE, "--sort-by=.lastTimestamp")
        logs = self.kubectl.output(
            "logs", "-n", "retailmodel-system", "deployment/retail-operator", "--tail=40"
        )
        return f"\n{pods}\n{events[-3000:]}\n--- operator ---\n{logs}"

    def events(self, name: str, reason: str) -> list[dict[str, Any]]:
        """The Events about RetailModel ``name`` with ``reason``."""
        listing = self.kubectl.get_json(
            "events", "-n", NAMESPACE,
            "--field-selector", f"involvedObject.name={name},reason={reason}",
        )  # fmt: skip
        return list(listing["items"])

    def running_pods(self, name: str) -> list[dict[str, Any]]:
        return self.on_node.ready_pods(NAMESPACE, name)

    def model_info(self, pod: str) -> dict[str, Any]:
        """A pod's own /model/info, asked from inside it (as `kubectl exec` lets a person)."""
        script = (
            "import urllib.request;"
            "print(urllib.request.urlopen("
            f"'http://127.0.0.1:{METRICS_PORT}/model/info').read().decode())"
        )
        out = self.kubectl.output("exec", "-n", NAMESPACE, pod, "--", "python3", "-c", script)
        return dict(json.loads(out))

    def upload_model(self, seed: int) -> str:
        trained = training.train(2_000, seed=seed)
        data = artifact.serialise(
            trained.booster, trained.encoder, trained.version, reference=trained.reference
        )
        self.on_node.aws.put_model(BUCKET, KEY, data)
        return str(trained.version)


@pytest.fixture(scope="package")
def stack(local_cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    run = uuid.uuid4().hex[:6]
    images = ImagesConfig.from_settings(current())
    registry_was_up = registry.status(images).pid is not None
    registry.up(images, lambda _line: None)
    aws = OnNode.standin_for(local_cluster.config).start()
    on_node = OnNode(local_cluster.config, aws, tmp_path_factory.mktemp("on-node"))
    ecr = aws.client("ecr")
    for repository in (API, OPERATOR):
        # moto's state is the process's: an earlier test's in-process stand-in may have made it
        with contextlib.suppress(ecr.exceptions.RepositoryAlreadyExistsException):
            ecr.create_repository(repositoryName=repository)
    tags: dict[str, str] = {}
    for name in ("serving", "operator"):
        built = subprocess.run(
            [RETAILCTL, "image", "build", name, "--tag", f"e2e-{run}", "--context",
             str(REPO_ROOT)],
            capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
        assert built.returncode == 0, built.stderr[-3000:]
    for name, tag in (("serving", f"e2e-{run}"), ("operator", f"e2e-{run}")):
        manifest = push_image(images, target_named(name), tag, ecr, lambda _line: None)
        repository = API if name == "serving" else OPERATOR
        aws.set_scan(repository, manifest.digest, "COMPLETE", [])
        tags[f"{name}:{tag}"] = manifest.digest
    on_node.trust_cluster()
    on_node.deploy_operator(tags[f"operator:e2e-{run}"])
    on_node.standin_config(NAMESPACE)
    stack = Stack(on_node, images, tags, run)
    stack.upload_model(seed=1)
    try:
        yield stack
    finally:
        on_node.kubectl("delete", "retailmodels", "--all", "-n", NAMESPACE, "--wait=true")
        on_node.kubectl("delete", "deployment", "retail-operator", "-n", "retailmodel-system")
        aws.stop()
        remove_tags(images, f"e2e-{run}")  # and the releases tests built on them
        if not registry_was_up:
            registry.down(images)
