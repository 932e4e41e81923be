"""SQL Server and managed-instance facts, read over one ODBC session per target.

`read_sql_server` and `read_managed_instance` gather every fact group the gate's checks use, once,
and return them typed. A group whose query fails keeps the driver's error; if the connection itself
fails, the whole target is `TargetUnreachable`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from linkgate.evidence import Evidence
from linkgate.probes import sql_queries as q
from linkgate.probes.facts import Fact, TargetUnreachable
from linkgate.probes.odbc import OdbcSession, QueryFailed, Rows
from linkgate.versions import Build, parse_build

T = TypeVar("T")


@dataclass(frozen=True)
class Login:
    name: str
    is_sysadmin: bool


@dataclass(frozen=True)
class Product:
    version: Build
    version_text: str
    level: str | None
    update_level: str | None
    kb: str | None
    edition: str
    engine_edition: int
    collation: str
    update_type: str | None
    version_string: str

    @property
    def major(self) -> int:
        return self.version[0]


@dataclass(frozen=True)
class HostInfo:
    platform: str
    distribution: str
    release: str


@dataclass(frozen=True)
class MasterKey:
    present: bool
    name: str | None


@dataclass(frozen=True)
class Hadr:
    enabled: int | None
    manager_status: int | None


@dataclass(frozen=True)
class StartupParameters:
    """SQLArg startup parameters as SQL Server's registry view shows them (empty: not visible)."""

    arguments: tuple[str, ...]

    @property
    def trace_flags(self) -> frozenset[int]:
        flags = set()
        for arg in self.arguments:
            m = re.fullmatch(r"\s*-[tT](\d+)\s*", arg)
            if m:
                flags.add(int(m.group(1)))
        return frozenset(flags)


@dataclass(frozen=True)
class AgentState:
    service_status: str | None  # e.g. "Running"; None when the service is not listed
    startup_type: str | None
    agent_xps: int | None


@dataclass(frozen=True)
class Endpoint:
    name: str
    state: str
    connection_auth: str
    encryption_enabled: bool
    algorithm: str
    port: int
    certificate: str | None
    certificate_expiry: dt.datetime | None


@dataclass(frozen=True)
class Wsfc:
    clusters: tuple[dict[str, Any], ...]
    members: tuple[dict[str, Any], ...]
    system_grants: frozenset[str]


@dataclass(frozen=True)
class DatabaseState:
    name: str
    exists: bool
    recovery_model: str | None = None
    state: str | None = None
    last_log_backup_lsn: Decimal | None = None
    broker_enabled: bool | None = None


@dataclass(frozen=True)
class FullBackup:
    finished: dt.datetime
    has_checksums: bool


@dataclass(frozen=True)
class Tde:
    encryption_state: int | None  # None: no database encryption key
    encryptor_type: str | None
    certificate: str | None
    certificate_expiry: dt.datetime | None

    @property
    def encrypted(self) -> bool:
        return self.encryption_state is not None and self.encryption_state >= 2


@dataclass(frozen=True)
class StorageFeatures:
    filestream_filegroups: int
    xtp_containers: int | None  # None: no memory-optimized filegroup
    log_files: int
    filetables: int
    memory_optimized_tables: int


@dataclass(frozen=True)
class AgMembership:
    groups: tuple[tuple[str, int], ...]  # (availability group, databases in it)


@dataclass(frozen=True)
class DatabaseFacts:
    state: Fact[DatabaseState]
    last_full_backup: Fact[FullBackup | None]
    tde: Fact[Tde]
    storage: Fact[StorageFeatures]
    availability_groups: Fact[AgMembership]


@dataclass(frozen=True)
class SqlServerFacts:
    target: str
    login: Fact[Login]
    product: Fact[Product]
    host_info: Fact[HostInfo | None]  # None: sys.dm_os_host_info does not exist (2016)
    master_key: Fact[MasterKey]
    hadr: Fact[Hadr]
    trace_flags: Fact[frozenset[int]]
    startup_parameters: Fact[StartupParameters]
    agent: Fact[AgentState]
    agent_operator: Fact[bool]
    endpoints: Fact[tuple[Endpoint, ...]]
    wsfc: Fact[Wsfc | None]  # None: not SQL Server 2016
    start_time: Fact[dt.datetime]
    databases: dict[str, DatabaseFacts]
    connections_opened: int = 0
    round_trips: int = 0


