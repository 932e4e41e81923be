"""The environment schema: what loads, and that every mistake names the file, the line and the key."""

from __future__ import annotations

import datetime as dt
import ipaddress
import textwrap
from pathlib import Path

import pytest

from linkgate.environment import (
    Auth,
    Direction,
    EnvironmentFileError,
    HostOS,
    load_environment,
    resolve_environment_path,
)

VALID = """\
direction: SQL_TO_MI
sql_servers:
  sql01:
    server: 10.0.0.5
    user: checker
    password_env: LG_TEST_PW
    host_os: linux
    address_seen_by_mi: 10.1.0.5
    databases: [SalesDB, HrDB]
managed_instance:
  name: mi01
  server: mi01.abc.database.windows.net
  user: checker
  password_env: LG_TEST_PW
  fqdn: mi01.abc.database.windows.net
  subnet: 10.50.0.0/24
waivers:
  - prerequisite: sql-trace-flag-1800
    target: sql01
    reason: 4 KB sectors on both sides
    owner: dba@example.com
    expires: 2027-01-31
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "prod.yaml"
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LG_TEST_PW", "s3cret-value")


def test_valid_file_loads_typed(tmp_path: Path) -> None:
    env = load_environment(write(tmp_path, VALID))
    assert env.name == "prod"
    assert env.direction is Direction.SQL_TO_MI
    sql = env.sql_servers["sql01"]
    assert sql.connection.port == 1433
    assert sql.connection.auth is Auth.SQL
    assert sql.host_os is HostOS.LINUX
    assert sql.databases == ("SalesDB", "HrDB")
    assert sql.address_seen_by_mi == ipaddress.IPv4Address("10.1.0.5")
    assert env.managed_instance.subnet == ipaddress.IPv4Network("10.50.0.0/24")
    assert env.waivers[0].expires == dt.date(2027, 1, 31)
    assert env.secrets() == ["s3cret-value"]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "    server: 10.0.0.5\n",
            "    server: 10.0.0.5\n    port: abc\n",
            "prod.yaml:5: sql_servers.sql01.port: expected an integer from 1 to 65535, got 'abc'",
        ),
        (
            "    databases: [SalesDB, HrDB]",
            "    databses: [SalesDB]",
            "prod.yaml:9: sql_servers.sql01.databses: unknown key (did you mean 'databases'?)",
        ),
        ("  subnet: 10.50.0.0/24", "  subnet: 10.50.0.0/33", "prod.yaml:16: managed_instance.subnet: expected an IPv4"),
        ("direction: SQL_TO_MI", "direction: sideways", "prod.yaml:1: direction: expected one of SQL_TO_MI, MI_TO_SQL"),
        (
            "    password_env: LG_TEST_PW\n    host_os",
            "    password: hunter2\n    host_os",
            "prod.yaml:6: sql_servers.sql01.password: unknown key",
        ),
        ("    expires: 2027-01-31", "    expires: someday", "waivers.[0].expires: expected a date such as 2027-01-31"),
    ],
)
def test_mistakes_name_file_line_and_key(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in VALID
    with pytest.raises(EnvironmentFileError) as e:
        load_environment(write(tmp_path, VALID.replace(old, new, 1)))
    assert expected in str(e.value)
    assert "hunter2" not in str(e.value)


def test_missing_secret_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LG_TEST_PW")
    with pytest.raises(
        EnvironmentFileError,
        match=r"sql_servers\.sql01\.password_env: environment variable "
        r"LG_TEST_PW is not set",
    ):
        load_environment(write(tmp_path, VALID))


def test_unknown_waiver_id_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(
        EnvironmentFileError,
        match=r"waivers\.\[0\]\.prerequisite: unknown prerequisite id "
        r"'sql-trace-flag-1800'",
    ):
        load_environment(write(tmp_path, VALID), known_ids={"sql-sysadmin"}.__contains__)


def test_waiver_needs_every_field(tmp_path: Path) -> None:
    text = VALID.replace("    owner: dba@example.com\n", "")
    with pytest.raises(EnvironmentFileError, match=r"waivers\.\[0\]\.owner: required key is missing"):
        load_environment(write(tmp_path, text))


def test_not_yaml_reports_line(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentFileError, match=r"prod\.yaml:3: not valid YAML"):
        load_environment(write(tmp_path, "direction: SQL_TO_MI\nsql_servers:\n  a: b: c\n"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentFileError, match="cannot read the environment file"):
        load_environment(tmp_path / "nope.yaml")


def test_env_name_resolves_under_environments(tmp_path: Path) -> None:
    assert resolve_environment_path("prod", tmp_path) == tmp_path / "environments" / "prod.yaml"
    assert resolve_environment_path(str(tmp_path / "x.yaml"), tmp_path) == tmp_path / "x.yaml"


def test_shipped_environments_are_valid(project_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "LINKGATE_LAB_PASSWORD",
        "LINKGATE_SQL01_PASSWORD",
        "LINKGATE_SQL01_HOST_PASSWORD",
        "LINKGATE_MI_PASSWORD",
    ):
        monkeypatch.setenv(var, "x-secret-x")
    for name in ("demo", "example"):
        env = load_environment(project_root / "environments" / f"{name}.yaml")
        assert env.sql_servers


CLIENT_HOST = """\
client_host:
  backend: winrm
  address: dba-ws01.corp.example.com
  user: CORP\\linkgate
  password_env: LG_TEST_PW
"""


def test_client_host_is_optional_and_typed_like_a_sql_host(tmp_path: Path) -> None:
    assert load_environment(write(tmp_path, VALID)).client_host is None
    env = load_environment(write(tmp_path, VALID + CLIENT_HOST))
    assert env.client_host is not None
    assert (env.client_host.backend, env.client_host.address, env.client_host.user) == (
        "winrm",
        "dba-ws01.corp.example.com",
        "CORP\\linkgate",
    )
    assert env.client_host.testinfra_spec() == "winrm://CORP\\linkgate@dba-ws01.corp.example.com"
    assert env.secrets() == ["s3cret-value"]  # its password is redacted like the others


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "  backend: winrm\n",
            "  backend: rdp\n",
            "prod.yaml:24: client_host.backend: expected one of ssh, paramiko, winrm, local, got 'rdp'",
        ),
        (
            "  address: dba-ws01.corp.example.com\n",
            "  adress: dba-ws01.corp.example.com\n",
            "prod.yaml:25: client_host.adress: unknown key (did you mean 'address'?)",
        ),
        ("  address: dba-ws01.corp.example.com\n", "", "client_host.address: required with backend winrm"),
        (
            "  password_env: LG_TEST_PW\n",
            "  password_env: LG_NOT_SET\n",
            "client_host.password_env: environment variable LG_NOT_SET is not set",
        ),
    ],
)
def test_client_host_mistakes_name_file_line_and_key(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in CLIENT_HOST
    with pytest.raises(EnvironmentFileError) as e:
        load_environment(write(tmp_path, VALID + CLIENT_HOST.replace(old, new, 1)))
    assert expected in str(e.value)


def test_client_host_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentFileError, match=r"prod\.yaml:23: client_host: expected a mapping"):
        load_environment(write(tmp_path, VALID + "client_host: dba-ws01\n"))
