"""The built images keep the promises the pods rely on: a numeric non-root user on a read-only
root, a HEALTHCHECK that passes, each process serving from its image, and each image holding
only its own process's dependencies."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from retail_serving import artifact
from retail_serving.payloads import EXAMPLE
from retail_tools.images.config import ImagesConfig
from retail_tools.images.podman import podman
from retail_tools.standin import free_port
from retail_training import training
from tests.integration.images.conftest import container, wait_for_http
from tests.support.cluster import LocalCluster

pytestmark = pytest.mark.images

USER = "10001:10001"
ABSENT = {
    "serving": ("kopf", "kubernetes", "moto", "typer", "retail_operator", "retail_tools"),
    "operator": ("xgboost", "numpy", "scipy", "fastapi", "uvicorn", "retail_serving"),
}
PRESENT = {
    "serving": ("xgboost", "fastapi", "boto3", "retail_serving", "retail_contract"),
    "operator": ("kopf", "kubernetes", "boto3", "retail_operator", "retail_contract"),
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained model in a folder the image's user can read (mounted read-only)."""
    folder = tmp_path_factory.mktemp("models")
    trained = training.train(2_000, seed=7)
    model = folder / "model.ubj"
    model.write_bytes(artifact.serialise(trained.booster, trained.encoder, "image-test"))
    folder.chmod(0o755)
    model.chmod(0o644)
    return folder


@pytest.mark.parametrize("name", ["serving", "operator"])
def test_runs_as_its_numeric_non_root_user_on_a_read_only_root(
    name: str, images: dict[str, str], images_config: ImagesConfig
) -> None:
    image = images[name]
    user = podman(images_config, "image", "inspect", "--format", "{{.Config.User}}", image)
    assert user.stdout.strip() == USER

    inside = podman(images_config, "run", "--rm", "--read-only", image, "sh", "-c", "id -u; id -g")
    assert inside.stdout.split() == ["10001", "10001"]
    refused = podman(
        images_config, "run", "--rm", "--read-only", image, "touch", "/opt/app/x", check=False
    )
    assert refused.returncode != 0


@pytest.mark.parametrize("name", ["serving", "operator"])
def test_holds_only_its_own_processes_dependencies(
    name: str, images: dict[str, str], images_config: ImagesConfig
) -> None:
    modules = (*ABSENT[name], *PRESENT[name])
    probe = (
        "import importlib.util, json, sys; "
        "print(json.dumps({m: importlib.util.find_spec(m) is not None for m in sys.argv[1:]}))"
    )
    found = json.loads(
        podman(images_config, "run", "--rm", images[name], "python3", "-c", probe, *modules).stdout
    )
    assert [module for module in ABSENT[name] if found[module]] == []
    assert [module for module in PRESENT[name] if not found[module]] == []


def test_predictor_serves_a_mounted_model_and_passes_its_healthcheck(
    images: dict[str, str], images_config: ImagesConfig, model_dir: Path
) -> None:
    port = free_port()
    with container(
        images_config,
        images["serving"],
        "--volume",
        f"{model_dir}:/models:ro",
        "--env",
        "MODEL_URI=/models/model.ubj",
        "--publish",
        f"127.0.0.1:{port}:8080",
    ) as name:
        wait_for_http(images_config, name, f"http://127.0.0.1:{port}/ready")
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/predict",
            data=json.dumps(EXAMPLE).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.load(response)
        assert answer["prediction"] in {"Low", "Medium", "High"}
        assert answer["model_version"] == "image-test"
        _assert_healthy(images_config, name)


@pytest.mark.cluster  # in make test's cluster half: the cluster is that half's to bring up
def test_operator_starts_serves_liveness_and_passes_its_healthcheck(
    images: dict[str, str],
    images_config: ImagesConfig,
    local_cluster: LocalCluster,
    tmp_path: Path,
) -> None:
    # The image's user must read the kubeconfig; the copy sits in this test's private folder.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_bytes(local_cluster.kubeconfig.read_bytes())
    kubeconfig.chmod(0o644)
    tmp_path.chmod(0o755)
    port = free_port()
    # Host networking, so the cluster's API server on 127.0.0.1 is reachable as in its kubeconfig.
    with container(
        images_config,
        images["operator"],
        "--network",
        "host",
        "--volume",
        f"{kubeconfig}:/config/kubeconfig:ro",
        "--env",
        "KUBECONFIG=/config/kubeconfig",
        "--env",
        f"RETAIL_OPERATOR_LIVENESS_PORT={port}",
    ) as name:
        wait_for_http(images_config, name, f"http://127.0.0.1:{port}/healthz")
        _assert_healthy(images_config, name)


def _assert_healthy(config: ImagesConfig, name: str) -> None:
    """The image's own HEALTHCHECK (kept by the docker image format) passes in ``name``."""
    defined = podman(config, "inspect", "--format", "{{json .Config.Healthcheck}}", name).stdout
    assert "CMD" in defined, f"{name} has no HEALTHCHECK: {defined}"
    check = podman(config, "healthcheck", "run", name, check=False)
    assert check.returncode == 0, f"healthcheck of {name}: {check.stdout}{check.stderr}"
