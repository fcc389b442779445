"""Images made here for the real node, imported straight into its containerd: no registry on
the internet is reachable.

The sandbox ("pause") image: Kubernetes' own ``build/pause/linux/pause.c`` (from the Go module
cache, the same version the binaries were built from) compiled with ``gcc -static`` and packed
as a FROM-scratch OCI image archive, which ``ctr`` imports into the CRI's ``k8s.io`` namespace
under the name containerd's config pins as its ``sandbox_image``. The archive is cached next to
the binaries. ``oci_archive`` and ``import_archive`` do the same for any static binary (the
tests' probe pod).
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

from retail_tools.cluster.config import ClusterConfig
from retail_tools.cluster.network import run
from retail_tools.cluster.node import PAUSE_VERSION, pause_image

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def ensure_pause_image(config: ClusterConfig, registry: str) -> bool:
    """Import the pause image into the node's containerd unless it is there; True if it was
    imported now."""
    name = pause_image(registry)
    if is_imported(config, name):
        return False
    import_archive(config, _pause_archive(config, name))
    return True


def is_imported(config: ClusterConfig, name: str) -> bool:
    return name in _ctr(config, "images", "ls", "-q").stdout.split()


def import_archive(config: ClusterConfig, archive: Path) -> None:
    """Import an OCI archive (``oci_archive``'s) into the CRI's namespace of the node."""
    _ctr(config, "images", "import", str(archive))


def _pause_archive(config: ClusterConfig, name: str) -> Path:
    folder = config.toolchain_dir / "pause"
    archive = folder / f"pause-{PAUSE_VERSION}-{hashlib.sha256(name.encode()).hexdigest()[:8]}.tar"
    if archive.exists():
        return archive
    folder.mkdir(parents=True, exist_ok=True)
    binary = folder / "pause"
    source = _kubernetes_source(config) / "build" / "pause" / "linux" / "pause.c"
    run(
        "gcc", "-static", "-O2", "-Wall", "-Werror", "-s",
        f"-DVERSION=v{PAUSE_VERSION}-retailmodel", "-o", str(binary), str(source),
    )  # fmt: skip
    partial = archive.with_suffix(".partial")
    image = oci_archive(name, {"pause": (binary.read_bytes(), 0o755)}, ["/pause"], "65535:65535")
    partial.write_bytes(image)
    partial.rename(archive)
    return archive


def oci_archive(
    name: str, files: dict[str, tuple[bytes, int]], entrypoint: list[str], user: str
) -> bytes:
    """An OCI image layout (as a tar) holding one image named ``name``: one layer of ``files``
    (path → content, mode), run as ``user``."""
    layer = _tar(files)
    image_config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"User": user, "Entrypoint": entrypoint},
        "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
    }
    config_blob = json.dumps(image_config, sort_keys=True).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": _descriptor(OCI_CONFIG, config_blob),
        "layers": [_descriptor(OCI_LAYER, layer)],
    }
    manifest_blob = json.dumps(manifest, sort_keys=True).encode()
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                **_descriptor(OCI_MANIFEST, manifest_blob),
                # ctr names the imported image after this annotation.
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rpartition(":")[2],
                },
            }
        ],
    }
    files = {
        "oci-layout": (json.dumps({"imageLayoutVersion": "1.0.0"}).encode(), 0o644),
        "index.json": (json.dumps(index, sort_keys=True).encode(), 0o644),
    }
    for blob in (layer, config_blob, manifest_blob):
        files[f"blobs/sha256/{_digest(blob).removeprefix('sha256:')}"] = (blob, 0o644)
    return _tar(files)


def _tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    """A reproducible tar (no times, no owners) of ``path → (content, mode)``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path, (content, mode) in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(content), mode
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _digest(blob: bytes) -> str:
    return f"sha256:{hashlib.sha256(blob).hexdigest()}"


def _descriptor(media_type: str, blob: bytes) -> dict[str, object]:
    return {"mediaType": media_type, "digest": _digest(blob), "size": len(blob)}


def _kubernetes_source(config: ClusterConfig) -> Path:
    """k8s.io/kubernetes' folder in the Go module cache, as the wrapper module resolves it."""
    module = config.toolchain_dir / "src" / "kubernetes"
    listed = run("go", "list", "-m", "-f", "{{.Dir}}", "k8s.io/kubernetes", cwd=module)
    return Path(listed.stdout.strip())


def _ctr(config: ClusterConfig, *args: str) -> subprocess.CompletedProcess[str]:
    return run("ctr", f"--address={config.node.containerd_socket}", "--namespace=k8s.io", *args)
