"""A self-signed server certificate for the lab's TLS endpoints (TDS and HTTPS).

Real SQL Server always has a certificate (a self-generated one when none is configured), and the
gate connects with `Encrypt=yes` as production does, so the lab needs one too. The certificate names
`localhost`, `127.0.0.1` and whatever addresses the caller adds (lab namespace addresses), so a client
that pins it (`ServerCertificate=`) or checks the host name against it succeeds on every lab address.

Making a key takes the `cryptography` package, whose import leaves about 17 MiB resident in the process
for good (its Rust extension and OpenSSL); a lab process needs it for nothing else, and a fleet runs
several. So a process that has not loaded it yet has the files made by a short-lived child process
(`python -m linkgate.lab.certs DIRECTORY [NAME…]`, a third of a second), and makes them itself only
when that fails or `cryptography` is loaded anyway (the self-tests, a lab with SSH hosts).
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import linkgate

if TYPE_CHECKING:
    from cryptography import x509

CERT_FILE = "lab-cert.pem"
KEY_FILE = "lab-key.pem"
ALWAYS_NAMED = ("localhost", "127.0.0.1")
CHILD_TIMEOUT_SECONDS = 60.0


def write_self_signed(directory: Path, names: Iterable[str] = ALWAYS_NAMED, *, days: int = 30) -> tuple[Path, Path]:
    """Write `lab-cert.pem` and `lab-key.pem` (mode 0600) into `directory`; return their paths.

    The common name is `localhost`; the subject alternative names are `localhost`, `127.0.0.1` and
    every name in `names`, each as an IP address entry when it parses as one, else as a DNS name.
    RSA 2048, because that is what SQL Server generates and every TLS stack of both drivers accepts.
    Made in a child process unless this one has `cryptography` loaded already (see the module docstring).
    """
    names = list(names)
    if "cryptography" not in sys.modules and _in_child(directory, names, days):
        return directory / CERT_FILE, directory / KEY_FILE
    return _write_self_signed(directory, names, days=days)


def _in_child(directory: Path, names: Sequence[str], days: int) -> bool:
    """Have `python -m linkgate.lab.certs` write the files; False (nothing written) when it could not."""
    package_root = str(Path(linkgate.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "linkgate.lab.certs", "--days", str(days), str(directory), *names]
    try:
        done = subprocess.run(
            command, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=CHILD_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and (directory / CERT_FILE).is_file() and (directory / KEY_FILE).is_file()


def _write_self_signed(directory: Path, names: Iterable[str], *, days: int) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

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
    from cryptography import x509

    out: list[x509.GeneralName] = []
    for name in dict.fromkeys(names):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m linkgate.lab.certs [--days N] DIRECTORY [NAME…]`: what `write_self_signed` runs in a child."""
    parser = argparse.ArgumentParser(prog="python -m linkgate.lab.certs", description=main.__doc__)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("directory", type=Path)
    parser.add_argument("names", nargs="*")
    options = parser.parse_args(argv)
    _write_self_signed(options.directory, options.names, days=options.days)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
