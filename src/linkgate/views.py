"""What a check sees: cheap handles over a target's cached facts that record the evidence they hand out.

A check body reads `sql_server.hadr` or `database.state`; the handle returns the typed value and notes
the query behind it, so the report of that check shows exactly the evidence it decided on.
"""

from __future__ import annotations

import datetime as dt

from linkgate.probes.facts import EvidenceRecorder
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


class SqlServerView:
    """A SQL Server's facts, as one check sees them."""

    def __init__(self, name: str, facts: SqlServerFacts, recorder: EvidenceRecorder) -> None:
        self.name = name
        self._facts = facts
        self._use = recorder.use
        self._recorder = recorder

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

    def database(self, name: str) -> DatabaseView:
        return DatabaseView(name, self._facts.databases[name], self._recorder)


class DatabaseView:
    """One database to link, on its SQL Server."""

    def __init__(self, name: str, facts: DatabaseFacts, recorder: EvidenceRecorder) -> None:
        self.name = name
        self._facts = facts
        self._use = recorder.use

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
