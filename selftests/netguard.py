"""The self-tests' network fence: any connection or datagram to an address outside loopback and the lab's range fails.

The project's promise (DESIGN.md, "Lab network safety") is that its own tests talk only to loopback and to the
lab's 198.18.0.0/15 namespaces. This guard turns that promise into a failure: an audit hook (PEP 578) on
`socket.connect`, `socket.sendto` and `socket.getaddrinfo` raises `NetworkEscape` for any other address, and
writes the attempt to the file named by LINKGATE_NETGUARD_LOG so that a caller that swallows the exception still
gets caught (selftests/conftest.py checks after each test; the e2e harness after each gate run).

It is installed in the self-test processes (selftests/conftest.py) and, through `SITE_DIR` on PYTHONPATH, in
the gate subprocesses the e2e harness starts. Processes inside the lab's network namespaces (sshd, the hosts'
listeners, the managed instance's probes) need no hook: the lab gives each namespace routes only to the lab range
and blackholes 198.18.0.0/15 outside it, so nothing there can reach another address at all.

Names: a name passes only if /etc/hosts maps it to allowed addresses (localhost); anything else would need DNS,
which is itself traffic to a resolver outside the fence. The lab's environments name every target by address.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from collections.abc import Iterable
from pathlib import Path

ALLOWED = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
    ipaddress.ip_network("198.18.0.0/15"),
)
LOG_ENV = "LINKGATE_NETGUARD_LOG"
SITE_DIR = Path(__file__).resolve().parent / "netguard_site"
"""Holds a sitecustomize.py that installs this guard in any Python process with the directory on PYTHONPATH."""
EVENTS = ("socket.connect", "socket.sendto", "socket.getaddrinfo")


class NetworkEscape(RuntimeError):
    """A self-test (or the gate it started) tried to reach an address outside loopback and the lab.

    A RuntimeError, not an OSError: code that handles network failures must not mistake it for one.
    """


def allowed_address(host: str) -> bool:
    """Whether an IP literal lies in loopback or the lab range (an IPv4-mapped IPv6 address counts as IPv4)."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in ALLOWED)


def hosts_file_addresses(name: str, hosts: Path = Path("/etc/hosts")) -> list[str]:
    """The addresses /etc/hosts gives `name` (read here, so that checking a name never asks DNS)."""
    found: list[str] = []
    try:
        lines = hosts.read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and name.lower() in (f.lower() for f in fields[1:]):
            found.append(fields[0])
    return found


def allowed_host(host: object) -> bool:
    """An address or name the fence lets through: an allowed IP literal, or a name /etc/hosts maps only there."""
    if host is None or host == "" or host == b"":
        return True  # getaddrinfo(None, port): the wildcard for a listening socket, no traffic
    text = host.decode() if isinstance(host, bytes) else str(host)
    if allowed_address(text):
        return True
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
        return False  # a literal outside the fence
    except ValueError:
        pass
    addresses = hosts_file_addresses(text)
    return bool(addresses) and all(allowed_address(a) for a in addresses)


def _destination(event: str, args: tuple[object, ...]) -> object | None:
    """The host an audited call goes to, or None when the call is not an IP one (AF_UNIX, netlink, …)."""
    if event == "socket.getaddrinfo":
        return args[0]
    sock, address = args[0], args[1]
    if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
        return None
    return address[0] if isinstance(address, tuple) and address else address


blocked: list[str] = []
"""This process's blocked attempts, kept even when the caller swallows `NetworkEscape` (conftest checks it)."""


def _record(message: str) -> None:
    blocked.append(message)
    path = os.environ.get(LOG_ENV)
    if path:
        with Path(path).open("a", encoding="utf-8") as log:
            log.write(message + "\n")


def _hook(event: str, args: tuple[object, ...]) -> None:
    if event not in EVENTS:
        return
    host = _destination(event, args)
    if host is None and event != "socket.getaddrinfo":
        return
    if not allowed_host(host):
        message = f"linkgate netguard: blocked {event} to {host!r} (pid {os.getpid()}: {' '.join(sys.argv)[:200]})"
        _record(message)
        raise NetworkEscape(message)


_installed: list[bool] = []
"""Whether this process has the hook: audit hooks cannot be removed, so install at most once."""


def install() -> None:
    """Add the audit hook to this process (idempotent)."""
    if not _installed:
        sys.addaudithook(_hook)
        _installed.append(True)


def read_log(path: Path) -> list[str]:
    """The attempts logged to `path` (none when the file does not exist)."""
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def with_guard(env: dict[str, str], log: Path) -> dict[str, str]:
    """A subprocess environment whose Python processes install the guard at startup and log to `log`."""
    paths: Iterable[str] = (str(SITE_DIR), env.get("PYTHONPATH", ""))
    return {**env, "PYTHONPATH": os.pathsep.join(p for p in paths if p), LOG_ENV: str(log)}
