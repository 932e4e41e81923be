"""What a check sees: cheap handles over a target's cached facts that record the evidence they hand out.

A check body reads `sql_server.hadr` or `database.state`; the handle returns the typed value and notes
the query behind it, so the report of that check shows exactly the evidence it decided on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING

from linkgate.environment import SqlServer
from linkgate.firewall.flows import Flow, Verdict
from linkgate.firewall.remediation import windows_command
from linkgate.firewall.windows import evaluate_windows
from linkgate.probes.active import ActiveProbes, Connectivity
from linkgate.probes.facts import EvidenceRecorder, Fact, FactUnavailable
from linkgate.probes.host import (
    ClientHostFacts,
    FailoverCluster,
    LinuxHostFacts,
    LocalNetworks,
    MssqlConf,
    SectorSize,
    ServiceState,
    SqlHost,
    SsmsInventory,
    StartupParams,
    WindowsHostFacts,
    WindowsOs,
    WindowsServices,
    read_local_epoch,
)
from linkgate.probes.net import HostNetwork, Listeners, Resolution, TcpConnect
from linkgate.probes.sql import (
    AgentState,
    AgMembership,
    DatabaseFacts,
    DatabaseState,
    Endpoint,
    Fabric,
    FullBackup,
    Hadr,
    HostInfo,
    Login,
    ManagedInstanceFacts,
    MasterKey,
    Product,
    SqlServerFacts,
    StartupParameters,
    StorageFeatures,
    Tde,
    Wsfc,
)

if TYPE_CHECKING:  # an annotation only: the fixtures hand the gate's cache in
    from linkgate.gather import FactsCache

LogSectorReader = Callable[[], Fact[SectorSize] | None]
"""Reads the sector-size fact of a SQL Server's declared host on demand (None: no host is declared)."""


class _Notes:
    """What a view lets a check say besides its verdict."""

    _recorder: EvidenceRecorder

    def note(self, text: str) -> None:
        """Say something with the check's outcome even when it passes: why a pass needed no fix, or a manual
        step the gate can't verify (the report shows it as the passed record's message)."""
        self._recorder.note(text)


class SqlServerView(_Notes):
    """A SQL Server's facts, as one check sees them."""

    def __init__(
        self,
        name: str,
        facts: SqlServerFacts,
        recorder: EvidenceRecorder,
        *,
        log_sector: LogSectorReader | None = None,
    ) -> None:
        """`log_sector` reaches the declared host's log-volume sector size (`log_sector_reader`); without it
        `log_sector_size` is None, as when no host is declared."""
        self.name = name
        self._facts = facts
        self._use = recorder.use
        self._recorder = recorder
        self._log_sector = log_sector

    @property
    def login(self) -> Login:
        return self._use(self._facts.login)

    @property
    def product(self) -> Product:
        return self._use(self._facts.product)

    @property
    def host_info(self) -> HostInfo | None:
        return self._use(self._facts.host_info)

    @property
    def master_key(self) -> MasterKey:
        return self._use(self._facts.master_key)

    @property
    def hadr(self) -> Hadr:
        return self._use(self._facts.hadr)

    @property
    def trace_flags(self) -> frozenset[int]:
        """Trace flags enabled globally right now (DBCC TRACESTATUS(-1))."""
        return self._use(self._facts.trace_flags)

    @property
    def startup_parameters(self) -> StartupParameters:
        return self._use(self._facts.startup_parameters)

    @property
    def agent(self) -> AgentState:
        return self._use(self._facts.agent)

    @property
    def is_agent_operator(self) -> bool:
        return self._use(self._facts.agent_operator)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self._use(self._facts.endpoints)

    @property
    def wsfc(self) -> Wsfc | None:
        return self._use(self._facts.wsfc)

    @property
    def start_time(self) -> dt.datetime:
        return self._use(self._facts.start_time)

    @property
    def log_sector_size(self) -> int | None:
        """The physical sector size of the log volume in bytes, as the declared host reports it (HOST-L-04,
        HOST-W-04); None when no host is declared, or the host or the size can't be read.

        Read on first use through the gate's cache (the host checks share the read): a SQL Server check that
        consults it must never fail or error because the host is out of reach, so errors count as unknown.
        """
        if self._log_sector is None:
            return None
        try:
            fact = self._log_sector()
        except FactUnavailable:  # the host is unreachable: the size is unknown, not the SQL check's failure
            return None
        if fact is None or fact.error is not None:
            return None
        return self._use(fact).physical

    def database(self, name: str) -> DatabaseView:
        return DatabaseView(name, self._facts.databases[name], self._recorder)


