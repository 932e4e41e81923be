"""ODBC driver discovery and each driver's connection-string dialect."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from linkgate import drivers
from linkgate.drivers import DriverNotFound, OdbcDriver, connection_string, find_drivers, resolve
from linkgate.lab.results import Column, ResultSet, SqlType
from selftests.lab.conftest import PASSWORD, USER, Served

ROOT = Path(__file__).resolve().parents[2]
MS = OdbcDriver("msodbc18", "ODBC Driver 18 for SQL Server", Path("/opt/msodbc/libmsodbcsql-18.so"), registered=False)
TDS = OdbcDriver("freetds", "FreeTDS", None, registered=True)


def test_both_drivers_are_found_here_driver18_first() -> None:
    found = find_drivers()
    assert [d.kind for d in found] == ["msodbc18", "freetds"], "this machine has both (see the README's setup)"
    for driver in found:
        assert driver.registered or (driver.path is not None and driver.path.is_file())


def test_driver18_comes_from_the_wheel_when_not_registered() -> None:
    ms = find_drivers()[0]
    if ms.registered:
        pytest.skip("Driver 18 is registered with unixODBC on this machine; the wheel fallback is not in use")
    assert ms.path is not None
    assert "mssql_python_odbc" in ms.path.parts
    assert ms.path.name.startswith("libmsodbcsql-18")
    assert ms.keyword == str(ms.path)


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("auto", "msodbc18"),
        ("msodbc18", "msodbc18"),
        ("ODBC Driver 18 for SQL Server", "msodbc18"),
        ("freetds", "freetds"),
        ("FreeTDS", "freetds"),
    ],
)
def test_resolve_names_kinds_and_auto(spec: str, kind: str) -> None:
    assert resolve(spec).kind == kind


def test_resolve_accepts_a_library_path() -> None:
    library = find_drivers()[0].path
    assert library is not None
    assert resolve(str(library)).kind == "msodbc18"


def test_resolve_names_what_exists_when_nothing_matches() -> None:
    with pytest.raises(DriverNotFound, match=r"'ODBC Driver 17 for SQL Server' not found \(available: msodbc18"):
        resolve("ODBC Driver 17 for SQL Server")


def test_driver18_dialect() -> None:
    text = connection_string(
        MS,
        "sql01.example.com",
        1433,
        user="gate",
        password="pw",
        database="msdb",
        encrypt="mandatory",
        trust_server_certificate=False,
        extra={"HostNameInCertificate": "*.example.com"},
    )
    assert text == (
        "DRIVER=/opt/msodbc/libmsodbcsql-18.so;SERVER=tcp:sql01.example.com,1433;UID=gate;PWD=pw;"
        "DATABASE=msdb;APP=linkgate;Encrypt=yes;TrustServerCertificate=no;"
        "HostNameInCertificate=*.example.com;"
    )


@pytest.mark.parametrize(
    ("encrypt", "ms", "tds"),
    [
        ("strict", "Encrypt=strict", "Encryption=strict"),
        ("mandatory", "Encrypt=yes", "Encryption=require"),
        ("optional", "Encrypt=optional", "Encryption=request"),
        ("off", "Encrypt=no", "Encryption=off"),
    ],
)
def test_encryption_vocabulary(encrypt: drivers.EncryptMode, ms: str, tds: str) -> None:
    assert f";{ms};" in connection_string(MS, "h", 1, user=None, password=None, encrypt=encrypt)
    assert f";{tds};" in connection_string(TDS, "h", 1, user=None, password=None, encrypt=encrypt)


def test_freetds_dialect_and_server_certificate_only_for_driver18() -> None:
    text = connection_string(TDS, "10.0.0.5", 14330, user="gate", password="pw", server_certificate="/c.pem")
    assert text == (
        "DRIVER=FreeTDS;SERVER=10.0.0.5;PORT=14330;TDS_Version=7.4;UID=gate;PWD=pw;DATABASE=master;"
        "APP=linkgate;Encryption=require;"
    )
    assert ";ServerCertificate=/c.pem;" in connection_string(
        MS, "h", 1, user=None, password=None, encrypt="strict", server_certificate="/c.pem"
    )


def test_quoting_follows_each_drivers_parser() -> None:
    """Measured: Driver 18 unescapes `}}`; FreeTDS 1.3 keeps braces verbatim up to the `}` before `;`."""
    assert "PWD={a;b}}c};" in connection_string(MS, "h", 1, user="u", password="a;b}c")
    assert "PWD={a;b}c};" in connection_string(TDS, "h", 1, user="u", password="a;b}c")
    assert "PWD= x;" not in connection_string(MS, "h", 1, user="u", password=" x")
    with pytest.raises(ValueError, match="FreeTDS"):
        connection_string(TDS, "h", 1, user="u", password="a};b")


@pytest.mark.lab
@pytest.mark.parametrize("password", ["a;b}c", "}{;", " edge "])
def test_awkward_passwords_reach_the_server_intact(
    serve: Callable[..., Served], driver: OdbcDriver, password: str
) -> None:
    served = serve()
    served.backend.users = {USER: password}
    with served.connect(driver, password=password):
        pass
    assert served.backend.logins[-1]["user"] == USER


@pytest.mark.lab
def test_a_registered_driver18_is_used_by_name(serve: Callable[..., Served], tmp_path: Path) -> None:
    """With Driver 18 in odbcinst.ini (ODBCSYSINI), discovery reports it registered and DRIVER={name} works."""
    library = find_drivers()[0].path
    (tmp_path / "odbcinst.ini").write_text(f"[ODBC Driver 18 for SQL Server]\nDriver={library}\n")
    served = serve({"select 1": [ResultSet((Column("", SqlType.INT),), [(1,)])]})
    script = (
        "import json, pyodbc\n"
        "from linkgate.drivers import connection_string, find_drivers\n"
        "ms = find_drivers()[0]\n"
        f"text = connection_string(ms, {served.host!r}, {served.port}, user={USER!r}, password={PASSWORD!r},"
        " trust_server_certificate=True)\n"
        "value = pyodbc.connect(text, timeout=5).cursor().execute('select 1').fetchone()[0]\n"
        "print(json.dumps([ms.registered, ms.keyword, value]))\n"
    )
    env = {"ODBCSYSINI": str(tmp_path), "PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(done.stdout) == [True, "ODBC Driver 18 for SQL Server", 1]
