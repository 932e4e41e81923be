"""linkgate.probes.host and .net without a lab: parsers, the PowerShell command builder, the Windows readers over
the answers kept in data/windows (Windows cannot run here), and the pure network helpers. The Linux readers
run against lab machines in selftests/lab/test_hosts_probes.py, and against this machine (local://) below."""

from __future__ import annotations

import base64
import datetime as dt
import importlib.util
import ipaddress
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import testinfra

from linkgate.catalog import Prereq
from linkgate.environment import Auth, Connection, Encrypt, HostOS, HostSpec, SqlServer, load_environment
from linkgate.firewall.flows import Flow, Verdict
from linkgate.firewall.windows import CMD_EXE_LIMIT, FIREWALL_SCRIPT, encoded_command, evaluate_windows
from linkgate.gate import Gate, Options
from linkgate.gather import FactsCache
from linkgate.outcomes import remediation_values
from linkgate.probes.facts import EvidenceRecorder, Fact, FactUnavailable, TargetUnreachable
from linkgate.probes.host import (
    CLUSTER_SCRIPT,
    NETWORKS_SCRIPT,
    OS_SCRIPT,
    SSMS_SCRIPT,
    Deferred,
    KnownHostsParamikoBackend,
    Shell,
    SqlHost,
    instance_services,
    open_host,
    parse_cluster,
    parse_mssql_conf,
    parse_networks,
    parse_os,
    parse_sector,
    parse_services,
    parse_ssms,
    parse_startup,
    read_client_host,
    read_local_epoch,
    read_sql_host,
    read_windows_host,
    sector_script,
    services_script,
    startup_script,
)
from linkgate.probes.net import (
    HostNetwork,
    TcpConnect,
    azure_endpoints,
    diagnose,
    listeners_script,
    overlaps,
    parse_listeners,
    read_listeners,
    read_resolution,
    read_tcp,
)
from linkgate.redaction import Redactor
from linkgate.targets import Kind, targets_for
from linkgate.views import ClientHostView, SqlHostView
from selftests.unit.test_environment import VALID, write

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


def test_mssql_conf_differences_name_both_sides() -> None:
    conf = parse_mssql_conf("[hadr]\nhadrenabled = 1\n[traceflag]\ntraceflag0 = 1800\ntraceflag1 = 9567\n")
    assert conf.differences(hadr_enabled=True, trace_flags=frozenset({1800, 9567}), agent_running=False) == ()
    assert conf.differences(hadr_enabled=False, trace_flags=frozenset({1800}), agent_running=True) == (
        "hadr.hadrenabled is 1 but SQL Server runs with IsHadrEnabled = 0",
        "[traceflag] lists trace flags 1800 9567 but SQL Server runs trace flags 1800",
        "sqlagent.enabled is not set but SQL Server Agent is running",
    )
    # What SQL Server did not say is not compared; an empty [traceflag] is named as such.
    bare = parse_mssql_conf("[sqlagent]\nenabled = true\n")
    assert bare.differences(hadr_enabled=None, trace_flags=frozenset({3226}), agent_running=None) == (
        "[traceflag] lists no trace flags but SQL Server runs trace flags 3226",
    )


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
        CLUSTER_SCRIPT,
        SSMS_SCRIPT,
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


# --- HOST-W-06: the failover cluster (SQL Server 2016) ----------------------------------------------


def test_cluster_script_reads_the_feature_then_the_nodes() -> None:
    assert "(Get-WindowsFeature -Name Failover-Clustering).Installed" in CLUSTER_SCRIPT
    assert "Get-ClusterNode | Select-Object Name, @{n='State';e={[string]$_.State}}" in CLUSTER_SCRIPT
    # Get-ClusterNode runs only where the feature and its module are, and its error is kept, not fatal
    assert "if ($feature -and $module) { try {" in CLUSTER_SCRIPT


def test_cluster_single_node_up() -> None:
    cluster = parse_cluster(sample("cluster-single-node-up.json"))
    assert cluster.feature_installed is True
    assert cluster.local_node is not None
    assert (cluster.local_node.name, cluster.local_node.state) == ("SQL16A", "Up")
    assert cluster.error is None