def log_sector_reader(cache: FactsCache, server: SqlServer) -> LogSectorReader:
    """How a SqlServerView reaches its host's log-volume sector size without becoming a host check.

    A check that asked for the `sql_host` fixture would be fanned out over hosts (targets.FANOUT_FIXTURES);
    this reader lets a SQL Server check consult the host lazily, through the same cached read the host checks use.
    """

    def read() -> Fact[SectorSize] | None:
        if server.host is None:
            return None
        host, _ = cache.sql_host(server.name)
        facts = host.linux or host.windows
        return None if facts is None else facts.sector_size

    return read


class DatabaseView(_Notes):
    """One database to link, on its SQL Server."""

    def __init__(self, name: str, facts: DatabaseFacts, recorder: EvidenceRecorder) -> None:
        self.name = name
        self._facts = facts
        self._use = recorder.use
        self._recorder = recorder

    @property
    def state(self) -> DatabaseState:
        return self._use(self._facts.state)

    @property
    def last_full_backup(self) -> FullBackup | None:
        return self._use(self._facts.last_full_backup)

    @property
    def tde(self) -> Tde:
        return self._use(self._facts.tde)

    @property
    def storage(self) -> StorageFeatures:
        return self._use(self._facts.storage)

    @property
    def availability_groups(self) -> AgMembership:
        return self._use(self._facts.availability_groups)

    @property
    def accelerated_recovery(self) -> bool | None:
        """is_accelerated_database_recovery_on (None: not read, before SQL Server 2019, or no such database)."""
        return self._use(self._facts.accelerated_recovery)


class ManagedInstanceView:
    """The managed instance's facts, as one check sees them."""

    def __init__(self, name: str, facts: ManagedInstanceFacts, recorder: EvidenceRecorder) -> None:
        self.name = name
        self._facts = facts
        self._use = recorder.use

    @property
    def login(self) -> Login:
        return self._use(self._facts.login)

    @property
    def product(self) -> Product:
        return self._use(self._facts.product)

    @property
    def fabric(self) -> Fabric:
        return self._use(self._facts.fabric)

    @property
    def is_agent_operator(self) -> bool:
        return self._use(self._facts.agent_operator)

    def database_tde(self, name: str) -> Tde:
        return self._use(self._facts.databases[name])


