"""linkgate.probes.host and .net without a lab: parsers, the PowerShell command builder, the Windows readers over
the answers kept in data/windows (Windows cannot run here), and the pure network helpers. The Linux readers
run against lab machines in selftests/lab/test_hosts_probes.py, and against this machine (local://) below."""

from __future__ import annotations

import base64
import ipaddress
import re
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest
import testinfra

from linkgate.environment import Auth, Connection, Encrypt, HostOS, HostSpec, SqlServer
from linkgate.firewall.flows import Flow, Verdict
from linkgate.firewall.windows import CMD_EXE_LIMIT, FIREWALL_SCRIPT, encoded_command, evaluate_windows
from linkgate.probes.facts import TargetUnreachable
from linkgate.probes.host import (
    NETWORKS_SCRIPT,
    OS_SCRIPT,
    KnownHostsParamikoBackend,
    Shell,
    instance_services,
    open_host,
    parse_mssql_conf,
    parse_networks,
    parse_os,
    parse_sector,
    parse_services,
    parse_startup,
    read_sql_host,
    read_windows_host,
    sector_script,
    services_script,
    startup_script,
)
from linkgate.probes.net import TcpConnect, azure_endpoints, diagnose, overlaps, read_resolution, read_tcp

WINDOWS = Path(__file__).parent / "data" / "windows"


def sample(name: str) -> str:
    return (WINDOWS / name).read_text(encoding="utf-8")


def decode(command: str) -> str:
    """The script inside a `powershell.exe … -EncodedCommand <base64>` line."""
    match = re.fullmatch(
        r"powershell\.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand "
        r"([A-Za-z0-9+/=]+)",
        command,
    )
    assert match, command
    return base64.b64decode(match.group(1)).decode("utf-16-le")


# --- mssql.conf ---------------------------------------------------------------------------------------


def test_mssql_conf_keys_of_the_documentation() -> None:
    conf = parse_mssql_conf(
        "[hadr]\nhadrenabled = 1\n\n[traceflag]\ntraceflag0 = 1204\ntraceflag1 = 1800\n"
        "traceflag = 9567\nnot_a_flag = 42\n\n[sqlagent]\nenabled = true\n"
    )
    assert conf.hadr_enabled
    assert conf.trace_flags == {1204, 1800, 9567}
    assert conf.agent_enabled


@pytest.mark.parametrize(
    ("text", "hadr", "agent"),
    [
        ("", False, False),  # absent keys: SQL Server's defaults
        ("[hadr]\nhadrenabled = 0\n[sqlagent]\nenabled = false\n", False, False),
        ("[HADR]\nHadrEnabled=1\n[sqlagent]\nenabled = TRUE\n", True, True),
    ],
)
def test_mssql_conf_defaults_and_spellings(text: str, hadr: bool, agent: bool) -> None:
    conf = parse_mssql_conf(text)
    assert (conf.hadr_enabled, conf.agent_enabled, conf.trace_flags) == (hadr, agent, frozenset())


def test_mssql_conf_syntax_error_names_the_file() -> None:
    with pytest.raises(ValueError, match=r"mssql\.conf is not valid INI: File contains no section headers.*line: 1"):
        parse_mssql_conf("hadrenabled = 1\n")


# --- PowerShell: the command builder ------------------------------------------------------------------


@pytest.mark.parametrize(
    "script",
    [
        services_script("MSSQLSERVER"),
        startup_script("SALES"),
        OS_SCRIPT,
        NETWORKS_SCRIPT,
        sector_script("L:\\log\\SalesDB_log.ldf"),
        FIREWALL_SCRIPT,
    ],
)
def test_every_script_travels_as_one_cmd_exe_line(script: str) -> None:
    line = encoded_command(script)
    assert decode(line) == script
    assert len(line) <= CMD_EXE_LIMIT
    assert "ConvertTo-Json" in script
    assert "$ErrorActionPreference = 'Stop'" in script


def test_too_long_a_script_is_refused() -> None:
    with pytest.raises(ValueError, match=r"cmd\.exe takes 8191"):
        encoded_command("Write-Output 1\n" * 400)


def test_instance_names_become_service_names_and_quoted_literals() -> None:
    assert instance_services("MSSQLSERVER") == ("MSSQLSERVER", "SQLSERVERAGENT")
    assert instance_services("SALES") == ("MSSQL$SALES", "SQLAgent$SALES")
    assert "Get-Service -Name 'MSSQL$SALES', 'SQLAgent$SALES'" in services_script("SALES")
    assert "$inst = 'O''Brien'" in startup_script("O'Brien")  # a quote cannot end the literal


# --- Windows answers --------------------------------------------------------------------------------


def test_services_default_instance() -> None:
    services = parse_services(sample("services-default.json"), "MSSQLSERVER")
    assert services.engine is not None
    assert services.engine.running
    assert services.engine.start_type == "Automatic"
    assert services.agent is not None
    assert not services.agent.running