@dataclass(frozen=True)
class Fabric:
    dns_record_name: str | None
    cluster_name: str | None
    instance_name: str | None
    hadr_port: int | None
    node: str | None  # <node>.<cluster>, the current primary replica's node

    @property
    def node_endpoint(self) -> str | None:
        return f"{self.node}:{self.hadr_port}" if self.node and self.hadr_port else None


@dataclass(frozen=True)
class ManagedInstanceFacts:
    target: str
    login: Fact[Login]
    product: Fact[Product]
    fabric: Fact[Fabric]
    agent_operator: Fact[bool]
    databases: dict[str, Fact[Tde]]
    connections_opened: int = 0
    round_trips: int = 0


class _Reader:
    """Runs queries on one session, turning each into a Fact (value or the driver's error)."""

    def __init__(self, session: OdbcSession) -> None:
        self.session = session

    def fact(self, what: str, run: Callable[[], tuple[T, tuple[Evidence, ...]]]) -> Fact[T]:
        try:
            value, evidence = run()
        except QueryFailed as e:
            return Fact(what, self.session.target, (e.evidence,), None, str(e))
        return Fact(what, self.session.target, evidence, value)

    def rows(self, sql: str, *params: Any) -> Rows:
        return self.session.query(sql, params)


def _product(r: _Reader) -> tuple[Product, tuple[Evidence, ...]]:
    rows = r.rows(q.PRODUCT)
    d = rows.one() or {}
    version_text = str(d.get("product_version") or "")
    return Product(
        version=parse_build(version_text) if version_text else (0, 0, 0, 0),
        version_text=version_text,
        level=d.get("product_level"),
        update_level=d.get("product_update_level"),
        kb=d.get("kb"),
        edition=str(d.get("edition") or ""),
        engine_edition=int(d.get("engine_edition") or 0),
        collation=str(d.get("collation") or ""),
        update_type=d.get("product_update_type"),
        version_string=str(d.get("version_string") or ""),
    ), (rows.evidence,)


def _login(r: _Reader) -> tuple[Login, tuple[Evidence, ...]]:
    rows = r.rows(q.LOGIN)
    d = rows.one() or {}
    return Login(str(d.get("login_name") or ""), d.get("is_sysadmin") == 1), (rows.evidence,)


def _agent_operator(r: _Reader) -> tuple[bool, tuple[Evidence, ...]]:
    rows = r.rows(q.AGENT_OPERATOR)
    d = rows.one() or {}
    return d.get("is_agent_operator") == 1, (rows.evidence,)


def _connect(session: OdbcSession) -> None:
    try:
        session.connect()
    except QueryFailed as e:
        raise TargetUnreachable(session.target, str(e), (e.evidence,)) from e


