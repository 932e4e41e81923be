"""SQL Server instance prerequisites (spec §3: SQL-01 … SQL-09, SQL-12, SQL-13, SQL-16, SQL-17, SQL-20)."""

from __future__ import annotations

import datetime as dt

from linkgate.catalog import Severity, prereq
from linkgate.conditions import MI_TO_SQL, fact_holds, host_os_is
from linkgate.environment import Environment
from linkgate.probes.sql import Wsfc
from linkgate.versions import (
    SUPPORTED_EDITIONS,
    host_os_supportability,
    is_evaluation,
    mi_primary_supportability,
    supportability,
    windows_from_version_string,
)
from linkgate.views import ManagedInstanceView, SqlServerView

SQL_2016 = fact_holds("SQL Server is 2016 (major version 13)", "sql.major", lambda major: major == 13)
HAS_ENDPOINT = fact_holds("a database mirroring endpoint already exists", "sql.endpoints", bool)
UPDATES = "https://learn.microsoft.com/azure/azure-sql/managed-instance/managed-instance-link-feature-overview"
CONFIG_DOCS = "https://learn.microsoft.com/sql/linux/sql-server-linux-configure-mssql-conf"


@prereq(
    "sql-sysadmin",
    severity=Severity.REQUIRED,
    spec="SQL-01",
    remediation="As an existing sysadmin, run on {server}: ALTER SERVER ROLE [sysadmin] ADD MEMBER [{login}];",
)
def test_sql_sysadmin(sql_server: SqlServerView) -> None:
    """The login that prepares the link is a member of the sysadmin server role.

    Creating the mirroring endpoint, its certificate and the distributed availability group needs sysadmin.
    """
    login = sql_server.login
    assert login.is_sysadmin, f"login {login.name!r} is not a member of sysadmin on {sql_server.name}"


@prereq(
    "sql-version-supported",
    severity=Severity.REQUIRED,
    spec="SQL-02",
    docs=UPDATES,
    remediation="Install the required update on {server} (SQL Server 2016: KB5014242 Azure Connect pack; 2017: "
    "KB5050533 Azure Connect pack; 2019: CU20 KB5024276 or later; 2022/2025: the latest CU), then restart.",
)
def test_sql_version_supported(sql_server: SqlServerView) -> None:
    """SQL Server runs a version and build the link supports.

    2016 SP3 and 2017 CU31 need their Azure Connect packs, 2019 needs CU20; older versions have no link.
    """
    product = sql_server.product
    verdict = supportability(product.version)
    assert verdict.supported, verdict.reason


@prereq(
    "sql-edition-supported",
    severity=Severity.REQUIRED,
    spec="SQL-02",
    docs=UPDATES,
    remediation="Upgrade {server} to Enterprise, Developer or Standard edition (Express has no availability groups).",
)
def test_sql_edition_supported(sql_server: SqlServerView) -> None:
    """SQL Server is an Enterprise, Developer or Standard edition.

    The link is built on distributed availability groups, which other editions do not have.
    """
    product = sql_server.product
    assert product.engine_edition in SUPPORTED_EDITIONS, (
        f"{product.edition} (engine edition {product.engine_edition}) cannot host a link; "
        f"supported: {', '.join(SUPPORTED_EDITIONS.values())}"
    )


@prereq(
    "sql-edition-not-evaluation",
    severity=Severity.RECOMMENDED,
    spec="SQL-02",
    docs=UPDATES,
    remediation="Upgrade {server} to a licensed Enterprise, Developer or Standard edition before the evaluation "
    "period ends (SQL Server Setup → Maintenance → Edition Upgrade).",
)
def test_sql_edition_not_evaluation(sql_server: SqlServerView) -> None:
    """SQL Server is not an Enterprise Evaluation edition.

    The article lists Enterprise, Developer and Standard only; an evaluation edition expires after 180 days
    and SQL Server then stops starting, which breaks the link.
    """
    product = sql_server.product
    assert not is_evaluation(product.edition), (
        f"{sql_server.name} runs {product.edition}, which expires after its 180-day evaluation period"
    )


