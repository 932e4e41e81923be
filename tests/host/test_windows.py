"""Windows SQL Server host prerequisites, read with PowerShell over WinRM (spec HOST-W-01, HOST-W-02, HOST-W-05)."""

from __future__ import annotations

from linkgate.catalog import Severity, prereq
from linkgate.conditions import host_os_is
from linkgate.environment import HostOS
from linkgate.views import SqlHostView

WINDOWS = host_os_is(HostOS.WINDOWS)
OVERVIEW = "https://learn.microsoft.com/azure/azure-sql/managed-instance/managed-instance-link-feature-overview"
LINK_TRACE_FLAGS = frozenset({1800, 9567})


@prereq(
    "host-windows-services",
    severity=Severity.REQUIRED,
    spec="HOST-W-01",
    applies=WINDOWS,
    remediation="On the host of {server}, in PowerShell: Set-Service -Name '{instance}' -StartupType Automatic; "
    "Start-Service -Name '{instance}' (a named instance's service is MSSQL$<name>)",
)
def test_host_windows_services(sql_host: SqlHostView) -> None:
    """The SQL Server service is running and starts automatically.

    A service that does not start automatically leaves the link down after every reboot.
    """
    engine = sql_host.windows_services.engine
    assert engine is not None, "Get-Service finds no SQL Server service for this instance"
    assert engine.running, f"{engine.name} is {engine.status}"
    assert engine.start_type == "Automatic", f"{engine.name} starts {engine.start_type}, not Automatic"


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
