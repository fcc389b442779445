"""Image signatures are cosign's: against a registry of our own (crane, on loopback), cosign
built from the Go module proxy accepts what ``retail_provenance`` signs (and refuses it under
another key), and ``retail_provenance`` accepts what ``cosign sign --key`` signs. An unsigned
image, one signed by a key not trusted, and a signature copied from another image are each
refused by name."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from retail_provenance import cosign, keys, oci
from retail_provenance.verdict import Outcome
from retail_tools.images.config import ImagesConfig
from retail_tools.images.registry import ensure_crane
from retail_tools.images.signing import ensure_cosign
from retail_tools.polling import answers, wait_until
from retail_tools.settings import current
from tests.support.aws import free_port
from tests.support.signing import KeyPair

REPOSITORY = "mlops/retail-api"


@pytest.fixture(scope="module")
def tools() -> tuple[Path, Path]:
    config = ImagesConfig.from_settings(current())
    return ensure_crane(config, print), ensure_cosign(config, print)


@pytest.fixture(scope="module")
def registry(
    tools: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[oci.Registry]:
    """A registry of this module's own, on a free loopback port, stopped at the end."""
    crane, _ = tools
    address = f"127.0.0.1:{free_port()}"
    disk = tmp_path_factory.mktemp("registry")
    (disk / "blobs").mkdir()
    log = (disk / "registry.log").open("wb")
    server = subprocess.Popen(
        [str(crane), "registry", "serve", "--address", address, "--disk", str(disk / "blobs")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: answers(f"http://{address}/v2/"), timeout=20, what="the registry")
        yield oci.Registry(f"http://{address}")
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def push_image(registry: oci.Registry) -> str:
    """A small image with bytes of its own; its manifest digest."""
    layer = uuid.uuid4().bytes * 64
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()],
            },
        }
    ).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": cosign.OCI_MANIFEST,
        "config": {
            "mediaType": cosign.OCI_CONFIG,
            "size": len(config),
            "digest": registry.put_blob(REPOSITORY, config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "size": len(layer),
                "digest": registry.put_blob(REPOSITORY, layer),
            }
        ],
    }
    body = json.dumps(manifest).encode()
    tag = uuid.uuid4().hex[:8]
    return registry.put_manifest(REPOSITORY, tag, body, cosign.OCI_MANIFEST)


# A trusted root that trusts nothing: given to `cosign verify`, it keeps cosign from fetching
# Sigstore's public one over the network (keys here, no certificates, no transparency log).
EMPTY_TRUSTED_ROOT = {"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}


def run_cosign(
    tools: tuple[Path, Path], tmp_path: Path, *arguments: str
) -> subprocess.CompletedProcess[str]:
    """cosign with a home of its own and no password on its keys, never online: signing with
    a key asks for no trusted root, and verifying is given an empty one."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (tmp_path / "trusted_root.json").write_text(json.dumps(EMPTY_TRUSTED_ROOT))
    environment = {"PATH": os.environ["PATH"], "HOME": str(home), "COSIGN_PASSWORD": ""}
    return subprocess.run(
        [str(tools[1]), *arguments],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )


def reference(registry: oci.Registry, digest: str) -> str:
    return f"{registry.base.removeprefix('http://')}/{REPOSITORY}@{digest}"


def ours(registry: oci.Registry, digest: str, signer: KeyPair) -> None:
    signed = cosign.payload(reference(registry, digest).partition("@")[0], digest)
    signature = cosign.Signature(signed, cosign.sign(signed, signer.private_pem))
    registry.attach(REPOSITORY, digest, signature)


def verdict(registry: oci.Registry, digest: str, *trusted: KeyPair) -> cosign.verdict.Verdict:
    return cosign.verify(
        digest,
        registry.signatures(REPOSITORY, digest),
        keys.load_keys(k.public for k in trusted),
    )


def test_cosign_verify_accepts_our_signature_and_only_under_our_key(
    registry: oci.Registry, tools: tuple[Path, Path], tmp_path: Path
) -> None:
    team, stranger = KeyPair.new(), KeyPair.new()
    (tmp_path / "team.pub").write_bytes(team.public_pem)
    (tmp_path / "stranger.pub").write_bytes(stranger.public_pem)
    digest = push_image(registry)
    ours(registry, digest, team)
    verify = (
        "verify",
        "--insecure-ignore-tlog=true",
        "--allow-insecure-registry",
        "--trusted-root=trusted_root.json",
    )
    image = reference(registry, digest)
    accepted = run_cosign(tools, tmp_path, *verify, "--key", "team.pub", image)
    assert accepted.returncode == 0, accepted.stderr
    assert digest in accepted.stdout
    assert "TUF" not in accepted.stderr  # never asked the network for Sigstore's root
    refused = run_cosign(tools, tmp_path, *verify, "--key", "stranger.pub", image)
    assert refused.returncode != 0
    assert "no matching signatures" in refused.stderr
    assert verdict(registry, digest, team).verified


def test_we_accept_cosign_signs_signature(
    registry: oci.Registry, tools: tuple[Path, Path], tmp_path: Path
) -> None:
    team = KeyPair.new()
    (tmp_path / "team.pem").write_bytes(team.private_pem)
    imported = run_cosign(
        tools, tmp_path, "import-key-pair", "--key", "team.pem", "--output-key-prefix", "team"
    )
    assert imported.returncode == 0, imported.stderr
    digest = push_image(registry)
    signed = run_cosign(
        tools,
        tmp_path,
        "sign", "--key", "team.key", "--tlog-upload=false", "--allow-insecure-registry",
        "--yes", reference(registry, digest),
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    assert "TUF" not in signed.stderr and "rekor" not in signed.stderr.lower(), signed.stderr
    found = verdict(registry, digest, KeyPair.new(), team)  # trusted among two, as in a rotation
    assert found.verified, found.message
    assert found.key == team.fingerprint


def test_unsigned_untrusted_and_copied_signatures_are_refused(registry: oci.Registry) -> None:
    team = KeyPair.new()
    unsigned = push_image(registry)
    assert verdict(registry, unsigned, team).outcome is Outcome.UNSIGNED

    by_stranger = push_image(registry)
    ours(registry, by_stranger, KeyPair.new())
    assert verdict(registry, by_stranger, team).outcome is Outcome.UNTRUSTED

    signed, other = push_image(registry), push_image(registry)
    ours(registry, signed, team)
    copied = registry.manifest(REPOSITORY, cosign.signature_tag(signed))
    assert copied is not None
    registry.put_manifest(REPOSITORY, cosign.signature_tag(other), copied, cosign.OCI_MANIFEST)
    found = verdict(registry, other, team)
    assert found.outcome is Outcome.INVALID
    assert f"signed {signed}, not this image" in found.message
