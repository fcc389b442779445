"""The generated credentials: a CA that signs a serving certificate for loopback and the
client identities RBAC sees."""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from retail_tools.cluster.pki import ADMIN, SCHEDULER, ensure_pki


def test_certificates_chain_to_the_ca_and_carry_the_identities(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path)

    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    context.load_cert_chain(str(pki.client(ADMIN).cert), str(pki.client(ADMIN).key))
    serving = x509.load_pem_x509_certificate(pki.apiserver.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(pki.ca.cert.read_bytes())
    serving.verify_directly_issued_by(ca)
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    assert "kubernetes.default.svc" in names.get_values_for_type(x509.DNSName)

    admin = x509.load_pem_x509_certificate(pki.client(ADMIN).cert.read_bytes())
    groups = [a.value for a in admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert groups == ["system:masters"]
    scheduler = x509.load_pem_x509_certificate(pki.client(SCHEDULER).cert.read_bytes())
    common_name = scheduler.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert common_name == "system:kube-scheduler"


def test_existing_credentials_are_kept_and_a_new_ca_reissues_the_rest(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path)
    first_admin = pki.client(ADMIN).cert.read_bytes()
    assert ensure_pki(tmp_path).client(ADMIN).cert.read_bytes() == first_admin

    pki.ca.key.unlink()
    ensure_pki(tmp_path)
    reissued = x509.load_pem_x509_certificate(pki.client(ADMIN).cert.read_bytes())
    assert pki.client(ADMIN).cert.read_bytes() != first_admin
    reissued.verify_directly_issued_by(x509.load_pem_x509_certificate(pki.ca.cert.read_bytes()))
