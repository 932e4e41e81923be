"""Where the host checks look for the log volume: the directory of the first declared database's log file."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from linkgate.probes.facts import Fact, FactUnavailable
from linkgate.probes.sql import SqlServerFacts, log_directory


def _facts(**log_paths: tuple[str, ...] | str) -> SqlServerFacts:
    """Only what log_directory reads: databases[name].log_file_paths (a tuple, or an error text)."""
    databases: dict[str, Any] = {}
    for name, paths in log_paths.items():
        if isinstance(paths, str):
            fact: Fact[tuple[str, ...]] = Fact("log files", "sql01", (), error=paths)
        else:
            fact = Fact("log files", "sql01", (), paths)
        databases[name] = SimpleNamespace(log_file_paths=fact)
    return cast(SqlServerFacts, SimpleNamespace(databases=databases))


@pytest.mark.parametrize(
    ("path", "directory"),
    [
        ("/var/opt/mssql/data/SalesDB_log.ldf", "/var/opt/mssql/data"),
        ("/mnt/log volume/SalesDB_log.ldf", "/mnt/log volume"),
        (r"L:\Logs\SalesDB_log.ldf", "L:\\Logs"),
        (
            r"C:\Program Files\Microsoft SQL Server\MSSQL16.MSSQLSERVER\MSSQL\DATA\SalesDB_log.ldf",
            r"C:\Program Files\Microsoft SQL Server\MSSQL16.MSSQLSERVER\MSSQL\DATA",
        ),
    ],
)
def test_the_directory_is_split_the_way_its_os_writes_paths(path: str, directory: str) -> None:
    facts = _facts(SalesDB=(path, "/elsewhere/second.ldf"))
    assert log_directory(lambda: facts, ("SalesDB", "InventoryDB")) == directory


def test_the_first_declared_database_decides() -> None:
    facts = _facts(InventoryDB=("/inv/log.ldf",), SalesDB=("/sales/log.ldf",))
    assert log_directory(lambda: facts, ("SalesDB", "InventoryDB")) == "/sales"


def test_nothing_to_go_on_falls_back_to_the_default_data_directory() -> None:
    """None means: read the default data directory (the host checks then say which path they measured)."""
    assert log_directory(lambda: _facts(SalesDB=("/x/log.ldf",)), ()) is None
    assert log_directory(lambda: _facts(SalesDB=()), ("SalesDB",)) is None
    assert log_directory(lambda: _facts(SalesDB="permission denied (229)"), ("SalesDB",)) is None
    assert log_directory(lambda: _facts(), ("SalesDB",)) is None

    def unreachable() -> SqlServerFacts:
        raise FactUnavailable("SQL Server", "sql01", "Login timeout expired", ())

    assert log_directory(unreachable, ("SalesDB",)) is None