def read_sql_server(session: OdbcSession, databases: tuple[str, ...]) -> SqlServerFacts:
    """Every fact the SQL Server checks use, read once over `session`."""
    _connect(session)
    r = _Reader(session)
    product = r.fact("the version and edition", lambda: _product(r))
    major = product.value.major if product.value else 0

    def host_info() -> tuple[HostInfo | None, tuple[Evidence, ...]]:
        if major and major < 14:
            return None, ()
        rows = r.rows(q.HOST_INFO)
        d = rows.one() or {}
        return HostInfo(
            str(d.get("host_platform") or ""), str(d.get("host_distribution") or ""), str(d.get("host_release") or "")
        ), (rows.evidence,)

    def master_key() -> tuple[MasterKey, tuple[Evidence, ...]]:
        rows = r.rows(q.MASTER_KEY)
        d = rows.one()
        return MasterKey(d is not None, d.get("name") if d else None), (rows.evidence,)

    def hadr() -> tuple[Hadr, tuple[Evidence, ...]]:
        rows = r.rows(q.HADR)
        d = rows.one() or {}
        return Hadr(d.get("is_hadr_enabled"), d.get("hadr_manager_status")), (rows.evidence,)

    def trace_flags() -> tuple[frozenset[int], tuple[Evidence, ...]]:
        rows = r.rows(q.TRACE_FLAGS)
        on = frozenset(int(d["TraceFlag"]) for d in rows.dicts() if d.get("Global") == 1 and d.get("Status") == 1)
        return on, (rows.evidence,)

    def startup() -> tuple[StartupParameters, tuple[Evidence, ...]]:
        rows = r.rows(q.STARTUP_PARAMETERS)
        return StartupParameters(tuple(str(d["value_data"]) for d in rows.dicts())), (rows.evidence,)

    def agent() -> tuple[AgentState, tuple[Evidence, ...]]:
        services = r.rows(q.AGENT_SERVICE)
        xps = r.rows(q.AGENT_XPS)
        s = services.one() or {}
        x = xps.one() or {}
        return AgentState(s.get("status_desc"), s.get("startup_type_desc"), x.get("agent_xps")), (
            services.evidence,
            xps.evidence,
        )

    def endpoints() -> tuple[tuple[Endpoint, ...], tuple[Evidence, ...]]:
        rows = r.rows(q.ENDPOINTS)
        return tuple(
            Endpoint(
                str(d["name"]),
                str(d["state_desc"]),
                str(d["connection_auth_desc"] or ""),
                bool(d["is_encryption_enabled"]),
                str(d["encryption_algorithm_desc"] or ""),
                int(d["port"]),
                d.get("certificate_name"),
                d.get("expiry_date"),
            )
            for d in rows.dicts()
        ), (rows.evidence,)

    def wsfc() -> tuple[Wsfc | None, tuple[Evidence, ...]]:
        if major != 13:
            return None, ()
        clusters, members, grants = r.rows(q.WSFC_CLUSTER), r.rows(q.WSFC_MEMBERS), r.rows(q.WSFC_SYSTEM_GRANTS)
        granted = frozenset(
            str(d["permission_name"]) for d in grants.dicts() if str(d["state_desc"]).startswith("GRANT")
        )
        return Wsfc(tuple(clusters.dicts()), tuple(members.dicts()), granted), (
            clusters.evidence,
            members.evidence,
            grants.evidence,
        )

    def start_time() -> tuple[dt.datetime, tuple[Evidence, ...]]:
        rows = r.rows(q.START_TIME)
        d = rows.one() or {}
        return d["sqlserver_start_time"], (rows.evidence,)

    facts = SqlServerFacts(
        target=session.target,
        login=r.fact("the login's server roles", lambda: _login(r)),
        product=product,
        host_info=r.fact("the host platform", host_info),
        master_key=r.fact("the database master key", master_key),
        hadr=r.fact("the availability-groups feature state", hadr),
        trace_flags=r.fact("the global trace flags", trace_flags),
        startup_parameters=r.fact("the startup parameters", startup),
        agent=r.fact("the SQL Server Agent state", agent),
        agent_operator=r.fact("msdb SQLAgentOperatorRole membership", lambda: _agent_operator(r)),
        endpoints=r.fact("the database mirroring endpoints", endpoints),
        wsfc=r.fact("the Windows Server failover cluster", wsfc),
        start_time=r.fact("the instance start time", start_time),
        databases={name: _database(r, name) for name in databases},
    )
    return _with_counters(facts, session)


F = TypeVar("F", SqlServerFacts, ManagedInstanceFacts)


def _with_counters(facts: F, session: OdbcSession) -> F:
    object.__setattr__(facts, "connections_opened", session.connections_opened)
    object.__setattr__(facts, "round_trips", session.round_trips)
    return facts


def _tde(r: _Reader, name: str) -> Fact[Tde]:
    def run() -> tuple[Tde, tuple[Evidence, ...]]:
        rows = r.rows(q.TDE, name)
        d = rows.one()
        if d is None:
            return Tde(None, None, None, None), (rows.evidence,)
        return Tde(
            d.get("encryption_state"), d.get("encryptor_type"), d.get("certificate_name"), d.get("expiry_date")
        ), (rows.evidence,)

    return r.fact(f"the encryption state of {name}", run)


