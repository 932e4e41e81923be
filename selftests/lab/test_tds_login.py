"""Logging in through the real ODBC drivers: every encryption mode, bad passwords, what LOGIN7 carries."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyodbc
import pytest

from linkgate.drivers import EncryptMode, OdbcDriver, connection_string
from linkgate.lab.certs import write_self_signed
from linkgate.lab.results import Column, ResultSet, SqlType
from linkgate.lab.tds import LabSqlServer
from linkgate.lab.tds.login import decode_password
from selftests.lab.conftest import PASSWORD, USER, Answer, CannedBackend, Served, sqlstate

pytestmark = pytest.mark.lab

ONE: dict[str, Answer] = {"select 1": [ResultSet((Column("", SqlType.INT),), [(1,)])]}


@pytest.mark.parametrize(
    ("kind", "encrypt", "trust", "mode"),
    [
        ("msodbc18", "off", False, "login-only"),  # Encrypt=no still protects LOGIN7, cert not checked
        ("msodbc18", "optional", False, "login-only"),
        ("msodbc18", "mandatory", True, "full"),  # production's Encrypt=yes, self-signed → TSC
        ("msodbc18", "strict", False, "strict"),  # TDS 8.0, pinned with ServerCertificate=
        ("freetds", "off", False, "none"),
        ("freetds", "optional", False, "login-only"),
        ("freetds", "mandatory", False, "full"),  # FreeTDS checks no certificate by default
    ],
)
def test_login_in_each_encryption_mode(
    serve: Callable[..., Served],
    request: pytest.FixtureRequest,
    kind: str,
    encrypt: EncryptMode,
    trust: bool,
    mode: str,
) -> None:
    driver: OdbcDriver = request.getfixturevalue(kind)
    served = serve(ONE)
    pinned = str(served.certificate) if encrypt == "strict" else None
    with served.connect(driver, encrypt=encrypt, trust=trust, server_certificate=pinned) as cnxn:
        assert cnxn.cursor().execute("select 1").fetchone()[0] == 1
    assert served.server.stats(served.backend.name).encryption == {mode: 1}


def test_driver18_rejects_the_self_signed_certificate_unless_trusted(
    serve: Callable[..., Served], msodbc18: OdbcDriver
) -> None:
    served = serve(ONE)
    with pytest.raises(pyodbc.Error) as caught:
        served.connect(msodbc18, encrypt="mandatory", trust=False)
    assert sqlstate(caught.value) == "08001"
    assert "certificate verify failed" in str(caught.value)


# Driver 18 on Linux verifies with OpenSSL's default store, which SSL_CERT_FILE replaces for one process (measured:
# `ServerCertificate=` only pins in Encrypt=strict; with Encrypt=yes it changes nothing). It matches the name against
# DNS names only, not the certificate's IP address: SERVER=127.0.0.1 needs HostNameInCertificate=localhost.
CONNECT_WITH_STORE = """
import sys, pyodbc
try:
    print(pyodbc.connect(sys.stdin.read(), timeout=5).cursor().execute("select 1").fetchone()[0])
except pyodbc.Error as e:
    print(e.args[0]); print(e.args[1])