def test_services_one_object_not_an_array_and_agent_missing() -> None:
    services = parse_services(sample("services-named-engine-only.json"), "SALES")
    assert services.engine is not None
    assert services.engine.name == "MSSQL$SALES"
    assert services.agent is None
    assert parse_services("", "SALES").engine is None  # Get-Service found nothing: ConvertTo-Json prints nothing


def test_startup_parameters_and_hadr_flag() -> None:
    with_flags = parse_startup(sample("startup-default.json"))
    assert with_flags.instance_id == "MSSQL16.MSSQLSERVER"
    assert with_flags.trace_flags == {1800, 9567}
    assert with_flags.hadr_enabled == 1
    assert with_flags.arguments[0].startswith("-dC:\\Program Files")
    without = parse_startup(sample("startup-no-flags.json"))
    assert (without.trace_flags, without.hadr_enabled) == (frozenset(), None)


def test_operating_system_server_or_client() -> None:
    server = parse_os(sample("os-server-2022.json"))
    assert server.is_server
    assert server.at_least_2012
    assert server.version == (10, 0, 20348)
    client = parse_os(sample("os-windows-11.json"))
    assert not client.is_server
    assert client.product_type == 1
    assert not parse_os('{"Caption":"Microsoft Windows Server 2008 R2 Standard","Version":"6.1.7601"}').at_least_2012


def test_sector_size_from_fsutil_fields() -> None:
    sector = parse_sector(sample("sector-4k.json"), "L:\\log\\SalesDB_log.ldf")
    assert (sector.source, sector.physical, sector.logical) == ("L:", 4096, 512)


def test_networks_leave_link_local_out() -> None:
    assert parse_networks(sample("networks.json")).networks == (ipaddress.IPv4Network("10.10.1.0/24"),)


@dataclass
class _Result:
    rc: int
    stdout: str
    stderr: str = ""


