"""What a simulated SQL Server answers, in SQL Server's own terms, independent of the wire.

This is the seam between the T-SQL engine (`linkgate.lab.engine`), which decides *what* an instance
answers, and the TDS server (`linkgate.lab.tds`), which decides *how* those answers travel. The engine
never sees bytes; the TDS layer never sees SQL semantics. Types are SQL Server's, because the wire
types are what clients (pyodbc over Driver 18 or FreeTDS) react to: a sql_variant column breaks
pyodbc where an nvarchar does not.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


class SqlType(enum.Enum):
    """The SQL Server data types the lab puts on the wire."""

    TINYINT = "tinyint"
    SMALLINT = "smallint"
    INT = "int"
    BIGINT = "bigint"
    BIT = "bit"
    REAL = "real"
    FLOAT = "float"
    DECIMAL = "decimal"
    NUMERIC = "numeric"  # same values as decimal, but its own TYPE_INFO (NUMERICN) and ODBC type
    MONEY = "money"
    CHAR = "char"
    VARCHAR = "varchar"
    NCHAR = "nchar"
    NVARCHAR = "nvarchar"
    VARBINARY = "varbinary"
    BINARY = "binary"
    UNIQUEIDENTIFIER = "uniqueidentifier"
    DATE = "date"
    TIME = "time"
    DATETIME = "datetime"
    SMALLDATETIME = "smalldatetime"
    DATETIME2 = "datetime2"
    DATETIMEOFFSET = "datetimeoffset"
    SQL_VARIANT = "sql_variant"


MAX = -1
"""`length` of an (n)varchar(max) / varbinary(max) column."""


@dataclass(frozen=True)
class Column:
    """One result column as SQL Server describes it in COLMETADATA.

    `length` is in characters for (n)char/(n)varchar and in bytes for (var)binary, `MAX` for (max);
    `name` is "" for an unaliased expression, as SQL Server sends it.
    """

    name: str
    type: SqlType
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    nullable: bool = True


@dataclass(frozen=True)
class Variant:
    """A value of a sql_variant column: the base type travels with each value.

    `base` describes the base type (its `name` is ignored); `value` is the Python value of that type.
    """

    base: Column
    value: Any


@dataclass
class ResultSet:
    """Rows of one SELECT (or DBCC / procedure result set); values are Python values of each column's type.

    bit → bool, integers → int, decimal → decimal.Decimal, (n)varchar → str, (var)binary → bytes,
    uniqueidentifier → uuid.UUID, date/time types → datetime.date / datetime.time / datetime.datetime
    (datetimeoffset: tz-aware), sql_variant → Variant or None, NULL → None.
    """

    columns: tuple[Column, ...]
    rows: list[tuple[Any, ...]] = field(default_factory=list)


@dataclass(frozen=True)
class RowCount:
    """A statement that returned no result set, with the rows it affected (None: no count, e.g. SET)."""

    count: int | None = None


@dataclass(frozen=True)
class Message:
    """An informational message (INFO token), e.g. 5701 'Changed database context to ...'."""

    number: int
    message: str
    state: int = 1
    severity: int = 0


@dataclass(frozen=True)
class DatabaseChanged:
    """The session's current database changed (USE): the client gets ENVCHANGE type 1."""

    old: str
    new: str


@dataclass(frozen=True)
class ReturnStatus:
    """The return value of a procedure call (RETURNSTATUS token)."""

    value: int


class SqlError(Exception):
    """An error as SQL Server raises it: number, state and severity (class) decide the client's SQLSTATE.

    Examples: 18456 login failed (severity 14), 229 permission denied (14), 208 invalid object name
    (16), 207 invalid column name (16), 2812 could not find stored procedure (16), 102 syntax (15).
    """

    def __init__(
        self, number: int, message: str, *, state: int = 1, severity: int = 16, line: int = 1, procedure: str = ""
    ) -> None:
        super().__init__(f"Msg {number}, Level {severity}, State {state}: {message}")
        self.number = number
        self.message = message
        self.state = state
        self.severity = severity
        self.line = line
        self.procedure = procedure


Outcome = ResultSet | RowCount | Message | DatabaseChanged | ReturnStatus | SqlError
"""One item of what a batch or procedure call produced, in order. A SqlError ends the batch."""


def outcomes_ok(outcomes: Sequence[Outcome]) -> bool:
    """True when no item of a batch's outcome is an error."""
    return not any(isinstance(o, SqlError) for o in outcomes)
