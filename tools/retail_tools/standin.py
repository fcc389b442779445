"""moto's server as a local stand-in for ECR, S3 and STS: the one launcher, for the demo, the
tests and the benchmarks, with the things AWS does on its own that moto must be told: register
an image like ``docker push``, finish a scan with chosen findings, and check a web identity
before issuing credentials for it.

It serves real HTTP, on loopback by default, so the operator and the predictor reach it as
they would reach AWS; ``host`` binds it to another local address instead (the real node's
bridge gateway, so pods reach it too). By default the server runs in this process (moto's WSGI
app behind ``webidentity.StsGate``), which lets ``set_scan`` replace the scan result moto keeps
per image (moto gives each query one static result for good) and lets pods get credentials by
IRSA: ``trust_provider`` registers the cluster's token issuer as IAM registers an OIDC
provider, ``trust_role`` a role's trust in a ServiceAccount, and ``web_identity_calls`` lists
what was asked. ``own_process=True`` runs ``moto_server`` as a child process instead, for
callers that measure it apart (the benchmarks) or share one server across a test session;
there only ``queue_scan_result`` (moto's HTTP API) steers scans, and STS checks no token.
Needs the development dependencies (moto), which ``make demo`` and ``make test`` install.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from retail_contract.source import SHA256_METADATA_KEY
from retail_tools.polling import Timeout, answers, wait_until
from retail_tools.ports import free_port
from retail_tools.webidentity import IdentityProvider, StsGate, WebIdentityCall

REGION = "ap-southeast-1"
ACCOUNT = "123456789012"  # moto's default account
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
# Fake credentials: moto accepts any, and tests search every output for these to prove no
# credential ever leaks into logs, status or responses.
ACCESS_KEY = "AKIARETAILTESTKEY000"
SECRET_KEY = "retail-test-secret-key-do-not-leak-0000"
STARTUP_SECONDS = 30


def stand_in_env(endpoint: str) -> dict[str, str]:
    """Environment for a process that should use the stand-in at ``endpoint`` as AWS."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }


