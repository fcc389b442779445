"""The five processes of the control plane: how each is started and how to tell it is healthy.

Pure description (command lines, ports, health endpoints) plus the small files the components
read (their kubeconfigs, the scheduler's configuration). Starting and stopping processes is
``processes``' job; ordering and waiting is ``cluster``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import yaml

from retail_tools.cluster import pki as identities
from retail_tools.cluster.config import FAKE_NODE_ANNOTATION, ClusterConfig
from retail_tools.cluster.kubeconfig import write_component_kubeconfig, write_kubeconfig
from retail_tools.cluster.pki import Pki

SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.0.0.1/16"  # kwok hands out pod IPs from here: room for 65k fake pods
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# The controllers and the scheduler would otherwise throttle themselves at 20-50 requests/s,
# which, not the API server, would then bound how fast the operator's objects converge.
CLIENT_QPS = 100
CLIENT_BURST = 200


class Probe(Enum):
    """How a health endpoint is reached."""

    HTTP = "http"  # plain HTTP on loopback (etcd, kwok)
    ADMIN_TLS = "admin-tls"  # HTTPS verified against our CA, with the admin client certificate
    SELF_SIGNED_TLS = "self-signed-tls"  # HTTPS with the component's own self-signed cert
    UNIX_SOCKET = "unix-socket"  # a Unix socket (``health_url`` is its path) accepts connections


@dataclass(frozen=True)
class Component:
    name: str
    argv: tuple[str, ...]
    port: int | None  # the loopback port it must find free, if it listens on one
    health_url: str
    probe: Probe

    @property
    def binary(self) -> str:
        return self.argv[0]


def components(config: ClusterConfig) -> tuple[Component, ...]:
    """Every component, in start order (reverse it to stop)."""
    ports, p = config.ports, Pki(config.pki_dir)
    loopback = "127.0.0.1"
    etcd_client = f"http://{loopback}:{ports.etcd_client}"
    etcd_peer = f"http://{loopback}:{ports.etcd_peer}"

    def kubeconfig(component: str) -> str:
        return str(config.component_kubeconfig(component))

    def delegated_auth(component: str) -> tuple[str, ...]:
        # Lets the component check who calls its own /metrics etc.; health stays anonymous.
        return (
            f"--authentication-kubeconfig={kubeconfig(component)}",
            f"--authorization-kubeconfig={kubeconfig(component)}",
            f"--bind-address={loopback}",
        )

    if config.real_node:
        # Pods reach the API server on the bridge: the `kubernetes` Service's endpoint is the
        # bridge address (kept by the lease reconciler), and every interface is bound because
        # host clients keep using loopback; the firewall admits only loopback and the bridge.
        reachable: tuple[str, ...] = (
            "--bind-address=0.0.0.0",
            f"--advertise-address={config.node.gateway}",
            "--endpoint-reconciler-type=lease",
            # What logs, exec and port-forward need: a client identity towards the kubelet,
            # whose serving certificate the cluster CA signed, reached at its InternalIP.
            f"--kubelet-client-certificate={p.client(identities.APISERVER_KUBELET_CLIENT).cert}",
            f"--kubelet-client-key={p.client(identities.APISERVER_KUBELET_CLIENT).key}",
            f"--kubelet-certificate-authority={p.ca.cert}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            # Aggregated APIs (metrics-server, a host process on the bridge) are reached at
            # their EndpointSlice's address, not through a ClusterIP kube-proxy would route.
            "--enable-aggregator-routing=true",
        )
    else:
        reachable = (
            f"--bind-address={loopback}",
            f"--advertise-address={loopback}",
            # Endpoints may not hold a loopback address, and no pod here could reach one: the
            # `kubernetes` Service is kept without endpoints instead of failing to sync them.
            "--endpoint-reconciler-type=none",
        )
    etcd = Component(
        name="etcd",
        argv=(
            str(config.binary("etcd")),
            "--name=retailmodel",
            f"--data-dir={config.etcd_data_dir}",
            f"--listen-client-urls={etcd_client}",
            f"--advertise-client-urls={etcd_client}",
            f"--listen-peer-urls={etcd_peer}",
            f"--initial-advertise-peer-urls={etcd_peer}",
            f"--initial-cluster=retailmodel={etcd_peer}",
            "--auto-compaction-retention=1",
            # A throwaway development cluster: trading crash-durability for far less latency
            # on a shared, slow disk.
            "--unsafe-no-fsync=true",
        ),
        port=ports.etcd_client,
        health_url=f"{etcd_client}/health",
        probe=Probe.HTTP,
    )
    apiserver = Component(
        name="kube-apiserver",
        argv=(
            str(config.binary("kube-apiserver")),
            f"--etcd-servers={etcd_client}",
            *reachable,
            f"--secure-port={ports.apiserver}",
            f"--tls-cert-file={p.apiserver.cert}",
            f"--tls-private-key-file={p.apiserver.key}",
            f"--client-ca-file={p.ca.cert}",
            f"--requestheader-client-ca-file={p.ca.cert}",
            f"--requestheader-allowed-names={identities.FRONT_PROXY.user}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={p.client(identities.FRONT_PROXY).cert}",
            f"--proxy-client-key-file={p.client(identities.FRONT_PROXY).key}",
            "--authorization-mode=Node,RBAC",
            # Added to the default plugins (which already include ServiceAccount).
            "--enable-admission-plugins=NodeRestriction,ServiceAccount",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={p.service_account_public_key}",
            f"--service-account-signing-key-file={p.service_account_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--profiling=false",
        ),
        port=ports.apiserver,
        health_url=f"{config.server}/readyz",
        probe=Probe.ADMIN_TLS,
    )
    controller_manager = Component(
        name="kube-controller-manager",
        argv=(
            str(config.binary("kube-controller-manager")),
            f"--kubeconfig={kubeconfig('kube-controller-manager')}",
            *delegated_auth("kube-controller-manager"),
            f"--secure-port={ports.controller_manager}",
            f"--service-account-private-key-file={p.service_account_key}",
            f"--root-ca-file={p.ca.cert}",
            f"--cluster-signing-cert-file={p.ca.cert}",
            f"--cluster-signing-key-file={p.ca.key}",
            "--use-service-account-credentials=true",
            "--cluster-name=retailmodel-local",
            # One instance: no lease to wait for after a restart.
            "--leader-elect=false",
            f"--kube-api-qps={CLIENT_QPS}",
            f"--kube-api-burst={CLIENT_BURST}",
            "--profiling=false",
        ),
        port=ports.controller_manager,
        health_url=f"https://{loopback}:{ports.controller_manager}/healthz",
        probe=Probe.SELF_SIGNED_TLS,
    )
    scheduler = Component(
        name="kube-scheduler",
        argv=(
            str(config.binary("kube-scheduler")),
            f"--config={config.cluster_dir / 'kube-scheduler.yaml'}",
            *delegated_auth("kube-scheduler"),
            f"--secure-port={ports.scheduler}",
        ),
        port=ports.scheduler,
        health_url=f"https://{loopback}:{ports.scheduler}/healthz",
        probe=Probe.SELF_SIGNED_TLS,
    )
    annotation = "=".join(FAKE_NODE_ANNOTATION)
    kwok = Component(
        name="kwok",
        argv=(
            str(config.binary("kwok")),
            f"--kubeconfig={kubeconfig('kwok')}",
            f"--config={config.kwok_stages}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={annotation}",
            f"--node-ip={loopback}",
            f"--node-port={ports.kwok}",
            f"--server-address={loopback}:{ports.kwok}",
            f"--cidr={POD_CIDR}",
            "--node-lease-duration-seconds=40",
        ),
        port=ports.kwok,
        health_url=f"http://{loopback}:{ports.kwok}/healthz",
        probe=Probe.HTTP,
    )
    return etcd, apiserver, controller_manager, scheduler, kwok


def write_component_files(config: ClusterConfig, pki: Pki) -> None:
    """The kubeconfigs (admin and per component) and the scheduler's configuration file."""
    write_kubeconfig(
        config.kubeconfig, config.server, pki.ca.cert, pki.client(identities.ADMIN), "admin"
    )
    for identity in (identities.CONTROLLER_MANAGER, identities.SCHEDULER, identities.KWOK):
        write_component_kubeconfig(config, pki, identity)
    scheduler_config = {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {
            "kubeconfig": str(config.component_kubeconfig(identities.SCHEDULER.file_stem)),
            "qps": CLIENT_QPS,
            "burst": CLIENT_BURST,
        },
        "leaderElection": {"leaderElect": False},
    }
    (config.cluster_dir / "kube-scheduler.yaml").write_text(yaml.safe_dump(scheduler_config))


def fake_nodes_manifest(count: int) -> str:
    """Nodes for kwok to play: no status given, so kwok's stages fill in generous defaults."""
    key, value = FAKE_NODE_ANNOTATION
    nodes = [
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": f"kwok-node-{index}",
                "annotations": {key: value, "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "type": "kwok",
                    "kubernetes.io/hostname": f"kwok-node-{index}",
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                },
            },
        }
        for index in range(count)
    ]
    return yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": nodes})


def log_path(config: ClusterConfig, component: Component) -> Path:
    return config.log_dir / f"{component.name}.log"
