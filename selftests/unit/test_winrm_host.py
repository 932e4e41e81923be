"""Windows hosts over WinRM: testinfra's winrm backend through pywinrm, up to the TCP connection.

No Windows host runs here, so the PowerShell answers are proven on JSON samples elsewhere; what these tests
run for real is the path a user's Windows host takes: the environment's `host:` entry, the backend testinfra
builds from it (endpoint, NTLM, timeouts, the password from its variable), and pywinrm's HTTP stack meeting a
closed loopback port, which must become "unreachable" with the reason and without the password.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from linkgate.environment import EnvironmentFileError, HostSpec, load_environment
from linkgate.probes.facts import TargetUnreachable
from linkgate.probes.host import open_host, read_windows_host

PASSWORD = "p@ss:w/rd%1 #x"  # every character a URL would mangle


def winrm_spec(port: int | None, *, http: bool = False) -> HostSpec:
    return HostSpec("winrm", "127.0.0.1", "CORP\\linkgate", port, None, "LG_WINRM_PW", None, None, winrm_http=http)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(("http", "scheme"), [(False, "https"), (True, "http")])
def test_the_backend_is_testinfras_winrm_with_the_password_intact(
    monkeypatch: pytest.MonkeyPatch, http: bool, scheme: str
) -> None:
    monkeypatch.setenv("LG_WINRM_PW", PASSWORD)
    host = open_host(winrm_spec(5986, http=http), "sql01", timeout=7)
    args = host.backend.conn_args
    assert type(host.backend).__name__ == "WinRMBackend"
    assert args["endpoint"] == f"{scheme}://127.0.0.1:5986/wsman"
    assert (args["transport"], args["username"], args["password"]) == ("ntlm", "CORP\\linkgate", PASSWORD)
    assert (args["operation_timeout_sec"], args["read_timeout_sec"]) == (7, 8)  # pywinrm: read must exceed operation


def test_a_closed_port_is_unreachable_with_the_reason_and_no_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LG_WINRM_PW", PASSWORD)
    port = closed_port()
    host = open_host(winrm_spec(port), "sql01", timeout=2)
    with pytest.raises(TargetUnreachable) as caught:
        read_windows_host(host, "sql01")
    message = str(caught.value)
    assert f"127.0.0.1', port={port}" in message
    assert "Connection refused" in message
    assert PASSWORD not in message
    assert "p%40ss" not in message  # nor its URL-quoted form


def test_winrm_http_is_only_for_winrm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LG_PW", "x")
    text = """\
direction: SQL_TO_MI
sql_servers:
  sql01:
    server: sql01.example.com
    auth: sql
    user: linkgate
    password_env: LG_PW
    host_os: linux
    databases: [SalesDB]
    host:
      backend: ssh
      address: sql01.example.com
      winrm_http: true
managed_instance:
  name: mi01
  server: mi01.abc.database.windows.net
  auth: sql
  user: linkgate
  password_env: LG_PW
  fqdn: mi01.abc.database.windows.net
  subnet: 10.0.0.0/24
"""
    path = tmp_path / "env.yaml"
    path.write_text(text)
    expected = r"sql_servers\.sql01\.host\.winrm_http: only for backend winrm, not ssh"
    with pytest.raises(EnvironmentFileError, match=expected):
        load_environment(path)
