"""The contract between the TDS server and whatever answers for a simulated instance.

`linkgate.lab.tds` serves any `InstanceBackend`; `linkgate.lab.engine` provides the real one (T-SQL
evaluated over DuckDB tables shaped like SQL Server's system views). Faults are per instance and
applied by the TDS layer, because they are about the wire (latency, stalls, refusals, resets).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from linkgate.lab.results import Outcome


@dataclass(frozen=True)
class Faults:
    """Wire faults the TDS server injects for one instance.

    - `latency_ms`: added before every response the server sends (one per client round trip).
    - `stall_pattern` / `stall_seconds`: a statement whose text matches this regular expression
      (case-insensitive search) answers only after `stall_seconds`; an ATTENTION cancels it.
    - `refuse`: connections are refused (nothing listens: the port is closed).
    - `drop`: connections are accepted by the kernel but never answered (a black hole).
    - `reset_after_rows`: the connection is reset after this many rows of a result set.
    """

    latency_ms: float = 0.0
    stall_pattern: str | None = None
    stall_seconds: float = 0.0
    refuse: bool = False
    drop: bool = False
    reset_after_rows: int | None = None


@dataclass(frozen=True)
class LoggedStatement:
    """One statement or procedure call an instance received, for self-tests to audit."""

    at: dt.datetime
    login: str
    database: str
    text: str
    kind: str  # "batch", "rpc" (parameterised statement) or "proc" (procedure called by name)
    params: Mapping[str, Any] = field(default_factory=dict)


class Session(Protocol):
    """One logged-in connection's state on an instance."""

    @property
    def database(self) -> str:
        """The current database (ENVCHANGE type 1 announces it after login and USE)."""
        ...

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Outcome]:
        """Run a batch (params None) or a parameterised statement (params by name without '@')."""
        ...

    def call_procedure(self, name: str, params: list[tuple[str, Any]]) -> list[Outcome]:
        """Run a procedure called by name in an RPC (e.g. sp_datatype_info_100); unknown → SqlError 2812."""
        ...


class InstanceBackend(Protocol):
    """A simulated SQL Server or managed instance."""

    name: str
    faults: Faults

    @property
    def product_version(self) -> tuple[int, int, int, int]:
        """Major, minor, build, revision: LOGINACK carries it."""
        ...

    @property
    def server_name(self) -> str:
        """@@SERVERNAME, also sent in ERROR and INFO tokens."""
        ...

    def login(
        self, user: str, password: str, database: str | None, *, app_name: str = "", host_name: str = ""
    ) -> Session:
        """Authenticate a SQL login and open a session; raise SqlError 18456 (state 8 or 5) on failure.

        `database` is the login's requested initial database ("" or None: the login's default).
        """
        ...

    def log(self) -> list[LoggedStatement]:
        """Every statement received so far, oldest first."""
        ...
