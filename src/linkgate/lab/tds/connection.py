"""One client connection: PRELOGIN, TLS, LOGIN7, then requests until the client leaves.

After login a reader task owns the socket's input, so that an ATTENTION (a driver's query timeout or
cancel) is seen while a statement runs or stalls: the running request is cancelled and answered with
DONE(ATTN), and the connection stays usable, as with SQL Server. The wire faults of the instance
(backend.faults, read at each use so a scenario may change them) are applied here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import struct

from linkgate.lab.backend import InstanceBackend, Session
from linkgate.lab.results import SqlError
from linkgate.lab.tds.login import parse_login7
from linkgate.lab.tds.packets import (
    DEFAULT_PACKET_SIZE,
    Message,
    PacketType,
    ProtocolError,
    frame,
    read_message,
)
from linkgate.lab.tds.prelogin import Encryption, build_response, client_encryption, negotiate, parse_options
from linkgate.lab.tds.procs import Procedures
from linkgate.lab.tds.requests import parse_batch, parse_rpc, parse_transaction
from linkgate.lab.tds.response import ResetMidResult, Response
from linkgate.lab.tds.stats import InstanceStats
from linkgate.lab.tds.tls import HandshakeError, TlsContexts, handshake_in_prelogin, handshake_strict
from linkgate.lab.tds.tokens import (
    LANGUAGE,
    Done,
    Env,
    Token,
    done,
    env_bytes,
    env_collation,
    env_text,
    loginack,
    message,
)
from linkgate.lab.tds.transport import Link

log = logging.getLogger(__name__)

LOGIN_DEADLINE_SECONDS = 60.0  # from the first byte to LOGINACK; a client slower than this is gone
DROP_HOLD_SECONDS = 120.0  # how long a "drop" fault keeps an unanswered connection open
TLS_CLIENT_HELLO = 0x16
TM_BEGIN, TM_COMMIT, TM_ROLLBACK = 5, 7, 8
_ENCRYPTION_NAMES = {
    Encryption.NOT_SUP: "none",
    Encryption.OFF: "login-only",
    Encryption.ON: "full",
    Encryption.REQ: "full",
}
_ENDED = (asyncio.IncompleteReadError, ConnectionError, ProtocolError, HandshakeError, ssl.SSLError, TimeoutError)


class _ResetByFault(Exception):
    """The connection was reset on purpose (reset_after_rows); nothing more to do."""


class Connection:
    """Serves one accepted TCP connection for one instance."""

    def __init__(
        self, backend: InstanceBackend, stats: InstanceStats, link: Link, tls: TlsContexts | None, spid: int
    ) -> None:
        self.backend = backend
        self.stats = stats
        self.link = link
        self.tls = tls
        self.spid = spid
        self.packet_size = DEFAULT_PACKET_SIZE
        self._current: asyncio.Task[None] | None = None
        self._transaction = 0

    async def run(self) -> None:
        try:
            if self.backend.faults.drop:
                await self._hold()
                return
            async with asyncio.timeout(LOGIN_DEADLINE_SECONDS):
                session = await self._login()
            if session is not None:
                await self._serve(session)
        except _ResetByFault:
            return
        except _ENDED as e:
            log.debug("%s: connection ended: %s", self.backend.name, e)
        finally:
            self.link.close()

    async def _hold(self) -> None:
        """The drop fault: accepted, read and never answered, closed after DROP_HOLD_SECONDS."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DROP_HOLD_SECONDS):
                while await self.link.raw_chunk():
                    pass

    async def _login(self) -> Session | None:
        strict = (await self.link.peek(1))[0] == TLS_CLIENT_HELLO
        if strict:
            if self.tls is None:
                raise HandshakeError("a TDS 8.0 (TLS-first) client, but this server has no certificate")
            await handshake_strict(self.link, self.tls.strict)
        prelogin = await read_message(self.link)
        if prelogin.type != PacketType.PRELOGIN:
            raise ProtocolError(f"expected PRELOGIN, got packet type {prelogin.type:#04x}")
        wanted = client_encryption(parse_options(prelogin.payload))
        answer = negotiate(wanted, tls_available=self.tls is not None and not strict)
        await self._respond(build_response(self.backend.product_version, answer))
        if answer in (Encryption.ON, Encryption.OFF) and self.tls is not None:
            await handshake_in_prelogin(self.link, self.tls.wrapped, self.packet_size)
        login7 = await read_message(self.link)
        if login7.type != PacketType.LOGIN7:
            raise ProtocolError(f"expected LOGIN7, got packet type {login7.type:#04x}")
        if answer is Encryption.OFF:
            self.link.stop_tls()  # login-only encryption: everything after LOGIN7 is plaintext
        login = parse_login7(login7.payload)
        self.packet_size = login.negotiated_packet_size
        try:
            if login.integrated_security and not login.user:
                raise SqlError(
                    18452,
                    "Login failed. The login is from an untrusted domain and cannot be used "
                    "with Integrated authentication.",
                    state=1,
                    severity=14,
                )
            session = self.backend.login(
                login.user, login.password, login.database or None, app_name=login.app_name, host_name=login.host_name
            )
        except SqlError as e:
            self.stats.failed_logins += 1
            failed = Response(self.backend.server_name)
            failed.error(e)
            await self._respond(failed.finish())
            return None
        self.stats.logins += 1
        self.stats.encryption[_ENCRYPTION_NAMES[answer] if not strict else "strict"] += 1
        await self._respond(self._login_stream(session.database))
        return session

    def _login_stream(self, database: str) -> bytes:
        server = self.backend.server_name
        return b"".join(
            [
                env_text(Env.DATABASE, database, "master"),
                message(
                    Token.INFO, 5701, f"Changed database context to '{database}'.", state=2, severity=0, server=server
                ),
                env_collation(),
                env_text(Env.LANGUAGE, LANGUAGE, ""),
                message(
                    Token.INFO, 5703, f"Changed language setting to {LANGUAGE}.", state=1, severity=0, server=server
                ),
                loginack(self.backend.product_version),
                env_text(Env.PACKET_SIZE, str(self.packet_size), str(self.packet_size)),
                done(Done.FINAL),
            ]
        )

    async def _serve(self, session: Session) -> None:
        procs = Procedures(session)
        queue: asyncio.Queue[Message | None] = asyncio.Queue()
        reader = asyncio.create_task(self._read_requests(queue))
        try:
            while (request := await queue.get()) is not None:
                if request.type == PacketType.ATTENTION:  # idle: the statement had already been answered
                    self.stats.attentions += 1
                    await self._respond(done(Done.ATTN))
                    continue
                task = asyncio.create_task(self._handle(request, session, procs))
                self._current = task
                await asyncio.wait({task})
                self._current = None
                if task.cancelled():
                    self.stats.attentions += 1
                    await self._respond(done(Done.ATTN))
                elif (error := task.exception()) is not None:
                    raise error
        finally:
            reader.cancel()
            if self._current is not None:
                self._current.cancel()

    async def _read_requests(self, queue: asyncio.Queue[Message | None]) -> None:
        """Reads every message; an ATTENTION cancels the running request instead of queueing."""
        try:
            while True:
                request = await read_message(self.link)
                running = self._current
                if request.type == PacketType.ATTENTION and running is not None and not running.done():
                    running.cancel()
                else:
                    queue.put_nowait(request)
        except _ENDED as e:
            log.debug("%s: reader ended: %s", self.backend.name, e)
            queue.put_nowait(None)

    async def _handle(self, request: Message, session: Session, procs: Procedures) -> None:
        faults = self.backend.faults
        out = Response(self.backend.server_name, reset_after_rows=faults.reset_after_rows)
        if request.reset_connection:
            out.token(env_bytes(Env.RESET_CONNECTION_ACK, b"", b""))
        try:
            await self._answer(request, session, procs, out)
        except ResetMidResult as e:
            self.link.send(frame(PacketType.TABULAR_RESULT, e.partial, self.packet_size, spid=self.spid, last=False))
            await self.link.drain()
            self.link.reset()
            raise _ResetByFault from e
        except ProtocolError:
            raise
        except Exception as e:  # a backend bug or an unencodable value: the client sees it, the lab carries on
            log.exception("%s: internal error answering a request", self.backend.name)
            out = Response(self.backend.server_name)
            out.error(SqlError(50000, f"linkgate lab internal error: {type(e).__name__}: {e}"))
        await self._respond(out.finish())

    async def _answer(self, request: Message, session: Session, procs: Procedures, out: Response) -> None:
        if request.type == PacketType.SQL_BATCH:
            text = parse_batch(request.payload)
            await self._stall(text)
            failed = out.outcomes(session.execute(text))
            if failed:
                out.errors(failed)
        elif request.type == PacketType.RPC:
            for call in parse_rpc(request.payload):
                await self._stall(procs.text_of(call))
                procs.run(call, out)
        elif request.type == PacketType.TRANSACTION_MANAGER:
            self._transaction_request(request.payload, out)
        else:
            raise ProtocolError(f"request packet type {request.type:#04x} is not supported by the lab")

    def _transaction_request(self, payload: bytes, out: Response) -> None:
        """BEGIN/COMMIT/ROLLBACK from the driver (autocommit off): ENVCHANGE 8/9/10, then DONE."""
        request = parse_transaction(payload)
        current = struct.pack("<Q", self._transaction)
        if request.kind in (TM_COMMIT, TM_ROLLBACK):
            kind = Env.COMMIT_TRANSACTION if request.kind == TM_COMMIT else Env.ROLLBACK_TRANSACTION
            out.token(env_bytes(kind, b"", current))
        if request.kind == TM_BEGIN or request.begin_after:
            self._transaction += 1
            out.token(env_bytes(Env.BEGIN_TRANSACTION, struct.pack("<Q", self._transaction), b""))
        out.done(Done.FINAL)

    async def _stall(self, text: str) -> None:
        faults = self.backend.faults
        if faults.stall_pattern and re.search(faults.stall_pattern, text, re.IGNORECASE):
            await asyncio.sleep(faults.stall_seconds)

    async def _respond(self, tokens: bytes) -> None:
        """One response message, after the instance's injected latency."""
        latency = self.backend.faults.latency_ms
        if latency > 0:
            await asyncio.sleep(latency / 1000)
        self.link.send(frame(PacketType.TABULAR_RESULT, tokens, self.packet_size, spid=self.spid))
        await self.link.drain()
        self.stats.round_trips += 1
