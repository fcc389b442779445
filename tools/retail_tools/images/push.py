"""Push a built image to the local registry and register the same manifest in ECR.

On AWS one ``docker push`` does both: the registry stores the bytes and ECR knows the tag. Here
they are two services, so the push is two steps that must name the same bytes: podman pushes the
image to the registry, the manifest is read back as stored with crane (its sha256 is the digest
pods pull by), and exactly those bytes are put in ECR under the tag with ``put_image``, digest
and media type spelled out. The operator's tag → digest look-up in ECR then names what the registry
serves. ECR decides whether the tag may be (re)used: when it refuses an immutable tag that
already names other bytes, the registry's tag is put back on the image ECR knows
(``crane tag``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from retail_tools.images.build import ImageTarget
from retail_tools.images.config import ImagesConfig
from retail_tools.images.podman import (
    ImageError,
    LineCallback,
    image_exists,
    podman_env,
    run_logged,
)
from retail_tools.images.registry import crane, require_running

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient

# What an OCI manifest without a mediaType field is (the field is optional there).
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass(frozen=True)
class StoredManifest:
    """A manifest exactly as the registry serves it."""

    body: bytes
    media_type: str

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.body).hexdigest()


def push_image(
    config: ImagesConfig, target: ImageTarget, tag: str, ecr: ECRClient, on_step: LineCallback
) -> StoredManifest:
    """Push ``target:tag`` to the registry and register it in ECR; the manifest pushed."""
    require_running(config)
    local = target.reference(tag)
    if not image_exists(config, local):
        raise ImageError(
            f"no image {local} here; build it with `retailctl image build {target.name} "
            f"--tag {tag}`"
        )
    _require_repository(ecr, target.ecr_repository)
    remote = f"{config.registry_address}/{target.ecr_repository}:{tag}"
    on_step(f"pushing {local} → {remote}")
    run_logged(
        ["podman", "push", "--tls-verify=false", "--format", "v2s2", local, remote],
        f"podman push of {local}",
        config.log_dir / f"push-{target.name}.log",
        lambda line: on_step(f"  {line}") if line.startswith(("Copying", "Writing")) else None,
        env=podman_env(config),
    )
    manifest = read_manifest(config, target.ecr_repository, tag)
    on_step(f"registering {target.ecr_repository}:{tag} ({manifest.digest}) in ECR")
    _register(config, ecr, target.ecr_repository, tag, manifest)
    return manifest


def read_manifest(config: ImagesConfig, repository: str, reference: str) -> StoredManifest:
    """The manifest the registry serves for ``repository`` at a tag or digest."""
    image = _image(config, repository, reference)
    body = crane(config, "manifest", image)
    manifest = StoredManifest(body, json.loads(body).get("mediaType", OCI_MANIFEST))
    served = crane(config, "digest", image).decode().strip()
    if served != manifest.digest:
        raise ImageError(
            f"the registry names {repository}:{reference} {served}, "
            f"but its bytes hash to {manifest.digest}"
        )
    return manifest


def _register(
    config: ImagesConfig, ecr: ECRClient, repository: str, tag: str, manifest: StoredManifest
) -> None:
    try:
        ecr.put_image(
            repositoryName=repository,
            imageTag=tag,
            imageManifest=manifest.body.decode(),
            imageManifestMediaType=manifest.media_type,
            imageDigest=manifest.digest,
        )
    except (
        ecr.exceptions.ImageAlreadyExistsException,
        ecr.exceptions.ImageTagAlreadyExistsException,
    ):
        # ECR answers ImageAlreadyExists for the same bytes pushed again and, for a tag it
        # refuses to move, ImageTagAlreadyExists (moto: ImageAlreadyExists): what the tag names
        # tells the two apart.
        known = _ecr_digest(ecr, repository, tag)
        if known == manifest.digest:
            return
        _retag(config, repository, tag, known)
        raise ImageError(
            f"{repository}:{tag} already names {known} and its tags are immutable; "
            f"not replaced by {manifest.digest} (build with another --tag)"
        ) from None


def _retag(config: ImagesConfig, repository: str, tag: str, digest: str) -> None:
    """Point the registry's ``tag`` back at ``digest`` (blobs are kept by digest)."""
    crane(config, "tag", _image(config, repository, digest), tag)


def _ecr_digest(ecr: ECRClient, repository: str, tag: str) -> str:
    images = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    return images["imageDetails"][0]["imageDigest"]


def _require_repository(ecr: ECRClient, repository: str) -> None:
    try:
        ecr.describe_repositories(repositoryNames=[repository])
    except ecr.exceptions.RepositoryNotFoundException:
        raise ImageError(
            f"ECR has no repository {repository}; create it with `retailctl ecr bootstrap`"
        ) from None


def _image(config: ImagesConfig, repository: str, reference: str) -> str:
    """The registry's name for ``repository`` at a tag or a digest."""
    separator = "@" if reference.startswith("sha256:") else ":"
    return f"{config.registry_address}/{repository}{separator}{reference}"
