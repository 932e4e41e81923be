"""Network namespaces, veth pairs and routes for the lab — and sockets opened inside a namespace.

The lab's machines live in network namespaces with addresses from 198.18.0.0/15 (RFC 2544, reserved
for benchmarking). Before any lab address is configured, `ensure_blackhole()` installs a blackhole
route for the whole range in the root namespace, so a lab address can never leave the machine: only
the more specific routes the lab adds through its own veths are reachable, and they end in its
namespaces. Everything here shells out to `ip` (iproute2), the same tool an operator would use to
inspect what the lab built.

Python 3.11 has no `os.setns`, so `socket_in()` calls setns(2) through ctypes on a short-lived thread:
the namespace switch affects only that thread, and a socket keeps the namespace it was created in
for its whole life, so the lab process (in the root namespace) can serve on a lab host's address.
"""

from __future__ import annotations

import ctypes
import ipaddress
import json
import os
import socket
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

LAB_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
COMMAND_TIMEOUT = 20.0


class LabNeedsRoot(Exception):
    """The lab builds namespaces, routes and firewall rules: that needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN)."""

    def __init__(self) -> None:
        super().__init__(
            "the lab needs root to create network namespaces, routes and firewall rules "
            f"(running as uid {os.geteuid()}); run it as root, e.g. sudo, or in a container with CAP_NET_ADMIN "
            "and CAP_SYS_ADMIN"
        )


