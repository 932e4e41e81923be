"""What one test item checks: a SQL Server, one of its databases, its host, the managed instance, one of its
databases, or the client machine that runs SSMS.

The plugin fans each prerequisite out over the targets the environment declares; the pytest id reads
`<env>/<target>[/<object>]`, e.g. `demo/sql01/SalesDB`, and never carries credentials.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from linkgate.environment import Environment


class Kind(enum.Enum):
    SQL_SERVER = "sql_server"
    DATABASE = "database"
    MANAGED_INSTANCE = "managed_instance"
    MI_DATABASE = "mi_database"
    HOST = "host"
    CLIENT = "client"


CLIENT_LABEL = "client_host"
"""The client machine's name in ids, reports and waivers: the environment key that declares it (it has no other)."""


@dataclass(frozen=True)
class Target:
    environment: str
    kind: Kind
    server: str
    database: str | None = None
    host_os: str | None = None

    @property
    def label(self) -> str:
        """The target as reports and waivers name it: `sql01` or `sql01/SalesDB`."""
        return f"{self.server}/{self.database}" if self.database else self.server

    @property
    def id(self) -> str:
        return f"{self.environment}/{self.label}"


T = TypeVar("T")


# Which fixture names a prerequisite asks for decides what it is fanned out over, the first found winning. A host
# check that also reads SQL Server's facts (sql_host and sql_server) is a host check: it applies only where the
# host is declared, and its sql_server is the one on that host (the same target.server).
FANOUT_FIXTURES = {
    "database": Kind.DATABASE,
    "mi_database": Kind.MI_DATABASE,
    "sql_host": Kind.HOST,
    "sql_server": Kind.SQL_SERVER,
    "azure_peer": Kind.SQL_SERVER,
    "mi": Kind.MANAGED_INSTANCE,
    "azure": Kind.MANAGED_INSTANCE,
    "client_host": Kind.CLIENT,
}


def fanout_kind(fixture_names: list[str] | tuple[str, ...]) -> Kind | None:
    """The most specific target kind among a test's fixtures (a database beats its server)."""
    for name, kind in FANOUT_FIXTURES.items():
        if name in fixture_names:
            return kind
    return None


def targets_for(env: Environment, kind: Kind) -> list[Target]:
    """Every target of one kind the environment declares, in file order (the client machine: always one)."""
    mi = env.managed_instance
    if kind is Kind.CLIENT:
        # One target even when client_host is not declared: the report then says the check does not apply, and
        # why (applicability.not_applicable_reason), rather than leaving CLIENT-01 out without a word.
        return [Target(env.name, kind, CLIENT_LABEL, None, "windows")]
    if kind is Kind.MANAGED_INSTANCE:
        return [Target(env.name, kind, mi.name)]
    if kind is Kind.MI_DATABASE:
        # The databases on the managed instance: declared there, else the same names as on SQL Server.
        dbs = mi.databases or tuple(d for s in env.sql_servers.values() for d in s.databases)
        return [Target(env.name, kind, mi.name, d) for d in dict.fromkeys(dbs)]
    out: list[Target] = []
    for s in env.sql_servers.values():
        os_name = s.host_os.value
        if kind is Kind.DATABASE:
            out.extend(Target(env.name, kind, s.name, d, os_name) for d in s.databases)
        else:
            out.append(Target(env.name, kind, s.name, None, os_name))
    return out


def in_target_order(env: Environment, items: Sequence[T], target_of: Callable[[T], Target | None]) -> list[T]:
    """`items` grouped by the server they check, in the order the facts cache reads them (the managed
    instance, then the SQL Servers in file order); within a server, the collection order is kept.

    The facts of every target are read concurrently from the first check on; consuming them in the same
    order lets pytest's own per-item work overlap the reads of the targets still to come, instead of the
    first prerequisite waiting for the slowest of 200 servers. Items without a target keep their place
    at the front.
    """
    rank = {env.managed_instance.name: 0, **{name: i for i, name in enumerate(env.sql_servers, start=1)}}

    def key(pair: tuple[int, T]) -> tuple[int, int]:
        target = target_of(pair[1])
        return (-1 if target is None else rank.get(target.server, len(rank)), pair[0])

    return [item for _, item in sorted(enumerate(items), key=key)]
