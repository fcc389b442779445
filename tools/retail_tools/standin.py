"""moto's server as a local stand-in for ECR and S3, with the two things ECR does on its own
that moto cannot be asked for over HTTP: register an image like ``docker push`` and finish a
scan with chosen findings.

The server runs in this process (``ThreadedMotoServer``) and serves real HTTP on loopback, so
the operator and the predictor reach it as they would reach AWS; living in-process lets
``set_scan`` replace the scan result moto keeps per image (moto gives each query one static
result for good). Used by ``retailctl demo`` and by the tests; it needs the development
dependencies (moto), which ``make demo`` and ``make test`` install.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import uuid
from datetime import datetime
from typing import Any

REGION = "ap-southeast-1"
ACCOUNT = "123456789012"  # moto's default account
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
# Fake credentials: moto accepts any, and tests search every output for these to prove no
# credential ever leaks into logs, status or responses.
ACCESS_KEY = "AKIARETAILTESTKEY000"
SECRET_KEY = "retail-test-secret-key-do-not-leak-0000"


def stand_in_env(endpoint: str) -> dict[str, str]:
    """Environment for a process that should use the stand-in at ``endpoint`` as AWS."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AwsStandIn:
    def __init__(self, port: int | None = None) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def start(self) -> AwsStandIn:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def env(self) -> dict[str, str]:
        return stand_in_env(self.endpoint)

    def client(self, service: str) -> Any:
        import boto3

        return boto3.session.Session(
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
        ).client(service, endpoint_url=self.endpoint)  # type: ignore[call-overload]

    def repository_uri(self, name: str) -> str:
        return f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{name}"

    def ensure_repository(self, name: str) -> str:
        ecr = self.client("ecr")
        try:
            ecr.create_repository(repositoryName=name)
        except ecr.exceptions.RepositoryAlreadyExistsException:
            pass
        return self.repository_uri(name)

    def push_image(self, repository: str, tag: str) -> str:
        """Register a new image (a unique manifest) under ``tag``, as a push does; return its
        digest. moto needs the digest and media type spelled out to store them correctly."""
        self.ensure_repository(repository)
        layer = "sha256:" + hashlib.sha256(uuid.uuid4().bytes).hexdigest()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "size": 7023,
                    "digest": layer,
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "size": 32654,
                        "digest": layer,
                    }
                ],
            }
        )
        digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
        self.client("ecr").put_image(
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
        """Make ECR report this scan of ``digest`` to every query from now on."""
        from moto.backends import get_backend

        backend = get_backend("ecr")[ACCOUNT][REGION]
        image = backend.repositories[repository]._get_image(None, digest)
        image.last_scan = datetime.now()
        counts: dict[str, int] = {}
        for _, severity in findings or []:
            counts[severity] = counts.get(severity, 0) + 1
        result = {
            "registryId": ACCOUNT,
            "repositoryName": repository,
            "imageId": {"imageDigest": digest},
            "imageScanStatus": {"status": status, "description": f"scan {status.lower()}"},
            "imageScanFindings": {
                "findings": [
                    {
                        "name": name,
                        "severity": severity,
                        "uri": f"https://nvd.nist.gov/vuln/detail/{name}",
                    }
                    for name, severity in findings or []
                ],
                "findingSeverityCounts": counts,
                "imageScanCompletedAt": datetime.now().isoformat(),
            },
        }
        # moto answers each distinct query (by tag, by digest) from its own slot: fill the
        # slots already taken and queue the result for the ones to come.
        for key in list(image.scan_finding_results):
            image.scan_finding_results[key] = result
        image.scan_finding_results_queue[:] = [result] * 8

    def put_model(self, bucket: str, key: str, body: bytes, sha256: str | None = None) -> str:
        s3 = self.client("s3")
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