def test_cluster_local_node_found_among_others_in_the_ps51_array_shape() -> None:
    cluster = parse_cluster(sample("cluster-local-node-paused.json"))
    assert [n.name for n in cluster.nodes] == ["sql16a", "SQL16B"]
    assert cluster.local_node is not None
    assert cluster.local_node.state == "Paused"  # matched case-insensitively, not the other node's Up


def test_cluster_missing_feature_and_missing_cluster() -> None:
    missing = parse_cluster(sample("cluster-feature-missing.json"))
    assert (missing.feature_installed, missing.nodes, missing.local_node) == (False, (), None)
    none = parse_cluster(sample("cluster-no-cluster.json"))
    assert none.feature_installed is True
    assert none.local_node is None
    assert none.error is not None
    assert none.error.startswith("The cluster service is not running. Make sure")  # whitespace folded to one line
    no_windows_feature = parse_cluster('{"feature_installed":null,"cluster_module":false,"computer":"PC1"}')
    assert no_windows_feature.feature_installed is None


def test_cluster_without_its_powershell_module_is_unreadable_not_failed() -> None:
    with pytest.raises(ValueError, match="RSAT-Clustering-PowerShell"):
        parse_cluster(sample("cluster-no-module.json"))


def test_cluster_is_read_only_when_first_asked_and_once() -> None:
    host = RecordedWindowsHost({CLUSTER_SCRIPT: sample("cluster-single-node-up.json")})
    facts = read_windows_host(host, "sql16")
    assert CLUSTER_SCRIPT not in host.scripts
    first = facts.cluster()
    assert facts.cluster() is first
    assert host.scripts.count(CLUSTER_SCRIPT) == 1
    assert first.get().local_node is not None
    assert first.evidence[0].command.endswith(CLUSTER_SCRIPT)


def test_deferred_reads_once_under_concurrent_first_use() -> None:
    calls: list[int] = []
    started = threading.Barrier(8)

    def read() -> Fact[int]:
        calls.append(1)
        return Fact("n", "t", (), 42)

    deferred = Deferred(read)
    results: list[Fact[int]] = []

    def ask() -> None:
        started.wait()
        results.append(deferred())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert {id(r) for r in results} == {id(results[0])}


# --- the Windows checks of tests/host, run on the recorded answers ------------------------------------


def _gate_module(relative: str) -> Any:
    """One module of the gate's tests/, imported under the name linkgate.docs.load_catalog gives it (so it is
    registered once), without importing the others."""
    path = Path(__file__).resolve().parents[2] / "tests" / relative
    name = "linkgate_gate_" + "_".join(Path(relative).with_suffix("").parts)
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


windows_checks: Any = _gate_module("host/test_windows.py")


def windows_view(instance: str, answers: dict[str, str]) -> tuple[SqlHostView, EvidenceRecorder]:
    """A SqlHostView over a Windows host that answers with the kept samples, as the gate builds it."""
    connection = Connection("198.18.1.20", 1433, Auth.SQL, "u", None, "auto", Encrypt.MANDATORY, True, None, None)
    server = SqlServer("sql02", connection, instance, HostOS.WINDOWS, 5022, None, ("SalesDB",), None)
    shell = Shell(RecordedWindowsHost(answers), "sql02")
    facts = read_windows_host(shell.host, "sql02", instance=instance)
    recorder = EvidenceRecorder()
    host = SqlHost("sql02", HostOS.WINDOWS, shell, None, facts)
    return SqlHostView(server, host, HostNetwork(shell, windows=True), recorder), recorder


def prereq_of_check(name: str) -> Prereq:
    marker = getattr(windows_checks, name).pytestmark[0]
    prereq: Prereq = marker.args[0]
    return prereq


def failure(check: str, view: SqlHostView) -> str:
    with pytest.raises(AssertionError) as caught:
        getattr(windows_checks, check)(view)
    return str(caught.value).split("\nassert ")[0]


