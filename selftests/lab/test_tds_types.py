"""Every SqlType on the wire, read back through both drivers as the Python value pyodbc makes of it."""

from __future__ import annotations

import datetime as dt
import decimal
import struct
import uuid
from collections.abc import Callable
from typing import Any

import pyodbc
import pytest

from linkgate.drivers import OdbcDriver
from linkgate.lab.results import MAX, Column, ResultSet, SqlType, Variant
from linkgate.lab.tds.columns import encode_value, type_info
from selftests.lab.conftest import Served, sqlstate

pytestmark = pytest.mark.lab

GUID = uuid.UUID("12345678-1234-5678-9abc-def012345678")
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
SQL_SS_TIMESTAMPOFFSET = -155
SQL_NUMERIC, SQL_DECIMAL = 2, 3

# (column, value sent, value pyodbc returns): the same for both drivers, which is itself a finding.
CASES: list[tuple[Column, Any, Any]] = [
    (Column("tinyint", SqlType.TINYINT), 255, 255),
    (Column("smallint", SqlType.SMALLINT), -32768, -32768),
    (Column("int", SqlType.INT), -(2**31), -(2**31)),
    (Column("bigint", SqlType.BIGINT), -(2**63), -(2**63)),
    (Column("bit", SqlType.BIT), True, True),
    (Column("real", SqlType.REAL), 1.5, 1.5),
    (Column("float", SqlType.FLOAT), 1e308, 1e308),
    (
        Column("decimal", SqlType.DECIMAL, precision=38, scale=10),
        decimal.Decimal("-1234567890123456789012345678.0123456789"),
        decimal.Decimal("-1234567890123456789012345678.0123456789"),
    ),
    (Column("decimal_int", SqlType.DECIMAL, precision=5, scale=2), 7, decimal.Decimal("7.00")),
    (
        Column("numeric_lsn", SqlType.NUMERIC, precision=25, scale=0),
        decimal.Decimal("37000000012800001"),
        decimal.Decimal("37000000012800001"),
    ),
    (
        Column("money", SqlType.MONEY),
        decimal.Decimal("-922337203685477.5808"),
        decimal.Decimal("-922337203685477.5808"),
    ),
    (Column("char", SqlType.CHAR, 5), "ab", "ab   "),
    (Column("varchar", SqlType.VARCHAR, 20), "café", "café"),
    (Column("nchar", SqlType.NCHAR, 3), "é", "é  "),
    (Column("nvarchar", SqlType.NVARCHAR, 128), "日本語 ✓", "日本語 ✓"),
    (Column("nvarchar_max", SqlType.NVARCHAR, MAX), "ж" * 5000, "ж" * 5000),
    (Column("varchar_max", SqlType.VARCHAR, MAX), "x" * 9000, "x" * 9000),
    (Column("empty_max", SqlType.NVARCHAR, MAX), "", ""),
    (Column("varbinary", SqlType.VARBINARY, 16), b"\x00\xff", b"\x00\xff"),
    (Column("binary", SqlType.BINARY, 4), b"\x01", b"\x01\x00\x00\x00"),
    (Column("varbinary_max", SqlType.VARBINARY, MAX), bytes(range(256)) * 40, bytes(range(256)) * 40),
    (Column("uniqueidentifier", SqlType.UNIQUEIDENTIFIER), GUID, str(GUID).upper()),
    (Column("date", SqlType.DATE), dt.date(1, 1, 1), dt.date(1, 1, 1)),
    (Column("time", SqlType.TIME, scale=7), dt.time(23, 59, 59, 999999), dt.time(23, 59, 59, 999999)),
    (Column("time0", SqlType.TIME, scale=0), dt.time(12, 0, 1, 999999), dt.time(12, 0, 1)),
    (
        Column("datetime", SqlType.DATETIME),
        dt.datetime(1753, 1, 1, 12, 30, 0, 3000),
        dt.datetime(1753, 1, 1, 12, 30, 0, 3000),
    ),
    (Column("datetime_from_date", SqlType.DATETIME), dt.date(2024, 2, 29), dt.datetime(2024, 2, 29)),
    (Column("smalldatetime", SqlType.SMALLDATETIME), dt.datetime(2079, 6, 6, 23, 59), dt.datetime(2079, 6, 6, 23, 59)),
    (
        Column("datetime2", SqlType.DATETIME2, scale=7),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
    ),
    (Column("datetime2_min", SqlType.DATETIME2, scale=3), dt.datetime(1, 1, 1), dt.datetime(1, 1, 1)),
]


