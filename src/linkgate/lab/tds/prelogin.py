"""PRELOGIN: the option table both sides exchange first, and the encryption negotiation it carries.

Option table: (token u8, offset u16 BE, length u16 BE) entries ending with 0xFF, then the data.
The encryption answer decides the rest of the connection (SQL Server's own rules):

| client says | server with a certificate answers | meaning |
|---|---|---|
| NOT_SUP (2) | NOT_SUP | plaintext throughout |
| OFF (0) | OFF | login-only: LOGIN7 inside TLS, then plaintext |
| ON (1), REQ (3) | ON | TLS for the whole session |

Without a certificate the server answers NOT_SUP to everyone, and a client that requires encryption
gives up (Driver 18: `08001 Encryption not supported on SQL Server`), as against a real server.
"""

from __future__ import annotations

import enum
import struct

VERSION = 0x00
ENCRYPTION = 0x01
INSTOPT = 0x02
THREADID = 0x03
MARS = 0x04
TERMINATOR = 0xFF
_ENTRY = struct.Struct(">BHH")


class Encryption(enum.IntEnum):
    OFF = 0
    ON = 1
    NOT_SUP = 2
    REQ = 3


def parse_options(payload: bytes) -> dict[int, bytes]:
    """Option token → its data, from a PRELOGIN payload."""
    options: dict[int, bytes] = {}
    pos = 0
    while pos < len(payload) and payload[pos] != TERMINATOR:
        token, offset, length = _ENTRY.unpack_from(payload, pos)
        options[token] = payload[offset : offset + length]
        pos += _ENTRY.size
    return options


def client_encryption(options: dict[int, bytes]) -> Encryption:
    value = options.get(ENCRYPTION, b"\x02")[:1] or b"\x02"
    return Encryption(value[0] & 0x03)  # the high bits carry the client-certificate flag (0x80)


def negotiate(client: Encryption, *, tls_available: bool) -> Encryption:
    """The server's ENCRYPTION answer (see the module's table)."""
    if not tls_available or client is Encryption.NOT_SUP:
        return Encryption.NOT_SUP
    if client is Encryption.OFF:
        return Encryption.OFF
    return Encryption.ON


def build_response(version: tuple[int, int, int, int], encryption: Encryption) -> bytes:
    """The server's PRELOGIN answer: VERSION, ENCRYPTION, INSTOPT (0: instance matches), THREADID, MARS off."""
    major, minor, build, _revision = version
    entries = [
        (VERSION, struct.pack(">BBHH", major & 0xFF, minor & 0xFF, build & 0xFFFF, 0)),
        (ENCRYPTION, bytes([encryption])),
        (INSTOPT, b"\x00"),
        (THREADID, b""),
        (MARS, b"\x00"),
    ]
    offset = len(entries) * _ENTRY.size + 1
    table, data = bytearray(), bytearray()
    for token, value in entries:
        table += _ENTRY.pack(token, offset + len(data), len(value))
        data += value
    return bytes(table) + bytes([TERMINATOR]) + bytes(data)