@pytest.mark.parametrize(
    ("sample_name", "message"),
    [
        ("cluster-single-node-up.json", None),
        ("cluster-feature-missing.json", "Get-WindowsFeature: the Failover-Clustering feature is not installed"),
        ("cluster-no-cluster.json", "SQL16A is not a cluster node (The cluster service is not running. Make sure"),
        ("cluster-local-node-paused.json", "cluster node sql16a is Paused, not Up"),
    ],
)
def test_failover_clustering_check(sample_name: str, message: str | None) -> None:
    view, recorder = windows_view("MSSQLSERVER", {CLUSTER_SCRIPT: sample(sample_name)})
    if message is None:
        windows_checks.test_host_windows_failover_clustering(view)
    else:
        assert failure("test_host_windows_failover_clustering", view).startswith(message)
    assert [e.command.endswith(CLUSTER_SCRIPT) for e in recorder.items] == [True]  # the evidence it decided on


def test_failover_clustering_unreadable_is_an_error_with_evidence() -> None:
    view, recorder = windows_view("MSSQLSERVER", {CLUSTER_SCRIPT: sample("cluster-no-module.json")})
    with pytest.raises(FactUnavailable, match=r"could not read the failover cluster from sql02: .*RSAT-Clustering"):
        windows_checks.test_host_windows_failover_clustering(view)
    assert '"cluster_module":false' in recorder.items[0].result  # what the host answered is shown


endpoint_checks: Any = _gate_module("host/test_endpoint.py")


@pytest.mark.parametrize(
    ("sample_name", "message"),
    [
        ("listeners-5022-dual-stack.json", None),
        ("listeners-5022-none.json", "nothing listens on TCP 5022 on the host of sql02"),
        ("listeners-5022-loopback.json", "TCP 5022 listens on 127.0.0.1 only: loopback"),
    ],
)
def test_endpoint_listener_check(sample_name: str, message: str | None) -> None:
    view, recorder = windows_view("MSSQLSERVER", {listeners_script(5022): sample(sample_name)})
    if message is None:
        endpoint_checks.test_host_endpoint_listener(view)
    else:
        with pytest.raises(AssertionError) as caught:
            endpoint_checks.test_host_endpoint_listener(view)
        assert str(caught.value).split("\nassert ")[0] == message
    (evidence,) = recorder.items  # the listing it decided on, the script decoded
    assert evidence.command.endswith(listeners_script(5022))


def test_endpoint_listener_applies_where_sql_server_has_a_mirroring_endpoint() -> None:
    prereq: Prereq = endpoint_checks.test_host_endpoint_listener.pytestmark[0].args[0]

    class Context:
        def __init__(self, endpoints: tuple[str, ...]) -> None:
            self.endpoints = endpoints

        def fact(self, name: str) -> object:
            assert name == "sql.endpoints"
            return self.endpoints

    assert prereq.applies.holds(Context(("Hadr_endpoint",)))  # type: ignore[arg-type]
    assert not prereq.applies.holds(Context(()))  # type: ignore[arg-type]
    assert prereq.applies.description == "a database mirroring endpoint already exists"


def test_failover_clustering_applies_to_sql_server_2016_on_windows_only() -> None:
    prereq = prereq_of_check("test_host_windows_failover_clustering")
    assert (prereq.id, prereq.severity.value, prereq.spec) == (
        "host-windows-failover-clustering",
        "required",
        "HOST-W-06",
    )
    assert prereq.applies.description == "SQL Server runs on Windows and SQL Server is 2016 (major version 13)"

    @dataclass
    class Context:
        host_os: str
        major: int

        @property
        def target(self) -> Any:
            return self

        def fact(self, name: str) -> object:
            assert name == "sql.major"
            return self.major

    holds = prereq.applies.holds
    assert holds(Context("windows", 13))  # type: ignore[arg-type]  # the Context protocol's two members used
    assert not holds(Context("windows", 16))  # type: ignore[arg-type]
    assert not holds(Context("linux", 13))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("instance", "sample_name", "message"),
    [
        ("SALES", "services-named-running.json", None),
        ("MSSQLSERVER", "services-default.json", "SQLSERVERAGENT is Stopped (start type Manual)"),
        ("SALES", "services-named-engine-only.json", "Get-Service finds no SQLAgent$SALES service"),
    ],
)
def test_agent_service_check(instance: str, sample_name: str, message: str | None) -> None:
    view, _ = windows_view(instance, {services_script(instance): sample(sample_name)})
    if message is None:
        windows_checks.test_host_windows_agent_service(view)
    else:
        assert failure("test_host_windows_agent_service", view).startswith(message)


