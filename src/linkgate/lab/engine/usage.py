"""Which columns of the lab's storage tables a DuckDB statement reads: all its result can depend on.

The catalog reuses a query's result for another instance whose rows hold the same values in those
columns (catalog.py). Fleet clones differ only in GUIDs and names, and a statement that reads none of
those has one answer for all of them — but only DuckDB knows for sure which columns a statement
reads, through joins, subqueries, CASE, aggregates and the derived tables the translator wraps every
system view in. So the statement is planned once (`EXPLAIN (FORMAT JSON)`) in a database of its own
with the same, empty, tables and every optimizer off but the two that drop unused columns: what is
left in each table scan's projection is what the statement references, decided by its text alone —
no statistics, no constant folding, nothing the data or the values could change.

Anything the plan does not show plainly makes the answer "every column" (a scan with filters pushed
into it, a storage table named more often in the statement than the plan scans it, a column this
module does not know) or "do not reuse"
(a scan of a lab table that reads no `lg_i`, i.e. is not limited to one instance's rows; a plan that
fails). Both only cost a cache miss.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

import duckdb

Usage = tuple[tuple[str, tuple[str, ...] | None], ...]
"""Per storage table a statement reads: the columns it uses (sorted, lg_i left out), or None: all of them."""

KEPT_OPTIMIZERS = frozenset({"unused_columns", "column_lifetime"})
ROW_SET_COLUMN = "lg_i"
_PREFIX = "memory."


class UsageAnalyser:
    """Plans statements in a database with the catalog's tables, empty, to read which columns they use."""

    def __init__(self, ddl: str, columns: Mapping[str, tuple[str, ...]]) -> None:
        self._ddl = ddl
        self._columns = {storage: frozenset(names) for storage, names in columns.items()}
        self._con: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()

    def usage(
        self, sql: str, bound: Mapping[str, Any], variables: Mapping[str, Any], storages: tuple[str, ...]
    ) -> Usage | None:
        """The columns `sql` reads of each storage table (see the module docstring); None: do not reuse its result.

        `bound` are its parameters and `variables` the session variables it reads, as the session sets them.
        """
        with self._lock:
            try:
                con = self._connection()
                for name, value in variables.items():
                    con.execute(f"SET VARIABLE {name} = $v", {"v": value})
                plan = con.execute("EXPLAIN (FORMAT JSON) " + sql, dict(bound)).fetchall()
            except duckdb.Error:
                return None
        used: dict[str, set[str] | None] = dict.fromkeys(storages)
        seen: set[str] = set()
        scanned: Counter[str] = Counter()
        try:
            scans = [info for _key, text in plan for node in json.loads(text) for info in _scans(node)]
        except (TypeError, ValueError, AttributeError):
            return None
        for table, info in scans:
            storage = table.removeprefix(_PREFIX)
            known = self._columns.get(storage)
            if not table.startswith(_PREFIX) or known is None:
                return None  # a table the catalog does not keep by instance
            projected = info.get("Projections")
            names = [projected] if isinstance(projected, str) else projected
            if not isinstance(names, list) or ROW_SET_COLUMN not in names:
                return None  # not limited to one row set: other instances' rows decide it too
            columns = {str(n) for n in names} - {ROW_SET_COLUMN}
            scanned[storage] += 1
            if "Filters" in info or not columns <= known:
                seen.add(storage)
                used[storage] = None
                continue
            if storage in seen:
                previous = used.get(storage)
                used[storage] = None if previous is None else previous | columns
            else:
                seen.add(storage)
                used[storage] = columns
        for storage in seen:  # every mention must be a scan, or one the plan left out could read other columns
            if len(re.findall(rf"\b{re.escape(storage)}\b", sql)) != scanned[storage]:
                used[storage] = None
        return tuple(
            (storage, tuple(sorted(columns)) if columns is not None and storage in seen else None)
            for storage, columns in sorted(used.items())
        )

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            con = duckdb.connect(":memory:", config={"threads": 1, "python_enable_replacements": False})
            con.execute(self._ddl)
            names = [str(row[0]) for row in con.execute("SELECT name FROM duckdb_optimizers()").fetchall()]
            disabled = ",".join(n for n in names if n not in KEPT_OPTIMIZERS)
            con.execute(f"SET disabled_optimizers = '{disabled}'")
            self._con = con
        return self._con


def _scans(node: Any) -> list[tuple[str, dict[str, Any]]]:
    """(table, extra info) of every operator of a JSON plan that reads a table."""
    found: list[tuple[str, dict[str, Any]]] = []
    info = node.get("extra_info") or {}
    if isinstance(info, dict) and info.get("Table"):
        found.append((str(info["Table"]), info))
    for child in node.get("children") or []:
        found.extend(_scans(child))
    return found
