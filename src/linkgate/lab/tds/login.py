"""LOGIN7: what the client says about itself and who it logs in as.

Fixed part (94 bytes): length, TDS version (little-endian here, big-endian in LOGINACK), packet size
(Driver 18 sends 0: "server, choose"), client program version, PID, connection id, option flags,
time zone, LCID, then (offset u16, length-in-characters u16) pairs pointing at UCS-2 strings.
The password is obfuscated: each byte's nibbles swapped, then XOR 0xA5.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from linkgate.lab.tds.packets import DEFAULT_PACKET_SIZE, MAX_PACKET_SIZE, MIN_PACKET_SIZE, ProtocolError

_FIXED = struct.Struct("<IIIIII4BiI")
_FIXED_SIZE = 94
_OFFSETS = {
    "host_name": 36,
    "user": 40,
    "password": 44,
    "app_name": 48,
    "server_name": 52,
    "library": 60,
    "language": 64,
    "database": 68,
}
_SSPI = 78
_INTEGRATED_SECURITY = 0x80  # OptionFlags2 fIntSecurity


@dataclass(frozen=True)
class Login7:
    """The decoded fields the lab uses."""

    tds_version: int
    packet_size: int
    host_name: str
    user: str
    password: str = ""
    app_name: str = ""
    server_name: str = ""
    library: str = ""
    language: str = ""
    database: str = ""
    integrated_security: bool = False

    def __repr__(self) -> str:  # never show the password, even in a traceback
        return f"Login7(user={self.user!r}, database={self.database!r}, app_name={self.app_name!r})"

    @property
    def negotiated_packet_size(self) -> int:
        """The client's size when it names one, else 4096; clamped to what TDS allows."""
        if self.packet_size == 0:
            return DEFAULT_PACKET_SIZE
        return max(MIN_PACKET_SIZE, min(MAX_PACKET_SIZE, self.packet_size))


def decode_password(data: bytes) -> str:
    """Undo LOGIN7's obfuscation (XOR 0xA5, then swap nibbles) and decode UCS-2."""
    plain = bytes((((b ^ 0xA5) << 4) & 0xF0) | ((b ^ 0xA5) >> 4) for b in data)
    return plain.decode("utf-16-le")


def parse_login7(payload: bytes) -> Login7:
    if len(payload) < _FIXED_SIZE:
        raise ProtocolError(f"LOGIN7 of {len(payload)} bytes is shorter than its fixed part")
    _length, version, packet_size, _prog, _pid, _conn, _f1, flags2, _tf, _f3, _tz, _lcid = _FIXED.unpack_from(payload)
    fields: dict[str, str] = {}
    for name, at in _OFFSETS.items():
        offset, chars = struct.unpack_from("<HH", payload, at)
        raw = payload[offset : offset + 2 * chars]
        if len(raw) != 2 * chars:
            raise ProtocolError(f"LOGIN7 field {name} points outside the message")
        fields[name] = decode_password(raw) if name == "password" else raw.decode("utf-16-le")
    _sspi_offset, sspi_length = struct.unpack_from("<HH", payload, _SSPI)
    return Login7(
        tds_version=version,
        packet_size=packet_size,
        integrated_security=bool(flags2 & _INTEGRATED_SECURITY) or sspi_length > 0,
        **fields,
    )
