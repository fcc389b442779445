"""An in-process moto server for tests that must steer ECR's scan results over time.

The operator reaches it over HTTP like any AWS endpoint. Running it inside the test process
lets a test do what ECR does on its own schedule and moto cannot be told through its API more
than once per image: finish a scan that was in progress, or rescan with new findings
(moto assigns one static result per image and query for good, so ``set_scan`` replaces it in
moto's backend).
"""

from __future__ import annotations

import hashlib
import logging
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from moto.backends import get_backend
from moto.core import DEFAULT_ACCOUNT_ID
from moto.server import ThreadedMotoServer

from tests.support.aws import REGION, MotoServer, free_port

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


@dataclass(frozen=True)
class AwsStandIn(MotoServer):
    account: str = DEFAULT_ACCOUNT_ID

    def repository_uri(self, name: str) -> str:
        return f"{self.account}.dkr.ecr.{REGION}.amazonaws.com/{name}"

    def ensure_repository(self, name: str) -> str:
        ecr: Any = self.client("ecr")
        try:
            ecr.create_repository(repositoryName=name)
        except ecr.exceptions.RepositoryAlreadyExistsException:
            pass
        return self.repository_uri(name)

    def push_image(self, repository: str, tag: str) -> str:
        """Register a new image (a unique manifest) under ``tag``; return its digest."""
        self.ensure_repository(repository)
        layer = "sha256:" + hashlib.sha256(uuid.uuid4().bytes).hexdigest()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "size": 100,
                    "digest": layer,
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "size": 1000,
                        "digest": layer,
                    }
                ],
            }
        )
        digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
        ecr: Any = self.client("ecr")
        ecr.put_image(
            repositoryName=repository,
            imageManifest=manifest,
            imageManifestMediaType=MANIFEST_TYPE,
            imageTag=tag,
            imageDigest=digest,
        )
        return digest

    def set_scan(
        self,
        repository: str,
        digest: str,
        status: str = "COMPLETE",
        findings: list[tuple[str, str]] | None = None,
    ) -> None:
        """Make ECR report this scan for ``digest`` from now on."""
        backend = get_backend("ecr")[self.account][REGION]
        image = backend.repositories[repository]._get_image(None, digest)
        image.last_scan = datetime.now()
        counts: dict[str, int] = {}
        for _, severity in findings or []:
            counts[severity] = counts.get(severity, 0) + 1
        result = {
            "registryId": self.account,
            "repositoryName": repository,
            "imageId": {"imageDigest": digest},
            "imageScanStatus": {"status": status, "description": f"scan {status.lower()}"},
            "imageScanFindings": {
                "findings": [
                    {"name": name, "severity": severity, "uri": f"https://cve.example/{name}"}
                    for name, severity in findings or []
                ],
                "findingSeverityCounts": counts,
                "imageScanCompletedAt": datetime.now().isoformat(),
            },
        }
        image.scan_finding_results.clear()
        image.scan_finding_results_queue[:] = [result]

    def put_model(self, bucket: str, key: str, body: bytes, sha256: str | None = None) -> str:
        s3: Any = self.client("s3")
        try:
            s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
            )
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        digest = sha256 or hashlib.sha256(body).hexdigest()
        response = s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata={"sha256": digest})
        return str(response.get("VersionId", ""))


@pytest.fixture(scope="session")
def aws_stand_in() -> Iterator[AwsStandIn]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield AwsStandIn(f"http://127.0.0.1:{port}")
    finally:
        server.stop()