def _database(r: _Reader, name: str) -> DatabaseFacts:
    def state() -> tuple[DatabaseState, tuple[Evidence, ...]]:
        rows = r.rows(q.DATABASE_STATE, name)
        d = rows.one()
        if d is None:
            return DatabaseState(name, False), (rows.evidence,)
        return DatabaseState(
            name,
            True,
            d.get("recovery_model_desc"),
            d.get("state_desc"),
            d.get("last_log_backup_lsn"),
            bool(d.get("is_broker_enabled")),
        ), (rows.evidence,)

    def backup() -> tuple[FullBackup | None, tuple[Evidence, ...]]:
        rows = r.rows(q.LAST_FULL_BACKUP, name, name)
        d = rows.one()
        if d is None:
            return None, (rows.evidence,)
        return FullBackup(d["backup_finish_date"], bool(d.get("has_backup_checksums"))), (rows.evidence,)

    def storage() -> tuple[StorageFeatures, tuple[Evidence, ...]]:
        groups = r.rows(q.in_database(name, q.XTP_AND_FILESTREAM))
        logs = r.rows(q.in_database(name, q.LOG_FILES))
        tables = r.rows(q.in_database(name, q.FILETABLES))
        memopt = r.rows(q.in_database(name, q.MEMORY_OPTIMIZED_TABLES))
        by_type = {str(d["type"]).strip(): int(d["containers"]) for d in groups.dicts()}
        return StorageFeatures(
            filestream_filegroups=1 if "FD" in by_type else 0,
            xtp_containers=by_type.get("FX"),
            log_files=int((logs.one() or {}).get("log_files") or 0),
            filetables=int((tables.one() or {}).get("filetables") or 0),
            memory_optimized_tables=int((memopt.one() or {}).get("memopt_tables") or 0),
        ), (groups.evidence, logs.evidence, tables.evidence, memopt.evidence)

    def ags() -> tuple[AgMembership, tuple[Evidence, ...]]:
        rows = r.rows(q.AVAILABILITY_GROUPS, name)
        return AgMembership(tuple((str(d["name"]), int(d["db_count"])) for d in rows.dicts())), (rows.evidence,)

    return DatabaseFacts(
        state=r.fact(f"the recovery state of {name}", state),
        last_full_backup=r.fact(f"the backup history of {name}", backup),
        tde=_tde(r, name),
        storage=r.fact(f"the files and filegroups of {name}", storage),
        availability_groups=r.fact(f"the availability groups of {name}", ags),
    )


def read_managed_instance(session: OdbcSession, databases: tuple[str, ...]) -> ManagedInstanceFacts:
    """Every fact the managed-instance checks use, read once over `session`."""
    _connect(session)
    r = _Reader(session)

    def fabric() -> tuple[Fabric, tuple[Evidence, ...]]:
        params = r.rows(q.FABRIC_PARAMETERS)
        primary = r.rows(q.FABRIC_PRIMARY)
        values: dict[str, str] = {}
        for d in params.dicts():
            if str(d["parameter_name"]) == "InstanceName" and str(d["section_name"]) != "SQL":
                continue
            values[str(d["parameter_name"])] = str(d["value"])
        instance = values.get("InstanceName")
        cluster = values.get("ClusterName")
        node = None
        for d in primary.dicts():
            app = str(d["service_name"]).rsplit("/", 1)[-1]
            if instance is None or app.lower() == instance.lower():
                node = f"{d['node_name']}.{cluster}" if cluster else str(d["node_name"])
                break
        port = values.get("HadrPort")
        return Fabric(
            values.get("DnsRecordName"), cluster, instance, int(port) if port and port.isdigit() else None, node
        ), (params.evidence, primary.evidence)

    facts = ManagedInstanceFacts(
        target=session.target,
        login=r.fact("the login's server roles", lambda: _login(r)),
        product=r.fact("the engine edition and update policy", lambda: _product(r)),
        fabric=r.fact("the fabric parameters (node and HADR port)", fabric),
        agent_operator=r.fact("msdb SQLAgentOperatorRole membership", lambda: _agent_operator(r)),
        databases={name: _tde(r, name) for name in databases},
    )
    return _with_counters(facts, session)