"""


@pytest.mark.parametrize(
    ("trusted", "name", "expected"),
    [
        ("lab", "localhost", ["1"]),
        ("other", "localhost", ["08001", "certificate verify failed:self-signed certificate"]),
        ("lab", None, ["08001", "certificate verify failed:subject name does not match host name"]),
    ],
)
def test_driver18_verifies_the_certificate_against_a_ca_it_is_given(
    serve: Callable[..., Served],
    msodbc18: OdbcDriver,
    tmp_path: Path,
    trusted: str,
    name: str | None,
    expected: list[str],
) -> None:
    """Encrypt=yes;TrustServerCertificate=no, as production runs: the lab's certificate, trusted as a CA through the
    driver's OpenSSL store, lets the login through; another CA's store, or a name it does not carry, stops it."""
    served = serve(ONE)
    ca = served.certificate if trusted == "lab" else write_self_signed(tmp_path / "other")[0]
    text = connection_string(
        msodbc18,
        served.host,
        served.port,
        user=USER,
        password=PASSWORD,
        encrypt="mandatory",
        trust_server_certificate=False,
        app_name=served.app_name,
        extra={"HostNameInCertificate": name} if name else None,
    )
    (tmp_path / "empty").mkdir()
    done = subprocess.run(
        [sys.executable, "-c", CONNECT_WITH_STORE],
        input=text,
        capture_output=True,
        text=True,
        env={**os.environ, "SSL_CERT_FILE": str(ca), "SSL_CERT_DIR": str(tmp_path / "empty")},
        timeout=60,
        check=True,
    )
    lines = done.stdout.strip().splitlines()
    assert lines[0] == expected[0], done.stdout
    assert expected[-1] in lines[-1]
    if lines == ["1"]:
        assert served.server.stats(served.backend.name).encryption == {"full": 1}


def test_driver18_requires_encryption_that_a_server_without_certificate_cannot_give(msodbc18: OdbcDriver) -> None:
    with LabSqlServer() as bare:
        host, port = bare.add(CannedBackend(answers=dict(ONE)))
        text = connection_string(
            msodbc18,
            host,
            port,
            user=USER,
            password=PASSWORD,
            encrypt="mandatory",
            trust_server_certificate=True,
            login_timeout=5,
        )
        with pytest.raises(pyodbc.Error) as caught:
            pyodbc.connect(text, timeout=5)
    assert sqlstate(caught.value) == "08001"
    assert "Encryption not supported" in str(caught.value)


@pytest.mark.parametrize(
    ("kind", "state", "error_class"),
    [
        ("msodbc18", "28000", pyodbc.InterfaceError),
        ("freetds", "42000", pyodbc.ProgrammingError),
    ],
)
def test_wrong_password_is_login_failed_18456(
    serve: Callable[..., Served], request: pytest.FixtureRequest, kind: str, state: str, error_class: type[Exception]
) -> None:
    driver: OdbcDriver = request.getfixturevalue(kind)
    served = serve(ONE)
    with pytest.raises(pyodbc.Error) as caught:
        served.connect(driver, password="not-" + PASSWORD)
    assert type(caught.value) is error_class
    assert sqlstate(caught.value) == state
    assert "Login failed for user 'sa'. (18456)" in str(caught.value)
    stats = served.server.stats(served.backend.name)
    assert (stats.logins, stats.failed_logins) == (0, 1)


def test_login7_carries_user_password_database_app_and_host(serve: Callable[..., Served], driver: OdbcDriver) -> None:
    served = serve(ONE)
    with served.connect(driver, database="appdb") as cnxn:
        assert cnxn.getinfo(pyodbc.SQL_DATABASE_NAME) == "appdb"  # ENVCHANGE 1 after login
        assert cnxn.getinfo(pyodbc.SQL_DBMS_NAME) == "Microsoft SQL Server"  # LOGINACK program name
        assert cnxn.getinfo(pyodbc.SQL_DBMS_VER).startswith("16.00.4135")  # LOGINACK version
    assert served.backend.logins == [
        {"user": USER, "database": "appdb", "app_name": served.app_name, "host_name": socket.gethostname()}
    ]  # the password matched exactly, `;` and braces included, or the backend would have refused it


def test_password_obfuscation_is_undone() -> None:
    # 'a' is 61 00 in UCS-2; nibble-swapped 16 00; XOR A5 → B3 A5 (MS-TDS LOGIN7 Password).
    assert decode_password(bytes.fromhex("b3a5")) == "a"


def test_the_certificate_names_localhost_and_the_loopback_address(lab_certificate: tuple[Path, Path]) -> None:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(lab_certificate[0].read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert lab_certificate[1].stat().st_mode & 0o077 == 0
