"""A simulated server's view of the lab network: what its Agent's `tnc` reaches and where its endpoints listen.

A SQL Server or managed instance of the lab lives on a lab machine (a network namespace, see
`linkgate.lab.hosts`). Its Agent job steps open TCP connections *from that namespace*, so a probe's
result depends on the lab's real routes and firewall rules, and a STARTED mirroring endpoint opens a
real listener there. `MachineNetwork` is that view; an instance without a machine (engine-only tests)
has none, and its Agent reports that it cannot reach anything.

Only loopback and the lab range (198.18.0.0/15) are ever contacted: the lab's namespaces have no
other route, and `connect()` refuses any other address before it opens a socket.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from linkgate.lab import netns as nx

TCP_TIMEOUT = 2.0
"""How long the lab's `tnc` waits for a connection (Windows' Test-NetConnection waits about 21 s)."""
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


@dataclass(frozen=True)
class TcpAttempt:
    """What Test-NetConnection reports: the name asked for, the address tried (None: unresolved), the result."""

    computer_name: str
    remote_address: str | None
    port: int
    succeeded: bool
    warning: str = ""


class EndpointListener:
    """A TCP listener inside a machine's namespace that accepts and closes connections (the port is open)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._sock.settimeout(0.2)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="lab-endpoint-listener", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.close()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        self._sock.close()


class MachineNetwork:
    """The network of one lab machine as its server's processes see it: its namespace and its hosts file."""

    def __init__(
        self, netns: str, etc_hosts: Mapping[str, ipaddress.IPv4Address], *, timeout: float = TCP_TIMEOUT
    ) -> None:
        self.netns = netns
        self.etc_hosts = {name.lower(): address for name, address in etc_hosts.items()}
        self.timeout = timeout

    def resolve(self, name: str) -> ipaddress.IPv4Address | None:
        """An address literal as is; a name through the machine's hosts file (the lab has no DNS)."""
        try:
            return ipaddress.IPv4Address(name)
        except ValueError:
            return self.etc_hosts.get(name.lower())

    def connect(self, host: str, port: int) -> TcpAttempt:
        """A TCP connection from the machine's namespace to host:port, as Test-NetConnection reports it."""
        address = self.resolve(host)
        if address is None:
            return TcpAttempt(host, None, port, False, f"Name resolution of {host} failed")
        if not (address in nx.LAB_RANGE or address in LOOPBACK):
            return TcpAttempt(host, str(address), port, False, f"{address} is outside the lab: not contacted")
        ok = nx.tcp_connects_from(self.netns, str(address), port, timeout=self.timeout)
        warning = "" if ok else f"TCP connect to ({address} : {port}) failed"
        return TcpAttempt(host, str(address), port, ok, warning)

    def listen(self, port: int) -> EndpointListener | None:
        """Listen on every address of the machine on `port`; None when something already listens there.

        A listener the scenario configures (`listeners:`) stands for a process that already holds the
        port (an existing endpoint): a test endpoint on the same port then shares it, as the article's
        `tnc localhost -port 5022` check would see.
        """
        try:
            sock = nx.listening_socket_in(self.netns, "0.0.0.0", port)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return None
            raise
        return EndpointListener(sock)
