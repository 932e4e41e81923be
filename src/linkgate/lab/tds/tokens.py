"""Response tokens: ENVCHANGE, INFO/ERROR, LOGINACK, COLMETADATA, ROW, RETURNVALUE, RETURNSTATUS, DONE*.

Layouts as SQL Server sends them to TDS 7.4 clients (8-byte DONE row counts; LOGINACK's TDS version
big-endian; collation ENVCHANGE as B_VARBYTE, database/language/packet size as B_VARCHAR strings).
"""

from __future__ import annotations

import enum
import functools
import struct
from collections.abc import Sequence
from typing import Any

from linkgate.lab.results import Column
from linkgate.lab.tds.columns import encode_value, type_info
from linkgate.lab.tds.wire import COLLATION, b_varchar, us_varchar

TDS_74 = 0x74000004
PROGRAM_NAME = "Microsoft SQL Server"
MAX_COLUMN_NAME = 128  # a longer name makes Driver 18 report "Protocol error in TDS stream"
LANGUAGE = "us_english"


class Token(enum.IntEnum):
    RETURNSTATUS = 0x79
    COLMETADATA = 0x81
    ERROR = 0xAA
    INFO = 0xAB
    RETURNVALUE = 0xAC
    LOGINACK = 0xAD
    ROW = 0xD1
    ENVCHANGE = 0xE3
    DONE = 0xFD
    DONEPROC = 0xFE
    DONEINPROC = 0xFF


class Done(enum.IntFlag):
    FINAL = 0x00
    MORE = 0x01
    ERROR = 0x02
    COUNT = 0x10
    ATTN = 0x20


class Env(enum.IntEnum):
    DATABASE = 1
    LANGUAGE = 2
    PACKET_SIZE = 4
    COLLATION = 7
    BEGIN_TRANSACTION = 8
    COMMIT_TRANSACTION = 9
    ROLLBACK_TRANSACTION = 10
    RESET_CONNECTION_ACK = 18


CURCMD_SELECT = 0xC1
CURCMD_EXECUTE = 0xE0


def done(status: Done, rowcount: int = 0, *, curcmd: int = 0, token: Token = Token.DONE) -> bytes:
    return struct.pack("<BHHQ", token, status, curcmd, rowcount)


def _envchange(kind: Env, body: bytes) -> bytes:
    return struct.pack("<BHB", Token.ENVCHANGE, len(body) + 1, kind) + body


def env_text(kind: Env, new: str, old: str) -> bytes:
    """ENVCHANGE with B_VARCHAR values: database (1), language (2), packet size (4, a decimal string)."""
    return _envchange(kind, b_varchar(new) + b_varchar(old))


def env_bytes(kind: Env, new: bytes, old: bytes) -> bytes:
    """ENVCHANGE with B_VARBYTE values: collation (7), transactions (8, 9, 10), reset ack (18)."""
    return _envchange(kind, bytes([len(new)]) + new + bytes([len(old)]) + old)


def env_collation() -> bytes:
    return env_bytes(Env.COLLATION, COLLATION, b"")


def message(
    token: Token, number: int, text: str, *, state: int, severity: int, server: str, procedure: str = "", line: int = 1
) -> bytes:
    """An INFO (0xAB) or ERROR (0xAA) token."""
    body = (
        struct.pack("<iBB", number, state, severity)
        + us_varchar(text)
        + b_varchar(server)
        + b_varchar(procedure)
        + struct.pack("<I", line)
    )
    return struct.pack("<BH", token, len(body)) + body


def loginack(version: tuple[int, int, int, int]) -> bytes:
    """Interface 1 (SQL), TDS 7.4, "Microsoft SQL Server", then major, minor, build high, build low."""
    major, minor, build, _revision = version
    body = (
        bytes([1])
        + struct.pack(">I", TDS_74)
        + b_varchar(PROGRAM_NAME)
        + bytes([major & 0xFF, minor & 0xFF])
        + struct.pack(">H", build & 0xFFFF)
    )
    return struct.pack("<BH", Token.LOGINACK, len(body)) + body


def colmetadata(columns: Sequence[Column]) -> bytes:
    """COLMETADATA of a result set; the same few column lists come back at every connection, so kept."""
    return _colmetadata(tuple(columns))


@functools.lru_cache(maxsize=1024)
def _colmetadata(columns: tuple[Column, ...]) -> bytes:
    out = bytearray(struct.pack("<BH", Token.COLMETADATA, len(columns)))
    for col in columns:
        out += struct.pack("<IH", 0, 0x0001 if col.nullable else 0x0000)
        out += type_info(col)
        out += b_varchar(col.name[:MAX_COLUMN_NAME])
    return bytes(out)


def row(columns: Sequence[Column], values: Sequence[Any]) -> bytes:
    if len(values) != len(columns):
        raise ValueError(f"a row of {len(values)} values for {len(columns)} columns")
    return bytes([Token.ROW]) + b"".join(encode_value(c, v) for c, v in zip(columns, values, strict=True))


def returnvalue(ordinal: int, name: str, column: Column, value: Any) -> bytes:
    """An output parameter's value (status 0x01: output parameter)."""
    return (
        struct.pack("<BH", Token.RETURNVALUE, ordinal)
        + b_varchar(name)
        + struct.pack("<BIH", 0x01, 0, 0x0001)
        + type_info(column)
        + encode_value(column, value)
    )


def returnstatus(value: int) -> bytes:
    return struct.pack("<Bi", Token.RETURNSTATUS, value)
