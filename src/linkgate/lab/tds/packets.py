"""TDS packets: the 8-byte header, message reassembly, and splitting responses at the packet size.

Header: type u8, status u8, length u16 big-endian (header included), SPID u16, packet id u8, window u8.
A message is one or more packets, the last with status EOM. Clients do not check the packet id.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from linkgate.lab.tds.transport import Link

HEADER = struct.Struct(">BBHHBB")
STATUS_EOM = 0x01
STATUS_RESET_CONNECTION = 0x08
STATUS_RESET_CONNECTION_SKIP_TRAN = 0x10
DEFAULT_PACKET_SIZE = 4096
MIN_PACKET_SIZE = 512
MAX_PACKET_SIZE = 32767
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a request larger than this is an abuse, not a lab scenario


class PacketType(enum.IntEnum):
    SQL_BATCH = 0x01
    RPC = 0x03
    TABULAR_RESULT = 0x04
    ATTENTION = 0x06
    BULK_LOAD = 0x07
    TRANSACTION_MANAGER = 0x0E
    LOGIN7 = 0x10
    SSPI = 0x11
    PRELOGIN = 0x12


class ProtocolError(Exception):
    """The client sent something that is not TDS as this server speaks it: the connection is closed."""


@dataclass(frozen=True)
class Message:
    """One reassembled client message."""

    type: int
    payload: bytes
    reset_connection: bool = False


async def read_packet(link: Link) -> tuple[int, int, bytes]:
    """(type, status, payload) of the next packet."""
    ptype, status, length, _spid, _pid, _window = HEADER.unpack(await link.read_exactly(HEADER.size))
    if length < HEADER.size:
        raise ProtocolError(f"packet length {length} is shorter than its header")
    return ptype, status, await link.read_exactly(length - HEADER.size)


async def read_message(link: Link) -> Message:
    """The next whole message; raises asyncio.IncompleteReadError at end of stream."""
    ptype, status, payload = await read_packet(link)
    parts = [payload]
    size = len(payload)
    reset = bool(status & (STATUS_RESET_CONNECTION | STATUS_RESET_CONNECTION_SKIP_TRAN))
    while not status & STATUS_EOM:
        more_type, status, payload = await read_packet(link)
        if more_type != ptype:
            raise ProtocolError(f"packet type {more_type:#04x} inside a {ptype:#04x} message")
        size += len(payload)
        if size > MAX_MESSAGE_BYTES:
            raise ProtocolError(f"message larger than {MAX_MESSAGE_BYTES} bytes")
        parts.append(payload)
    return Message(ptype, b"".join(parts), reset)


def frame(ptype: int, payload: bytes, packet_size: int, *, spid: int = 0, last: bool = True) -> bytes:
    """`payload` as packets of at most `packet_size` bytes; EOM on the final one unless `last` is False.

    `last=False` leaves the message open: used to cut a response off mid-stream (reset faults).
    """
    room = packet_size - HEADER.size
    chunks = [payload[i : i + room] for i in range(0, len(payload), room)] or [b""]
    out = bytearray()
    for number, chunk in enumerate(chunks, start=1):
        status = STATUS_EOM if last and number == len(chunks) else 0
        out += HEADER.pack(ptype, status, len(chunk) + HEADER.size, spid, number % 256, 0)
        out += chunk
    return bytes(out)
