"""runner.Lab: a start that fails part-way leaves nothing behind — no work folder, listener or thread.

The failures are real ones (a port another socket holds, an address this machine does not have), and
what is checked is what the operating system shows afterwards: the folder, the threads, the ports.
"""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from linkgate.lab.runner import Lab
from selftests.lab.engine_fixtures import lab_password, scenario, write_overlay

pytestmark = pytest.mark.lab

LAB_THREADS = ("linkgate-arm", "linkgate-lab-tds")
NOT_HERE = "198.18.255.254"
"""A lab-range address no interface of this machine has: binding to it fails (EADDRNOTAVAIL), nothing is sent."""


@pytest.fixture
def held_port() -> Iterator[int]:
    """A loopback port another socket listens on for the test's duration."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def lab_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.is_alive() and t.name in LAB_THREADS}


def refused(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_start_failing_before_any_instance_removes_its_work_folder(tmp_path: Path, held_port: int) -> None:
    """The ARM endpoint cannot listen (its port is taken): the certificate written before it goes with the folder."""
    overlay = write_overlay(
        tmp_path, "arm-port-taken.yaml", f"extends: healthy\nhosts: null\nazure:\n  port: {held_port}\n"
    )
    before = lab_threads()
    with lab_password():
        lab = Lab(scenario("healthy", [overlay]))
        assert lab.workdir.is_dir()
        with pytest.raises(OSError) as failure:
            lab.start()
    assert failure.value.errno == errno.EADDRINUSE
    assert not lab.workdir.exists()
    assert lab_threads() == before
    assert lab.arm is None
    assert lab.certificate is not None
    assert not lab.certificate.exists()


def test_a_start_failing_at_an_instance_stops_the_endpoints_it_had_started(tmp_path: Path) -> None:
    """sql01 and the ARM endpoint listen, then mi01 cannot bind: both stop listening, the threads end, the
    folder goes — also through `with`, whose __exit__ never runs when __enter__ fails."""
    arm_port, sql_port = free_port(), free_port()
    overlay = write_overlay(
        tmp_path,
        "mi-address-missing.yaml",
        f"extends: healthy\nhosts: null\nazure:\n  port: {arm_port}\n"
        f"instances:\n  sql01: {{port: {sql_port}}}\n  mi01: {{address: {NOT_HERE}, port: {free_port()}}}\n",
    )
    before = lab_threads()
    with lab_password():
        lab = Lab(scenario("healthy", [overlay]))
        with pytest.raises(OSError) as failure, lab:
            pytest.fail("the lab started although mi01's address is not on this machine")
    assert failure.value.errno == errno.EADDRNOTAVAIL
    assert not lab.workdir.exists()
    assert lab_threads() == before
    assert refused(arm_port)
    assert refused(sql_port)
    assert lab.backends == {}
    assert lab.listening == {}


def test_a_failed_start_keeps_a_work_folder_the_caller_gave(tmp_path: Path, held_port: int) -> None:
    """The caller's folder is the caller's: a failed start empties nothing it did not create."""
    overlay = write_overlay(
        tmp_path, "arm-port-taken.yaml", f"extends: healthy\nhosts: null\nazure:\n  port: {held_port}\n"
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "mine.txt").write_text("kept", encoding="utf-8")
    with lab_password(), pytest.raises(OSError):
        Lab(scenario("healthy", [overlay]), workdir=workdir).start()
    assert (workdir / "mine.txt").read_text(encoding="utf-8") == "kept"
