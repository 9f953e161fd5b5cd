"""The console's self-signed TLS certificate, made at first start when it serves beyond loopback.

A car on a shared Wi-Fi has no name a public CA would certify, so it makes its own key and
certificate once and keeps them in the state directory. Browsers warn once; the laptop tools
pin the certificate's SHA-256 fingerprint on first use and refuse a different one later.
"""
from __future__ import annotations

import datetime
import hashlib
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from car.console.state import write_private

VALID_DAYS = 3650
LOOPBACK_NAMES = ("localhost", "ip6-localhost")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def fingerprint(der: bytes) -> str:
    """SHA-256 of the DER certificate as colon-separated hex, as browsers show it."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    @property
    def fingerprint(self) -> str:
        return fingerprint(ssl.PEM_cert_to_DER_cert(self.cert.read_text()))


def _names(bind_host: str) -> tuple[list[x509.GeneralName], str]:
    hostname = socket.gethostname() or "racer"
    dns = {hostname, f"{hostname}.local", "localhost"}
    ips = {ipaddress.ip_address("127.0.0.1")}
    try:
        bound = ipaddress.ip_address(bind_host.strip("[]"))
        if not bound.is_unspecified:
            ips.add(bound)
    except ValueError:
        dns.add(bind_host)
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in sorted(dns)]
    names += [x509.IPAddress(ip) for ip in sorted(ips, key=str)]
    return names, hostname


def ensure_certificate(directory: Path, bind_host: str) -> Certificate:
    """The certificate in `directory`, created (EC P-256, 10 years) if there is none yet."""
    cert = Certificate(directory / "cert.pem", directory / "key.pem")
    if cert.cert.is_file() and cert.key.is_file():
        return cert
    key = ec.generate_private_key(ec.SECP256R1())
    names, hostname = _names(bind_host)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "racer car console")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    write_private(cert.key, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    write_private(cert.cert, certificate.public_bytes(serialization.Encoding.PEM))
    return cert