class RecordedWindowsHost:
    """Answers each encoded PowerShell command with the kept sample for its script (Windows cannot run here);
    a script without an answer fails as PowerShell does when access is denied."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.scripts: list[str] = []

    def run(self, command: str) -> _Result:
        script = decode(command)
        self.scripts.append(script)
        if script not in self.answers:
            return _Result(1, "", "Access is denied.")
        return _Result(0, self.answers[script])


def test_read_windows_host_one_call_per_fact_with_the_script_as_evidence() -> None:
    log = "L:\\log\\SalesDB_log.ldf"
    host = RecordedWindowsHost(
        {
            services_script("MSSQLSERVER"): sample("services-default.json"),
            startup_script("MSSQLSERVER"): sample("startup-default.json"),
            OS_SCRIPT: sample("os-server-2022.json"),
            sector_script(log): sample("sector-4k.json"),
        }
    )
    facts = read_windows_host(host, "sql02", log_path=log)
    assert len(host.scripts) == 6
    assert facts.services.get().engine is not None
    assert facts.startup.get().trace_flags == {1800, 9567}
    assert facts.os.get().is_server
    assert facts.sector_size.get().physical == 4096
    assert facts.firewall.error == "PowerShell failed (exit 1): Access is denied."
    assert facts.os.evidence[0].command.endswith(OS_SCRIPT)
    assert "Windows Server 2022 Datacenter" in facts.os.evidence[0].result


def test_firewall_json_is_kept_verbatim_for_the_evaluator() -> None:
    answer = sample("firewall-default.json")
    facts = read_windows_host(RecordedWindowsHost({FIREWALL_SCRIPT: answer}), "sql02")
    assert facts.firewall.get() == answer
    assert facts.services.error is not None
    # the sample has the shape linkgate.firewall's Windows evaluator reads: the article's allow rule decides
    inbound = evaluate_windows(answer, Flow.tcp("inbound", "10.20.0.0/24", "10.10.1.4", 5022))
    assert inbound.allowed is True
    assert "Allow TCP port 5022 inbound" in inbound.reason
    assert evaluate_windows(answer, Flow.tcp("outbound", "10.10.1.4", "10.20.0.0/24", "11000-11999")).allowed is True


def test_garbage_instead_of_json_is_a_fact_error_not_a_crash() -> None:
    facts = read_windows_host(RecordedWindowsHost({OS_SCRIPT: "WARNING: something\n{"}), "sql02")
    assert facts.os.error is not None
    assert facts.os.error.startswith("PowerShell did not answer in JSON")


# --- Linux readers on this machine (local://), loopback only ----------------------------------------


def test_resolution_and_tcp_from_the_local_host() -> None:
    shell = Shell(testinfra.get_host("local://"), "localhost")
    resolved, _ = read_resolution(shell, "localhost")
    assert ipaddress.IPv4Address("127.0.0.1") in resolved.addresses
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        connect, evidence = read_tcp(shell, "127.0.0.1", port)
        assert connect.connected
    refused, _ = read_tcp(shell, "127.0.0.1", port)
    assert refused.outcome == "refused"
    assert evidence[0].command == f"timeout 3 bash -c '</dev/tcp/127.0.0.1/{port}'"
    with pytest.raises(ValueError, match="not a host name"):
        read_tcp(shell, "127.0.0.1/1; reboot", 1)


def test_a_dead_transport_is_target_unreachable() -> None:
    class Dead:
        def run(self, command: str) -> _Result:
            raise ConnectionResetError("Connection reset by peer")

    with pytest.raises(TargetUnreachable, match="sql01 is unreachable: ConnectionResetError: Connection reset"):
        Shell(Dead(), "sql01").run("true")


# --- pure network helpers ---------------------------------------------------------------------------


def test_overlaps_names_each_collision() -> None:
    mi = ipaddress.IPv4Network("10.20.0.0/24")
    assert overlaps(mi, (ipaddress.IPv4Network("10.10.0.0/16"),), ipaddress.IPv4Address("10.10.1.4")) == ()
    found = overlaps(
        mi,
        (ipaddress.IPv4Network("10.20.0.0/22"), ipaddress.IPv4Network("192.168.1.0/24")),
        ipaddress.IPv4Address("10.20.0.77"),
    )
    assert found == (
        "10.20.0.0/22 overlaps the managed instance subnet 10.20.0.0/24",
        "SQL Server's address 10.20.0.77 is inside the managed instance subnet 10.20.0.0/24",
    )


def test_azure_endpoints_per_cloud() -> None:
    assert [e.host for e in azure_endpoints("AzureCloud")] == [
        "login.microsoftonline.com",
        "management.core.windows.net",
        "management.azure.com",
    ]
    assert {e.host for e in azure_endpoints("AzureUSGovernment")} >= {"login.microsoftonline.us"}
    assert all(e.port == 443 for e in azure_endpoints("AzureChinaCloud"))
    with pytest.raises(ValueError, match="unknown cloud 'Mars'"):
        azure_endpoints("Mars")


def test_diagnose_blames_the_firewall_or_the_path() -> None:
    flow = Flow.tcp("outbound", "198.18.1.10", "198.18.2.0/24", "11000-11999")
    failed = TcpConnect("node", 11002, "timed out", "exit 124")
    assert diagnose(failed, Verdict(flow, True, policy="chain output policy accept")) == (
        "TCP node:11002 timed out (exit 124), although the host firewall allows it (chain output policy accept): "
        "something in the path is blocking"
    )
    assert "the host firewall denies it" in diagnose(failed, Verdict(flow, False, policy="policy drop"))
    assert "indeterminate" in diagnose(failed, Verdict(flow, None, notes=("xt match conntrack",)))
    assert diagnose(failed, None) == "TCP node:11002 timed out (exit 124)"


# --- opening the host the environment declares (nothing connects until the first command) ----------


def test_open_host_passes_secrets_and_keys_to_testinfra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOST_PW", "p@ss:/w")
    with_password = open_host(
        HostSpec("paramiko", "198.18.9.9", "admin", 2222, None, "HOST_PW", None, None), "sql01", timeout=3
    )
    backend = with_password.backend
    assert (backend.host.user, backend.host.password, backend.host.port) == ("admin", "p@ss:/w", "2222")
    assert backend.timeout == 3
    openssh = open_host(
        HostSpec("ssh", "198.18.9.9", "admin", None, "/keys/id", None, None, "/keys/known"), "sql01", timeout=3
    ).backend
    assert openssh.ssh_identity_file == "/keys/id"
    assert openssh.ssh_extra_args == "-o UserKnownHostsFile=/keys/known -o StrictHostKeyChecking=yes"
    strict = open_host(
        HostSpec("paramiko", "198.18.9.9", "admin", None, "/keys/id", None, None, "/keys/known"), "sql01", timeout=3
    ).backend
    assert isinstance(strict, KnownHostsParamikoBackend)  # nothing connected yet: the client is made on first use
    assert (strict.known_hosts, strict.ssh_identity_file, strict.host.name) == ("/keys/known", "/keys/id", "198.18.9.9")


def test_open_host_without_its_password_variable_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOST_PW", raising=False)
    with pytest.raises(TargetUnreachable, match=r"environment variable HOST_PW .* is not set"):
        open_host(HostSpec("paramiko", "198.18.9.9", "admin", None, None, "HOST_PW", None, None), "sql01", timeout=3)


def test_no_declared_host_is_an_error_that_says_what_to_add() -> None:
    connection = Connection("198.18.1.10", 1433, Auth.SQL, "u", None, "auto", Encrypt.MANDATORY, True, None, None)
    server = SqlServer("sql01", connection, "MSSQLSERVER", HostOS.LINUX, 5022, None, ("SalesDB",), None)
    with pytest.raises(TargetUnreachable, match="sql01 is unreachable: no host: is declared for it"):
        read_sql_host(server, timeout=3)
