"""SQL Server and managed-instance facts, read over one ODBC session per target.

`read_sql_server` and `read_managed_instance` gather every fact group the gate's checks use, once,
and return them typed. A group whose query fails keeps the driver's error; if the connection itself
fails, the whole target is `TargetUnreachable`.
"""

from __future__ import annotations

import datetime as dt
import ntpath
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from linkgate.probes import sql_queries as q
from linkgate.probes.facts import Fact, FactUnavailable, TargetUnreachable
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
    local_node: str | None = None  # SERVERPROPERTY('ComputerNamePhysicalNetBIOS')

    def local_member_state(self) -> str | None:
        """The state (UP, DOWN, …) of the cluster member SQL Server runs on; None when it is not a member.

        Member names are NetBIOS computer names, which Windows compares case-insensitively. An unknown local
        name matches no member (not a row that lacks its name).
        """
        if not self.local_node:
            return None
        wanted = self.local_node.lower()
        for member in self.members:
            if str(member.get("member_name") or "").lower() == wanted:
                return str(member.get("member_state_desc") or "")
        return None


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
    accelerated_recovery: Fact[bool | None]  # None: the database does not exist; not read before 2019
    log_file_paths: Fact[tuple[str, ...]]  # physical_name of each log file (sys.master_files)


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


class _Batch:
    """Statements sent together in one round trip; each fact group then parses its own result sets."""

    def __init__(self, session: OdbcSession) -> None:
        self.session = session
        self.statements: list[str] = []
        self.results: list[Rows | QueryFailed] = []

    def add(self, statement: str) -> int:
        self.statements.append(statement)
        return len(self.statements) - 1

    def run(self) -> None:
        self.results = self.session.query_batch(self.statements)

    def fact(self, what: str, parse: Callable[..., T], *indexes: int) -> Fact[T]:
        """The fact parsed from the result sets at `indexes`, or the first error among them."""
        results = [self.results[i] for i in indexes]
        evidence = tuple(r.evidence for r in results)
        for r in results:
            if isinstance(r, QueryFailed):
                return Fact(what, self.session.target, evidence, None, str(r))
        try:
            value = parse(*results)
        except (KeyError, TypeError, ValueError) as e:
            return Fact(what, self.session.target, evidence, None, f"unexpected result: {e!r}")
        return Fact(what, self.session.target, evidence, value)


def _literal(value: str) -> str:
    """A string as an N'…' literal, so per-database statements can share one batch."""
    return "N'" + value.replace("'", "''") + "'"


def bind(sql: str, *values: str) -> str:
    """Replace each `?` of the spec's parameterised query with a literal, in order."""
    parts = sql.split("?")
    if len(parts) != len(values) + 1:
        raise ValueError(f"{len(parts) - 1} placeholders for {len(values)} values")
    out = parts[0]
    for value, part in zip(values, parts[1:], strict=True):
        out += _literal(value) + part
    return out


def _product(rows: Rows) -> Product:
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
    )


def _login(rows: Rows) -> Login:
    d = rows.one() or {}
    return Login(str(d.get("login_name") or ""), d.get("is_sysadmin") == 1)


def _agent_operator(rows: Rows) -> bool:
    return (rows.one() or {}).get("is_agent_operator") == 1


def _master_key(rows: Rows) -> MasterKey:
    d = rows.one()
    return MasterKey(d is not None, d.get("name") if d else None)


def _hadr(rows: Rows) -> Hadr:
    d = rows.one() or {}
    return Hadr(d.get("is_hadr_enabled"), d.get("hadr_manager_status"))


def _trace_flags(rows: Rows) -> frozenset[int]:
    return frozenset(int(d["TraceFlag"]) for d in rows.dicts() if d.get("Global") == 1 and d.get("Status") == 1)


def _startup(rows: Rows) -> StartupParameters:
    return StartupParameters(tuple(str(d["value_data"]) for d in rows.dicts()))


def _agent(services: Rows, xps: Rows) -> AgentState:
    s = services.one() or {}
    x = xps.one() or {}
    return AgentState(s.get("status_desc"), s.get("startup_type_desc"), x.get("agent_xps"))


def _endpoints(rows: Rows) -> tuple[Endpoint, ...]:
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
    )


def _start_time(rows: Rows) -> dt.datetime:
    value = (rows.one() or {})["sqlserver_start_time"]
    if not isinstance(value, dt.datetime):
        raise TypeError(f"sqlserver_start_time is {value!r}")
    return value


def _host_info(rows: Rows) -> HostInfo:
    d = rows.one() or {}
    return HostInfo(
        str(d.get("host_platform") or ""), str(d.get("host_distribution") or ""), str(d.get("host_release") or "")
    )