class AwsStandIn:
    def __init__(
        self,
        port: int | None = None,
        *,
        own_process: bool = False,
        log: Path | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.port = port or free_port()
        self.host = host
        self.endpoint = f"http://{host}:{self.port}"
        self._own_process = own_process
        self._log = log  # where a child server writes (own_process only); default: discarded
        self._process: subprocess.Popen[bytes] | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._buckets: set[str] = set()
        self._sts = StsGate()

    @property
    def pid(self) -> int:
        """The process serving the stand-in (this one, unless ``own_process``)."""
        return self._process.pid if self._process is not None else os.getpid()

    def start(self) -> AwsStandIn:
        if self._own_process:
            self._spawn()
        else:
            self._serve()
        return self

    def _serve(self) -> None:
        """moto's app behind the STS gate, served from a thread of this process (what moto's
        ThreadedMotoServer does, with the gate in front)."""
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request
        app = self._sts.wsgi(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            self.host, self.port, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        output = self._log.open("wb") if self._log else subprocess.DEVNULL
        self._process = subprocess.Popen(
            [str(Path(sys.executable).with_name("moto_server")), "-H", self.host]
            + ["-p", str(self.port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
            start_new_session=True,  # a Ctrl-C in the terminal reaches the caller, not moto
        )
        process = self._process

        def answering() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"moto_server exited early; see {self._log or 'its output'}")
            return answers(f"{self.endpoint}/moto-api/", timeout=1)

        try:
            wait_until(answering, timeout=STARTUP_SECONDS, interval=0.1)
        except Timeout:
            self.stop()
            raise RuntimeError(f"moto_server did not answer within {STARTUP_SECONDS} s") from None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def env(self) -> dict[str, str]:
        """Environment for a child process that should talk to this stand-in."""
        return stand_in_env(self.endpoint)

    def trust_provider(self, provider: IdentityProvider) -> None:
        """Accept web identities from ``provider`` (IAM's OIDC provider for the cluster)."""
        self._sts.providers.append(provider)

    def trust_role(self, role_arn: str, subject: str) -> None:
        """Let ``subject`` (``system:serviceaccount:NS:NAME``) assume ``role_arn`` with a web
        identity, as the role's trust policy says on EKS."""
        self._sts.trust(role_arn, subject)

    @property
    def web_identity_calls(self) -> list[WebIdentityCall]:
        """Every AssumeRoleWithWebIdentity asked of this stand-in so far, and its answer."""
        return list(self._sts.calls)

    def client(self, service: str) -> Any:
        import boto3

        from retail_operator.aws.clients import CONFIG

        return boto3.session.Session(
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
        ).client(service, endpoint_url=self.endpoint, config=CONFIG)  # type: ignore[call-overload]

    def reset(self) -> None:
        """Forget every repository, image, bucket and object (a clean account)."""
        self._post("/moto-api/reset", None)
        self._buckets.clear()

    def repository_uri(self, name: str) -> str:
        return f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{name}"

    def ensure_repository(self, name: str) -> str:
        ecr = self.client("ecr")
        try:
            ecr.create_repository(repositoryName=name)
        except ecr.exceptions.RepositoryAlreadyExistsException:
            pass
        return self.repository_uri(name)

    def push_image(self, repository: str, tag: str, size_bytes: int = 7023) -> str:
        """Register a new image (a unique manifest) under ``tag``, as a push does; return its
        digest. moto needs the digest and media type spelled out to store them correctly; the
        layer is ``size_bytes`` (what ``ecr usage`` counts) and so is the config (what moto
        reports as the image's size)."""
        self.ensure_repository(repository)
        layer = "sha256:" + hashlib.sha256(uuid.uuid4().bytes).hexdigest()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
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
        """Make ECR report this scan of ``digest`` to every query from now on (in-process)."""
        counts: dict[str, int] = {}
        for _, severity in findings or []:
            counts[severity] = counts.get(severity, 0) + 1
        self.set_scan_result(
            repository,
            digest,
            {
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
            },
        )

    def set_scan_result(self, repository: str, digest: str, answer: dict[str, Any]) -> None:
        """Make ECR answer every scan-findings query of ``digest`` with exactly ``answer`` (the
        status and findings parts of a response, any shape: partial answers included)."""
        if self._server is None:
            raise RuntimeError("set_scan needs the in-process stand-in; use queue_scan_result")
        from moto.backends import get_backend

        backend = get_backend("ecr")[ACCOUNT][REGION]
        image = backend.repositories[repository]._get_image(None, digest)
        image.last_scan = datetime.now()
        result = {
            "registryId": ACCOUNT,
            "repositoryName": repository,
            "imageId": {"imageDigest": digest},
            **answer,
        }
        # moto answers each distinct query (by tag, by digest) from its own slot: fill the
        # slots already taken and queue the result for the ones to come.
        for key in list(image.scan_finding_results):
            image.scan_finding_results[key] = result
        image.scan_finding_results_queue[:] = [result] * 8

    def queue_scan_result(self, result: dict[str, Any]) -> None:
        """Make moto answer the next scan-findings query for ``result``'s image with ``result``
        (a ``describe_image_scan_findings`` response body), over moto's HTTP API."""
        self._post(
            "/moto-api/static/ecr/scan-finding-results", {"results": [result], "region": REGION}
        )

    def ensure_bucket(self, bucket: str) -> None:
        """A versioned ``bucket`` (each upload a new object version, as the models' bucket)."""
        if bucket in self._buckets:
            return
        s3 = self.client("s3")
        try:
            s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
            )
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        self._buckets.add(bucket)

    def put_model(self, bucket: str, key: str, body: bytes, *, s3: Any = None) -> str:
        """Upload ``body`` to a versioned ``bucket`` with its sha256 as object metadata under the
        contract's key, as ``retailctl model push`` does; return the version id. Pass ``s3`` (a
        client of ``client("s3")``) to reuse one over many uploads: making one costs more CPU
        than a small upload."""
        self.ensure_bucket(bucket)
        metadata = {SHA256_METADATA_KEY: hashlib.sha256(body).hexdigest()}
        response = (s3 or self.client("s3")).put_object(
            Bucket=bucket, Key=key, Body=body, Metadata=metadata
        )
        return str(response.get("VersionId", ""))

    def _post(self, path: str, document: object) -> None:
        body = None if document is None else json.dumps(document).encode()
        request = urllib.request.Request(
            f"{self.endpoint}{path}",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=10).close()