def test_service_remediations_name_the_named_instances_services() -> None:
    engine = prereq_of_check("test_host_windows_services")
    named = engine.remediation_for(server="sql02", instance="SALES", engine_service="MSSQL$SALES")
    assert named.endswith("Set-Service -Name 'MSSQL$SALES' -StartupType Automatic; Start-Service -Name 'MSSQL$SALES'")
    assert "'SALES'" not in named  # the instance name is not a service name
    default = engine.remediation_for(server="sql02", instance="MSSQLSERVER", engine_service="MSSQLSERVER")
    assert default.endswith("Start-Service -Name 'MSSQLSERVER'")
    agent = prereq_of_check("test_host_windows_agent_service")
    assert agent.severity.value == "recommended"
    assert agent.remediation_for(server="sql02", agent_service="SQLAgent$SALES").endswith(
        "Set-Service -Name 'SQLAgent$SALES' -StartupType Automatic; Start-Service -Name 'SQLAgent$SALES'"
    )


@pytest.mark.parametrize(
    ("instance", "engine", "agent"),
    [("SALES", "MSSQL$SALES", "SQLAgent$SALES"), ("mssqlserver", "MSSQLSERVER", "SQLSERVERAGENT")],
)
def test_remediation_values_name_the_instances_services(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, instance: str, engine: str, agent: str
) -> None:
    monkeypatch.setenv("LG_TEST_PW", "s3cret-value")
    text = VALID.replace("    host_os: linux\n", f"    host_os: windows\n    instance: {instance}\n")
    env = load_environment(write(tmp_path, text))
    gate = Gate(
        env,
        Options(tmp_path, fail_on_recommended=False, active_probes=False, today=dt.date(2026, 1, 1)),
        FactsCache(env),
        Redactor(),
        is_controller=True,
    )
    (target,) = targets_for(env, Kind.HOST)
    values = remediation_values(gate, target)
    assert (values["engine_service"], values["agent_service"]) == (engine, agent)
    assert "engine_service" not in remediation_values(gate, targets_for(env, Kind.CLIENT)[0])  # no server there


def test_engine_service_check_names_the_missing_named_service() -> None:
    view, _ = windows_view("SALES", {services_script("SALES"): ""})
    assert failure("test_host_windows_services", view) == "Get-Service finds no MSSQL$SALES service"


@pytest.mark.parametrize(
    ("sample_name", "message"),
    [
        ("startup-default.json", None),
        (
            "startup-hadr-off.json",
            "HKLM:\\SOFTWARE\\Microsoft\\Microsoft SQL Server\\MSSQL13.SALES\\MSSQLServer\\HADR: HADR_Enabled is 0",
        ),
        (
            "startup-no-flags.json",
            "HKLM:\\SOFTWARE\\Microsoft\\Microsoft SQL Server\\MSSQL16.MSSQLSERVER\\MSSQLServer"
            "\\HADR: HADR_Enabled is not set",
        ),
    ],
)
def test_hadr_registry_check(sample_name: str, message: str | None) -> None:
    view, recorder = windows_view("MSSQLSERVER", {startup_script("MSSQLSERVER"): sample(sample_name)})
    if message is None:
        windows_checks.test_host_windows_hadr_enabled(view)
    else:
        assert failure("test_host_windows_hadr_enabled", view) == message
    assert "HADR_Enabled" in recorder.items[0].command  # the registry read is the evidence
    assert prereq_of_check("test_host_windows_hadr_enabled").severity.value == "recommended"