def _wsfc(clusters: Rows, members: Rows, grants: Rows, machine: Rows) -> Wsfc:
    granted = frozenset(str(d["permission_name"]) for d in grants.dicts() if str(d["state_desc"]).startswith("GRANT"))
    node = (machine.one() or {}).get("physical_node")
    return Wsfc(tuple(clusters.dicts()), tuple(members.dicts()), granted, str(node) if node else None)


def _accelerated_recovery(rows: Rows) -> bool | None:
    d = rows.one()
    return None if d is None else bool(d.get("is_accelerated_database_recovery_on"))


def _log_file_paths(rows: Rows) -> tuple[str, ...]:
    return tuple(str(d["physical_name"]) for d in rows.dicts() if d.get("physical_name"))


def log_directory(read: Callable[[], SqlServerFacts], databases: tuple[str, ...]) -> str | None:
    """The directory of the first declared database's (first) log file, or None when it can't be read.

    The host checks read the sector size of the volume holding the log (HOST-L-04, HOST-W-04); a Windows
    path (drive letter or backslash) is split the Windows way, anything else the POSIX way. `read` returns
    the server's cached facts; a SQL Server that can't be read yields None, so the host facts fall back to
    the default data directory instead of failing with SQL Server's error.
    """
    if not databases:
        return None
    try:
        facts = read()
    except FactUnavailable:
        return None
    if databases[0] not in facts.databases:
        return None
    fact = facts.databases[databases[0]].log_file_paths
    if fact.error is not None or not fact.value:
        return None
    path = fact.value[0]
    windows = "\\" in path or re.match(r"^[A-Za-z]:", path) is not None
    return (ntpath if windows else posixpath).dirname(path) or None


def _tde(rows: Rows) -> Tde:
    d = rows.one()
    if d is None:
        return Tde(None, None, None, None)
    return Tde(d.get("encryption_state"), d.get("encryptor_type"), d.get("certificate_name"), d.get("expiry_date"))


def _database_state(name: str) -> Callable[[Rows], DatabaseState]:
    def parse(rows: Rows) -> DatabaseState:
        d = rows.one()
        if d is None:
            return DatabaseState(name, False)
        return DatabaseState(
            name,
            True,
            d.get("recovery_model_desc"),
            d.get("state_desc"),
            d.get("last_log_backup_lsn"),
            bool(d.get("is_broker_enabled")),
        )

    return parse


def _full_backup(rows: Rows) -> FullBackup | None:
    d = rows.one()
    return None if d is None else FullBackup(d["backup_finish_date"], bool(d.get("has_backup_checksums")))


def _storage(groups: Rows, logs: Rows, tables: Rows, memopt: Rows) -> StorageFeatures:
    by_type = {str(d["type"]).strip(): int(d["containers"]) for d in groups.dicts()}
    return StorageFeatures(
        filestream_filegroups=1 if "FD" in by_type else 0,
        xtp_containers=by_type.get("FX"),
        log_files=int((logs.one() or {}).get("log_files") or 0),
        filetables=int((tables.one() or {}).get("filetables") or 0),
        memory_optimized_tables=int((memopt.one() or {}).get("memopt_tables") or 0),
    )


def _availability_groups(rows: Rows) -> AgMembership:
    return AgMembership(tuple((str(d["name"]), int(d["db_count"])) for d in rows.dicts()))


def _connect(session: OdbcSession) -> None:
    try:
        session.connect()
    except QueryFailed as e:
        raise TargetUnreachable(session.target, str(e), (e.evidence,)) from e


def _not_read(what: str, target: str, value: T) -> Fact[T]:
    """A fact that, by the facts already read, does not exist on this version (e.g. WSFC outside 2016)."""
    return Fact(what, target, (), value)


