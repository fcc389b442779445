"""The real node's three processes (containerd, kubelet, kube-proxy) and the files they read.

Pure description, as ``components`` is for the control plane: command lines, health endpoints,
and the configuration files (containerd's, the registry mirror, the CNI network, the
KubeletConfiguration, the node's kubeconfigs). Changing the host (bridge, firewall, sysctls)
is ``network``'s job, the pause image ``pause``'s, and ordering ``cluster``'s.

The node runs beside kwok's fake nodes, labelled and tainted ``retailmodel.io/node=real``
(``REAL_NODE_LABEL``): only pods that select that label and tolerate the taint run for real.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from retail_tools.cluster import pki as identities
from retail_tools.cluster.components import Component, Probe
from retail_tools.cluster.config import REAL_NODE_LABEL, ClusterConfig, NodeLayout
from retail_tools.cluster.kubeconfig import write_component_kubeconfig
from retail_tools.cluster.pki import Pki

# Debian's packages (make host-packages): the runtime, its OCI runtime and the CNI plugins.
HOST_TOOLS = ("containerd", "ctr", "runc", "iptables", "ip6tables", "conntrack", "gcc")
CNI_BIN_DIR = Path("/usr/lib/cni")
CNI_NETWORK = "rmnode"
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248
KUBE_PROXY_HEALTHZ_PORT = 10256
KUBE_PROXY_METRICS_PORT = 10249
PAUSE_VERSION = "3.10.2"  # kubeadm's pause version for Kubernetes v1.36
ECR_REGISTRY_HOST = "123456789012.dkr.ecr.ap-southeast-1.amazonaws.com"  # the stand-in's


def pause_image(registry: str) -> str:
    """The sandbox image's name. Under the local registry's address, so that if it is ever
    missing, containerd's pull goes to loopback, never to a registry on the internet."""
    return f"{registry}/retailmodel/pause:{PAUSE_VERSION}"


def taint() -> str:
    key, value = REAL_NODE_LABEL
    return f"{key}={value}:NoSchedule"


def node_components(config: ClusterConfig) -> tuple[Component, ...]:
    """containerd, kubelet and kube-proxy, in start order (reverse it to stop)."""
    node, etc = config.node, config.node.etc
    label = "=".join(REAL_NODE_LABEL)
    containerd = Component(
        name="containerd",
        argv=(_host_binary("containerd"), f"--config={etc / 'containerd.toml'}"),
        port=None,
        health_url=str(node.containerd_socket),
        probe=Probe.UNIX_SOCKET,
    )
    kubelet = Component(
        name="kubelet",
        argv=(
            str(config.binary("kubelet")),
            f"--config={etc / 'kubelet.yaml'}",
            f"--kubeconfig={config.component_kubeconfig(identities.KUBELET.file_stem)}",
            f"--root-dir={node.root / 'kubelet'}",
            f"--cert-dir={node.root / 'kubelet' / 'pki'}",
            f"--hostname-override={node.name}",
            f"--node-ip={node.gateway}",
            f"--node-labels={label}",
            # Applied at registration only; `cluster` re-applies it to a node registered before.
            f"--register-with-taints={taint()}",
            "--v=2",
        ),
        port=KUBELET_HEALTHZ_PORT,
        health_url=f"http://127.0.0.1:{KUBELET_HEALTHZ_PORT}/healthz",
        probe=Probe.HTTP,
    )
    kube_proxy = Component(
        name="kube-proxy",
        argv=(
            str(config.binary("kube-proxy")),
            f"--kubeconfig={config.component_kubeconfig(identities.KUBE_PROXY.file_stem)}",
            f"--hostname-override={node.name}",
            "--proxy-mode=iptables",
            f"--cluster-cidr={node.pod_cidr}",
            # NodePorts answer on loopback (for tests, bench and demo) and on the bridge only.
            f"--nodeport-addresses=127.0.0.0/8,{node.pod_cidr}",
            "--iptables-localhost-nodeports=true",
            # Zero means "leave the host's conntrack sysctls alone".
            "--conntrack-max-per-core=0",
            "--conntrack-tcp-timeout-established=0s",
            "--conntrack-tcp-timeout-close-wait=0s",
            "--oom-score-adj=0",
            f"--healthz-bind-address=127.0.0.1:{KUBE_PROXY_HEALTHZ_PORT}",
            f"--metrics-bind-address=127.0.0.1:{KUBE_PROXY_METRICS_PORT}",
            "--v=2",
        ),
        port=KUBE_PROXY_HEALTHZ_PORT,
        health_url=f"http://127.0.0.1:{KUBE_PROXY_HEALTHZ_PORT}/livez",
        probe=Probe.HTTP,
    )
    return containerd, kubelet, kube_proxy


def missing_host_tools() -> tuple[str, ...]:
    return tuple(tool for tool in HOST_TOOLS if shutil.which(tool) is None) + tuple(
        f"{CNI_BIN_DIR}/{plugin}"
        for plugin in ("bridge", "host-local", "portmap", "loopback")
        if not (CNI_BIN_DIR / plugin).exists()
    )


