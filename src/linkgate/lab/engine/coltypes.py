"""SQL Server column types ↔ DuckDB types, and Python values shaped for the wire.

DuckDB computes; SQL Server's type is what the client sees. A result column takes the type the query
implies (a CAST's target, the documented type of a system-view column, a function's return type) and
falls back to the closest SQL Server type of DuckDB's result type only when nothing more is known.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import uuid
from decimal import Decimal
from typing import Any

from sqlglot import exp

from linkgate.lab.results import MAX, Column, SqlType, Variant

DUCKDB_TYPES = {
    SqlType.TINYINT: "UTINYINT",
    SqlType.SMALLINT: "SMALLINT",
    SqlType.INT: "INTEGER",
    SqlType.BIGINT: "BIGINT",
    SqlType.BIT: "BOOLEAN",
    SqlType.REAL: "FLOAT",
    SqlType.FLOAT: "DOUBLE",
    SqlType.MONEY: "DECIMAL(19,4)",
    SqlType.CHAR: "VARCHAR",
    SqlType.VARCHAR: "VARCHAR",
    SqlType.NCHAR: "VARCHAR",
    SqlType.NVARCHAR: "VARCHAR",
    SqlType.VARBINARY: "BLOB",
    SqlType.BINARY: "BLOB",
    SqlType.UNIQUEIDENTIFIER: "UUID",
    SqlType.DATE: "DATE",
    SqlType.TIME: "TIME",
    SqlType.DATETIME: "TIMESTAMP",
    SqlType.SMALLDATETIME: "TIMESTAMP",
    SqlType.DATETIME2: "TIMESTAMP",
    SqlType.DATETIMEOFFSET: "TIMESTAMPTZ",
    SqlType.SQL_VARIANT: "VARIANT",
}
CHAR_TYPES = {SqlType.CHAR, SqlType.VARCHAR, SqlType.NCHAR, SqlType.NVARCHAR}
INTEGER_TYPES = {SqlType.TINYINT, SqlType.SMALLINT, SqlType.INT, SqlType.BIGINT}
EXACT_NUMERIC_TYPES = {SqlType.DECIMAL, SqlType.NUMERIC}
"""decimal(p,s) and numeric(p,s): the same values and DuckDB type; only the wire type code differs."""
_SQLGLOT_TYPES = {
    "BIT": SqlType.BIT,
    "BOOLEAN": SqlType.BIT,
    "UTINYINT": SqlType.TINYINT,
    "TINYINT": SqlType.TINYINT,
    "SMALLINT": SqlType.SMALLINT,
    "INT": SqlType.INT,
    "BIGINT": SqlType.BIGINT,
    "FLOAT": SqlType.FLOAT,
    "DOUBLE": SqlType.FLOAT,
    "REAL": SqlType.REAL,
    "MONEY": SqlType.MONEY,
    "SMALLMONEY": SqlType.MONEY,
    "DECIMAL": SqlType.DECIMAL,
    "CHAR": SqlType.CHAR,
    "VARCHAR": SqlType.VARCHAR,
    "NCHAR": SqlType.NCHAR,
    "NVARCHAR": SqlType.NVARCHAR,
    "TEXT": SqlType.VARCHAR,
    "VARBINARY": SqlType.VARBINARY,
    "BINARY": SqlType.BINARY,
    "UUID": SqlType.UNIQUEIDENTIFIER,
    "DATE": SqlType.DATE,
    "TIME": SqlType.TIME,
    "DATETIME": SqlType.DATETIME,
    "SMALLDATETIME": SqlType.SMALLDATETIME,
    "DATETIME2": SqlType.DATETIME2,
    "DATETIMEOFFSET": SqlType.DATETIMEOFFSET,
    "TIMESTAMPTZ": SqlType.DATETIMEOFFSET,
    "VARIANT": SqlType.SQL_VARIANT,
    "TIMESTAMP": SqlType.DATETIME,
}
_DEFAULT_LENGTH = {
    SqlType.CHAR: 1,
    SqlType.NCHAR: 1,
    SqlType.VARCHAR: 30,
    SqlType.NVARCHAR: 30,
    SqlType.VARBINARY: 30,
    SqlType.BINARY: 1,
}


def from_datatype(dtype: exp.DataType) -> Column | None:
    """The SQL Server column a T-SQL type name (as sqlglot parsed it) declares; None if unknown."""
    if dtype.this == exp.DataType.Type.USERDEFINED:
        return Column("", SqlType.NVARCHAR, 128) if str(dtype.args.get("kind", "")).lower() == "sysname" else None
    kind = _SQLGLOT_TYPES.get(dtype.this.name)
    if kind is None:
        return None
    params = [p.this for p in dtype.expressions if isinstance(p, exp.DataTypeParam)]
    values = [p.name for p in params]
    if kind is SqlType.DECIMAL:
        precision = int(values[0]) if values else 18
        return Column("", kind, None, precision, int(values[1]) if len(values) > 1 else 0)
    if kind is SqlType.MONEY:
        return Column("", SqlType.MONEY, None, 19, 4)
    if kind in _DEFAULT_LENGTH:
        if values and values[0].lower() == "max":
            return Column("", kind, MAX)
        return Column("", kind, int(values[0]) if values else _DEFAULT_LENGTH[kind])
    if kind in (SqlType.DATETIME2, SqlType.DATETIMEOFFSET, SqlType.TIME):
        return Column("", kind, None, None, int(values[0]) if values else 7)
    return Column("", kind)


def duckdb_type(column: Column) -> str:
    if column.type in EXACT_NUMERIC_TYPES:
        return f"DECIMAL({column.precision or 18},{column.scale or 0})"
    return DUCKDB_TYPES[column.type]


def from_duckdb(type_name: str, values: list[Any]) -> Column:
    """The SQL Server type closest to a DuckDB result type (used when the query implies none)."""
    name = type_name.upper()
    if name.startswith("DECIMAL"):
        precision, _, scale = name[8:-1].partition(",")
        return Column("", SqlType.DECIMAL, None, int(precision), int(scale or 0))
    simple = {
        "BOOLEAN": SqlType.BIT,
        "TINYINT": SqlType.TINYINT,
        "UTINYINT": SqlType.TINYINT,
        "SMALLINT": SqlType.SMALLINT,
        "USMALLINT": SqlType.INT,
        "INTEGER": SqlType.INT,
        "UINTEGER": SqlType.BIGINT,
        "BIGINT": SqlType.BIGINT,
        "FLOAT": SqlType.REAL,
        "DOUBLE": SqlType.FLOAT,
        "UUID": SqlType.UNIQUEIDENTIFIER,
        "DATE": SqlType.DATE,
        "TIMESTAMP": SqlType.DATETIME,
        "TIMESTAMP WITH TIME ZONE": SqlType.DATETIMEOFFSET,
        "VARIANT": SqlType.SQL_VARIANT,
    }
    if name in simple:
        kind = simple[name]
        if kind in (SqlType.DATETIMEOFFSET,):
            return Column("", kind, None, None, 7)
        return Column("", kind)
    if name in ("HUGEINT", "UBIGINT"):
        return Column("", SqlType.DECIMAL, None, 38, 0)
    if name == "TIME":
        return Column("", SqlType.TIME, None, None, 7)
    if name == "BLOB":
        longest = max((len(v) for v in values if isinstance(v, bytes)), default=0)
        return Column("", SqlType.VARBINARY, 8000 if longest <= 8000 else MAX)
    longest = max((len(str(v)) for v in values if v is not None), default=0)
    return Column("", SqlType.NVARCHAR, 4000 if longest <= 4000 else MAX)


def variant_base(value: Any) -> Column:
    """The base type a sql_variant value carries, from its Python value."""
    if isinstance(value, bool):
        return Column("", SqlType.BIT)
    if isinstance(value, int):
        return Column("", SqlType.INT if -(2**31) <= value < 2**31 else SqlType.BIGINT)
    if isinstance(value, float):
        return Column("", SqlType.FLOAT)
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        scale = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        return Column("", SqlType.DECIMAL, None, 38, scale)
    if isinstance(value, dt.datetime):
        return Column("", SqlType.DATETIME)
    if isinstance(value, bytes):
        return Column("", SqlType.VARBINARY, 8000)
    if isinstance(value, uuid.UUID):
        return Column("", SqlType.UNIQUEIDENTIFIER)
    return Column("", SqlType.NVARCHAR, 128 if len(str(value)) <= 128 else 4000)


def shape(column: Column, values: list[Any]) -> list[Any] | None:
    """`values` as Python values of `column`'s type, or None when they do not fit it (use another type)."""
    out: list[Any] = []
    for v in values:
        if v is None:
            out.append(None)
            continue
        converted = _convert(column, v)
        if converted is _MISFIT:
            return None
        out.append(converted)
    return out


