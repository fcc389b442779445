"""The cluster's certificates and keys: one CA, the serving certificates of the API server, the
real node's kubelet and metrics-server, a client certificate per identity, and the
service-account signing key pair.

Files are created once and kept, so kubeconfigs and tokens stay valid across ``down``/``up``.
ECDSA P-256 keys: quick to generate, and accepted everywhere Kubernetes takes a key (serving,
client authentication, and ES256 service-account tokens).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from retail_tools.cluster.config import NodeLayout

VALIDITY = datetime.timedelta(days=3650)  # loopback-only development cluster
SERVICE_IP = "10.96.0.1"  # the first address of the service range: the `kubernetes` service
NODE = NodeLayout()
# Host clients use loopback; pods use the `kubernetes` Service or the bridge address it
# forwards to.
API_SERVER_IPS = ("127.0.0.1", SERVICE_IP, NODE.gateway)
API_SERVER_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
# The API server's aggregator verifies metrics-server as its Service's DNS name; it listens on
# the node's bridge address.
METRICS_SERVER_NAMES = ("metrics-server.kube-system.svc", "metrics-server.kube-system")


@dataclass(frozen=True)
class Identity:
    """Who a client certificate says its holder is: the user name and groups RBAC sees."""

    file_stem: str
    user: str
    groups: tuple[str, ...] = ()


ADMIN = Identity("admin", "retailmodel-admin", ("system:masters",))
CONTROLLER_MANAGER = Identity("kube-controller-manager", "system:kube-controller-manager")
SCHEDULER = Identity("kube-scheduler", "system:kube-scheduler")
# kwok plays every kubelet at once (node status, leases, pod status across all nodes), which no
# per-node identity allows; it runs as a cluster administrator, as kwokctl's clusters do.
KWOK = Identity("kwok", "kwok-controller", ("system:masters",))
# The API server's identity when it proxies to aggregated API servers (metrics-server, …), and
# the name those servers and the delegated authentication of the controller manager and the
# scheduler accept request headers from.
FRONT_PROXY = Identity("front-proxy-client", "front-proxy-client")
# The real node: the Node authorizer and NodeRestriction admit exactly this name and group.
KUBELET = Identity("kubelet-client", f"system:node:{NODE.name}", ("system:nodes",))
# Bound to system:node-proxier by the API server's bootstrap policy.
KUBE_PROXY = Identity("kube-proxy", "system:kube-proxy")
# The API server's identity towards kubelets (logs, exec, port-forward), bound to
# system:kubelet-api-admin by a ClusterRoleBinding the cluster applies.
APISERVER_KUBELET_CLIENT = Identity("apiserver-kubelet-client", "kube-apiserver-kubelet-client")
# metrics-server towards the API server (nodes, pods, delegated authentication) and the
# kubelet (/metrics/resource); bound to its ClusterRoles by ``cluster.metrics_server``.
METRICS_SERVER = Identity("metrics-server-client", "system:metrics-server")
CLIENTS = (
    ADMIN,
    CONTROLLER_MANAGER,
    SCHEDULER,
    KWOK,
    FRONT_PROXY,
    KUBELET,
    KUBE_PROXY,
    APISERVER_KUBELET_CLIENT,
    METRICS_SERVER,
)


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """Paths of every file, under one folder."""

    root: Path

    @property
    def ca(self) -> CertPair:
        return self._pair("ca")

    @property
    def apiserver(self) -> CertPair:
        return self._pair("apiserver")

    @property
    def kubelet_serving(self) -> CertPair:
        return self._pair("kubelet-serving")

    @property
    def metrics_server_serving(self) -> CertPair:
        return self._pair("metrics-server-serving")

    def client(self, identity: Identity) -> CertPair:
        return self._pair(identity.file_stem)

    @property
    def service_account_key(self) -> Path:
        return self.root / "sa.key"

    @property
    def service_account_public_key(self) -> Path:
        return self.root / "sa.pub"

    def _pair(self, stem: str) -> CertPair:
        return CertPair(self.root / f"{stem}.crt", self.root / f"{stem}.key")


def ensure_pki(root: Path) -> Pki:
    """Create whatever is missing under ``root`` and return the paths."""
    pki = Pki(root)
    root.mkdir(parents=True, exist_ok=True)
    if not (pki.ca.cert.exists() and pki.ca.key.exists()):
        # Certificates signed by a previous CA would no longer verify: start them over too.
        for stale in root.glob("*.crt"):
            stale.unlink()
        key = _new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "retailmodel-local-ca")])
        builder = (
            _base_builder(name, name, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        )
        _write(pki.ca, builder.sign(key, hashes.SHA256()), key)
    ca_cert = x509.load_pem_x509_certificate(pki.ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca.key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)

    server_auth = ExtendedKeyUsageOID.SERVER_AUTH
    names = _names(API_SERVER_NAMES, API_SERVER_IPS)
    # Reissued when the wanted names changed (a cluster made before the bridge address was).
    if _names_of(pki.apiserver.cert) != set(names):
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")])
        _issue(pki.apiserver, subject, ca_cert, ca_key, server_auth, names)
    kubelet_names = _names((NODE.name,), (NODE.gateway, "127.0.0.1"))
    if _names_of(pki.kubelet_serving.cert) != set(kubelet_names):
        _issue(pki.kubelet_serving, _subject(KUBELET), ca_cert, ca_key, server_auth, kubelet_names)
    metrics_names = _names(METRICS_SERVER_NAMES, (NODE.gateway,))
    if _names_of(pki.metrics_server_serving.cert) != set(metrics_names):
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "metrics-server")])
        _issue(pki.metrics_server_serving, subject, ca_cert, ca_key, server_auth, metrics_names)

    for identity in CLIENTS:
        pair = pki.client(identity)
        if not pair.cert.exists():
            client_auth = ExtendedKeyUsageOID.CLIENT_AUTH
            _issue(pair, _subject(identity), ca_cert, ca_key, client_auth, [])

    if not pki.service_account_key.exists():
        key = _new_key()
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        pki.service_account_public_key.write_bytes(public)
        _write_private(pki.service_account_key, key)
    return pki


def _subject(identity: Identity) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, identity.user)]
    attributes += [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in identity.groups
    ]
    return x509.Name(attributes)


def _names(dns: tuple[str, ...], ips: tuple[str, ...]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns]
    return names + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]


def _names_of(cert_path: Path) -> set[x509.GeneralName]:
    """The subject alternative names of an existing certificate; empty if there is none."""
    if not cert_path.exists():
        return set()
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    try:
        return set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return set()


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _base_builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _issue(
    pair: CertPair,
    subject: x509.Name,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    usage: x509.ObjectIdentifier,
    names: list[x509.GeneralName],
) -> None:
    key = _new_key()
    builder = (
        _base_builder(subject, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    _write(pair, builder.sign(ca_key, hashes.SHA256()), key)


def _write(pair: CertPair, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    _write_private(pair.key, key)
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.touch(mode=0o600)
    path.write_bytes(pem)
