"""Signing a pushed image, cosign-compatibly (``retail_provenance.cosign``): the signature is
written into the registry beside the image (tag ``sha256-<hex>.sig``) and registered in ECR
under the same tag, as a ``cosign sign`` to ECR leaves it.

cosign itself is built from the Go module proxy into ``<cache>/tools/cosign-<version>`` (as the
Makefile builds kustomize), once per version: the tests use it to prove that ``cosign verify``
accepts our signatures and that ours accepts ``cosign sign``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from retail_provenance import cosign, oci
from retail_tools.images.config import ImagesConfig
from retail_tools.images.podman import LineCallback
from retail_tools.images.registry import ensure_go_tool

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient

COSIGN_VERSION = "v2.6.5"
COSIGN_MODULE = "github.com/sigstore/cosign/v2/cmd/cosign"


def ensure_cosign(config: ImagesConfig, on_step: LineCallback) -> Path:
    """cosign's path, built with ``go install`` first if this version is not there yet (a few
    minutes, once)."""
    return ensure_go_tool(config, COSIGN_MODULE, COSIGN_VERSION, on_step)


def sign_image(
    config: ImagesConfig,
    repository: str,
    digest: str,
    private_key: Path,
    ecr: ECRClient,
    *,
    password: bytes | None = None,
) -> str:
    """Sign ``repository@digest`` in the local registry and register the signature in ECR;
    the signature's tag."""
    registry = oci.Registry(f"http://{config.registry_address}")
    signed = cosign.payload(f"{config.registry_address}/{repository}", digest)
    signature = cosign.Signature(signed, cosign.sign(signed, private_key.read_bytes(), password))
    body = registry.attach(repository, digest, signature)
    tag = cosign.signature_tag(digest)
    try:
        ecr.put_image(
            repositoryName=repository,
            imageTag=tag,
            imageManifest=body.decode(),
            imageManifestMediaType=cosign.OCI_MANIFEST,
        )
    except ecr.exceptions.ImageAlreadyExistsException:
        pass  # the same signatures, registered before
    return tag
