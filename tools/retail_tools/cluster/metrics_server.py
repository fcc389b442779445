"""metrics-server beside the real node: the resource metrics API (``metrics.k8s.io``) that the
autoscaler's CPU target and ``kubectl top`` read. Pure description, as ``node`` is for the
node's processes: its command line, the files it reads and the objects that plug it into the
API server's aggregation layer.

It runs on the host like the other components, built from the Go module proxy
(``build.metrics_server_recipe``), and listens on the node's bridge address only. The API
server reaches it as an aggregated API: an APIService names a Service without a selector whose
EndpointSlice holds that address (the API server routes to endpoints itself,
``--enable-aggregator-routing``), verifies its serving certificate against the cluster CA, and
proxies requests with its front-proxy identity, which metrics-server trusts through the
``extension-apiserver-authentication`` ConfigMap. metrics-server reads each selected node's
kubelet (``/metrics/resource``, TLS verified with the cluster CA) as ``system:metrics-server``.
Only the real node is selected: kwok's nodes run no containers and serve no metrics.
"""

from __future__ import annotations

import base64
from typing import Any

from retail_tools.cluster import pki as identities
from retail_tools.cluster.components import Component, Probe
from retail_tools.cluster.config import REAL_NODE_LABEL, ClusterConfig
from retail_tools.cluster.kubeconfig import write_component_kubeconfig
from retail_tools.cluster.pki import Pki

NAME = "metrics-server"
NAMESPACE = "kube-system"
PORT = 4443  # on the node's bridge address; its historical secure port
API_SERVICE = "v1beta1.metrics.k8s.io"
# How often it reads the kubelet: upstream's manifests' value (the kubelet refreshes its CPU
# counters about as often); the autoscaler looks every 15 s too.
RESOLUTION = "15s"
MANAGED_BY = {"app.kubernetes.io/managed-by": "retailctl"}


def component(config: ClusterConfig) -> Component:
    p = Pki(config.pki_dir)
    kubeconfig = config.component_kubeconfig(identities.METRICS_SERVER.file_stem)
    address = config.node.gateway
    return Component(
        name=NAME,
        argv=(
            str(config.metrics_server_binary),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--bind-address={address}",
            f"--secure-port={PORT}",
            f"--tls-cert-file={p.metrics_server_serving.cert}",
            f"--tls-private-key-file={p.metrics_server_serving.key}",
            # The kubelet's serving certificate is the cluster CA's: verified, never skipped.
            f"--kubelet-certificate-authority={p.ca.cert}",
            "--kubelet-preferred-address-types=InternalIP",
            "--kubelet-use-node-status-port",
            f"--node-selector={'='.join(REAL_NODE_LABEL)}",
            f"--metric-resolution={RESOLUTION}",
            "--profiling=false",
        ),
        # It listens on the bridge, not on loopback: no loopback port to find free.
        port=None,
        health_url=f"https://{address}:{PORT}/livez",
        probe=Probe.ADMIN_TLS,
    )


def write_files(config: ClusterConfig, pki: Pki) -> None:
    """Its kubeconfig (the client identity it uses towards the API server and the kubelet)."""
    write_component_kubeconfig(config, pki, identities.METRICS_SERVER)


def manifests(config: ClusterConfig, pki: Pki) -> list[dict[str, Any]]:
    """Its RBAC (upstream's, bound to its certificate's user instead of a ServiceAccount), the
    Service and EndpointSlice that lead to it, and the APIService."""
    user = {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "User",
        "name": identities.METRICS_SERVER.user,
    }
    return [
        _cluster_role(
            "system:metrics-server",
            [
                {"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
                {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": _READ},
            ],
        ),
        _cluster_role(
            "system:aggregated-metrics-reader",
            [{"apiGroups": ["metrics.k8s.io"], "resources": ["pods", "nodes"], "verbs": _READ}],
            labels={
                f"rbac.authorization.k8s.io/aggregate-to-{role}": "true"
                for role in ("view", "edit", "admin")
            },
        ),
        _binding("ClusterRoleBinding", "system:metrics-server", "system:metrics-server", user),
        _binding(
            "ClusterRoleBinding",
            "metrics-server:system:auth-delegator",
            "system:auth-delegator",
            user,
        ),
        _binding(
            "RoleBinding",
            "metrics-server-auth-reader",
            "extension-apiserver-authentication-reader",
            user,
            namespace=NAMESPACE,
        ),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _metadata(NAME, NAMESPACE),
            # No selector: its one endpoint is the host process, in the EndpointSlice below.
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": PORT}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": _metadata(
                f"{NAME}-host",
                NAMESPACE,
                {
                    "kubernetes.io/service-name": NAME,
                    # Not the EndpointSlice controller's: it leaves this one alone.
                    "endpointslice.kubernetes.io/managed-by": "retailctl",
                },
            ),
            "addressType": "IPv4",
            "ports": [{"name": "https", "port": PORT, "protocol": "TCP"}],
            "endpoints": [{"addresses": [config.node.gateway], "conditions": {"ready": True}}],
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": _metadata(API_SERVICE),
            "spec": {
                "service": {"name": NAME, "namespace": NAMESPACE, "port": 443},
                "group": "metrics.k8s.io",
                "version": "v1beta1",
                "caBundle": base64.b64encode(pki.ca.cert.read_bytes()).decode(),
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
        },
    ]


_READ = ["get", "list", "watch"]


def _metadata(
    name: str, namespace: str | None = None, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": {**MANAGED_BY, **(labels or {})}}
    if namespace:
        metadata["namespace"] = namespace
    return metadata


def _cluster_role(
    name: str, rules: list[dict[str, Any]], labels: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _metadata(name, labels=labels),
        "rules": rules,
    }


def _binding(
    kind: str, name: str, role: str, subject: dict[str, str], namespace: str | None = None
) -> dict[str, Any]:
    role_kind = "Role" if kind == "RoleBinding" else "ClusterRole"
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": _metadata(name, namespace),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": [subject],
    }
