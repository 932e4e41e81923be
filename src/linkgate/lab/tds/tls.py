"""TLS as SQL Server does it: inside PRELOGIN packets (TDS 7.x) or first on the wire (TDS 8.0 strict).

TDS 7.x: the handshake's TLS records travel as payloads of PRELOGIN (0x12) packets; the server's
replies too. Clients send their last flight raw on TLS 1.3 (Driver 18 sends `14 03 03 …` unwrapped),
so a record header is recognised on the wire as well; TLS is capped at 1.2 on this path anyway,
because GnuTLS (FreeTDS) loses its Finished on 1.3 in this wrapping and SQL Server caps it too.

TDS 8.0 strict: the client's first byte is a TLS ClientHello (0x16); the handshake is plain TLS with
ALPN `tds/8.0`, TLS 1.3 allowed, and PRELOGIN/LOGIN7 follow inside it.

Session tickets are off (`num_tickets = 0`): TLS 1.3 tickets after the handshake would arrive where
TDS clients expect a packet.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from linkgate.lab.tds.packets import PacketType, frame, read_packet
from linkgate.lab.tds.transport import Link

ALPN_TDS8 = "tds/8.0"
TLS_RECORD_TYPES = frozenset({0x14, 0x15, 0x16, 0x17})  # change_cipher_spec, alert, handshake, application_data
MAX_HANDSHAKE_ROUNDS = 32  # a TLS handshake takes 2-4 rounds; more is a broken or hostile client


class HandshakeError(Exception):
    """The TLS handshake did not complete."""


@dataclass(frozen=True)
class TlsContexts:
    """The two server contexts: TDS 7.x (TLS ≤ 1.2, wrapped in PRELOGIN) and TDS 8.0 strict (ALPN)."""

    wrapped: ssl.SSLContext
    strict: ssl.SSLContext

    @classmethod
    def load(cls, cert_file: Path, key_file: Path) -> TlsContexts:
        wrapped = _context(cert_file, key_file)
        wrapped.maximum_version = ssl.TLSVersion.TLSv1_2
        strict = _context(cert_file, key_file)
        strict.set_alpn_protocols([ALPN_TDS8])
        return cls(wrapped, strict)


def _context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    ctx.num_tickets = 0
    return ctx


async def handshake_in_prelogin(link: Link, context: ssl.SSLContext, packet_size: int) -> ssl.SSLObject:
    """TDS 7.x handshake: records in PRELOGIN packets (or raw, see the module doc); TLS on afterwards."""
    tls = link.tls_object(context)
    for _ in range(MAX_HANDSHAKE_ROUNDS):
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            out = link.take_tls_output()
            if out:
                link.send_raw(frame(PacketType.PRELOGIN, out, packet_size))
                await link.drain()
            link.feed_tls(await _next_handshake_bytes(link))
            continue
        out = link.take_tls_output()
        if out:
            link.send_raw(frame(PacketType.PRELOGIN, out, packet_size))
            await link.drain()
        link.start_tls(tls)
        return tls
    raise HandshakeError(f"no TLS handshake after {MAX_HANDSHAKE_ROUNDS} rounds")


async def handshake_strict(link: Link, context: ssl.SSLContext) -> ssl.SSLObject:
    """TDS 8.0 handshake: plain TLS from the first byte; TLS on afterwards."""
    tls = link.tls_object(context)
    for _ in range(MAX_HANDSHAKE_ROUNDS):
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            link.send_raw(link.take_tls_output())
            await link.drain()
            chunk = await link.raw_chunk()
            if not chunk:
                raise HandshakeError("client closed the connection during the TLS handshake") from None
            link.feed_tls(chunk)
            continue
        link.send_raw(link.take_tls_output())
        await link.drain()
        link.start_tls(tls)
        return tls
    raise HandshakeError(f"no TLS handshake after {MAX_HANDSHAKE_ROUNDS} rounds")


async def _next_handshake_bytes(link: Link) -> bytes:
    """The TLS bytes of the next PRELOGIN packet, or of the next raw TLS record."""
    first = await link.peek(5)
    if first[0] in TLS_RECORD_TYPES and first[1] == 0x03:
        return await link.read_exactly(5 + int.from_bytes(first[3:5], "big"))
    ptype, _status, payload = await read_packet(link)
    if ptype != PacketType.PRELOGIN:
        raise HandshakeError(f"packet type {ptype:#04x} during the TLS handshake")
    return payload
