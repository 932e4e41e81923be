"""`SimulatedInstance`: a SQL Server or managed instance built from a scenario's `InstanceSpec`.

It implements `linkgate.lab.backend.InstanceBackend`: the TDS server calls `login()` and then the
session's `execute()` / `call_procedure()`. Creating one is cheap (the system rows are stored on first
login), so a process can hold hundreds. Every batch and procedure call is kept in `log()`, so a
self-test can prove that a client sent nothing that changes state (see `audit.py`). The only objects a
client can create are the active probes' (agent.py: msdb jobs; ddl.py: certificates and endpoints);
they are rows the instance owns, gone with `close()`.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import zlib
from collections.abc import Mapping
from typing import Any

from linkgate.lab.backend import Faults, LoggedStatement
from linkgate.lab.engine import errors
from linkgate.lab.engine.agent import Agent
from linkgate.lab.engine.catalog import Catalog
from linkgate.lab.engine.network import EndpointListener, MachineNetwork
from linkgate.lab.engine.profile import Profile, profile
from linkgate.lab.engine.rows import SYSTEM_DB_IDS, system_rows
from linkgate.lab.engine.schema import find
from linkgate.lab.engine.session import EngineSession
from linkgate.lab.scenario import InstanceSpec

FIRST_USER_SPID = 60
PROCEDURES = ("sp_executesql", "sp_datatype_info_100", "sp_datatype_info", "sp_describe_undeclared_parameters")
LINK_PROCEDURE_BUILDS = {13: (13, 0, 7000, 253), 14: (14, 0, 3490, 10)}
"""sys.sp_certificate_add_issuer arrived with the Azure Connect packs (2016, 2017); 2019+ have it."""


class SimulatedInstance:
    """A simulated instance (see module docstring). `close()` frees its rows in the shared catalog."""

    def __init__(self, spec: InstanceSpec, catalog: Catalog | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.faults: Faults = spec.faults
        self.profile: Profile = profile(spec)
        self.catalog = catalog or Catalog.shared()
        self._key = repr(spec)
        self._row_set_id: int | None = None
        self.own_id = self.catalog.new_id()
        self._lock = threading.Lock()
        self._log: list[LoggedStatement] = []
        self._spids = itertools.count(FIRST_USER_SPID)
        self._databases = {name.lower(): name for name in (*SYSTEM_DB_IDS, *spec.databases)}
        self._properties = self.profile.server_properties()
        self.agent = Agent(self)
        self._endpoint_listeners: dict[str, EndpointListener | None] = {}

    # ---- InstanceBackend

    @property
    def product_version(self) -> tuple[int, int, int, int]:
        return self.profile.version

    @property
    def server_name(self) -> str:
        return self.profile.server_name

    def login(
        self, user: str, password: str, database: str | None, *, app_name: str = "", host_name: str = ""
    ) -> EngineSession:
        """Authenticate a SQL login (18456 state 5 unknown, 7 disabled, 8 wrong password; 4060 bad database)."""
        login = next((spec for name, spec in self.spec.logins.items() if name.lower() == user.lower()), None)
        if login is None:
            raise errors.login_failed(user, 5)
        if login.password != password:
            raise errors.login_failed(user, 8)
        if login.disabled:
            raise errors.login_failed(user, 7)
        name = next(n for n in self.spec.logins if n.lower() == user.lower())
        wanted = database or login.default_database
        canonical = self.database_name(wanted)
        if canonical is None:
            raise errors.cannot_open_database(wanted)
        spid = next(self._spids)
        session = EngineSession(self, name, login, spid, canonical, app_name=app_name, host_name=host_name)
        if session.user_in(canonical) is None:
            raise errors.cannot_open_database(wanted)
        self.catalog.add_session(
            self.own_id,
            {
                "session_id": spid,
                "login_time": dt.datetime.now().replace(microsecond=0),
                "host_name": host_name,
                "program_name": app_name,
                "host_process_id": None,
                "client_version": 7,
                "client_interface_name": "ODBC",
                "login_name": name,
                "status": "running",
                "database_id": self.database_id(canonical),
                "original_login_name": name,
                "is_user_process": True,
            },
        )
        return session

    def log(self) -> list[LoggedStatement]:
        with self._lock:
            return list(self._log)

    # ---- used by sessions

    @property
    def row_set_id(self) -> int:
        """The id of this instance's system rows in the shared catalog (shared by identical specs)."""
        with self._lock:
            if self._row_set_id is None:
                self._row_set_id = self.catalog.attach(self._key, lambda: (system_rows(self.profile), self._properties))
            return self._row_set_id

    @property
    def row_set_key(self) -> str:
        """The key of this instance's system rows in the catalog (identical specs share it)."""
        return self._key

    def load(self, storages: tuple[str, ...]) -> None:
        """Make sure the rows of these storage tables are in the catalog before a query reads them."""
        self.catalog.ensure(self._key, storages)

    def record(self, session: EngineSession, text: str, kind: str, params: Mapping[str, Any]) -> None:
        entry = LoggedStatement(dt.datetime.now(), session.login_name, session.database, text, kind, dict(params))
        with self._lock:
            self._log.append(entry)

    def database_name(self, name: str) -> str | None:
        """The database's name as created (names are case-insensitive), or None."""
        return self._databases.get(name.strip("[]").lower())

    def database_id(self, name: str) -> int:
        canonical = self.database_name(name)
        if canonical in SYSTEM_DB_IDS:
            return SYSTEM_DB_IDS[canonical]
        return 5 + list(self.spec.databases).index(canonical) if canonical else 0

    def server_property(self, name: str) -> Any:
        """SERVERPROPERTY(name): NULL for a name SQL Server does not know, as SQL Server answers."""
        return self._properties.get(name.strip().lower())

    def running_trace_flags(self) -> frozenset[int]:
        return frozenset(self.spec.trace_flags.running)

    def object_id(self, name: str, database: str, temp_tables: set[str]) -> int | None:
        """OBJECT_ID(name) for system views and procedures and the session's #temp tables."""
        parts = [p.strip('[]"').lower() for p in name.split(".")]
        if parts[-1].startswith("#"):
            return _stable_id("tempdb", parts[-1]) if parts[-1] in temp_tables else None
        if len(parts) > 3:
            return None
        obj = parts[-1]
        schema = (parts[-2] if len(parts) >= 2 else "") or "dbo"
        db = parts[0] if len(parts) == 3 else database.lower()
        if self.database_name(db) is None:
            return None
        table = find(schema, obj)
        if table is not None:
            if not table.available(self.profile.managed, self.profile.major):
                return None
            if table.scope == "msdb" and db != "msdb":
                return None
            return -_stable_id(table.name)
        if schema == "sys" and (obj in PROCEDURES or (obj == "sp_certificate_add_issuer" and self._link_build())):
            return -_stable_id("sys", obj)
        return None

    # ---- the machine it runs on (set by the lab when the scenario has hosts)

    @property
    def network(self) -> MachineNetwork | None:
        return self.agent.network

    def attach_network(self, network: MachineNetwork) -> None:
        """Run on a lab machine: Agent job steps connect from its namespace, endpoints listen there."""
        self.agent.network = network

    def listen_for_endpoint(self, name: str, port: int) -> None:
        """A STARTED endpoint listens on its port of the machine (shared when something already listens there)."""
        if self.network is not None:
            self._endpoint_listeners[name.lower()] = self.network.listen(port)

    def stop_endpoint_listener(self, name: str) -> None:
        listener = self._endpoint_listeners.pop(name.lower(), None)
        if listener is not None:
            listener.close()

    def close(self) -> None:
        """Forget this instance's rows (its sessions must not be used afterwards); stop its jobs and listeners."""
        self.agent.close()
        for name in list(self._endpoint_listeners):
            self.stop_endpoint_listener(name)
        with self._lock:
            if self._row_set_id is not None:
                self.catalog.detach(self._key)
                self._row_set_id = None
            self.catalog.remove_sessions(self.own_id)
            self.catalog.remove_owned(self.own_id)

    def _link_build(self) -> bool:
        minimum = LINK_PROCEDURE_BUILDS.get(self.profile.major)
        return (
            self.profile.managed
            or self.profile.major >= 15
            or (minimum is not None and self.profile.version >= minimum)
        )


def _stable_id(*parts: str) -> int:
    return zlib.crc32("/".join(parts).encode()) & 0x3FFFFFFF or 1
