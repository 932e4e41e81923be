"""One client connection's byte stream, plaintext or through TLS, switchable mid-stream.

SQL Server switches encryption in the middle of a connection: the TLS handshake travels inside
PRELOGIN packets, then TLS records go raw on the socket; with login-only encryption TLS is dropped
again after LOGIN7. So TLS is done here by hand with `ssl.SSLObject` over memory BIOs rather than
with asyncio's `start_tls`, and every reader of the connection goes through this one object.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct

READ_CHUNK = 65536


class Link:
    """Buffered reads and writes over one TCP connection, with TLS switchable on and off."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._buffer = bytearray()
        self._tls: ssl.SSLObject | None = None
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()

    def tls_object(self, context: ssl.SSLContext) -> ssl.SSLObject:
        """A server-side SSLObject on this link's BIOs, for a handshake driven by `tls.py`."""
        return context.wrap_bio(self._incoming, self._outgoing, server_side=True)

    def feed_tls(self, data: bytes) -> None:
        """Hand TLS bytes received (wrapped or raw) to the SSLObject during a handshake."""
        self._incoming.write(data)

    def take_tls_output(self) -> bytes:
        """TLS bytes the SSLObject produced and that must now be sent (wrapped or raw)."""
        return self._outgoing.read()

    def start_tls(self, tls: ssl.SSLObject) -> None:
        """From now on every byte in and out is TLS; bytes already buffered were TLS records too."""
        if self._buffer:
            self._incoming.write(bytes(self._buffer))
            self._buffer.clear()
        self._tls = tls

    def stop_tls(self) -> None:
        """Login-only encryption: after LOGIN7 the server answers, and the client continues, in plaintext."""
        self._tls = None

    async def raw_chunk(self) -> bytes:
        """Whatever bytes are buffered or arrive next, without TLS (b"" at end of stream)."""
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            return data
        return await self._reader.read(READ_CHUNK)

    async def peek(self, n: int) -> bytes:
        """The next `n` bytes without consuming them; raises IncompleteReadError at end of stream."""
        while len(self._buffer) < n:
            await self._fill()
        return bytes(self._buffer[:n])

    async def read_exactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            await self._fill()
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def send(self, data: bytes) -> None:
        if self._tls is None:
            self._writer.write(data)
            return
        self._tls.write(data)
        self._writer.write(self._outgoing.read())

    def send_raw(self, data: bytes) -> None:
        self._writer.write(data)

    async def drain(self) -> None:
        await self._writer.drain()

    def reset(self) -> None:
        """Abort with a TCP RST (SO_LINGER 0), as a crashed server or a middlebox would."""
        sock: socket.socket | None = self._writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._writer.transport.abort()

    def close(self) -> None:
        self._writer.transport.close()

    async def _fill(self) -> None:
        if self._tls is None:
            data = await self._reader.read(READ_CHUNK)
            if not data:
                raise asyncio.IncompleteReadError(bytes(self._buffer), None)
            self._buffer += data
            return
        while True:
            try:
                data = self._tls.read(READ_CHUNK)
                if not data:
                    raise asyncio.IncompleteReadError(bytes(self._buffer), None)
                self._buffer += data
                return
            except ssl.SSLWantReadError:
                pending = self._outgoing.read()
                if pending:
                    self._writer.write(pending)
                data = await self._reader.read(READ_CHUNK)
                if not data:
                    raise asyncio.IncompleteReadError(bytes(self._buffer), None) from None
                self._incoming.write(data)
            except ssl.SSLZeroReturnError:
                raise asyncio.IncompleteReadError(bytes(self._buffer), None) from None
