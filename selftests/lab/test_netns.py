"""linkgate.lab.netns against the real kernel: the blackhole, namespaces, veths, and sockets opened inside one."""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from linkgate.lab import netns as nx

pytestmark = [
    pytest.mark.needs_root,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pair() -> Iterator[tuple[str, str]]:
    """Two namespaces joined by a veth: a 198.18.250.1/30, b 198.18.250.2/30 (nothing in the root namespace)."""
    nx.ensure_blackhole()
    lab = secrets.token_hex(3)
    a, b = f"lgt-{lab}-a", f"lgt-{lab}-b"  # not a lab's name: cleanup_stale() leaves them alone
    nx.add_namespace(a)
    nx.add_namespace(b)
    try:
        nx.add_veth("eth0", a, "eth0", b)
        nx.add_address("eth0", ipaddress.IPv4Interface("198.18.250.1/30"), a)
        nx.add_address("eth0", ipaddress.IPv4Interface("198.18.250.2/30"), b)
        yield a, b
    finally:
        nx.delete_namespace(a)
        nx.delete_namespace(b)


def test_blackhole_covers_the_whole_lab_range_and_is_idempotent() -> None:
    nx.ensure_blackhole()
    nx.ensure_blackhole()
    blackholes = [r for r in nx.routes() if r.get("type") == "blackhole" and r.get("dst") == "198.18.0.0/15"]
    assert len(blackholes) == 1
    probe = subprocess.run(["ip", "-j", "route", "get", "198.19.200.7"], capture_output=True, text=True, check=False)
    assert probe.returncode != 0 or '"type":"blackhole"' in probe.stdout.replace(" ", "")


def test_socket_listening_inside_a_namespace_is_reached_from_its_peer_only(pair: tuple[str, str]) -> None:
    a, b = pair
    with nx.listening_socket_in(a, "198.18.250.1", 15022) as server:
        assert nx.tcp_connects_from(b, "198.18.250.1", 15022, timeout=1.0)
        conn, peer = server.accept()
        conn.close()
        assert peer[0] == "198.18.250.2"
        assert not nx.tcp_connects_from(b, "198.18.250.1", 15023, timeout=1.0)  # refused: nothing listens
        listening_in_a = nx.run(["ss", "-Hltn", "sport = :15022"], netns=a).stdout
        assert "198.18.250.1:15022" in listening_in_a
    # the root namespace never saw that socket: the same address and port are free there
    assert "198.18.250.1:15022" not in subprocess.run(["ss", "-Hltn"], capture_output=True, text=True).stdout


def test_a_socket_in_a_namespace_cannot_reach_outside_the_lab(pair: tuple[str, str]) -> None:
    a, _ = pair
    # the namespace has no route but its /30: even a lab address elsewhere is unreachable, at once
    assert not nx.tcp_connects_from(a, "198.18.251.1", 22, timeout=1.0)


def test_only_lab_addresses_are_ever_configured() -> None:
    with pytest.raises(ValueError, match="outside the lab range"):
        nx.add_address("lo", ipaddress.IPv4Interface("10.1.2.3/24"), "lg-000000-x")
    with pytest.raises(ValueError, match="outside the lab range"):
        nx.add_route(ipaddress.IPv4Network("192.0.2.0/24"), ipaddress.IPv4Address("198.18.0.2"), "lo", None)
    with pytest.raises(ValueError, match="default route"):
        nx.add_route("default", ipaddress.IPv4Address("198.18.0.2"), "lo", None)


def test_a_failing_command_names_itself_and_its_error() -> None:
    with pytest.raises(nx.NetnsError, match=r"`ip link show lg-no-such-dev` failed \(exit 1\): .*lg-no-such-dev"):
        nx.ip("link", "show", "lg-no-such-dev")


def test_without_root_the_lab_says_so_in_one_line() -> None:
    code = "from linkgate.lab.netns import ensure_blackhole; ensure_blackhole()"
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        timeout=30,
        cwd="/",
        check=False,
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("linkgate.lab.netns.LabNeedsRoot: the lab needs root to create network namespaces")
    assert "uid 65534" in last


def test_socket_in_an_unknown_namespace_raises_in_the_caller() -> None:
    with pytest.raises(FileNotFoundError):
        nx.socket_in("lg-000000-missing", socket.AF_INET)