class SqlHostView(_Notes):
    """The machine that runs one SQL Server, as one check sees it: its facts, and network questions asked there.

    Linux facts (service, mssql.conf) exist only on Linux hosts, Windows facts (services, startup
    parameters, OS) only on Windows hosts; the checks declare which OS they apply to.
    """

    def __init__(self, server: SqlServer, host: SqlHost, network: HostNetwork, recorder: EvidenceRecorder) -> None:
        self.name = server.name
        self.endpoint_port = server.endpoint_port
        self.os = server.host_os
        self._server = server
        self._host = host
        self._network = network
        self._use = recorder.use
        self._recorder = recorder

    def _linux(self) -> LinuxHostFacts:
        if self._host.linux is None:
            raise FactUnavailable("Linux host facts", self.name, "the host is declared as Windows (host_os)")
        return self._host.linux

    def _windows(self) -> WindowsHostFacts:
        if self._host.windows is None:
            raise FactUnavailable("Windows host facts", self.name, "the host is declared as Linux (host_os)")
        return self._host.windows

    @property
    def service(self) -> ServiceState:
        return self._use(self._linux().service)

    @property
    def mssql_conf(self) -> MssqlConf:
        return self._use(self._linux().mssql_conf)

    def epoch_of_local_time(self, when: dt.datetime) -> int:
        """A time SQL Server reported without zone, as seconds since the epoch in the host's time zone (one `date`
        call: only the restart-pending check needs it)."""
        return self._use(self._host.shell.fact("the host's time zone", lambda s: read_local_epoch(s, when)))

    @property
    def windows_services(self) -> WindowsServices:
        return self._use(self._windows().services)

    @property
    def startup_parameters(self) -> StartupParams:
        return self._use(self._windows().startup)

    @property
    def windows_os(self) -> WindowsOs:
        return self._use(self._windows().os)

    @property
    def failover_cluster(self) -> FailoverCluster:
        """The Failover-Clustering feature and the cluster's nodes (read on first use: only 2016 needs it)."""
        return self._use(self._windows().cluster())

    @property
    def sector_size(self) -> SectorSize:
        facts = self._host.linux or self._host.windows
        assert facts is not None
        return self._use(facts.sector_size)

    @property
    def networks(self) -> LocalNetworks:
        """The host's own IPv4 networks (interface addresses with their prefixes)."""
        facts = self._host.linux or self._host.windows
        assert facts is not None
        return self._use(facts.networks)

    @property
    def address(self) -> str:
        """The host's address in the link's flows: address_seen_by_mi, else its first own global address."""
        if self._server.address_seen_by_mi is not None:
            return str(self._server.address_seen_by_mi)
        interfaces = self.networks.interfaces
        if not interfaces:
            raise FactUnavailable("the host's address", self.name, "it has no global IPv4 address")
        return str(interfaces[0].ip)

    def firewall(self, flow: Flow) -> Verdict:
        """The host firewall's decision for `flow` (evidence: the listing it was read from)."""
        if self._host.windows is not None:
            return evaluate_windows(self._use(self._host.windows.firewall), flow)
        return self._use(self._linux().firewall).evaluate(flow)

    def firewall_fix(self, verdict: Verdict) -> str:
        """The command that opens a denied flow, in the host firewall's own syntax."""
        if self._host.windows is not None:
            return windows_command(verdict)
        return self._use(self._linux().firewall).remedy(verdict)

    def firewall_if_readable(self, flow: Flow) -> Verdict | None:
        """Like firewall(), but None when the firewall could not be read (to explain another failure)."""
        try:
            return self.firewall(flow)
        except FactUnavailable:
            return None

    def resolve(self, name: str) -> Resolution:
        """What `name` resolves to on this host."""
        return self._use(self._network.resolve(name))

    def connect(self, host: str, port: int) -> TcpConnect:
        """A TCP connection attempt from this host to host:port."""
        return self._use(self._network.connect(host, port))

    def listeners(self, port: int) -> Listeners:
        """What listens on local TCP `port` of this host (ss on Linux, Get-NetTCPConnection on Windows)."""
        return self._use(self._network.listeners(port))


class ActiveProbesView:
    """The opt-in active probes of one SQL Server, as one check sees them (the probes' evidence is recorded).

    Each probe runs once per gate process, when a check first reads it, and removes what it created.
    """

    def __init__(
        self,
        server: str,
        probes: ActiveProbes,
        fabric: Callable[[], Fact[Fabric]],
        host: Callable[[], HostNetwork | None],
        recorder: EvidenceRecorder,
    ) -> None:
        self.name = server
        self._probes = probes
        self._fabric = fabric
        self._host = host
        self._use = recorder.use

    @property
    def mi_to_sql(self) -> Connectivity:
        """The managed instance's Agent job (NetHelper) connecting to this SQL Server's endpoint port."""
        return self._use(self._probes.mi_to_sql(self.name))

    @property
    def sql_to_mi(self) -> Connectivity:
        """This SQL Server connecting to the managed instance on 5022 and on its node's HADR port."""
        fabric = self._use(self._fabric())
        return self._use(self._probes.sql_to_mi(self.name, fabric, self._host()))


class ClientHostView:
    """The machine that runs SSMS to create the link (the environment's client_host), as one check sees it."""

    def __init__(self, name: str, facts: ClientHostFacts, recorder: EvidenceRecorder) -> None:
        self.name = name
        self._facts = facts
        self._use = recorder.use

    @property
    def ssms(self) -> SsmsInventory:
        """Every SSMS installed there (Uninstall registry keys and vswhere)."""
        return self._use(self._facts.ssms)