class NetnsError(Exception):
    """A command that builds or inspects the lab network failed; the message names the command and its error."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"`{' '.join(argv)}` failed (exit {returncode}): {stderr.strip() or 'no error output'}")
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr


def require_root() -> None:
    """Raise LabNeedsRoot unless this process is root."""
    if os.geteuid() != 0:
        raise LabNeedsRoot()


def run(
    argv: Sequence[str],
    *,
    netns: str | None = None,
    input_text: str | None = None,
    check: bool = True,
    timeout: float = COMMAND_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run a command, inside `netns` when given (`ip netns exec`), bounded in time; raise NetnsError on failure."""
    full = ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
    done = subprocess.run(full, input=input_text, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise NetnsError(full, done.returncode, done.stderr)
    return done


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    """`ip [-n NETNS] ARGS…`: the output, or NetnsError."""
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    return run(argv, check=check).stdout


def ip_json(*args: str, netns: str | None = None) -> list[dict[str, Any]]:
    """`ip -j …` parsed; an empty answer is an empty list."""
    out = ip("-j", *args, netns=netns).strip()
    data = json.loads(out) if out else []
    return data if isinstance(data, list) else []


# --- the blackhole -------------------------------------------------------------------------------


def blackhole_installed() -> bool:
    """True when the root namespace has the blackhole route for the whole lab range."""
    return any(r.get("dst") == str(LAB_RANGE) for r in ip_json("route", "show", "type", "blackhole"))


def ensure_blackhole() -> None:
    """Install `blackhole 198.18.0.0/15` in the root namespace (idempotent). It stays after the lab stops.

    Leaving it is harmless (the range is reserved and nothing else routes it) and keeps the guarantee
    for a lab started later, even one that crashes halfway through its setup.
    """
    require_root()
    if not blackhole_installed():
        ip("route", "add", "blackhole", str(LAB_RANGE))
    if not blackhole_installed():
        raise NetnsError(["ip", "route", "add", "blackhole", str(LAB_RANGE)], 0, "the route is not in the table")


def assert_lab_address(address: ipaddress.IPv4Address | ipaddress.IPv4Network | ipaddress.IPv4Interface) -> None:
    """Refuse any address outside the lab range: the lab never configures anything else."""
    network = ipaddress.IPv4Network(str(address), strict=False)
    if not network.subnet_of(LAB_RANGE):
        raise ValueError(f"{address} is outside the lab range {LAB_RANGE}")


# --- namespaces, links, addresses, routes ---------------------------------------------------------


def namespaces() -> list[str]:
    """The names of every named network namespace (`ip netns list`)."""
    return sorted(p.name for p in NETNS_DIR.iterdir()) if NETNS_DIR.is_dir() else []


def add_namespace(name: str) -> None:
    """Create a named network namespace with its loopback up."""
    ip("netns", "add", name)
    ip("link", "set", "lo", "up", netns=name)


def namespace_pids(name: str) -> list[int]:
    """Processes whose network namespace is `name` (`ip netns pids`)."""
    out = ip("netns", "pids", name, check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def delete_namespace(name: str) -> None:
    """Delete a named namespace (its veths go with it); a missing namespace is not an error."""
    if name in namespaces():
        ip("netns", "delete", name)


def links(netns: str | None = None) -> list[str]:
    """Interface names in a namespace (the root namespace when None)."""
    return [str(link["ifname"]) for link in ip_json("link", "show", netns=netns)]


def add_veth(name: str, netns: str | None, peer: str, peer_netns: str) -> None:
    """Create a veth pair: `name` in `netns` (root when None) and `peer` in `peer_netns`, both up."""
    ip("link", "add", name, "type", "veth", "peer", "name", peer, "netns", peer_netns, netns=netns)
    ip("link", "set", name, "up", netns=netns)
    ip("link", "set", peer, "up", netns=peer_netns)


def add_address(dev: str, address: ipaddress.IPv4Interface, netns: str | None) -> None:
    """Configure an address of the lab range on an interface."""
    assert_lab_address(address)
    ip("address", "add", str(address), "dev", dev, netns=netns)


def add_route(prefix: ipaddress.IPv4Network | str, via: ipaddress.IPv4Address, dev: str, netns: str | None) -> None:
    """Add a route through a lab gateway; `prefix` is a lab network or "default" (only inside lab namespaces)."""
    if prefix == "default":
        if netns is None:
            raise ValueError("the lab never changes the root namespace's default route")
    else:
        assert_lab_address(ipaddress.IPv4Network(str(prefix)))
    assert_lab_address(via)
    ip("route", "add", str(prefix), "via", str(via), "dev", dev, netns=netns)


def routes(netns: str | None = None) -> list[dict[str, Any]]:
    """The main routing table of a namespace, as `ip -j route show` reports it."""
    return ip_json("route", "show", netns=netns)


def enable_forwarding(netns: str) -> None:
    """Turn on IPv4 forwarding inside one namespace only (the lab router), never in the root namespace."""
    run(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], netns=netns)


# --- sockets inside a namespace --------------------------------------------------------------------


def _libc_setns(fd: int, nstype: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def socket_in(
    netns: str, family: socket.AddressFamily = socket.AF_INET, kind: socket.SocketKind = socket.SOCK_STREAM
) -> socket.socket:
    """A new socket that lives in network namespace `netns`, usable from any thread of this process.

    setns(2) runs on a throw-away thread, so no other thread of the process ever changes namespace.
    """
    require_root()
    path = NETNS_DIR / netns
    result: list[socket.socket] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _libc_setns(fd, CLONE_NEWNET)
            finally:
                os.close(fd)
            result.append(socket.socket(family, kind))
        except BaseException as e:  # handed to the caller's thread below
            errors.append(e)

    thread = threading.Thread(target=create, name=f"setns-{netns}", daemon=True)
    thread.start()
    thread.join(COMMAND_TIMEOUT)
    if errors:
        raise errors[0]
    if not result:
        raise TimeoutError(f"creating a socket in network namespace {netns} did not finish")
    return result[0]


def listening_socket_in(netns: str, host: str, port: int, backlog: int = 64) -> socket.socket:
    """A TCP socket bound to host:port and listening inside `netns` (SO_REUSEADDR set).

    The lab's servers (the TDS server, endpoint listeners) accept on it from the root namespace, while
    clients see the service at the lab host's own address.
    """
    sock = socket_in(netns)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def tcp_connects_from(netns: str, host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether a TCP connection from inside `netns` to host:port completes within `timeout` seconds."""
    with socket_in(netns) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
        except OSError:
            return False
        return True