@prereq(
    "sql-version-mi-primary",
    severity=Severity.REQUIRED,
    spec="SQL-03",
    applies=MI_TO_SQL,
    docs=UPDATES,
    remediation="Patch {server} to SQL Server 2022 CU10 (16.0.4095.4) or later with the managed instance on the "
    "SQL Server 2022 update policy, or use SQL Server 2025 with the SQL Server 2025 policy.",
)
def test_sql_version_mi_primary(sql_server: SqlServerView) -> None:
    """SQL Server can be the secondary of a link created from the managed instance.

    Only SQL Server 2022 from CU10 (or 2025) can link with the managed instance as the initial primary.
    """
    verdict = mi_primary_supportability(sql_server.product.version, None)
    assert verdict.supported, verdict.reason


@prereq(
    "sql-host-os-supported",
    severity=Severity.REQUIRED,
    spec="SQL-04",
    docs=UPDATES,
    remediation="Move {server} to Windows Server 2012 or later (2016: Windows Server only), or a supported Linux.",
)
def test_sql_host_os_supported(sql_server: SqlServerView) -> None:
    """SQL Server runs on Windows Server 2012 or later or, from 2017, on Linux.

    Windows 10 and 11 clients cannot host a link; SQL Server 2016 links only from Windows Server.
    """
    product = sql_server.product
    host = sql_server.host_info
    if host is None:  # 2016 has no sys.dm_os_host_info: @@VERSION names the OS
        shown = windows_from_version_string(product.version_string)
        assert shown is not None, f"@@VERSION names no Windows OS: {product.version_string.strip()!r}"
        verdict = host_os_supportability(product.major, "Windows", *shown)
    else:
        verdict = host_os_supportability(product.major, host.platform, host.distribution, host.release)
    assert verdict.supported, f"{verdict.reason} ({product.version_text})"


@prereq(
    "sql-master-key",
    severity=Severity.REQUIRED,
    spec="SQL-05",
    remediation="On {server}: USE master; CREATE MASTER KEY ENCRYPTION BY PASSWORD = '<strong password>';",
)
def test_sql_master_key(sql_server: SqlServerView) -> None:
    """The master database has a database master key.

    The link's endpoint certificate is protected by it.
    """
    key = sql_server.master_key
    assert key.present, "master has no database master key (symmetric_key_id 101)"


@prereq(
    "sql-hadr-enabled",
    severity=Severity.REQUIRED,
    spec="SQL-06",
    remediation="Windows: SQL Server Configuration Manager → {instance} → Always On Availability Groups → Enable, "
    "then restart. Linux: sudo /opt/mssql/bin/mssql-conf set hadr.hadrenabled 1 && "
    "sudo systemctl restart mssql-server",
)
def test_sql_hadr_enabled(sql_server: SqlServerView) -> None:
    """The Always On availability groups feature is enabled and its manager is running.

    The link is a distributed availability group.
    """
    hadr = sql_server.hadr
    assert hadr.enabled == 1, f"IsHadrEnabled is {hadr.enabled}: availability groups are disabled"
    assert hadr.manager_status == 1, f"HadrManagerStatus is {hadr.manager_status}, not 1 (started and running)"