@pytest.fixture
def typed(serve: Callable[..., Served]) -> Served:
    """One statement per case: `select <name>` → that column with the value, then a NULL row."""
    return serve({f"select {col.name}": [ResultSet((col,), [(value,), (None,)])] for col, value, _ in CASES})


@pytest.mark.parametrize(("column", "sent", "expected"), CASES, ids=[c.name for c, _, _ in CASES])
def test_each_type_reads_back_as_its_python_value(
    typed: Served, driver: OdbcDriver, column: Column, sent: Any, expected: Any
) -> None:
    with typed.connect(driver) as cnxn:
        cursor = cnxn.cursor().execute(f"select {column.name}")
        assert cursor.description[0][0] == column.name
        assert cursor.description[0][6] is True  # nullable, from COLMETADATA flags
        assert [tuple(r) for r in cursor.fetchall()] == [(expected,), (None,)]


def test_an_unaliased_expression_has_an_empty_name_and_long_names_are_cut_to_128(
    serve: Callable[..., Served], driver: OdbcDriver
) -> None:
    columns = (Column("", SqlType.INT), Column("n" * 300, SqlType.INT))
    served = serve({"select 1, 2": [ResultSet(columns, [(1, 2)])]})
    with served.connect(driver) as cnxn:
        cursor = cnxn.cursor().execute("select 1, 2")
        assert [d[0] for d in cursor.description] == ["", "n" * 128]
        assert tuple(cursor.fetchone()) == (1, 2)


def test_datetimeoffset_travels_as_utc_plus_offset(serve: Callable[..., Served], driver: OdbcDriver) -> None:
    """pyodbc has no datetimeoffset type (HY106, as against SQL Server); a converter sees the driver's struct."""
    local = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=IST)
    served = serve({"select dto": [ResultSet((Column("dto", SqlType.DATETIMEOFFSET, scale=7),), [(local,)])]})
    with served.connect(driver) as cnxn, pytest.raises(pyodbc.ProgrammingError, match="type -155 is not yet"):
        cnxn.cursor().execute("select dto").fetchall()
    with served.connect(driver) as cnxn:
        cnxn.add_output_converter(SQL_SS_TIMESTAMPOFFSET, lambda raw: struct.unpack("<6hI2h", raw))
        got = cnxn.cursor().execute("select dto").fetchone()[0]
    # SQL_SS_TIMESTAMPOFFSET_STRUCT: local date and time, fraction in ns, offset hours and minutes
    assert got == (2024, 5, 6, 7, 8, 9, 123456000, 5, 30)


LSN = Column("lsn", SqlType.NUMERIC, precision=25, scale=0)
FRACTION = Column("fraction", SqlType.DECIMAL, precision=5, scale=2)


def test_numeric_and_decimal_keep_their_own_type_code_in_colmetadata() -> None:
    """NUMERICN (0x6C) for numeric, DECIMALN (0x6A) for decimal, as SQL Server sends them: the same length,
    precision and scale follow (25 digits take 13 bytes with the sign, 5 take 5)."""
    assert type_info(LSN) == bytes.fromhex("6c0d1900")
    assert type_info(FRACTION) == bytes.fromhex("6a050502")
    assert encode_value(LSN, 1) == encode_value(Column("", SqlType.DECIMAL, precision=25, scale=0), 1)


def test_drivers_report_the_sql_type_the_wire_names(serve: Callable[..., Served], driver: OdbcDriver) -> None:
    """Driver 18 describes a numeric column as SQL_NUMERIC and a decimal one as SQL_DECIMAL; FreeTDS reports
    SQL_NUMERIC for both. A converter registered per SQL type code sees which one the driver chose, and the
    SQL_NUMERIC_STRUCT it was handed (precision, scale, sign, 16-byte little-endian magnitude)."""
    value = decimal.Decimal("37000000012800001")
    served = serve({"select lsn, fraction": [ResultSet((LSN, FRACTION), [(value, decimal.Decimal("1.50"))])]})
    with served.connect(driver) as cnxn:
        for code in (SQL_NUMERIC, SQL_DECIMAL):
            cnxn.add_output_converter(code, lambda raw, code=code: (code, *struct.unpack("<BbB16s", raw)))
        lsn, fraction = cnxn.cursor().execute("select lsn, fraction").fetchone()
    expected = (SQL_NUMERIC, SQL_DECIMAL) if driver.kind == "msodbc18" else (SQL_NUMERIC, SQL_NUMERIC)
    assert (lsn[0], fraction[0]) == expected
    assert (lsn[1:4], int.from_bytes(lsn[4], "little")) == ((25, 0, 1), int(value))
    assert (fraction[1:4], int.from_bytes(fraction[4], "little")) == ((5, 2, 1), 150)


