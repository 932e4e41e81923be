"""The self-tests' network fence (selftests/netguard.py) really blocks, here and in the gate subprocesses.

Every blocked call is first proven with `sys.audit` (which runs the hooks and does nothing else), and only then
made for real: if the fence were missing, the test fails before any packet could leave the machine.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from selftests import netguard
from selftests.netguard import NetworkEscape

OUTSIDE = "192.0.2.1"  # TEST-NET-1 (RFC 5737): outside loopback and the lab range


@pytest.fixture
def expected_blocks() -> Iterator[list[str]]:
    """The attempts this test makes on purpose; taken off the record so the autouse fence check passes."""
    before = len(netguard.blocked)
    caught: list[str] = []
    yield caught
    caught.extend(netguard.blocked[before:])
    del netguard.blocked[before:]


def test_connect_and_sendto_outside_the_fence_raise(expected_blocks: list[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        with pytest.raises(NetworkEscape, match=OUTSIDE):
            sys.audit("socket.connect", tcp, (OUTSIDE, 9))
        with pytest.raises(NetworkEscape, match=r"socket\.connect"):
            tcp.connect((OUTSIDE, 9))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        with pytest.raises(NetworkEscape, match=OUTSIDE):
            sys.audit("socket.sendto", udp, (OUTSIDE, 53))
        with pytest.raises(NetworkEscape, match=r"socket\.sendto"):
            udp.sendto(b"x", (OUTSIDE, 53))
    assert len(netguard.blocked) >= 4, "each attempt is recorded even if a caller swallowed the exception"


def test_names_that_need_dns_are_blocked_before_resolving(expected_blocks: list[str]) -> None:
    with pytest.raises(NetworkEscape, match=r"socket\.getaddrinfo"):
        socket.getaddrinfo("example.com", 443)
    with pytest.raises(NetworkEscape):
        socket.getaddrinfo("::ffff:192.0.2.1", 443)


def test_loopback_lab_range_and_unix_sockets_pass(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname(), timeout=5):
            pass
    assert socket.getaddrinfo("localhost", 80)
    assert netguard.allowed_host("198.19.249.10")
    assert netguard.allowed_host("::ffff:127.0.0.1")
    assert not netguard.allowed_host("198.20.0.1"), "the lab range ends at 198.19.255.255"
    assert not netguard.allowed_host("10.0.0.1")
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as server, socket.socket(socket.AF_UNIX) as client:
        server.bind(str(path))
        server.listen()
        client.connect(str(path))


def test_gate_subprocesses_carry_the_fence(tmp_path: Path) -> None:
    """What run_pytest_gate does for the gate: a Python child started with the guard's environment is fenced."""
    log = tmp_path / "netguard.log"
    probe = (
        "import socket, sys\n"
        "s = socket.socket()\n"
        f"sys.audit('socket.connect', s, ({OUTSIDE!r}, 9))\n"
        "print('not fenced')\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=netguard.with_guard({"PATH": "/usr/bin:/bin"}, log),
    )
    assert child.returncode == 1, child.stdout + child.stderr
    assert "NetworkEscape" in child.stderr
    assert "not fenced" not in child.stdout
    (line,) = netguard.read_log(log)
    assert f"socket.connect to '{OUTSIDE}'" in line