@prereq(
    "sql-2016-wsfc",
    severity=Severity.REQUIRED,
    spec="SQL-07",
    applies=SQL_2016,
    docs="https://learn.microsoft.com/azure/azure-sql/managed-instance/managed-instance-link-preparation-wsfc",
    remediation="On {server}: Install-WindowsFeature -Name Failover-Clustering -IncludeManagementTools; create a "
    "single-node cluster, or start a node that is down (Start-ClusterNode); then GRANT ALTER ANY AVAILABILITY "
    "GROUP, CONNECT SQL, VIEW SERVER STATE TO [NT AUTHORITY\\SYSTEM];",
)
def test_sql_2016_wsfc(sql_server: SqlServerView) -> None:
    """SQL Server 2016 runs on an up node of a (single-node) Windows Server failover cluster, with the SYSTEM grants.

    Only SQL Server 2016 needs a WSFC for availability groups; a node that is down can't host one.
    """
    wsfc = sql_server.wsfc or Wsfc((), (), frozenset())
    assert wsfc.clusters, "no Windows Server failover cluster (sys.dm_hadr_cluster is empty)"
    state = wsfc.local_member_state()
    cluster = wsfc.clusters[0].get("cluster_name")
    node = wsfc.local_node or "this computer (ComputerNamePhysicalNetBIOS unknown)"
    assert state is not None, f"{node} is not a member of cluster {cluster}"
    assert state.upper() == "UP", f"cluster node {node} is {state or 'in no reported state'}, not UP"
    granted = wsfc.system_grants
    missing = {"ALTER ANY AVAILABILITY GROUP", "CONNECT SQL", "VIEW SERVER STATE"} - granted
    assert not missing, f"NT AUTHORITY\\SYSTEM lacks: {', '.join(sorted(missing))}"


MI_SECTOR_BYTES = 4096
"""The managed instance's log sector size (the article: trace flag 1800 isn't needed when both sides use 4 KB)."""


def _trace_flag_check(sql_server: SqlServerView, flag: int, detail: str = "") -> None:
    running = sql_server.trace_flags
    if flag in running:
        return
    configured = flag in sql_server.startup_parameters.trace_flags
    pending = " — configured at startup: restart pending" if configured else ""
    raise AssertionError(f"trace flag {flag} is not enabled globally{pending}{detail}")


@prereq(
    "sql-trace-flag-1800",
    severity=Severity.RECOMMENDED,
    spec="SQL-08",
    remediation="Add -T1800 to the startup parameters of {server} (Linux: sudo /opt/mssql/bin/mssql-conf traceflag "
    "1800 on), then restart SQL Server.",
)
def test_sql_trace_flag_1800(sql_server: SqlServerView) -> None:
    """Trace flag 1800 is enabled globally, unless the log volume already has 4 KB physical sectors.

    It aligns log I/O to the managed instance's 4 KB sectors; when the declared host reports 4096-byte sectors
    under the log (host-log-sector-size) it isn't needed, and the check passes with a note (spec: INFO).
    """
    if 1800 in sql_server.trace_flags:
        return
    sector = sql_server.log_sector_size  # None: no host declared, or it couldn't be read
    if sector == MI_SECTOR_BYTES:
        sql_server.note(
            f"trace flag 1800 is off but not needed: the log volume of {sql_server.name} has 4096-byte physical "
            "sectors, as the managed instance does"
        )
        return
    known = f" (the log volume's physical sectors are {sector} bytes, the managed instance's 4096)" if sector else ""
    _trace_flag_check(sql_server, 1800, known)


@prereq(
    "sql-trace-flag-9567",
    severity=Severity.RECOMMENDED,
    spec="SQL-08",
    remediation="Add -T9567 to the startup parameters of {server} (Linux: sudo /opt/mssql/bin/mssql-conf traceflag "
    "9567 on), then restart SQL Server.",
)
def test_sql_trace_flag_9567(sql_server: SqlServerView) -> None:
    """Trace flag 9567 is enabled globally.

    It compresses the data stream of automatic seeding, which shortens the initial seeding.
    """
    _trace_flag_check(sql_server, 9567)


