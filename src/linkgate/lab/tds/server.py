"""LabSqlServer: one asyncio loop in a background thread serving many simulated instances.

Each instance listens on its own (host, port) — on loopback via `add()`, or on a socket the caller
created (inside a lab network namespace) via `add_socket()`. One loop scales to hundreds of
instances and thousands of connections in one process; the backends' methods are all called from
that one thread, one at a time, so a backend needs no locking (and must not block for long).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from linkgate.lab.backend import InstanceBackend
from linkgate.lab.tds.connection import Connection
from linkgate.lab.tds.stats import InstanceStats
from linkgate.lab.tds.tls import TlsContexts
from linkgate.lab.tds.transport import Link

log = logging.getLogger(__name__)

BACKLOG = 1024
FIRST_SPID = 51  # session ids below 51 belong to SQL Server's system sessions
CONTROL_TIMEOUT_SECONDS = 30.0  # for add/stop calls handed to the loop
_T = TypeVar("_T")


@dataclass
class _Instance:
    """What is kept per instance name: its counters and where it listens (possibly several places)."""

    stats: InstanceStats = field(default_factory=InstanceStats)
    addresses: list[tuple[str, int]] = field(default_factory=list)


class LabSqlServer:
    """A TDS 7.4 server for simulated instances. Use as a context manager, or start()/stop().

    >>> with LabSqlServer(cert_file=cert, key_file=key) as server:   # doctest: +SKIP
    ...     host, port = server.add(backend)                           # 127.0.0.1 and a free port
    ...     pyodbc.connect(f"DRIVER={{…}};SERVER=tcp:{host},{port};Encrypt=yes;TrustServerCertificate=yes;…")

    Without a certificate the server answers every PRELOGIN with ENCRYPT_NOT_SUP (plaintext only).
    """

    def __init__(self, cert_file: Path | None = None, key_file: Path | None = None) -> None:
        if (cert_file is None) != (key_file is None):
            raise ValueError("cert_file and key_file go together")
        self._tls = TlsContexts.load(cert_file, key_file) if cert_file and key_file else None
        self._instances: dict[str, _Instance] = {}
        self._listeners: list[tuple[asyncio.Task[None], socket.socket]] = []
        self._idle_sockets: list[socket.socket] = []  # bound, not listening: the port refuses
        self._connections: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LabSqlServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> LabSqlServer:
        """Start the loop thread (idempotent)."""
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="linkgate-lab-tds", daemon=True)
        self._thread.start()
        ready.wait(CONTROL_TIMEOUT_SECONDS)
        return self

    def stop(self) -> None:
        """Close every listener and connection, stop the loop and join its thread (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self._call(self._shutdown())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(CONTROL_TIMEOUT_SECONDS)
            loop.close()
            self._loop = self._thread = None
            for sock in self._idle_sockets:
                sock.close()
            self._idle_sockets.clear()

    def add(self, backend: InstanceBackend, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Serve `backend` on (host, port) — port 0 picks a free one; returns where it listens."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        return self.add_socket(backend, sock)

    def add_socket(self, backend: InstanceBackend, sock: socket.socket) -> tuple[str, int]:
        """Serve `backend` on a bound (or listening) TCP socket the caller made; the server owns it now.

        With the `refuse` fault the socket is kept bound but not listening, so connecting gets a RST
        (ECONNREFUSED) as when nothing listens; an already-listening socket is closed instead.
        """
        if self._loop is None:
            raise RuntimeError("LabSqlServer.start() first")
        address: tuple[str, int] = sock.getsockname()[:2]
        instance = self._instances.setdefault(backend.name, _Instance())
        instance.addresses.append(address)
        if backend.faults.refuse:
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                sock.close()
            else:
                self._idle_sockets.append(sock)
            return address
        sock.setblocking(False)
        self._call(self._listen(backend, instance.stats, sock))
        return address

    def stats(self, name: str) -> InstanceStats:
        """The live counters of the instance named `name`, summed over its addresses (KeyError: never added)."""
        return self._instances[name].stats

    def addresses(self, name: str) -> list[tuple[str, int]]:
        """Every (host, port) the instance named `name` was added on."""
        return list(self._instances[name].addresses)

    def _call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CONTROL_TIMEOUT_SECONDS)

    async def _listen(self, backend: InstanceBackend, stats: InstanceStats, sock: socket.socket) -> None:
        sock.listen(BACKLOG)
        self._listeners.append((asyncio.create_task(self._accept(backend, stats, sock)), sock))

    async def _accept(self, backend: InstanceBackend, stats: InstanceStats, sock: socket.socket) -> None:
        """The accept loop of one listener. Our own rather than asyncio.start_server's: a server closed while
        asyncio's accept task is in flight leaks that socket, open and unanswered (measured)."""
        loop = asyncio.get_running_loop()
        while True:
            conn, _peer = await loop.sock_accept(sock)
            stats.connections += 1
            if backend.faults.refuse:  # turned on after add(): reset each new connection
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
                continue
            task = asyncio.create_task(self._serve(backend, stats, conn))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    async def _serve(self, backend: InstanceBackend, stats: InstanceStats, conn: socket.socket) -> None:
        stats.active += 1
        try:
            reader, writer = await asyncio.open_connection(sock=conn)
            spid = FIRST_SPID + (stats.connections - 1) % 30000
            await Connection(backend, stats, Link(reader, writer), self._tls, spid).run()
        except Exception:
            log.exception("%s: connection failed", backend.name)
        finally:
            stats.active -= 1

    async def _shutdown(self) -> None:
        """Stop accepting, close the listeners, end every connection; their sockets are closed on return."""
        for task, sock in self._listeners:
            task.cancel()
            sock.close()
        tasks = [task for task, _ in self._listeners] + list(self._connections)
        self._listeners.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CONTROL_TIMEOUT_SECONDS)
        await asyncio.sleep(0)  # transports close their sockets in a callback: let it run before the loop stops
