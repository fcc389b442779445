"""The cluster's own kubectl (built with it, same version) as one handle: what the cluster's
lifecycle, Argo CD, the real-node tooling, the demo, the tests and the benchmarks run kubectl
through.

``ClusterConfig.kubectl`` gives the admin's handle. A call runs kubectl once and returns what
``subprocess.run`` does; with ``check`` (the default) a failure is a ``ClusterError`` carrying
kubectl's own message. ``output``, ``get_json`` and ``apply`` are the three uses nearly every
caller has.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from retail_tools.cluster.errors import ClusterError

Manifest = str | Mapping[str, Any] | Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class Kubectl:
    binary: Path
    kubeconfig: Path  # whose credentials: the admin's unless a call names another

    def argv(self, *args: str, kubeconfig: Path | None = None) -> list[str]:
        return [str(self.binary), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]

    def __call__(
        self,
        *args: str,
        stdin: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(*args, kubeconfig=kubeconfig),
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def output(self, *args: str, stdin: str | None = None) -> str:
        """What a successful call prints."""
        return self(*args, stdin=stdin).stdout

    def get_json(self, *args: str) -> Any:
        """``kubectl get ARGS -o json``, parsed."""
        return json.loads(self.output("get", *args, "-o", "json"))

    def apply(
        self, manifest: Manifest, namespace: str | None = None, *, server_side: bool = False
    ) -> None:
        """Apply YAML text, one document or a list of them (server-side: taking over fields
        others set, as a controller's apply does)."""
        if not isinstance(manifest, str):
            listed = [manifest] if isinstance(manifest, Mapping) else list(manifest)
            manifest = yaml.safe_dump_all(listed)
        scope = ("-n", namespace) if namespace else ()
        side = ("--server-side", "--force-conflicts") if server_side else ()
        self("apply", *side, *scope, "-f", "-", stdin=manifest)