def read_sql_server(session: OdbcSession, databases: tuple[str, ...]) -> SqlServerFacts:
    """Every fact the SQL Server checks use, read once over `session` in two round trips."""
    _connect(session)
    first = _Batch(session)
    i = {
        name: first.add(sql)
        for name, sql in (
            ("login", q.LOGIN),
            ("product", q.PRODUCT),
            ("master_key", q.MASTER_KEY),
            ("hadr", q.HADR),
            ("startup", q.STARTUP_PARAMETERS),
            ("services", q.AGENT_SERVICE),
            ("xps", q.AGENT_XPS),
            ("operator", q.AGENT_OPERATOR),
            ("endpoints", q.ENDPOINTS),
            ("start", q.START_TIME),
            ("trace", q.TRACE_FLAGS),  # last: it may return no result set when no flag is on
        )
    }
    first.run()
    product = first.fact("the version and edition", _product, i["product"])
    major = product.value.major if product.value else 0

    second = _Batch(session)
    host = second.add(q.HOST_INFO) if major >= 14 or not major else None
    wsfc = (
        [second.add(sql) for sql in (q.WSFC_CLUSTER, q.WSFC_MEMBERS, q.WSFC_SYSTEM_GRANTS, q.SERVER_MACHINE)]
        if major == 13
        else []
    )
    per_db = {
        name: (
            second.add(bind(q.DATABASE_STATE, name)),
            second.add(bind(q.LAST_FULL_BACKUP, name, name)),
            second.add(bind(q.TDE, name)),
            [
                second.add(q.in_database(name, sql))
                for sql in (q.XTP_AND_FILESTREAM, q.LOG_FILES, q.FILETABLES, q.MEMORY_OPTIMIZED_TABLES)
            ],
            second.add(bind(q.AVAILABILITY_GROUPS, name)),
            second.add(bind(q.ACCELERATED_RECOVERY, name)) if major >= 15 else None,
            second.add(bind(q.LOG_FILE_PATHS, name)),
        )
        for name in databases
    }
    second.run()
    target = session.target
    facts = SqlServerFacts(
        target=target,
        login=first.fact("the login's server roles", _login, i["login"]),
        product=product,
        host_info=second.fact("the host platform", _host_info, host)
        if host is not None
        else _not_read("the host platform", target, None),
        master_key=first.fact("the database master key", _master_key, i["master_key"]),
        hadr=first.fact("the availability-groups feature state", _hadr, i["hadr"]),
        trace_flags=first.fact("the global trace flags", _trace_flags, i["trace"]),
        startup_parameters=first.fact("the startup parameters", _startup, i["startup"]),
        agent=first.fact("the SQL Server Agent state", _agent, i["services"], i["xps"]),
        agent_operator=first.fact("msdb SQLAgentOperatorRole membership", _agent_operator, i["operator"]),
        endpoints=first.fact("the database mirroring endpoints", _endpoints, i["endpoints"]),
        wsfc=second.fact("the Windows Server failover cluster", _wsfc, *wsfc)
        if wsfc
        else _not_read("the Windows Server failover cluster", target, None),
        start_time=first.fact("the instance start time", _start_time, i["start"]),
        databases={
            name: DatabaseFacts(
                state=second.fact(f"the recovery state of {name}", _database_state(name), state),
                last_full_backup=second.fact(f"the backup history of {name}", _full_backup, backup),
                tde=second.fact(f"the encryption state of {name}", _tde, tde),
                storage=second.fact(f"the files and filegroups of {name}", _storage, *storage),
                availability_groups=second.fact(f"the availability groups of {name}", _availability_groups, ags),
                accelerated_recovery=second.fact(f"accelerated database recovery in {name}", _accelerated_recovery, adr)
                if adr is not None
                else _not_read(f"accelerated database recovery in {name}", target, None),
                log_file_paths=second.fact(f"the log file of {name}", _log_file_paths, logs),
            )
            for name, (state, backup, tde, storage, ags, adr, logs) in per_db.items()
        },
    )
    return _with_counters(facts, session)


F = TypeVar("F", SqlServerFacts, ManagedInstanceFacts)


def _with_counters(facts: F, session: OdbcSession) -> F:
    object.__setattr__(facts, "connections_opened", session.connections_opened)
    object.__setattr__(facts, "round_trips", session.round_trips)
    return facts


def _fabric(params: Rows, primary: Rows) -> Fabric:
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
    return Fabric(values.get("DnsRecordName"), cluster, instance, int(port) if port and port.isdigit() else None, node)


def read_managed_instance(session: OdbcSession, databases: tuple[str, ...]) -> ManagedInstanceFacts:
    """Every fact the managed-instance checks use, read once over `session` in one round trip."""
    _connect(session)
    batch = _Batch(session)
    login, product, params, primary, operator = (
        batch.add(sql) for sql in (q.LOGIN, q.PRODUCT, q.FABRIC_PARAMETERS, q.FABRIC_PRIMARY, q.AGENT_OPERATOR)
    )
    tde = {name: batch.add(bind(q.TDE, name)) for name in databases}
    batch.run()
    facts = ManagedInstanceFacts(
        target=session.target,
        login=batch.fact("the login's server roles", _login, login),
        product=batch.fact("the engine edition and update policy", _product, product),
        fabric=batch.fact("the fabric parameters (node and HADR port)", _fabric, params, primary),
        agent_operator=batch.fact("msdb SQLAgentOperatorRole membership", _agent_operator, operator),
        databases={name: batch.fact(f"the encryption state of {name}", _tde, index) for name, index in tde.items()},
    )
    return _with_counters(facts, session)
