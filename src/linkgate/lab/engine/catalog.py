"""The DuckDB database behind every simulated instance of a process.

Creating DuckDB tables costs about a millisecond each and parsing a VALUES list about 10 µs per value,
so the system tables are created once per process (`Catalog.shared()`), each with two hidden leading
columns: `lg_i` (the row set) and `lg_db` (the database, for database-scoped views). Instances built
from identical specs share one row set; a row set's table is inserted only when a query first reads
it. Live sessions (sys.dm_exec_sessions) are per instance, under the instance's own id. Queries see
only their rows because the translator reads every system view through a filtered derived table;
users can't name the hidden `lab` schema. The collation is case-insensitive (`nocase`), as SQL
Server's default CI_AS.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

import duckdb

from linkgate.lab.engine.coltypes import duckdb_type
from linkgate.lab.engine.rows import Placed
from linkgate.lab.engine.schema import OWNED_TABLES, TABLES
from linkgate.lab.results import SqlType

PROPS_TABLE = "lab.server_properties"
SESSIONS_TABLE = TABLES["sys.dm_exec_sessions"]


@dataclass
class _RowSet:
    id: int
    users: int = 0
    pending: dict[str, list[str]] = field(default_factory=dict)
    """Storage table → VALUES tuples not inserted yet."""


class Catalog:
    """One DuckDB connection holding the system tables of many instances."""

    _shared: ClassVar[Catalog | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._con = duckdb.connect(":memory:", config={"threads": 1, "python_enable_replacements": False})
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._row_sets: dict[str, _RowSet] = {}
        ddl = [
            "SET default_collation = 'nocase'",
            "CREATE SCHEMA lab",
            f"CREATE TABLE {PROPS_TABLE} (lg_i INTEGER, k VARCHAR, v VARIANT)",
        ]
        for table in TABLES.values():
            columns = ", ".join(f'"{c.name}" {duckdb_type(c)}' for c in table.columns)
            ddl.append(f"CREATE TABLE {table.storage} (lg_i INTEGER, lg_db VARCHAR, {columns})")
        self._con.execute(";\n".join(ddl))

    @classmethod
    def shared(cls) -> Catalog:
        """The process-wide catalog (created on first use)."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = Catalog()
            return cls._shared

    def new_id(self) -> int:
        """An id for an instance's own rows (its live sessions)."""
        return next(self._ids)

    def attach(self, key: str, build: Callable[[], tuple[list[Placed], dict[str, Any]]]) -> int:
        """The row set for spec `key` (`build()` makes its rows and server properties once); returns its id."""
        with self._lock:
            row_set = self._row_sets.get(key)
            if row_set is None:
                row_set = _RowSet(next(self._ids))
                rows, properties = build()
                grouped: dict[str, list[str]] = defaultdict(list)
                for table, database, row in rows:
                    values = [str(row_set.id), _literal(database)]
                    values += [_literal(row.get(c.name), c.type) for c in table.columns]
                    grouped[table.storage].append("(" + ", ".join(values) + ")")
                grouped[PROPS_TABLE] = [
                    f"({row_set.id}, {_literal(k)}, {_literal(v, SqlType.SQL_VARIANT)})" for k, v in properties.items()
                ]
                row_set.pending = dict(grouped)
                self._row_sets[key] = row_set
            row_set.users += 1
            return row_set.id

    def detach(self, key: str) -> None:
        """One instance of spec `key` is gone; the last one frees the rows."""
        with self._lock:
            row_set = self._row_sets.get(key)
            if row_set is None:
                return
            row_set.users -= 1
            if row_set.users <= 0:
                del self._row_sets[key]
                storages = [*(t.storage for t in TABLES.values()), PROPS_TABLE]
                self._con.execute(";\n".join(f"DELETE FROM {s} WHERE lg_i = {row_set.id}" for s in storages))

    def ensure(self, key: str, storages: Iterable[str]) -> None:
        """Insert the row set's rows of these storage tables if no query has read them yet."""
        row_set = self._row_sets.get(key)
        if row_set is None or not row_set.pending:
            return
        with self._lock:
            script = [
                f"INSERT INTO {s} VALUES {', '.join(row_set.pending.pop(s))}" for s in storages if s in row_set.pending
            ]
            if script:
                self._con.execute(";\n".join(script))

    def add_session(self, instance_id: int, row: dict[str, Any]) -> None:
        """A new live session of an instance (sys.dm_exec_sessions)."""
        values = [str(instance_id), "NULL"] + [_literal(row.get(c.name), c.type) for c in SESSIONS_TABLE.columns]
        with self._lock:
            self._con.execute(f"INSERT INTO {SESSIONS_TABLE.storage} VALUES ({', '.join(values)})")

    def remove_sessions(self, instance_id: int) -> None:
        with self._lock:
            self._con.execute(f"DELETE FROM {SESSIONS_TABLE.storage} WHERE lg_i = {instance_id}")

    def insert_owned(self, instance_id: int, table_name: str, row: dict[str, Any], database: str | None = None) -> None:
        """A row of an object an instance created at run time (a job, a test endpoint), under its own id."""
        table = TABLES[table_name]
        values = [str(instance_id), _literal(database)] + [_literal(row.get(c.name), c.type) for c in table.columns]
        with self._lock:
            self._con.execute(f"INSERT INTO {table.storage} VALUES ({', '.join(values)})")

    def update_owned(self, instance_id: int, table_name: str, key: tuple[str, Any], values: dict[str, Any]) -> None:
        """Set columns of an instance's own rows whose `key` column equals the key value."""
        table = TABLES[table_name]
        assignments = ", ".join(f'"{name}" = ?' for name in values)
        with self._lock:
            self._con.execute(
                f'UPDATE {table.storage} SET {assignments} WHERE lg_i = ? AND "{key[0]}" = ?',
                [*values.values(), instance_id, key[1]],
            )

    def delete_owned(self, instance_id: int, table_name: str, key: tuple[str, Any]) -> int:
        """Remove an instance's own rows whose `key` column equals the key value; how many went."""
        table = TABLES[table_name]
        with self._lock:
            found = self._con.execute(
                f'DELETE FROM {table.storage} WHERE lg_i = ? AND "{key[0]}" = ? RETURNING 1', [instance_id, key[1]]
            ).fetchall()
        return len(found)

    def owned(self, instance_id: int, table_name: str, key: tuple[str, Any] | None = None) -> list[dict[str, Any]]:
        """An instance's own rows of one table (all, or those whose `key` column equals the key value)."""
        table = TABLES[table_name]
        columns = [c.name for c in table.columns]
        where, args = ("lg_i = ?", [instance_id]) if key is None else (f'lg_i = ? AND "{key[0]}" = ?', [instance_id])
        if key is not None:
            args.append(key[1])
        quoted = ", ".join(f'"{c}"' for c in columns)
        with self._lock:
            rows = self._con.execute(f"SELECT {quoted} FROM {table.storage} WHERE {where}", args).fetchall()
        return [dict(zip(columns, r, strict=True)) for r in rows]

    def remove_owned(self, instance_id: int) -> None:
        """Forget every row an instance created at run time (it is closing)."""
        with self._lock:
            self._con.execute(
                ";\n".join(f"DELETE FROM {TABLES[t].storage} WHERE lg_i = {int(instance_id)}" for t in OWNED_TABLES)
            )

    def connection(self) -> duckdb.DuckDBPyConnection:
        """A new connection for one session: its own variables and temp tables."""
        with self._lock:
            return self._con.cursor()


def _literal(value: Any, kind: SqlType | None = None) -> str:
    """A DuckDB literal for a Python value (the rows are generated by the lab, never by a client)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        literal = str(value)
        return f"CAST({literal} AS INTEGER)" if kind is SqlType.SQL_VARIANT and -(2**31) <= value < 2**31 else literal
    if isinstance(value, float | Decimal):
        return str(value)
    if isinstance(value, bytes):
        return "'" + "".join(f"\\x{b:02X}" for b in value) + "'::BLOB"
    if isinstance(value, uuid.UUID):
        return f"'{value}'::UUID"
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            return f"TIMESTAMPTZ '{value.isoformat()}'"
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    text = str(value).replace("'", "''")
    return f"'{text}'"
