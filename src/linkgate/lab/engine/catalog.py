"""The DuckDB database behind every simulated instance of a process.

Creating DuckDB tables costs about a millisecond each and parsing a VALUES list about 10 µs per value,
so the system tables are created once per process (`Catalog.shared()`), each with two hidden leading
columns: `lg_i` (the row set) and `lg_db` (the database, for database-scoped views). Instances built
from identical specs share one row set; a row set's table is inserted only when a query first reads
it. Live sessions (sys.dm_exec_sessions) are per instance, under the instance's own id. Queries see
only their rows because the translator reads every system view through a filtered derived table;
users can't name the hidden `lab` schema. The collation is case-insensitive (`nocase`), as SQL
Server's default CI_AS.

A DuckDB query costs one to five milliseconds to plan, however few rows it reads, and a fleet of
instances cloned from one scenario asks each of them the same questions of mostly the same rows. So
the catalog also keeps the results of deterministic queries (`cached` / `remember`), keyed by what
decides them: the statement, its bound values, the session variables it reads, and `contents()` —
for each storage table it reads, ids of the row set's values in the columns the statement uses
(`usage.py` asks DuckDB which), the number of rows, and the version of the rows the instance created
at run time. Equal ids mean equal values, whichever instance they belong to: clones differ in GUIDs
and names, which few statements read. Every write to an instance's own rows (`insert_owned`,
`update_owned`, `delete_owned`, `remove_owned`) bumps its version, and live sessions change at every
login, so a query reading sys.dm_exec_sessions is never cached. A query answered from the cache needs
no rows, so its tables are not even inserted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import threading
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

import duckdb

from linkgate.lab.engine.coltypes import duckdb_type
from linkgate.lab.engine.rows import Placed
from linkgate.lab.engine.schema import OWNED_TABLES, TABLES
from linkgate.lab.engine.usage import Usage, UsageAnalyser
from linkgate.lab.results import SqlType

PROPS_TABLE = "lab.server_properties"
SESSIONS_TABLE = TABLES["sys.dm_exec_sessions"]
OWNED_STORAGES = frozenset(TABLES[t].storage for t in OWNED_TABLES)
RESULT_CACHE_ENTRIES = 4096
"""Results kept (least recently used dropped first): a fleet's clones share a few dozen."""
RESULT_CACHE_ROWS = 1000
"""Larger results are not kept: the cache is for the catalog's small answers, not a copy of the tables."""

Contents = tuple[tuple[str, int, tuple[int, ...], int], ...]
"""Per storage table read: (storage, rows in the row set, content ids of the columns used, version of the
instance's own rows)."""
CachedResult = tuple[tuple[Any, ...], tuple[tuple[Any, ...], ...]]
"""A query's cursor description and rows."""


@dataclass
class _RowSet:
    id: int
    users: int = 0
    pending: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    """Storage table → the values (after lg_i) of the rows not inserted yet: made literals only when needed."""
    counts: dict[str, int] = field(default_factory=dict)
    """Storage table → how many rows the row set has there (none: absent)."""
    columns: dict[str, dict[str, int]] = field(default_factory=dict)
    """Storage table → column (lg_db included) → the id of the row set's values in it, in row order."""


