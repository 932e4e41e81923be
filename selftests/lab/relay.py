"""Reading what really crosses the wire: a loopback relay that records both directions, and readers for
unencrypted TDS messages and for the token streams of simple answers (integer columns only).

Wire tests connect FreeTDS with Encryption=off through `Relay`, so everything after LOGIN7 is plain TDS
and the bytes the drivers see can be asserted token by token.
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass

COLMETADATA, ROW, ERROR, INFO, ENVCHANGE, RETURNSTATUS, RETURNVALUE = 0x81, 0xD1, 0xAA, 0xAB, 0xE3, 0x79, 0xAC
DONE, DONEPROC, DONEINPROC = 0xFD, 0xFE, 0xFF
DONE_MORE, DONE_ERROR, DONE_COUNT = 0x01, 0x02, 0x10
_FIXED_INTS = {0x30: 1, 0x34: 2, 0x38: 4, 0x7F: 8}
_INTN = 0x26


class Relay:
    """A loopback TCP relay between a driver and the lab that keeps every byte each way, to read the real packets."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sent = bytearray()  # client → server
        self.received = bytearray()  # server → client
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        client, _ = self.listener.accept()
        server = socket.create_connection(self.upstream)
        pumps = [
            threading.Thread(target=self._pump, args=(client, server, self.sent)),
            threading.Thread(target=self._pump, args=(server, client, self.received)),
        ]
        for pump in pumps:
            pump.start()
        for pump in pumps:
            pump.join()
        client.close()
        server.close()
        self.listener.close()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, record: bytearray) -> None:
        while data := source.recv(65536):
            record += data
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)

    def join(self) -> None:
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "the relay did not see both sides close"


def tds_messages(stream: bytes) -> list[tuple[int, bytes]]:
    """(packet type, payload) of each message of an unencrypted TDS stream, packets joined up to EOM."""
    messages: list[tuple[int, bytes]] = []
    payload, at = b"", 0
    while at < len(stream):
        kind, status, length = struct.unpack_from(">BBH", stream, at)
        payload += stream[at + 8 : at + length]
        at += length
        if status & 0x01:
            messages.append((kind, payload))
            payload = b""
    return messages


def answer_to(requests: list[tuple[int, bytes]], responses: list[tuple[int, bytes]], text: str) -> bytes:
    """The response to the one SQL batch (packet type 1) whose text contains `text`."""
    needle = text.encode("utf-16-le")
    found = [responses[i][1] for i, (kind, body) in enumerate(requests) if kind == 0x01 and needle in body]
    assert len(found) == 1, f"{len(found)} batches contain {text!r}"
    return found[0]


@dataclass(frozen=True)
class Tok:
    """One token of a response, as much of it as the wire tests assert on.

    `number` is an ERROR's or INFO's message number; `status`, `curcmd` and `count` a DONE-family token's
    fields; `values` a ROW's integers.
    """

    kind: int
    number: int = 0
    status: int = 0
    curcmd: int = 0
    count: int = 0
    values: tuple[int | None, ...] = ()


def read_tokens(payload: bytes) -> list[Tok]:
    """The tokens of a response whose result sets have integer columns only (anything else fails loudly)."""
    out: list[Tok] = []
    columns: list[tuple[int, int]] = []  # (type code, fixed size or 0 for INTN)
    at = 0
    while at < len(payload):
        kind = payload[at]
        at += 1
        if kind in (DONE, DONEPROC, DONEINPROC):
            status, curcmd, count = struct.unpack_from("<HHQ", payload, at)
            out.append(Tok(kind, status=status, curcmd=curcmd, count=count))
            at += 12
        elif kind in (ERROR, INFO, ENVCHANGE):
            (length,) = struct.unpack_from("<H", payload, at)
            number = struct.unpack_from("<i", payload, at + 2)[0] if kind != ENVCHANGE else payload[at + 2]
            out.append(Tok(kind, number=number))
            at += 2 + length
        elif kind == RETURNSTATUS:
            out.append(Tok(kind, number=struct.unpack_from("<i", payload, at)[0]))
            at += 4
        elif kind == COLMETADATA:
            columns, at = _colmetadata(payload, at)
            out.append(Tok(kind, count=len(columns)))
        elif kind == ROW:
            values, at = _row(payload, at, columns)
            out.append(Tok(kind, values=values))
        else:
            raise AssertionError(f"token {kind:#04x} at offset {at - 1} is not one read_tokens knows")
    return out


def _colmetadata(payload: bytes, at: int) -> tuple[list[tuple[int, int]], int]:
    (count,) = struct.unpack_from("<H", payload, at)
    at += 2
    columns: list[tuple[int, int]] = []
    for _ in range(count):
        at += 6  # UserType, Flags
        code = payload[at]
        at += 1
        if code == _INTN:
            at += 1  # declared length
            columns.append((code, 0))
        elif code in _FIXED_INTS:
            columns.append((code, _FIXED_INTS[code]))
        else:
            raise AssertionError(f"column type {code:#04x} is not an integer type read_tokens knows")
        at += 1 + 2 * payload[at]  # name, B_VARCHAR
    return columns, at


def _row(payload: bytes, at: int, columns: list[tuple[int, int]]) -> tuple[tuple[int | None, ...], int]:
    values: list[int | None] = []
    for _code, size in columns:
        if size == 0:
            size = payload[at]
            at += 1
            if size == 0:
                values.append(None)
                continue
        values.append(int.from_bytes(payload[at : at + size], "little", signed=True))
        at += size
    return tuple(values), at