_MISFIT = object()


def _convert(column: Column, v: Any) -> Any:
    kind = column.type
    if kind is SqlType.SQL_VARIANT:
        return v if isinstance(v, Variant) else Variant(variant_base(v), v)
    if kind is SqlType.BIT:
        return bool(v) if isinstance(v, bool | int) else _MISFIT
    if kind in INTEGER_TYPES:
        return int(v) if isinstance(v, int) else _MISFIT
    if kind in CHAR_TYPES:
        text = v if isinstance(v, str) else str(v)
        return text if column.length in (None, MAX) else text[: column.length]
    if kind in EXACT_NUMERIC_TYPES or kind is SqlType.MONEY:
        return Decimal(v) if isinstance(v, int | Decimal) and not isinstance(v, bool) else _MISFIT
    if kind in (SqlType.FLOAT, SqlType.REAL):
        return float(v) if isinstance(v, int | float | Decimal) and not isinstance(v, bool) else _MISFIT
    if kind in (SqlType.VARBINARY, SqlType.BINARY):
        return bytes(v) if isinstance(v, bytes | bytearray | memoryview) else _MISFIT
    if kind is SqlType.UNIQUEIDENTIFIER:
        return v if isinstance(v, uuid.UUID) else _MISFIT
    if kind is SqlType.DATETIMEOFFSET:
        return v if isinstance(v, dt.datetime) and v.tzinfo is not None else _MISFIT
    if kind in (SqlType.DATETIME, SqlType.DATETIME2, SqlType.SMALLDATETIME):
        if not isinstance(v, dt.datetime):
            return _MISFIT
        return v.replace(tzinfo=None) if v.tzinfo else v
    if kind is SqlType.DATE:
        return v if isinstance(v, dt.date) and not isinstance(v, dt.datetime) else _MISFIT
    if kind is SqlType.TIME:
        return v if isinstance(v, dt.time) else _MISFIT
    return v


@functools.lru_cache(maxsize=4096)
def named(column: Column, name: str) -> Column:
    """`column` under a result column's name; kept, since the same few come back for every instance."""
    return dataclasses.replace(column, name=name)
