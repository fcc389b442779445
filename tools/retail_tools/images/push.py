"""Push a built image to the local registry and register the same manifest in ECR.

On AWS one ``docker push`` does both: the registry stores the bytes and ECR knows the tag. Here
they are two services, so the push is two steps that must name the same bytes: podman pushes the
image to the registry, the manifest is read back as stored (its sha256 is the digest pods pull
by), and exactly those bytes are put in ECR under the tag with ``put_image``, digest and media
type spelled out. The operator's tag → digest look-up in ECR then names what the registry
serves. ECR decides whether the tag may be (re)used: when it refuses an immutable tag that
already names other bytes, the registry's tag is put back on the image ECR knows.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
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
from retail_tools.images.registry import require_running

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient

MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)


@dataclass(frozen=True)
class StoredManifest:
    """A manifest exactly as the registry serves it."""

    body: bytes
    media_type: str

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.body).hexdigest()

    @property
    def compressed_bytes(self) -> int:
        """What ECR counts as the image's size: its compressed layers."""
        return sum(int(layer["size"]) for layer in json.loads(self.body)["layers"])


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
    request = urllib.request.Request(
        _manifest_url(config, repository, reference), headers={"Accept": ", ".join(MANIFEST_TYPES)}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            manifest = StoredManifest(response.read(), response.headers.get_content_type())
            served = response.headers.get("Docker-Content-Digest")
    except (urllib.error.URLError, OSError) as error:
        message = f"cannot read {repository}:{reference} from the registry: {error}"
        raise ImageError(message) from None
    if served and served != manifest.digest:
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
    known = read_manifest(config, repository, digest)
    request = urllib.request.Request(
        _manifest_url(config, repository, tag),
        data=known.body,
        method="PUT",
        headers={"Content-Type": known.media_type},
    )
    with urllib.request.urlopen(request, timeout=30):
        pass


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


def _manifest_url(config: ImagesConfig, repository: str, reference: str) -> str:
    return f"http://{config.registry_address}/v2/{repository}/manifests/{reference}"