def _variant_rows(value: Variant | None) -> dict[str, list[Any]]:
    return {"select serverproperty": [ResultSet((Column("", SqlType.SQL_VARIANT),), [(value,)])]}


PRODUCT_VERSION = Variant(Column("", SqlType.NVARCHAR, 128), "16.0.4135.4")
IS_HADR_ENABLED = Variant(Column("", SqlType.INT), 1)


def test_nvarchar_variant_reads_as_str_under_driver18(serve: Callable[..., Served], msodbc18: OdbcDriver) -> None:
    served = serve(_variant_rows(PRODUCT_VERSION))
    with served.connect(msodbc18) as cnxn:
        assert cnxn.cursor().execute("select serverproperty").fetchone()[0] == "16.0.4135.4"


def test_int_variant_breaks_pyodbc_under_driver18_as_against_sql_server(
    serve: Callable[..., Served], msodbc18: OdbcDriver
) -> None:
    served = serve(_variant_rows(IS_HADR_ENABLED))
    with served.connect(msodbc18) as cnxn, pytest.raises(pyodbc.ProgrammingError) as caught:
        cnxn.cursor().execute("select serverproperty").fetchone()
    assert caught.value.args == ("ODBC SQL type -16 is not yet supported.  column-index=0  type=-16", "HY106")


@pytest.mark.parametrize("value", [PRODUCT_VERSION, IS_HADR_ENABLED], ids=["nvarchar", "int"])
def test_any_variant_breaks_pyodbc_under_freetds(
    serve: Callable[..., Served], freetds: OdbcDriver, value: Variant
) -> None:
    served = serve(_variant_rows(value))
    with served.connect(freetds) as cnxn, pytest.raises(pyodbc.Error) as caught:
        cnxn.cursor().execute("select serverproperty").fetchone()
    assert sqlstate(caught.value) == "HY091"
    assert "Descriptor type out of range" in str(caught.value)


def test_freetds_hands_the_variant_base_value_to_a_converter(serve: Callable[..., Served], freetds: OdbcDriver) -> None:
    served = serve(_variant_rows(IS_HADR_ENABLED))
    with served.connect(freetds) as cnxn:
        cnxn.add_output_converter(-150, bytes)  # SQL_SS_VARIANT
        assert cnxn.cursor().execute("select serverproperty").fetchone()[0] == struct.pack("<i", 1)


@pytest.mark.parametrize(
    ("base", "value", "wire"),
    [
        (Column("", SqlType.INT), 1, "0600000038000100 0000"),
        (Column("", SqlType.NVARCHAR, 128), "ab", "0d000000 e7 07 0904d00034 0001 6100 6200"),
        (Column("", SqlType.DECIMAL, precision=5, scale=2), decimal.Decimal("1.5"), "090000006a020502 0196000000"),
        (Column("", SqlType.DATETIME2, scale=3), dt.datetime(1, 1, 1), "0a000000 2a 01 03 00000000 000000"),
        (Column("", SqlType.VARBINARY, 4), b"\x01", "050000 00a5020400 01"),
    ],
)
def test_variant_wire_format(base: Column, value: Any, wire: str) -> None:
    """u32 length, base type (fixed codes for ints), property count, properties, data (MS-TDS 2.2.5.5.4)."""
    encoded = encode_value(Column("v", SqlType.SQL_VARIANT), Variant(base, value))
    assert encoded == bytes.fromhex(wire.replace(" ", ""))


def test_null_variant_is_four_zero_bytes() -> None:
    column = Column("v", SqlType.SQL_VARIANT)
    assert encode_value(column, None) == encode_value(column, Variant(Column("", SqlType.INT), None)) == bytes(4)


@pytest.mark.parametrize(
    ("column", "value", "error"),
    [
        (Column("v", SqlType.NVARCHAR, 3), "four", ValueError),
        (Column("d", SqlType.DECIMAL, precision=3, scale=1), decimal.Decimal("100.0"), ValueError),
        (Column("v", SqlType.SQL_VARIANT), 1, TypeError),
    ],
)
def test_a_value_that_does_not_fit_its_column_is_refused(column: Column, value: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        encode_value(column, value)
