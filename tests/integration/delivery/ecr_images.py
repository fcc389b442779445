"""Register images in moto's ECR the way a registry push leaves them: manifest, digest, size."""

from __future__ import annotations

import hashlib
import json
import urllib.request
from typing import TYPE_CHECKING, Any

from tests.support.aws import REGION, MotoServer

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


def push_image(client: ECRClient, repository: str, tag: str, size_bytes: int) -> str:
    """Put a distinct image of ``size_bytes`` under ``tag``; return its digest."""
    layer = "sha256:" + hashlib.sha256(f"{repository}:{tag}".encode()).hexdigest()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": size_bytes,
                "digest": layer,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": size_bytes,
                    "digest": layer,
                }
            ],
        }
    )
    digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
    client.put_image(
        repositoryName=repository,
        imageTag=tag,
        imageManifest=manifest,
        imageManifestMediaType=MANIFEST_MEDIA_TYPE,
        imageDigest=digest,
    )
    return digest


def set_scan_result(moto: MotoServer, result: dict[str, Any]) -> None:
    """Make moto answer the next scan-findings query for ``result``'s image with ``result``."""
    body = json.dumps({"results": [result], "region": REGION}).encode()
    request = urllib.request.Request(
        f"{moto.endpoint}/moto-api/static/ecr/scan-finding-results",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).close()
