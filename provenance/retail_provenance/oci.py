"""The few calls of the OCI distribution API that image signatures need: read and write a
manifest by tag, read and write a blob. Standard library HTTP (``urllib``); ``base`` is the
registry's URL (``http://127.0.0.1:5000`` for the local one, ``https://<ecr host>`` with a
basic ``authorization`` header from ECR's GetAuthorizationToken on AWS).

``signatures`` and ``attach`` are cosign's layout (``cosign``) over those calls: reading every
signature of a digest, and adding one beside those already there (as ``cosign sign`` does).
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from dataclasses import dataclass

from retail_provenance import cosign

MANIFEST_LIMIT = 4 * 1024 * 1024
BLOB_LIMIT = 64 * 1024  # a simple signing payload is a few hundred bytes
ACCEPT = ", ".join(
    (
        cosign.OCI_MANIFEST,
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


class RegistryError(Exception):
    """The registry could not be read or written (worth trying again later)."""


@dataclass(frozen=True)
class Registry:
    base: str
    authorization: str = ""  # an Authorization header's value, never logged
    timeout: float = 10.0

    def _request(
        self,
        method: str,
        url: str,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> urllib.request.Request:
        request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        if self.authorization:
            request.add_unredirected_header("Authorization", self.authorization)
        return request

    def _open(self, request: urllib.request.Request, limit: int) -> tuple[bytes, dict[str, str]]:
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
            body: bytes = response.read(limit + 1)
            if len(body) > limit:
                raise RegistryError(f"{request.full_url}: more than {limit:,} bytes")
            return body, dict(response.headers.items())

    def manifest(self, repository: str, reference: str) -> bytes | None:
        """The manifest at a tag or digest; ``None`` when there is none."""
        url = f"{self.base}/v2/{repository}/manifests/{reference}"
        try:
            body, _ = self._open(
                self._request("GET", url, headers={"Accept": ACCEPT}), MANIFEST_LIMIT
            )
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise RegistryError(
                f"GET {repository} manifest {reference}: HTTP {error.code}"
            ) from None
        except (urllib.error.URLError, OSError) as error:
            raise RegistryError(f"GET {repository} manifest {reference}: {error}") from None
        return body

    def blob(self, repository: str, digest: str, limit: int = BLOB_LIMIT) -> bytes:
        """A blob, checked against its digest."""
        url = f"{self.base}/v2/{repository}/blobs/{digest}"
        try:
            body, _ = self._open(self._request("GET", url), limit)
        except (urllib.error.URLError, OSError) as error:
            raise RegistryError(f"GET {repository} blob {digest}: {error}") from None
        if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
            raise RegistryError(f"{repository} blob {digest}: its bytes hash otherwise")
        return body

    def put_blob(self, repository: str, data: bytes) -> str:
        """Upload a blob (one POST, one PUT: a monolithic upload); its digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        try:
            _, headers = self._open(
                self._request("POST", f"{self.base}/v2/{repository}/blobs/uploads/", b""), 4096
            )
            location = headers.get("Location") or headers.get("location") or ""
            if location.startswith("/"):
                location = self.base + location
            separator = "&" if "?" in location else "?"
            put = self._request(
                "PUT",
                f"{location}{separator}digest={digest}",
                data,
                {"Content-Type": "application/octet-stream"},
            )
            self._open(put, 4096)
        except (urllib.error.URLError, OSError) as error:
            raise RegistryError(f"upload to {repository}: {error}") from None
        return digest

    def put_manifest(self, repository: str, tag: str, body: bytes, media_type: str) -> str:
        """Put a manifest under a tag; its digest."""
        url = f"{self.base}/v2/{repository}/manifests/{tag}"
        try:
            self._open(self._request("PUT", url, body, {"Content-Type": media_type}), 4096)
        except (urllib.error.URLError, OSError) as error:
            raise RegistryError(f"PUT {repository} manifest {tag}: {error}") from None
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def signatures(self, repository: str, digest: str) -> list[cosign.Signature]:
        """Every cosign signature stored for ``repository@digest`` (none: an empty list)."""
        body = self.manifest(repository, cosign.signature_tag(digest))
        if body is None:
            return []
        try:
            found = cosign.layers(body)
        except ValueError:
            raise RegistryError(f"{repository}: the signature manifest is not JSON") from None
        return [
            cosign.Signature(self.blob(repository, layer), annotation)
            for layer, annotation in found
        ]

    def attach(self, repository: str, digest: str, signature: cosign.Signature) -> bytes:
        """Add ``signature`` beside those the digest has (the same payload once); the
        signature manifest written."""
        existing = self.signatures(repository, digest)
        kept = [s for s in existing if s != signature] + [signature]
        body, config = cosign.manifest(kept)
        self.put_blob(repository, config)
        for layer in kept:
            self.put_blob(repository, layer.payload)
        self.put_manifest(repository, cosign.signature_tag(digest), body, cosign.OCI_MANIFEST)
        return body
