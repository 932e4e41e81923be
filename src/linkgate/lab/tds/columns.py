"""Column types on the wire: TYPE_INFO in COLMETADATA, and each row value, for every SqlType.

Columns go out as SQL Server sends nullable columns (INTN, BITN, FLTN, DATETIMN, …); NVARCHAR(MAX)
and VARBINARY(MAX) go as PLP (u64 total length, u32-length chunks, a zero terminator). sql_variant
carries its base type with every value, using the fixed-length type codes (INT4 0x38, not INTN),
as SQL Server does: this is what makes pyodbc fail on an int-based variant under Driver 18 (HY106)
and on any variant under FreeTDS (HY091), the behaviour the gate must cope with.

Values are coerced from the engine's Python values (a date for a datetime column, an int for a
decimal); a value that cannot travel in its declared column raises ValueError or TypeError.
"""

from __future__ import annotations

import datetime as dt
import decimal
import struct
import uuid
from typing import Any

from linkgate.lab.results import MAX, Column, SqlType, Variant
from linkgate.lab.tds.wire import (
    CODEPAGE,
    COLLATION,
    PLP_NULL,
    decimal_length,
    encode_date,
    encode_datetime,
    encode_decimal,
    encode_money,
    encode_smalldatetime,
    encode_time,
)

INTN, BITN, FLTN, MONEYN, DATETIMN, GUID = 0x26, 0x68, 0x6D, 0x6E, 0x6F, 0x24
DECIMALN, NUMERICN, DATEN, TIMEN, DATETIME2N, DATETIMEOFFSETN = 0x6A, 0x6C, 0x28, 0x29, 0x2A, 0x2B
BIGVARCHR, BIGCHAR, NVARCHAR, NCHAR, BIGVARBIN, BIGBINARY = 0xA7, 0xAF, 0xE7, 0xEF, 0xA5, 0xAD
SSVARIANT = 0x62
VARIANT_MAX_LENGTH = 8016
DEFAULT_SCALE = 7
DEFAULT_DECIMAL = (18, 0)
MAX_SHORT_LENGTH = 8000  # bytes: above this (or MAX) a character/binary column is PLP

_INT_SIZES = {SqlType.TINYINT: 1, SqlType.SMALLINT: 2, SqlType.INT: 4, SqlType.BIGINT: 8}
_INT_FORMATS = {1: "<B", 2: "<h", 4: "<i", 8: "<q"}
# sql_variant base types are sent with the fixed-length codes.
_FIXED_CODES = {
    SqlType.TINYINT: 0x30,
    SqlType.SMALLINT: 0x34,
    SqlType.INT: 0x38,
    SqlType.BIGINT: 0x7F,
    SqlType.BIT: 0x32,
    SqlType.REAL: 0x3B,
    SqlType.FLOAT: 0x3E,
    SqlType.MONEY: 0x3C,
    SqlType.DATETIME: 0x3D,
    SqlType.SMALLDATETIME: 0x3A,
    SqlType.UNIQUEIDENTIFIER: GUID,
}
_CHAR_CODES = {SqlType.CHAR: BIGCHAR, SqlType.VARCHAR: BIGVARCHR, SqlType.NCHAR: NCHAR, SqlType.NVARCHAR: NVARCHAR}
_BINARY_CODES = {SqlType.BINARY: BIGBINARY, SqlType.VARBINARY: BIGVARBIN}
_TIME_CODES = {SqlType.TIME: TIMEN, SqlType.DATETIME2: DATETIME2N, SqlType.DATETIMEOFFSET: DATETIMEOFFSETN}
# decimal and numeric share their encoding but keep their own code, as SQL Server sends them: the driver
# reports SQL_DECIMAL or SQL_NUMERIC (and the type name) from it.
_EXACT_CODES = {SqlType.DECIMAL: DECIMALN, SqlType.NUMERIC: NUMERICN}


