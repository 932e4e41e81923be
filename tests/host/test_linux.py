"""Linux SQL Server host prerequisites, read over ssh (spec HOST-L-01, HOST-L-02, HOST-L-04, SQL-20)."""

from __future__ import annotations

from linkgate.catalog import Severity, prereq
from linkgate.conditions import host_os_is
from linkgate.environment import HostOS
from linkgate.probes.facts import FactUnavailable
from linkgate.probes.host import MssqlConf
from linkgate.views import SqlHostView, SqlServerView

LINUX = host_os_is(HostOS.LINUX)
MSSQL_CONF = "https://learn.microsoft.com/sql/linux/sql-server-linux-configure-mssql-conf"
LINK_TRACE_FLAGS = frozenset({1800, 9567})
MI_SECTOR_BYTES = 4096  # the managed instance's log sector size: trace flag 1800 aligns other disks to it


@prereq(
    "host-mssql-service",
    severity=Severity.REQUIRED,
    spec="HOST-L-01",
    applies=LINUX,
    docs=MSSQL_CONF,
    remediation="On the host of {server}: sudo systemctl enable --now mssql-server",
)
def test_host_mssql_service(sql_host: SqlHostView) -> None:
    """The mssql-server service is running and enabled on the SQL Server host.

    A service that is not enabled does not come back after a reboot, and the link goes down with it.
    """
    service = sql_host.service
    assert service.running, f"systemctl is-active {service.name} says {service.active}"
    assert service.is_enabled, f"systemctl is-enabled {service.name} says {service.enabled}: no start at boot"


@prereq(
    "host-mssql-conf-hadr",
    severity=Severity.REQUIRED,
    spec="HOST-L-02",
    applies=LINUX,
    docs=MSSQL_CONF,
    remediation="On the host of {server}: sudo /opt/mssql/bin/mssql-conf set hadr.hadrenabled 1 && "
    "sudo systemctl restart mssql-server",
)
def test_host_mssql_conf_hadr(sql_host: SqlHostView) -> None:
    """mssql.conf enables availability groups (hadr.hadrenabled = 1).

    SQL Server reads it at startup: without it the next restart turns availability groups off, and the link with them.
    """
    conf = sql_host.mssql_conf
    where = conf.path if conf.present else f"{conf.path} does not exist, so"
    assert conf.hadr_enabled, f"{where} hadr.hadrenabled is {conf.value('hadr', 'hadrenabled') or 'not set'}"


@prereq(
    "host-mssql-conf-traceflags",
    severity=Severity.RECOMMENDED,
    spec="HOST-L-02",
    applies=LINUX,
    docs=MSSQL_CONF,
    remediation="On the host of {server}: sudo /opt/mssql/bin/mssql-conf traceflag 1800 9567 on && "
    "sudo systemctl restart mssql-server",
)
def test_host_mssql_conf_traceflags(sql_host: SqlHostView) -> None:
    """mssql.conf persists trace flags 1800 and 9567 in its [traceflag] section.

    Flags turned on with DBCC TRACEON are lost at the next restart; mssql.conf is where Linux keeps startup flags.
    """
    conf = sql_host.mssql_conf
    missing = sorted(LINK_TRACE_FLAGS - conf.trace_flags)
    sector = _log_sector_bytes(sql_host) if 1800 in missing else None
    if missing == [1800] and sector == MI_SECTOR_BYTES:
        sql_host.note(
            f"{conf.path} lacks trace flag 1800, which a log volume with 4096-byte physical sectors (the "
            "managed instance's) does not need"
        )
        return
    size = f" (the log volume's physical sectors are {sector} bytes, the managed instance's 4096)" if sector else ""
    assert not missing, f"{conf.path} does not persist trace flag(s) {', '.join(map(str, missing))}{size}"


def _log_sector_bytes(sql_host: SqlHostView) -> int | None:
    """The log volume's physical sector size, or None when the host can't tell (then 1800 is simply missing)."""
    try:
        return sql_host.sector_size.physical
    except FactUnavailable:
        return None


@prereq(
    "host-mssql-conf-agent",
    severity=Severity.RECOMMENDED,
    spec="HOST-L-02",
    applies=LINUX,
    docs=MSSQL_CONF,
    remediation="On the host of {server}: sudo /opt/mssql/bin/mssql-conf set sqlagent.enabled true && "
    "sudo systemctl restart mssql-server",
)
def test_host_mssql_conf_agent(sql_host: SqlHostView) -> None:
    """mssql.conf enables SQL Server Agent (sqlagent.enabled = true).

    Without the key SQL Server on Linux treats the Agent as disabled, and the article's connectivity job cannot run.
    """
    conf = sql_host.mssql_conf
    assert conf.agent_enabled, f"{conf.path}: sqlagent.enabled is {conf.value('sqlagent', 'enabled') or 'not set'}"


@prereq(
    "host-mssql-conf-restart-pending",
    severity=Severity.RECOMMENDED,
    spec="SQL-20, HOST-L-02",
    applies=LINUX,
    docs=MSSQL_CONF,
    remediation="On the host of {server}, at a time the instance may restart: sudo systemctl restart mssql-server "
    "(first check that /var/opt/mssql/mssql.conf says what it should: sudo /opt/mssql/bin/mssql-conf list)",
)
def test_host_mssql_conf_restart_pending(sql_host: SqlHostView, sql_server: SqlServerView) -> None:
    """SQL Server started after mssql.conf was last changed: no restart is pending.

    SQL Server on Linux reads mssql.conf only at startup; a later change (HADR, trace flags, the Agent) is not in
    effect yet, and the next restart, planned or not, applies it.
    """
    conf = sql_host.mssql_conf
    if conf.modified is None:
        return  # no file, nothing pending (host-mssql-conf-hadr says what it lacks)
    drift = "; ".join(_differences(conf, sql_server))
    if drift:
        sql_host.note(f"{conf.path} and SQL Server disagree: {drift}")
    started = sql_server.start_time
    at = sql_host.epoch_of_local_time(started)
    assert conf.modified <= at, (
        f"restart pending: {conf.path} changed {conf.modified - at} s after SQL Server started "
        f"({started:%Y-%m-%d %H:%M:%S} host time); {drift or 'HADR, trace flags and Agent agree with the file'}"
    )


def _differences(conf: MssqlConf, sql_server: SqlServerView) -> tuple[str, ...]:
    """What the file says and SQL Server runs differently: what a restart would change (with the file newer)."""
    hadr, agent = sql_server.hadr.enabled, sql_server.agent.service_status
    return conf.differences(
        hadr_enabled=None if hadr is None else hadr == 1,
        trace_flags=sql_server.trace_flags,
        agent_running=None if agent is None else agent == "Running",
    )


@prereq(
    "host-log-sector-size",
    severity=Severity.INFO,
    spec="HOST-L-04, HOST-W-04",
    remediation="Find the disk under {server}'s log volume and read its physical sector size (lsblk -o NAME,PHY-SEC "
    "or fsutil fsinfo sectorinfo); trace flag 1800 matters when the two sides of the link differ",
)
def test_host_log_sector_size(sql_host: SqlHostView) -> None:
    """The physical sector size of the volume holding the transaction log is known.

    Log blocks are aligned to it; when SQL Server and the managed instance (4 KB) differ, trace flag 1800 avoids
    the misaligned log I/O that slows the link.
    """
    sector = sql_host.sector_size
    assert sector.physical is not None, f"{sector.path} is on {sector.source}, not a block device the host can name"