@prereq(
    "sql-trace-flags-persisted",
    severity=Severity.RECOMMENDED,
    spec="SQL-09",
    applies=host_os_is("windows"),
    docs=CONFIG_DOCS,
    remediation="Windows: SQL Server Configuration Manager → {instance} → Startup Parameters → add -T1800 and "
    "-T9567. Linux: sudo /opt/mssql/bin/mssql-conf traceflag 1800 9567 on. Then restart SQL Server.",
)
def test_sql_trace_flags_persisted(sql_server: SqlServerView) -> None:
    """Trace flags 1800 and 9567 are configured as startup parameters in the registry.

    A flag turned on with DBCC TRACEON is lost at the next restart. On Linux the startup flags live in
    mssql.conf, which host-mssql-conf-traceflags reads on the host.
    """
    configured = sql_server.startup_parameters.trace_flags
    assert sql_server.startup_parameters.arguments, "no SQLArg startup parameters in sys.dm_server_registry"
    missing = sorted({1800, 9567} - configured)
    running_only = [f for f in missing if f in sql_server.trace_flags]
    lost = f" ({', '.join(map(str, running_only))} running now: lost at the next restart)" if running_only else ""
    assert not missing, f"not in the startup parameters: {', '.join(f'-T{f}' for f in missing)}{lost}"


@prereq(
    "sql-agent-running",
    severity=Severity.RECOMMENDED,
    spec="SQL-12",
    remediation="Windows: Set-Service {agent_service} -StartupType Automatic; Start-Service {agent_service}. "
    "Linux: sudo /opt/mssql/bin/mssql-conf set sqlagent.enabled true && sudo systemctl restart mssql-server",
)
def test_sql_agent_running(sql_server: SqlServerView) -> None:
    """SQL Server Agent is running with Agent XPs enabled.

    The article's connectivity tests run as Agent jobs; so does the SSMS network checker. Recommended, not the
    spec's conditional-required, since only those tests need it.
    """
    agent = sql_server.agent
    assert agent.agent_xps == 1, f"Agent XPs is {agent.agent_xps}: SQL Server Agent is disabled"
    if agent.service_status is not None:
        assert agent.service_status == "Running", f"SQL Server Agent is {agent.service_status}"


@prereq(
    "sql-agent-job-permission",
    severity=Severity.RECOMMENDED,
    spec="SQL-13",
    remediation="On {server}: USE msdb; CREATE USER [{login}] FOR LOGIN [{login}]; "
    "ALTER ROLE [SQLAgentOperatorRole] ADD MEMBER [{login}];",
)
def test_sql_agent_job_permission(sql_server: SqlServerView) -> None:
    """The login can create SQL Server Agent jobs (sysadmin or msdb SQLAgentOperatorRole).

    The article's connectivity test creates a job on SQL Server; recommended, not the spec's conditional-required,
    since only that test and the SSMS network checker need it.
    """
    assert sql_server.login.is_sysadmin or sql_server.is_agent_operator, (
        f"{sql_server.login.name!r} is neither sysadmin nor in msdb's SQLAgentOperatorRole"
    )


@prereq(
    "sql-mirroring-endpoint",
    severity=Severity.REQUIRED,
    spec="SQL-16",
    applies=HAS_ENDPOINT,
    docs="https://learn.microsoft.com/azure/azure-sql/managed-instance/managed-instance-link-configure-how-to-scripts",
    remediation="On {server}: ALTER ENDPOINT [<endpoint>] STATE=STARTED AS TCP (LISTENER_PORT={endpoint_port}, "
    "LISTENER_IP=ALL) FOR DATABASE_MIRRORING (ROLE=ALL, AUTHENTICATION = WINDOWS NEGOTIATE CERTIFICATE [<cert>], "
    "ENCRYPTION = REQUIRED ALGORITHM AES);",
)
def test_sql_mirroring_endpoint(sql_server: SqlServerView) -> None:
    """The existing database mirroring endpoint is started, uses certificate authentication and AES encryption.

    The link reuses an existing endpoint, which must meet its rules.
    """
    problems = []
    for e in sql_server.endpoints:
        if e.state != "STARTED":
            problems.append(f"{e.name} is {e.state}")
        if "CERTIFICATE" not in e.connection_auth.upper():
            problems.append(f"{e.name} authenticates with {e.connection_auth}, not a certificate")
        if not e.encryption_enabled or "AES" not in e.algorithm.upper():
            problems.append(f"{e.name} encryption is {e.algorithm or 'off'}, not AES")
    assert not problems, "; ".join(problems)


