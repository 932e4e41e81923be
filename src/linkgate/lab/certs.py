"""A self-signed server certificate for the lab's TLS endpoints (TDS and HTTPS).

Real SQL Server always has a certificate (a self-generated one when none is configured), and the
gate connects with `Encrypt=yes` as production does, so the lab needs one too. The certificate names
`localhost`, `127.0.0.1` and whatever addresses the caller adds (lab namespace addresses), so a client
that pins it (`ServerCertificate=`) or checks the host name against it succeeds on every lab address.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_FILE = "lab-cert.pem"
KEY_FILE = "lab-key.pem"
ALWAYS_NAMED = ("localhost", "127.0.0.1")


def write_self_signed(directory: Path, names: Iterable[str] = ALWAYS_NAMED, *, days: int = 30) -> tuple[Path, Path]:
    """Write `lab-cert.pem` and `lab-key.pem` (mode 0600) into `directory`; return their paths.

    The common name is `localhost`; the subject alternative names are `localhost`, `127.0.0.1` and
    every name in `names`, each as an IP address entry when it parses as one, else as a DNS name.
    RSA 2048, because that is what SQL Server generates and every TLS stack of both drivers accepts.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(_alternative_names([*ALWAYS_NAMED, *names])), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / CERT_FILE, directory / KEY_FILE
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
    return cert_path, key_path


def _alternative_names(names: Iterable[str]) -> list[x509.GeneralName]:
    """Deduplicated SAN entries, in first-seen order."""
    out: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out