# --- CLIENT-01: SSMS on the client machine ------------------------------------------------------------


def test_ssms_script_reads_both_uninstall_keys_and_vswhere() -> None:
    assert "'HKLM:\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\*'" in SSMS_SCRIPT
    assert "'HKLM:\\SOFTWARE\\Wow6432Node\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\*'" in SSMS_SCRIPT
    assert "$_.DisplayName -like 'Microsoft SQL Server Management Studio*'" in SSMS_SCRIPT
    assert "-products Microsoft.VisualStudio.Product.SSMS -property installationVersion" in SSMS_SCRIPT
    assert "if ($hasVswhere)" in SSMS_SCRIPT  # no vswhere (no SSMS 21+) is an answer, not an error


@pytest.mark.parametrize(
    ("sample_name", "newest", "supported"),
    [
        ("ssms-18.json", "18.12.1", False),  # DisplayVersion 15.0.18420.0 would say the same, for the wrong reason
        ("ssms-18-and-19.json", "19.0.2", True),
        ("ssms-21-vswhere.json", "21.4.8.0", True),
        ("ssms-none.json", None, False),
    ],
)
def test_ssms_versions(sample_name: str, newest: str | None, supported: bool) -> None:
    inventory = parse_ssms(sample(sample_name))
    assert inventory.computer == "DBA-WS01"
    assert (inventory.newest.version_text if inventory.newest else None) == newest
    assert inventory.supported is supported


def test_ssms_release_number_comes_from_the_display_name_and_the_build_is_kept() -> None:
    inventory = parse_ssms(sample("ssms-18-and-19.json"))
    assert [(i.version_text, i.build) for i in inventory.installs] == [
        ("18.12.1", "15.0.18420.0"),
        ("19.0.2", "19.0.20209.0"),
    ]
    # an entry named without a release number falls back to its DisplayVersion; one with neither is left out
    bare = parse_ssms(
        '{"uninstall":[{"name":"Microsoft SQL Server Management Studio","version":"20.2.30.0"},'
        '{"name":"Microsoft SQL Server Management Studio","version":""}],"vswhere":[],"computer":"WS"}'
    )
    assert [i.version_text for i in bare.installs] == ["20.2.30.0"]
    assert bare.supported


def test_read_client_host_one_call_with_evidence_and_the_view_records_it() -> None:
    host = RecordedWindowsHost({SSMS_SCRIPT: sample("ssms-18.json")})
    facts = read_client_host(host, "client")
    assert host.scripts == [SSMS_SCRIPT]
    recorder = EvidenceRecorder()
    view = ClientHostView("client", facts, recorder)
    assert not view.ssms.supported
    assert recorder.items[0].command.endswith(SSMS_SCRIPT)
    assert "Management Studio - 18.12.1" in recorder.items[0].result
    denied = ClientHostView("client", read_client_host(RecordedWindowsHost({}), "client"), EvidenceRecorder())
    with pytest.raises(FactUnavailable, match="could not read the installed SSMS from client: PowerShell failed"):
        denied.ssms  # noqa: B018  # the property read is what raises


client_checks: Any = _gate_module("client/test_client.py")


@pytest.mark.parametrize(
    ("sample_name", "message"),
    [
        ("ssms-18-and-19.json", None),
        ("ssms-21-vswhere.json", None),
        ("ssms-18.json", "DBA-WS01 has SSMS 18.12.1; the link needs SSMS 19.0 or later"),
        ("ssms-none.json", "DBA-WS01 has no SSMS at all; the link needs SSMS 19.0 or later"),
    ],
)
def test_ssms_version_check(sample_name: str, message: str | None) -> None:
    recorder = EvidenceRecorder()
    host = RecordedWindowsHost({SSMS_SCRIPT: sample(sample_name)})
    view = ClientHostView("client_host", read_client_host(host, "client_host"), recorder)
    if message is None:
        client_checks.test_client_ssms_version(view)
    else:
        with pytest.raises(AssertionError) as caught:
            client_checks.test_client_ssms_version(view)
        assert str(caught.value).split("\nassert ")[0] == message
    assert [e.command.endswith(SSMS_SCRIPT) for e in recorder.items] == [True]  # the evidence it decided on


