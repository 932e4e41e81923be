"""Windows SQL Server host prerequisites, read with PowerShell over WinRM (spec HOST-W-01, -02, -05, -06)."""

from __future__ import annotations

from linkgate.catalog import Severity, prereq
from linkgate.conditions import fact_holds, host_os_is
from linkgate.environment import HostOS
from linkgate.views import SqlHostView

WINDOWS = host_os_is(HostOS.WINDOWS)
SQL_2016 = fact_holds("SQL Server is 2016 (major version 13)", "sql.major", lambda major: major == 13)
WSFC_DOCS = "https://learn.microsoft.com/azure/azure-sql/managed-instance/managed-instance-link-preparation-wsfc"
OVERVIEW = "https://learn.microsoft.com/azure/azure-sql/managed-instance/managed-instance-link-feature-overview"
LINK_TRACE_FLAGS = frozenset({1800, 9567})


@prereq(
    "host-windows-services",
    severity=Severity.REQUIRED,
    spec="HOST-W-01",
    applies=WINDOWS,
    remediation="On the host of {server}, in PowerShell: Set-Service -Name '{engine_service}' -StartupType Automatic; "
    "Start-Service -Name '{engine_service}'",
)
def test_host_windows_services(sql_host: SqlHostView) -> None:
    """The SQL Server service is running and starts automatically.

    A service that does not start automatically leaves the link down after every reboot.
    """
    services = sql_host.windows_services
    engine = services.engine
    assert engine is not None, f"Get-Service finds no {services.names[0]} service"
    assert engine.running, f"{engine.name} is {engine.status}"
    assert engine.start_type == "Automatic", f"{engine.name} starts {engine.start_type}, not Automatic"


@prereq(
    "host-windows-agent-service",
    severity=Severity.RECOMMENDED,
    spec="HOST-W-01",
    applies=WINDOWS,
    remediation="On the host of {server}, in PowerShell: Set-Service -Name '{agent_service}' -StartupType Automatic; "
    "Start-Service -Name '{agent_service}'",
)
def test_host_windows_agent_service(sql_host: SqlHostView) -> None:
    """The SQL Server Agent service of the instance is running.

    The article's connectivity test and the SSMS network checker run as Agent jobs; a stopped Agent never runs them.
    """
    services = sql_host.windows_services
    agent = services.agent
    assert agent is not None, f"Get-Service finds no {services.names[1]} service: SQL Server Agent is not installed"
    assert agent.running, f"{agent.name} is {agent.status} (start type {agent.start_type})"


@prereq(
    "host-windows-startup-params",
    severity=Severity.RECOMMENDED,
    spec="HOST-W-02",
    applies=WINDOWS,
    remediation="SQL Server Configuration Manager → SQL Server ({instance}) → Startup Parameters: add -T1800 and "
    "-T9567, then restart the service",
)
def test_host_windows_startup_params(sql_host: SqlHostView) -> None:
    """The startup parameters in the registry include -T1800 and -T9567.

    Flags turned on with DBCC TRACEON are lost at the next restart; the registry's SQLArg values persist them.
    """
    params = sql_host.startup_parameters
    missing = sorted(LINK_TRACE_FLAGS - params.trace_flags)
    assert not missing, (
        f"{params.instance_id} has no -T{', -T'.join(map(str, missing))} among its startup parameters "
        f"({' '.join(params.arguments) or 'none'})"
    )


@prereq(
    "host-windows-os-edition",
    severity=Severity.REQUIRED,
    spec="HOST-W-05",
    applies=WINDOWS,
    docs=OVERVIEW,
    remediation="Move {server} to Windows Server 2012 or later; client editions (Windows 10, 11) cannot host a link",
)
def test_host_windows_os_edition(sql_host: SqlHostView) -> None:
    """The host runs Windows Server 2012 or later, not a client edition.

    The link's availability groups need a server edition of Windows.
    """
    os = sql_host.windows_os
    assert os.is_server, f"{os.caption} is not a Windows Server edition"
    assert os.at_least_2012, (
        f"{os.caption} (version {'.'.join(map(str, os.version))}) is older than Windows Server 2012"
    )


@prereq(
    "host-windows-hadr-enabled",
    severity=Severity.RECOMMENDED,
    spec="HOST-W-02",
    applies=WINDOWS,
    remediation="SQL Server Configuration Manager → SQL Server ({instance}) → Properties → Always On "
    "Availability Groups: check Enable Always On Availability Groups, then restart the service",
)
def test_host_windows_hadr_enabled(sql_host: SqlHostView) -> None:
    """The instance's registry enables Always On availability groups (HADR_Enabled = 1).

    SQL Server reads it at startup: without it the next restart turns availability groups off, and the link with them.
    """
    params = sql_host.startup_parameters
    value = "not set" if params.hadr_enabled is None else params.hadr_enabled
    assert params.hadr_enabled == 1, f"{params.hadr_key}: HADR_Enabled is {value}"


@prereq(
    "host-windows-failover-clustering",
    severity=Severity.REQUIRED,
    spec="HOST-W-06",
    applies=WINDOWS & SQL_2016,
    docs=WSFC_DOCS,
    remediation="On the host of {server}, in PowerShell as an administrator: Install-WindowsFeature -Name "
    "Failover-Clustering -IncludeManagementTools; then create a single-node cluster (New-Cluster -Name <name> "
    "-Node $env:COMPUTERNAME -NoStorage) or, if the node is down, Start-ClusterNode -Name $env:COMPUTERNAME",
)
def test_host_windows_failover_clustering(sql_host: SqlHostView) -> None:
    """The Failover-Clustering feature is installed and this host is an Up node of its (single-node) cluster.

    SQL Server 2016's availability groups, and so the link, need a Windows Server failover cluster.
    """
    cluster = sql_host.failover_cluster
    assert cluster.feature_installed, "Get-WindowsFeature: the Failover-Clustering feature is not installed"
    node = cluster.local_node
    listed = ", ".join(f"{n.name} {n.state}" for n in cluster.nodes) or "no nodes"
    assert node is not None, f"{cluster.computer} is not a cluster node ({cluster.error or listed})"
    assert node.state == "Up", f"cluster node {node.name} is {node.state}, not Up"