def type_info(col: Column) -> bytes:
    """TYPE_INFO of a COLMETADATA entry."""
    t = col.type
    if t in _INT_SIZES:
        return bytes([INTN, _INT_SIZES[t]])
    if t is SqlType.BIT:
        return bytes([BITN, 1])
    if t in (SqlType.REAL, SqlType.FLOAT):
        return bytes([FLTN, 4 if t is SqlType.REAL else 8])
    if t is SqlType.MONEY:
        return bytes([MONEYN, 8])
    if t in (SqlType.DATETIME, SqlType.SMALLDATETIME):
        return bytes([DATETIMN, 8 if t is SqlType.DATETIME else 4])
    if t is SqlType.UNIQUEIDENTIFIER:
        return bytes([GUID, 16])
    if t in _EXACT_CODES:
        precision, scale = _precision_scale(col)
        return bytes([_EXACT_CODES[t], decimal_length(precision), precision, scale])
    if t is SqlType.DATE:
        return bytes([DATEN])
    if t in _TIME_CODES:
        return bytes([_TIME_CODES[t], _scale(col)])
    if t in _CHAR_CODES:
        return bytes([_CHAR_CODES[t]]) + struct.pack("<H", _max_bytes(col)) + COLLATION
    if t in _BINARY_CODES:
        return bytes([_BINARY_CODES[t]]) + struct.pack("<H", _max_bytes(col))
    if t is SqlType.SQL_VARIANT:
        return bytes([SSVARIANT]) + struct.pack("<I", VARIANT_MAX_LENGTH)
    raise TypeError(f"no wire encoding for {t}")


def encode_value(col: Column, value: Any) -> bytes:
    """One ROW value of column `col` (None is NULL)."""
    t = col.type
    if t is SqlType.SQL_VARIANT:
        return _variant(value)
    if t in _CHAR_CODES or t in _BINARY_CODES:
        return _sized_bytes(col, value)
    if value is None:
        return b"\x00"  # every other column type here is byte-length-prefixed: 0 is NULL
    data = _fixed_data(col, value)
    return bytes([len(data)]) + data


def _fixed_data(col: Column, value: Any) -> bytes:
    """The bytes of a non-NULL value of a fixed-size or byte-length type (without its length byte)."""
    t = col.type
    if t in _INT_SIZES:
        return struct.pack(_INT_FORMATS[_INT_SIZES[t]], int(value))
    if t is SqlType.BIT:
        return b"\x01" if value else b"\x00"
    if t is SqlType.REAL:
        return struct.pack("<f", float(value))
    if t is SqlType.FLOAT:
        return struct.pack("<d", float(value))
    if t is SqlType.MONEY:
        return encode_money(_decimal(value))
    if t is SqlType.DATETIME:
        return encode_datetime(_datetime(value))
    if t is SqlType.SMALLDATETIME:
        return encode_smalldatetime(_datetime(value))
    if t is SqlType.UNIQUEIDENTIFIER:
        return (value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))).bytes_le
    if t in _EXACT_CODES:
        return encode_decimal(_decimal(value), *_precision_scale(col))
    if t is SqlType.DATE:
        return encode_date(value.date() if isinstance(value, dt.datetime) else value)
    if t is SqlType.TIME:
        return encode_time(value.time() if isinstance(value, dt.datetime) else value, _scale(col))
    if t is SqlType.DATETIME2:
        stamp = _datetime(value)
        return encode_time(stamp.time(), _scale(col)) + encode_date(stamp.date())
    if t is SqlType.DATETIMEOFFSET:
        return _datetimeoffset(_datetime(value), _scale(col))
    raise TypeError(f"no wire encoding for {t}")


def _datetimeoffset(stamp: dt.datetime, scale: int) -> bytes:
    """UTC time and date, then the offset in minutes (a naive value is taken as UTC)."""
    offset = stamp.utcoffset() or dt.timedelta()
    utc = stamp.replace(tzinfo=None) - offset
    minutes = offset // dt.timedelta(minutes=1)
    return encode_time(utc.time(), scale) + encode_date(utc.date()) + struct.pack("<h", minutes)