@prereq(
    "sql-mirroring-endpoint-port",
    severity=Severity.REQUIRED,
    spec="SQL-16",
    applies=HAS_ENDPOINT,
    docs="https://learn.microsoft.com/azure/azure-sql/managed-instance/managed-instance-link-preparation",
    remediation="Declare endpoint_port for {server} as the port its mirroring endpoint listens on, or move the "
    "endpoint: ALTER ENDPOINT [<endpoint>] AS TCP (LISTENER_PORT = {endpoint_port}); then open that port.",
)
def test_sql_mirroring_endpoint_port(sql_server: SqlServerView, environment: Environment) -> None:
    """The existing mirroring endpoint listens on the endpoint port the environment declares.

    The host firewall and NSG checks judge the declared port; an endpoint elsewhere leaves the link's real
    port unchecked, and only the default instance should use 5022.
    """
    declared = environment.sql_servers[sql_server.name].endpoint_port
    elsewhere = [f"{e.name} listens on {e.port}" for e in sql_server.endpoints if e.port != declared]
    assert not elsewhere, f"{'; '.join(elsewhere)}, but endpoint_port of {sql_server.name} is {declared}"


@prereq(
    "sql-mirroring-endpoint-certificate",
    severity=Severity.RECOMMENDED,
    spec="SQL-16",
    applies=HAS_ENDPOINT,
    docs="https://learn.microsoft.com/azure/azure-sql/managed-instance/managed-instance-link-configure-how-to-scripts",
    remediation="On {server}: create a new certificate in master, ALTER ENDPOINT [<endpoint>] FOR "
    "DATABASE_MIRRORING (AUTHENTICATION = CERTIFICATE [<new cert>]), and exchange it with {mi_name} again.",
)
def test_sql_mirroring_endpoint_certificate(sql_server: SqlServerView) -> None:
    """The existing mirroring endpoint's certificate has not expired.

    The two sides authenticate each other with the endpoint certificates; renew one before it expires.
    """
    now = dt.datetime.now()
    expired = [
        f"{e.name} certificate {e.certificate} expired on {e.certificate_expiry:%Y-%m-%d}"
        for e in sql_server.endpoints
        if e.certificate_expiry is not None and e.certificate_expiry < now
    ]
    assert not expired, "; ".join(expired)


@prereq(
    "sql-collation-matches-mi",
    severity=Severity.RECOMMENDED,
    spec="SQL-17",
    docs="https://learn.microsoft.com/azure/azure-sql/managed-instance/managed-instance-link-configure-how-to-scripts",
    remediation="Use the same server collation on {server} and {mi_name} (a server collation change needs a "
    "rebuild of the system databases).",
)
def test_sql_collation_matches_mi(sql_server: SqlServerView, mi: ManagedInstanceView) -> None:
    """SQL Server and the managed instance use the same server collation.

    A mismatch can change server-name casing and prevent the link from connecting.
    """
    ours, theirs = sql_server.product.collation, mi.product.collation
    assert ours == theirs, f"{sql_server.name} uses {ours}, {mi.name} uses {theirs}"


@prereq(
    "sql-restart-evidence",
    severity=Severity.INFO,
    spec="SQL-20",
    remediation="Restart SQL Server on {server} after changing startup parameters or the availability groups setting.",
)
def test_sql_restart_evidence(sql_server: SqlServerView) -> None:
    """SQL Server reports when it last started, so configuration changes can be tied to a restart.

    Trace flags and the availability-groups feature only take effect after a restart.
    """
    started = sql_server.start_time
    assert isinstance(started, dt.datetime), f"sqlserver_start_time is {started!r}"