class Catalog:
    """One DuckDB connection holding the system tables of many instances."""

    _shared: ClassVar[Catalog | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._con = duckdb.connect(":memory:", config={"threads": 1, "python_enable_replacements": False})
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._row_sets: dict[str, _RowSet] = {}
        self._content_ids: dict[tuple[str, str, bytes], int] = {}
        self._owned_versions: dict[int, int] = {}
        self._new_sessions: dict[int, list[str]] = {}
        """Instance id → its live sessions' rows (as literals) not inserted yet, in login order."""
        self._results: OrderedDict[Hashable, CachedResult] = OrderedDict()
        self._usages: OrderedDict[Hashable, Usage | None] = OrderedDict()
        self.hits = 0
        """Queries answered from the result cache (for benchmarks and self-tests)."""
        self.misses = 0
        """Cacheable queries that DuckDB ran (not found, or not seen before)."""
        ddl = [
            "SET default_collation = 'nocase'",
            "CREATE SCHEMA lab",
            f"CREATE TABLE {PROPS_TABLE} (lg_i INTEGER, k VARCHAR, v VARIANT)",
        ]
        for table in TABLES.values():
            columns = ", ".join(f'"{c.name}" {duckdb_type(c)}' for c in table.columns)
            ddl.append(f"CREATE TABLE {table.storage} (lg_i INTEGER, lg_db VARCHAR, {columns})")
        self._con.execute(";\n".join(ddl))
        self._analyser = UsageAnalyser(";\n".join(ddl), _COLUMNS)

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
                grouped: dict[str, list[tuple[Any, ...]]] = defaultdict(list)  # each row's values after its lg_i
                for table, database, row in rows:
                    grouped[table.storage].append((database, *(row.get(c.name) for c in table.columns)))
                grouped[PROPS_TABLE] = list(properties.items())
                for storage, values in grouped.items():
                    row_set.counts[storage] = len(values)
                    row_set.columns[storage] = {
                        name: self._content_id(storage, name, [r[j] for r in values])
                        for j, name in enumerate(_COLUMNS[storage])
                    }
                    row_set.pending[storage] = values
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

    def _content_id(self, storage: str, column: str, values: list[Any]) -> int:
        """A small id for these values of one column (the same values, in the same order, get the same id).

        By their repr, which tells apart what Python equates but DuckDB stores differently (1, True, 1.0).
        """
        digest = hashlib.blake2b(repr(values).encode(), digest_size=20).digest()
        return self._content_ids.setdefault((storage, column, digest), len(self._content_ids) + 1)

    def ensure(self, key: str, storages: Iterable[str]) -> None:
        """Insert the rows of these storage tables that no query has read yet: the row set's, live sessions'.

        Live sessions go in all at once, each instance's in login order, when any query reads the view:
        few do, and an INSERT per login costs more than the login's other work in the catalog.
        """
        with self._lock:
            script = []
            wanted = set(storages)
            if SESSIONS_TABLE.storage in wanted and self._new_sessions:
                rows = [row for pending in self._new_sessions.values() for row in pending]
                self._new_sessions.clear()
                script.append(f"INSERT INTO {SESSIONS_TABLE.storage} VALUES {', '.join(rows)}")
            row_set = self._row_sets.get(key)
            if row_set is not None and row_set.pending:
                script += [_insert(s, row_set.id, row_set.pending.pop(s)) for s in wanted if s in row_set.pending]
            if script:
                self._con.execute(";\n".join(script))

    def add_session(self, instance_id: int, row: dict[str, Any]) -> None:
        """A new live session of an instance (sys.dm_exec_sessions): inserted when a query reads the view."""
        values = [str(instance_id), "NULL"] + [_literal(row.get(c.name), c.type) for c in SESSIONS_TABLE.columns]
        with self._lock:
            self._new_sessions.setdefault(instance_id, []).append(f"({', '.join(values)})")

    def remove_sessions(self, instance_id: int) -> None:
        with self._lock:
            self._new_sessions.pop(instance_id, None)
            self._con.execute(f"DELETE FROM {SESSIONS_TABLE.storage} WHERE lg_i = {instance_id}")

    def insert_owned(self, instance_id: int, table_name: str, row: dict[str, Any], database: str | None = None) -> None:
        """A row of an object an instance created at run time (a job, a test endpoint), under its own id."""
        table = TABLES[table_name]
        values = [str(instance_id), _literal(database)] + [_literal(row.get(c.name), c.type) for c in table.columns]
        with self._lock:
            self._con.execute(f"INSERT INTO {table.storage} VALUES ({', '.join(values)})")
            self._changed(instance_id)

    def update_owned(self, instance_id: int, table_name: str, key: tuple[str, Any], values: dict[str, Any]) -> None:
        """Set columns of an instance's own rows whose `key` column equals the key value."""
        table = TABLES[table_name]
        assignments = ", ".join(f'"{name}" = ?' for name in values)
        with self._lock:
            self._con.execute(
                f'UPDATE {table.storage} SET {assignments} WHERE lg_i = ? AND "{key[0]}" = ?',
                [*values.values(), instance_id, key[1]],
            )
            self._changed(instance_id)

    def delete_owned(self, instance_id: int, table_name: str, key: tuple[str, Any]) -> int:
        """Remove an instance's own rows whose `key` column equals the key value; how many went."""
        table = TABLES[table_name]
        with self._lock:
            found = self._con.execute(
                f'DELETE FROM {table.storage} WHERE lg_i = ? AND "{key[0]}" = ? RETURNING 1', [instance_id, key[1]]
            ).fetchall()
            self._changed(instance_id)
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
            self._changed(instance_id)

    def _changed(self, instance_id: int) -> None:
        """The instance's own rows changed (call with the lock held, after the write): results read before are stale."""
        self._owned_versions[instance_id] = self._owned_versions.get(instance_id, 0) + 1

    # ---- the result cache (see the module docstring)

    def contents(self, key: str, instance_id: int, usage: Usage) -> Contents | None:
        """What decides a statement's result among an instance's rows (row set `key`, own id); None: no caching.

        For each storage table in `usage`: the row set's row count there, the content ids of the columns
        the statement uses (all, when `usage` does not know), and the version of the instance's own rows.
        Live sessions change at every login and are never cached. Equal contents: equal values in every
        column the statement can read, in the same rows and order, whichever the instance.
        """
        with self._lock:
            row_set = self._row_sets.get(key)
            if row_set is None:
                return None
            out = []
            for storage, used in usage:
                if storage == SESSIONS_TABLE.storage or storage not in _COLUMNS:
                    return None
                columns = row_set.columns.get(storage, {})
                names = used if used is not None and _KNOWN[storage].issuperset(used) else _COLUMNS[storage]
                owned = self._owned_versions.get(instance_id, 0) if storage in OWNED_STORAGES else 0
                ids = tuple(columns.get(name, 0) for name in names)  # 0: the row set has no rows there
                out.append((storage, row_set.counts.get(storage, 0), ids, owned))
            # an instance's own rows are its own: once it has any, its results are keyed by its id too
            if any(owned for *_, owned in out):
                out.append(("", instance_id, (), 0))
            return tuple(out)

    def usage(
        self,
        identity: Hashable,
        sql: str,
        bound: Mapping[str, Any],
        variables: Mapping[str, Any],
        storages: tuple[str, ...],
    ) -> Usage | None:
        """The columns a statement reads (usage.py), worked out once per `identity` (statement, values, variables)."""
        with self._lock:
            if identity in self._usages:
                self._usages.move_to_end(identity)
                return self._usages[identity]
        found = self._analyser.usage(sql, bound, variables, storages)
        with self._lock:
            self._usages[identity] = found
            while len(self._usages) > RESULT_CACHE_ENTRIES:
                self._usages.popitem(last=False)
        return found

    def cached(self, key: Hashable) -> CachedResult | None:
        """A result remembered under `key` (see `remember`), or None."""
        with self._lock:
            found = self._results.get(key)
            if found is None:
                self.misses += 1
            else:
                self.hits += 1
                self._results.move_to_end(key)
            return found

    def remember(self, key: Hashable, description: Sequence[Any], rows: Sequence[tuple[Any, ...]]) -> None:
        """Keep a deterministic query's result under `key` (its statement, values, variables and `contents()`)."""
        if len(rows) > RESULT_CACHE_ROWS:
            return
        with self._lock:
            self._results[key] = (tuple(description), tuple(rows))
            self._results.move_to_end(key)
            while len(self._results) > RESULT_CACHE_ENTRIES:
                self._results.popitem(last=False)

    def connection(self) -> duckdb.DuckDBPyConnection:
        """A new connection for one session: its own variables and temp tables."""
        with self._lock:
            return self._con.cursor()


_COLUMNS: dict[str, tuple[str, ...]] = {
    PROPS_TABLE: ("k", "v"),
    **{t.storage: ("lg_db", *(c.name for c in t.columns)) for t in TABLES.values()},
}
"""Each storage table's columns after lg_i, in order: what a row set's values are kept by."""
_KNOWN = {storage: frozenset(names) for storage, names in _COLUMNS.items()}
_TYPES: dict[str, tuple[SqlType | None, ...]] = {
    PROPS_TABLE: (None, SqlType.SQL_VARIANT),
    **{t.storage: (None, *(c.type for c in t.columns)) for t in TABLES.values()},
}


def _insert(storage: str, row_set: int, rows: list[tuple[Any, ...]]) -> str:
    """INSERT of a row set's rows into a storage table (lg_i first), as literals, in their order."""
    types = _TYPES[storage]
    tuples = (
        f"({row_set}, " + ", ".join(_literal(v, t) for v, t in zip(values, types, strict=True)) + ")" for values in rows
    )
    return f"INSERT INTO {storage} VALUES {', '.join(tuples)}"


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
