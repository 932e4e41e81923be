"""Primitive wire encodings shared by the encoders and the RPC decoders.

Dates count days from 0001-01-01 (DATE, DATETIME2) or 1900-01-01 (DATETIME); times count
10^-scale seconds since midnight in 3, 4 or 5 bytes; decimals are a sign byte then a little-endian
magnitude. These are the places where an off-by-one silently shifts every value, so they live here
once, with their inverse next to them.
"""

from __future__ import annotations

import datetime as dt
import decimal
import struct

COLLATION = bytes.fromhex("0904D00034")
"""SQL_Latin1_General_CP1_CI_AS: the 5 bytes in ENVCHANGE 7 and in every character TYPE_INFO."""
CODEPAGE = "cp1252"  # the code page of that collation: how (var)char bytes are text
PLP_NULL = 0xFFFFFFFFFFFFFFFF  # the total length of a NULL (max) value
DATETIME_EPOCH = dt.date(1900, 1, 1)
TICKS_PER_SECOND = 300  # DATETIME's time unit is 1/300 s
SECONDS_PER_DAY = 86400
_EXACT = decimal.Context(prec=100)  # DECIMAL(38) needs more than the default context's 28 digits


def b_varchar(text: str) -> bytes:
    """B_VARCHAR: character count u8, then UCS-2."""
    data = text.encode("utf-16-le")
    return bytes([len(data) // 2]) + data


def us_varchar(text: str) -> bytes:
    """US_VARCHAR: character count u16, then UCS-2."""
    data = text.encode("utf-16-le")
    return struct.pack("<H", len(data) // 2) + data


def time_length(scale: int) -> int:
    """Bytes of a TIME/DATETIME2/DATETIMEOFFSET time part at this fractional-second scale."""
    return 3 if scale <= 2 else 4 if scale <= 4 else 5


def encode_time(value: dt.time, scale: int) -> bytes:
    units = int((value.hour * 3600 + value.minute * 60 + value.second) * 10**scale)
    units += int(value.microsecond * 10**scale // 10**6)
    return units.to_bytes(time_length(scale), "little")


def decode_time(data: bytes, scale: int) -> dt.time:
    units = int.from_bytes(data, "little")
    seconds, fraction = divmod(units, 10**scale)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return dt.time(hour, minute, second, fraction * 10**6 // 10**scale)


def encode_date(value: dt.date) -> bytes:
    return (value.toordinal() - 1).to_bytes(3, "little")


def decode_date(data: bytes) -> dt.date:
    return dt.date.fromordinal(int.from_bytes(data, "little") + 1)


def encode_datetime(value: dt.datetime) -> bytes:
    """DATETIME: days since 1900-01-01 (i32), then 1/300 s ticks since midnight (u32), rounded."""
    days = (value.date() - DATETIME_EPOCH).days
    seconds = value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 10**6
    ticks = round(seconds * TICKS_PER_SECOND)
    if ticks >= SECONDS_PER_DAY * TICKS_PER_SECOND:
        days, ticks = days + 1, 0
    return struct.pack("<iI", days, ticks)


def decode_datetime(data: bytes) -> dt.datetime:
    days, ticks = struct.unpack("<iI", data)
    micros = round(ticks * 10**6 / TICKS_PER_SECOND / 1000) * 1000  # DATETIME is exact to the millisecond
    return dt.datetime.combine(DATETIME_EPOCH, dt.time()) + dt.timedelta(days=days, microseconds=micros)


def encode_smalldatetime(value: dt.datetime) -> bytes:
    """SMALLDATETIME: days since 1900-01-01 (u16), minutes since midnight (u16), rounded to the minute."""
    rounded = value.replace(second=0, microsecond=0) + dt.timedelta(minutes=1 if value.second >= 30 else 0)
    return struct.pack("<HH", (rounded.date() - DATETIME_EPOCH).days, rounded.hour * 60 + rounded.minute)


def decode_smalldatetime(data: bytes) -> dt.datetime:
    days, minutes = struct.unpack("<HH", data)
    return dt.datetime.combine(DATETIME_EPOCH, dt.time()) + dt.timedelta(days=days, minutes=minutes)


def decimal_length(precision: int) -> int:
    """Bytes of a DECIMAL value (sign byte included) at this precision."""
    return 5 if precision <= 9 else 9 if precision <= 19 else 13 if precision <= 28 else 17


def encode_decimal(value: decimal.Decimal, precision: int, scale: int) -> bytes:
    """Sign (1 = positive) then |value| × 10^scale, little-endian, in decimal_length(precision) - 1 bytes."""
    units = int(value.scaleb(scale, _EXACT).to_integral_value(decimal.ROUND_HALF_UP, _EXACT))
    if len(str(abs(units))) > precision:
        raise ValueError(f"{value} does not fit decimal({precision},{scale})")
    return bytes([0 if units < 0 else 1]) + abs(units).to_bytes(decimal_length(precision) - 1, "little")


def decode_decimal(data: bytes, scale: int) -> decimal.Decimal:
    magnitude = decimal.Decimal(int.from_bytes(data[1:], "little")).scaleb(-scale, _EXACT)
    return magnitude if data[0] else -magnitude


def encode_money(value: decimal.Decimal, *, small: bool = False) -> bytes:
    """MONEY: value × 10^4 as i64 sent high half first; SMALLMONEY: i32."""
    units = int(value.scaleb(4, _EXACT).to_integral_value(decimal.ROUND_HALF_UP, _EXACT))
    if small:
        return struct.pack("<i", units)
    return struct.pack("<iI", units >> 32, units & 0xFFFFFFFF)


def decode_money(data: bytes) -> decimal.Decimal:
    if len(data) == 4:
        units = struct.unpack("<i", data)[0]
    else:
        high, low = struct.unpack("<iI", data)
        units = (high << 32) | low
    return decimal.Decimal(units).scaleb(-4, _EXACT)
