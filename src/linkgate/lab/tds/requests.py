"""Decoding client requests: SQL_BATCH text, RPC calls with typed parameters, transaction-manager requests.

Each request of TDS ≥ 7.2 starts with ALL_HEADERS (u32 total length, then headers: transaction
descriptor, trace activity), which carries nothing the lab needs and is skipped. RPC parameters are
TYPE_INFO + value, in the shapes both drivers send: Driver 18 sends `@params`/`@stmt` as NVARCHAR(MAX)
(PLP), FreeTDS as NTEXT; values as INTN, BITN, FLTN, DECIMALN, DATETIME2N, NVARCHAR, BIGVARCHR …
"""

from __future__ import annotations

import datetime as dt
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from linkgate.lab.tds.packets import ProtocolError
from linkgate.lab.tds.wire import (
    CODEPAGE,
    PLP_NULL,
    decode_date,
    decode_datetime,
    decode_decimal,
    decode_money,
    decode_smalldatetime,
    decode_time,
    time_length,
)

RPC_BATCH_SEPARATORS = frozenset({0x80, 0xFE, 0xFF})
_OUTPUT = 0x01
_ENCRYPTED = 0x08


@dataclass(frozen=True)
class RpcParam:
    name: str  # as sent, "@" included; "" when the client sends parameters positionally
    value: Any
    output: bool = False


@dataclass(frozen=True)
class RpcCall:
    """One procedure call: by well-known id (sp_executesql = 10, sp_prepexec = 13, …) or by name."""

    proc_id: int | None
    name: str
    params: tuple[RpcParam, ...]


@dataclass(frozen=True)
class TransactionRequest:
    kind: int  # 5 begin, 7 commit, 8 rollback (others are answered as no-ops)
    begin_after: bool  # commit/rollback that immediately begins a new transaction (fBeginXact)