def test_ssms_version_prerequisite_metadata() -> None:
    prereq: Prereq = client_checks.test_client_ssms_version.pytestmark[0].args[0]
    metadata = (prereq.id, prereq.severity.value, prereq.spec, prereq.area)
    assert metadata == ("client-ssms-version", "recommended", "CLIENT-01", "client")
    assert prereq.docs == "https://learn.microsoft.com/sql/ssms/download-sql-server-management-studio-ssms"
    assert prereq.remediation_for(target="client_host").startswith(
        "On the machine that runs SSMS (client_host): install the latest SQL Server Management Studio (19.0 or later"
    )


# --- Linux readers on this machine (local://), loopback only ----------------------------------------


def test_local_time_to_epoch_is_the_hosts_own_conversion() -> None:
    shell = Shell(testinfra.get_host("local://"), "localhost")
    when = dt.datetime(2025, 11, 3, 6, 12, 41, 117000)
    epoch, evidence = read_local_epoch(shell, when)
    assert epoch == int(time.mktime(when.replace(microsecond=0).timetuple()))  # this machine's zone, as the lab's
    assert evidence[0].command == "date -d '2025-11-03 06:12:41' +%s"


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


def test_listeners_from_the_local_host_follow_a_real_socket() -> None:
    """`ss` run on this machine: a socket bound to loopback is found, and reported as loopback only; closed, gone."""
    shell = Shell(testinfra.get_host("local://"), "localhost")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        found, evidence = read_listeners(shell, port)
    gone, _ = read_listeners(shell, port)
    assert found.addresses == ("127.0.0.1",)
    assert (found.listening, found.loopback_only) == (True, True)
    assert (gone.listening, gone.loopback_only) == (False, False)
    assert evidence[0].command == f"ss -Hltn 'sport = :{port}'"
    assert f"127.0.0.1:{port}" in evidence[0].result


def test_missing_ss_is_a_fact_error_that_names_it() -> None:
    class NoSs:
        def run(self, command: str) -> _Result:
            return _Result(127, "", "bash: ss: command not found")

    fact = HostNetwork(Shell(NoSs(), "sql01")).listeners(5022)
    assert fact.error == "ss cannot list the listeners on TCP 5022: ss (iproute2) is not installed"
    assert fact.evidence[0].command == "ss -Hltn 'sport = :5022'"


def test_listeners_script_asks_get_nettcpconnection_for_listeners_as_an_array() -> None:
    script = listeners_script(5022)
    assert "Get-NetTCPConnection -LocalPort 5022 -State Listen" in script
    assert "ConvertTo-Json -InputObject $l -Compress" in script  # none is [], not an empty answer


@pytest.mark.parametrize(
    ("sample_name", "addresses", "loopback_only"),
    [
        ("listeners-5022-one.json", ("0.0.0.0",), False),
        ("listeners-5022-dual-stack.json", ("[::]", "0.0.0.0"), False),
        ("listeners-5022-none.json", (), False),
        ("listeners-5022-loopback.json", ("127.0.0.1",), True),
    ],
)
def test_windows_listeners_parse(sample_name: str, addresses: tuple[str, ...], loopback_only: bool) -> None:
    found = parse_listeners(sample(sample_name), 5022)
    assert (found.addresses, found.loopback_only) == (addresses, loopback_only)


def test_windows_listeners_of_another_port_or_not_json_are_refused() -> None:
    with pytest.raises(ValueError, match="not a listener on TCP 5023"):
        parse_listeners(sample("listeners-5022-one.json"), 5023)
    with pytest.raises(ValueError, match="did not answer in JSON"):
        parse_listeners("WARNING: x", 5022)


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
