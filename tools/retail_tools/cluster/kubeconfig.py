"""Kubeconfig files: the admin's (for people, tests and the demo) and one per component.

Certificates are embedded, so a kubeconfig is a single self-contained file that any client
(kubectl, the ``kubernetes`` Python client, kopf) can use as is.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from retail_tools.cluster.pki import CertPair, Identity, Pki

if TYPE_CHECKING:
    from retail_tools.cluster.config import ClusterConfig

CONTEXT = "retailmodel-local"


def write_component_kubeconfig(config: ClusterConfig, pki: Pki, identity: Identity) -> None:
    """The kubeconfig a component reads: this cluster, as ``identity``'s client certificate."""
    write_kubeconfig(
        config.component_kubeconfig(identity.file_stem),
        config.server,
        pki.ca.cert,
        pki.client(identity),
        identity.user,
    )


def write_kubeconfig(path: Path, server: str, ca_cert: Path, client: CertPair, user: str) -> None:
    def data(file: Path) -> str:
        return base64.b64encode(file.read_bytes()).decode()

    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CONTEXT,
                "cluster": {"server": server, "certificate-authority-data": data(ca_cert)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": data(client.cert),
                    "client-key-data": data(client.key),
                },
            }
        ],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": user}}],
        "current-context": CONTEXT,
    }
    partial = path.with_suffix(".partial")
    partial.touch(mode=0o600)
    partial.write_text(yaml.safe_dump(document, sort_keys=False))
    partial.rename(path)