class _Reader:
    """A cursor over a request payload; reading past its end is a protocol error, not an IndexError."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ProtocolError(f"request truncated: {n} bytes wanted at offset {self.pos} of {len(self.data)}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def u8(self) -> int:
        return int(self.take(1)[0])

    def ucs2(self, chars: int) -> str:
        return self.take(2 * chars).decode("utf-16-le")


def skip_all_headers(payload: bytes) -> int:
    """Offset of the request proper, after ALL_HEADERS when present."""
    if len(payload) >= 4:
        total = struct.unpack_from("<I", payload)[0]
        if 4 <= total <= len(payload):
            return int(total)
    return 0


def parse_batch(payload: bytes) -> str:
    return payload[skip_all_headers(payload) :].decode("utf-16-le")


def parse_rpc(payload: bytes) -> list[RpcCall]:
    """The calls of an RPC request (usually one; batched calls are separated by 0x80/0xFE/0xFF)."""
    r = _Reader(payload, skip_all_headers(payload))
    calls = [_call(r)]
    while r.remaining and r.data[r.pos] in RPC_BATCH_SEPARATORS:
        r.take(1)
        calls.append(_call(r))
    return calls


def parse_transaction(payload: bytes) -> TransactionRequest:
    r = _Reader(payload, skip_all_headers(payload))
    kind = r.unpack("<H")
    begin_after = False
    if kind in (7, 8) and r.remaining:
        r.ucs2(r.u8())  # transaction name
        begin_after = bool(r.remaining and r.u8())
    return TransactionRequest(kind, begin_after)


def _call(r: _Reader) -> RpcCall:
    length = r.unpack("<H")
    proc_id, name = (r.unpack("<H"), "") if length == 0xFFFF else (None, r.ucs2(length))
    r.take(2)  # option flags: WithRecomp, NoMetaData, ReuseMetaData — nothing the lab varies on
    params: list[RpcParam] = []
    while r.remaining and r.data[r.pos] not in RPC_BATCH_SEPARATORS:
        pname = r.ucs2(r.u8())
        status = r.u8()
        if status & _ENCRYPTED:
            raise ProtocolError("Always Encrypted parameters are not supported by the lab")
        params.append(RpcParam(pname, read_typed_value(r), bool(status & _OUTPUT)))
    return RpcCall(proc_id, name, tuple(params))


def read_typed_value(r: _Reader) -> Any:
    """TYPE_INFO then the value, decoded to the Python value the engine expects (NULL → None)."""
    code = r.u8()
    if code in _FIXED:
        size, decode = _FIXED[code]
        return decode(r.take(size))
    if code in _BYTELEN:
        r.u8()  # declared length
        n = r.u8()
        return None if n == 0 else _BYTELEN[code](r.take(n))
    if code in (0x6A, 0x6C):  # DECIMALN, NUMERICN: length, precision, scale
        r.u8()
        r.u8()
        scale = r.u8()
        n = r.u8()
        return None if n == 0 else decode_decimal(r.take(n), scale)
    if code == 0x28:  # DATEN: no TYPE_INFO length
        n = r.u8()
        return None if n == 0 else decode_date(r.take(n))
    if code in (0x29, 0x2A, 0x2B):  # TIMEN, DATETIME2N, DATETIMEOFFSETN: scale
        scale = r.u8()
        n = r.u8()
        return None if n == 0 else _time_family(code, r.take(n), scale)
    if code in _SHORTLEN:
        return _shortlen(r, code)
    if code in (0x23, 0x63, 0x22):  # TEXT, NTEXT, IMAGE: u32 max length, collation (text types), u32 length
        r.unpack("<I")
        if code != 0x22:
            r.take(5)
        n = r.unpack("<I")
        if n == 0xFFFFFFFF:
            return None
        return _decode_bytes(code, r.take(n))
    if code == 0x1F:  # NULLTYPE
        return None
    raise ProtocolError(f"RPC parameter type {code:#04x} is not supported by the lab")


def _shortlen(r: _Reader, code: int) -> Any:
    """BIGVARCHR/BIGCHAR/NVARCHAR/NCHAR (with collation) and BIGVARBIN/BIGBINARY; 0xFFFF max length = PLP."""
    maxlen = r.unpack("<H")
    if code in (0xA7, 0xAF, 0xE7, 0xEF):
        r.take(5)
    if maxlen == 0xFFFF:
        data = _plp(r)
    else:
        n = r.unpack("<H")
        data = None if n == 0xFFFF else r.take(n)
    return None if data is None else _decode_bytes(code, data)


def _plp(r: _Reader) -> bytes | None:
    total = r.unpack("<Q")
    if total == PLP_NULL:
        return None
    chunks = []
    while (n := r.unpack("<I")) != 0:
        chunks.append(r.take(n))
    return b"".join(chunks)


def _decode_bytes(code: int, data: bytes) -> str | bytes:
    if code in (0xE7, 0xEF, 0x63):
        return data.decode("utf-16-le")
    if code in (0xA7, 0xAF, 0x23):
        return data.decode(CODEPAGE, errors="replace")
    return data


def _time_family(code: int, data: bytes, scale: int) -> dt.time | dt.datetime:
    n = time_length(scale)
    time = decode_time(data[:n], scale)
    if code == 0x29:
        return time
    stamp = dt.datetime.combine(decode_date(data[n : n + 3]), time)
    if code == 0x2A:
        return stamp
    offset = dt.timedelta(minutes=struct.unpack("<h", data[n + 3 : n + 5])[0])
    return (stamp + offset).replace(tzinfo=dt.timezone(offset))


def _int(fmt: str) -> Callable[[bytes], int]:
    return lambda data: int(struct.unpack(fmt, data)[0])


def _float(data: bytes) -> float:
    return float(struct.unpack("<f" if len(data) == 4 else "<d", data)[0])


def _intn(data: bytes) -> int:
    return int(struct.unpack({1: "<B", 2: "<h", 4: "<i", 8: "<q"}[len(data)], data)[0])


def _datetimn(data: bytes) -> dt.datetime:
    return decode_smalldatetime(data) if len(data) == 4 else decode_datetime(data)


_FIXED: dict[int, tuple[int, Callable[[bytes], Any]]] = {
    0x30: (1, _int("<B")),
    0x34: (2, _int("<h")),
    0x38: (4, _int("<i")),
    0x7F: (8, _int("<q")),
    0x32: (1, lambda d: d != b"\x00"),
    0x3B: (4, _float),
    0x3E: (8, _float),
    0x3C: (8, decode_money),
    0x7A: (4, decode_money),
    0x3D: (8, decode_datetime),
    0x3A: (4, decode_smalldatetime),
}
_BYTELEN: dict[int, Callable[[bytes], Any]] = {
    0x26: _intn,
    0x68: lambda d: d != b"\x00",
    0x6D: _float,
    0x6E: decode_money,
    0x6F: _datetimn,
    0x24: lambda d: uuid.UUID(bytes_le=d),
}
_SHORTLEN = frozenset({0xA7, 0xAF, 0xE7, 0xEF, 0xA5, 0xAD})