def write_node_files(config: ClusterConfig, pki: Pki, registry: str) -> None:
    """Every file the node's processes read; ``registry`` is the local registry's address."""
    node, etc = config.node, config.node.etc
    for folder in (etc, node.root / "cni" / "net.d", node.root / "kubelet", _pod_logs(node)):
        folder.mkdir(parents=True, exist_ok=True)
    (etc / "containerd.toml").write_text(containerd_config(node, registry))
    for host in (ECR_REGISTRY_HOST, registry):
        mirror = etc / "certs.d" / host / "hosts.toml"
        mirror.parent.mkdir(parents=True, exist_ok=True)
        mirror.write_text(registry_mirror(registry))
    (node.root / "cni" / "net.d" / f"10-{CNI_NETWORK}.conflist").write_text(cni_network(node))
    # No cluster DNS here: a resolver on the pod's own loopback keeps lookups inside the pod
    # instead of sending them to the machine's nameserver.
    (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions ndots:1\n")
    (etc / "kubelet.yaml").write_text(yaml.safe_dump(kubelet_config(config, pki), sort_keys=False))
    static = _static_pods(node)
    static.mkdir(parents=True, exist_ok=True)
    (static / "pause-keeper.yaml").write_text(
        yaml.safe_dump(pause_keeper(registry), sort_keys=False)
    )
    for identity in (identities.KUBELET, identities.KUBE_PROXY):
        write_component_kubeconfig(config, pki, identity)


def containerd_config(node: NodeLayout, registry: str) -> str:
    """containerd with its own root, state and socket, so it never meets another containerd."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{node.root / "containerd"}"
state = "{node.run / "containerd"}"
oom_score = 0
[grpc]
  address = "{node.containerd_socket}"
[ttrpc]
  address = ""
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{node.root / "opt"}"
[{cri}]
  sandbox_image = "{pause_image(registry)}"
  # The CRI asks oom_score_adj -998 for sandboxes, which a machine without CAP_SYS_RESOURCE
  # refuses.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # Network namespaces under our own state folder instead of /var/run/netns.
  netns_mounts_under_state_dir = true
  max_container_log_line_size = 16384
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{_host_binary("runc")}"
        Root = "{node.run / "runc"}"
  [{cri}.cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{node.root / "cni" / "net.d"}"
    max_conf_num = 1
  [{cri}.registry]
    config_path = "{node.etc / "certs.d"}"
"""


def registry_mirror(registry: str) -> str:
    """hosts.toml sending pulls to the local registry over plain HTTP. ``server`` is where
    containerd falls back to when every host failed, so it is the local registry too: a failed
    pull must never go to the real ECR."""
    return f"""server = "http://{registry}"
[host."http://{registry}"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
"""


def cni_network(node: NodeLayout) -> str:
    """A bridge network on the node's own bridge (created beforehand by ``network``), no
    masquerade: pods reach the host and each other, nothing else."""
    network = {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": node.bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(node.root / "cni" / "networks"),
                    "ranges": [[{"subnet": node.pod_cidr, "gateway": node.gateway}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(network, indent=2) + "\n"


def _static_pods(node: NodeLayout) -> Path:
    return node.etc / "manifests"


def pause_keeper(registry: str) -> dict[str, object]:
    """A static pod whose one container runs the pause image, so the kubelet counts that
    image as in use and its image garbage collection never removes it.

    Debian's containerd 1.6 does not mark its sandbox image pinned (1.7 does), and kubelet 1.36
    has no flag left to name it, so on a disk past ``imageGCHighThresholdPercent`` the kubelet
    deleted the pause image with the old app images; every new pod then stuck in
    ContainerCreating, its sandbox image pulled from a registry that does not have it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "pause-keeper",
            "namespace": "kube-system",
            "labels": {"app.kubernetes.io/name": "pause-keeper"},
        },
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "tolerations": [{"operator": "Exists"}],
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65535,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "pause",
                    "image": pause_image(registry),
                    "imagePullPolicy": "Never",
                    "resources": {
                        "requests": {"cpu": "1m", "memory": "4Mi"},
                        "limits": {"memory": "16Mi"},
                    },
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def kubelet_config(config: ClusterConfig, pki: Pki) -> dict[str, object]:
    node = config.node
    socket = f"unix://{node.containerd_socket}"
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # The API server reaches the kubelet on the bridge (the node's InternalIP).
        "address": node.gateway,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": KUBELET_HEALTHZ_PORT,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki.ca.cert)},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(pki.kubelet_serving.cert),
        "tlsPrivateKeyFile": str(pki.kubelet_serving.key),
        "containerRuntimeEndpoint": socket,
        "imageServiceEndpoint": socket,
        "cgroupDriver": "cgroupfs",
        # This kind of machine has the hybrid cgroup v1 layout, no swap accounting and no
        # CAP_SYS_RESOURCE (so no negative OOM score and at most 20000 open files).
        "failCgroupV1": False,
        "failSwapOn": False,
        "oomScoreAdj": 0,
        "maxOpenFiles": 20000,
        "resolvConf": str(node.etc / "resolv.conf"),
        "clusterDomain": "cluster.local",
        "podCIDR": node.pod_cidr,
        "podLogsDir": str(_pod_logs(node)),
        "maxPods": 50,
        "staticPodPath": str(_static_pods(node)),
        # A shared disk that is already well used: the default 85/80 % image GC would start
        # soon; evict only when the disk is truly full.
        "imageGCHighThresholdPercent": 95,
        "imageGCLowThresholdPercent": 90,
        "evictionHard": {
            "memory.available": "200Mi",
            "nodefs.available": "3%",
            "imagefs.available": "3%",
            "nodefs.inodesFree": "3%",
        },
        "serializeImagePulls": True,
        "registerNode": True,
        "shutdownGracePeriod": "0s",
    }


def kubelet_api_binding() -> str:
    """Lets the API server's kubelet client identity use the kubelet API (logs, exec,
    port-forward)."""
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "retailmodel:apiserver-kubelet-client"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:kubelet-api-admin",
        },
        "subjects": [
            {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "User",
                "name": identities.APISERVER_KUBELET_CLIENT.user,
            }
        ],
    }
    return yaml.safe_dump(binding)


def _pod_logs(node: NodeLayout) -> Path:
    return node.root / "pod-logs"


def _host_binary(name: str) -> str:
    return shutil.which(name) or f"/usr/bin/{name}"