def _sized_bytes(col: Column, value: Any) -> bytes:
    """(var)char, n(var)char, (var)binary: u16 length (0xFFFF NULL), or PLP for MAX."""
    data = None if value is None else _text_or_binary(col, value)
    if _is_plp(col):
        if data is None:
            return struct.pack("<Q", PLP_NULL)
        chunk = struct.pack("<I", len(data)) + data if data else b""
        return struct.pack("<Q", len(data)) + chunk + b"\x00\x00\x00\x00"
    if data is None:
        return b"\xff\xff"
    if len(data) > _max_bytes(col):
        raise ValueError(f"a value of {len(data)} bytes does not fit column {col.name!r} ({_declared(col)})")
    return struct.pack("<H", len(data)) + data


def _text_or_binary(col: Column, value: Any) -> bytes:
    t = col.type
    if t in _BINARY_CODES:
        data = bytes(value)
        return data.ljust(col.length or 1, b"\x00") if t is SqlType.BINARY else data
    text = value if isinstance(value, str) else str(value)
    if t in (SqlType.CHAR, SqlType.NCHAR) and col.length not in (None, MAX):
        text = text.ljust(col.length or 1)  # char(n) values are blank-padded, as SQL Server stores them
    if t in (SqlType.NCHAR, SqlType.NVARCHAR):
        return text.encode("utf-16-le")
    return text.encode(CODEPAGE, errors="replace")


def _variant(value: Any) -> bytes:
    """sql_variant: u32 length (0 = NULL), base type code, property byte count, properties, data."""
    if value is None:
        return b"\x00\x00\x00\x00"
    if not isinstance(value, Variant):
        raise TypeError(f"a sql_variant value must be a Variant or None, not {type(value).__name__}")
    base, t = value.base, value.base.type
    if value.value is None:
        return b"\x00\x00\x00\x00"  # a variant holding NULL is a NULL variant on the wire
    if t in _FIXED_CODES:
        code, props, data = _FIXED_CODES[t], b"", _fixed_data(base, value.value)
    elif t in _EXACT_CODES:
        code, props, data = _EXACT_CODES[t], bytes(_precision_scale(base)), _fixed_data(base, value.value)
    elif t is SqlType.DATE:
        code, props, data = DATEN, b"", _fixed_data(base, value.value)
    elif t in _TIME_CODES:
        code, props, data = _TIME_CODES[t], bytes([_scale(base)]), _fixed_data(base, value.value)
    elif t in _CHAR_CODES:
        code, data = _CHAR_CODES[t], _text_or_binary(base, value.value)
        props = COLLATION + struct.pack("<H", _max_bytes(base))
    elif t in _BINARY_CODES:
        code, data = _BINARY_CODES[t], _text_or_binary(base, value.value)
        props = struct.pack("<H", _max_bytes(base))
    else:
        raise TypeError(f"{t} cannot be the base type of a sql_variant")
    if _is_plp(base) or len(data) > MAX_SHORT_LENGTH:
        raise ValueError(f"a sql_variant cannot hold a {_declared(base)} value")
    return struct.pack("<IBB", 2 + len(props) + len(data), code, len(props)) + props + data


def _max_bytes(col: Column) -> int:
    """Declared maximum length in bytes (0xFFFF for MAX); n-types count two bytes per character."""
    if _is_plp(col):
        return 0xFFFF
    return min(MAX_SHORT_LENGTH, (col.length or MAX_SHORT_LENGTH // _unit(col)) * _unit(col))


def _is_plp(col: Column) -> bool:
    return col.length == MAX or (col.length is not None and col.length * _unit(col) > MAX_SHORT_LENGTH)


def _unit(col: Column) -> int:
    return 2 if col.type in (SqlType.NCHAR, SqlType.NVARCHAR) else 1


def _declared(col: Column) -> str:
    return f"{col.type.value}({'max' if col.length == MAX else col.length})"


def _precision_scale(col: Column) -> tuple[int, int]:
    return col.precision or DEFAULT_DECIMAL[0], col.scale if col.scale is not None else DEFAULT_DECIMAL[1]


def _scale(col: Column) -> int:
    return DEFAULT_SCALE if col.scale is None else col.scale


def _decimal(value: Any) -> decimal.Decimal:
    return value if isinstance(value, decimal.Decimal) else decimal.Decimal(str(value))


def _datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time())
    raise TypeError(f"expected a datetime, got {type(value).__name__}")
