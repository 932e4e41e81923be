"""LabSqlServer's lifecycle: sockets handed over by the caller, one instance on several addresses, stop()."""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import pyodbc
import pytest

from linkgate.drivers import OdbcDriver, connection_string
from linkgate.lab.backend import Faults
from linkgate.lab.results import Column, Outcome, ResultSet, SqlType
from linkgate.lab.tds import LabSqlServer
from selftests.lab.conftest import PASSWORD, USER, CannedBackend, sqlstate

pytestmark = pytest.mark.lab

OK: list[Outcome] = [ResultSet((Column("ok", SqlType.INT),), [(1,)])]


def _query(driver: OdbcDriver, address: tuple[str, int]) -> int:
    text = connection_string(driver, *address, user=USER, password=PASSWORD, trust_server_certificate=True)
    with pyodbc.connect(text, autocommit=True, timeout=5) as cnxn:
        return int(cnxn.cursor().execute("select 1").fetchone()[0])


def test_a_socket_made_by_the_caller_is_served(lab_certificate: tuple[Path, Path], driver: OdbcDriver) -> None:
    """What the namespace code does: bind where only it can, hand the socket over."""
    backend = CannedBackend(name="handed", answers={"select 1": OK})
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.2", 0))
    with LabSqlServer(*lab_certificate) as server:
        address = server.add_socket(backend, sock)
        assert address[0] == "127.0.0.2"
        assert _query(driver, address) == 1
        assert server.addresses("handed") == [address]


def test_one_instance_on_two_addresses_counts_once(lab_certificate: tuple[Path, Path], driver: OdbcDriver) -> None:
    backend = CannedBackend(name="twice", answers={"select 1": OK})
    with LabSqlServer(*lab_certificate) as server:
        first, second = server.add(backend), server.add(backend, "127.0.0.3")
        assert _query(driver, first) + _query(driver, second) == 2
        assert server.stats("twice").connections == 2


def test_stop_closes_open_and_dropped_connections(lab_certificate: tuple[Path, Path], driver: OdbcDriver) -> None:
    server = LabSqlServer(*lab_certificate).start()
    open_address = server.add(CannedBackend(name="open", answers={"select 1": OK}))
    dropping = server.add(CannedBackend(name="drop", faults=Faults(drop=True)))
    text = connection_string(driver, *open_address, user=USER, password=PASSWORD, trust_server_certificate=True)
    cnxn = pyodbc.connect(text, autocommit=True, timeout=5)
    held = socket.create_connection(dropping, timeout=5)
    held.sendall(b"\x12\x01\x00\x08\x00\x00\x01\x00")  # an empty PRELOGIN, never answered
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    with contextlib.suppress(ConnectionResetError):  # not yet accepted when stopped: reset, closed all the same
        assert held.recv(1) == b""  # closed by stop(), not after the 120 s drop hold
    held.close()
    with pytest.raises(pyodbc.Error) as caught:
        cnxn.cursor().execute("select 1")
    assert sqlstate(caught.value) in ("08S01", "HY000")
    cnxn.close()


def test_adding_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="start"):
        LabSqlServer().add(CannedBackend())
