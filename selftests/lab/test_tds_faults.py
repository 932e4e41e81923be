"""Wire faults as the drivers experience them: timeouts and ATTENTION, latency, refused, dropped and reset
connections; and one server carrying 200 instances."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyodbc
import pytest

from linkgate.drivers import OdbcDriver, connection_string
from linkgate.lab.backend import Faults
from linkgate.lab.results import Column, Outcome, ResultSet, SqlType
from linkgate.lab.tds import LabSqlServer
from selftests.lab.conftest import PASSWORD, USER, CannedBackend, Served, sqlstate

pytestmark = pytest.mark.lab

OK: list[Outcome] = [ResultSet((Column("ok", SqlType.INT),), [(1,)])]
STALL = Faults(stall_pattern=r"waitfor\s+delay", stall_seconds=30)


def test_a_query_timeout_cancels_a_stalled_statement_and_the_connection_survives(
    serve: Callable[..., Served], driver: OdbcDriver
) -> None:
    served = serve({"waitfor delay '00:00:30'": OK, "select 1": OK}, faults=STALL)
    stats = served.server.stats(served.backend.name)
    with served.connect(driver) as cnxn:
        cnxn.timeout = 1  # copied into cursors made afterwards: set it before cursor()
        attentions = stats.attentions  # FreeTDS also sends one per result it leaves unread
        started = time.monotonic()
        with pytest.raises(pyodbc.OperationalError) as caught:
            cnxn.cursor().execute("waitfor delay '00:00:30'")
        elapsed = time.monotonic() - started
        assert sqlstate(caught.value) == "HYT00"
        assert 0.9 < elapsed < 5
        assert stats.attentions == attentions + 1
        assert cnxn.cursor().execute("select 1").fetchone()[0] == 1


def test_latency_is_added_to_every_round_trip(serve: Callable[..., Served], driver: OdbcDriver) -> None:
    slow, fast = serve({"select 1": OK}, faults=Faults(latency_ms=100)), serve({"select 1": OK})
    timings = {}
    for name, served in (("slow", slow), ("fast", fast)):
        with served.connect(driver) as cnxn:
            cursor = cnxn.cursor()
            started = time.monotonic()
            for _ in range(3):
                cursor.execute("select 1").fetchall()
            timings[name] = time.monotonic() - started
    assert timings["slow"] >= 3 * 0.1  # a hard floor: each of the 3 responses waited 100 ms
    assert timings["slow"] - timings["fast"] < 3 * 0.1 + 0.5  # and little else was added


@pytest.mark.parametrize(
    ("kind", "state", "at_once"),
    [
        ("msodbc18", "HYT00", False),  # Driver 18 retries a refused port until its login timeout
        ("freetds", "08S01", True),  # FreeTDS gives up at the first RST: "Adaptive Server is unavailable"
    ],
)
def test_a_refused_instance_fails_within_the_login_timeout(
    serve: Callable[..., Served], request: pytest.FixtureRequest, kind: str, state: str, at_once: bool
) -> None:
    driver: OdbcDriver = request.getfixturevalue(kind)
    served = serve(faults=Faults(refuse=True))
    started = time.monotonic()
    with pytest.raises(pyodbc.Error) as caught:
        served.connect(driver, timeout=2)
    elapsed = time.monotonic() - started
    assert elapsed < (0.5 if at_once else 3.5)
    assert sqlstate(caught.value) == state
    assert served.server.stats(served.backend.name).connections == 0  # the kernel said no


def test_refuse_set_after_add_resets_new_connections(serve: Callable[..., Served], driver: OdbcDriver) -> None:
    served = serve()
    served.backend.faults = Faults(refuse=True)
    with pytest.raises(pyodbc.Error) as caught:
        served.connect(driver, timeout=2)
    assert sqlstate(caught.value) in ("08001", "08S01", "HYT00")  # Driver 18 retries resets until its timeout
    stats = served.server.stats(served.backend.name)
    assert stats.connections >= 1  # accepted, then reset: unlike a port nothing listens on
    assert stats.logins == 0


def test_a_dropped_connection_fails_within_the_login_timeout(serve: Callable[..., Served], driver: OdbcDriver) -> None:
    served = serve(faults=Faults(drop=True))
    started = time.monotonic()
    with pytest.raises(pyodbc.Error) as caught:
        served.connect(driver, timeout=2)
    elapsed = time.monotonic() - started
    assert 1.5 < elapsed < 5
    assert sqlstate(caught.value) in ("HYT00", "08001")
    assert served.server.stats(served.backend.name).connections == 1  # accepted, never answered


@pytest.mark.parametrize(
    ("kind", "state", "text"),
    [
        ("msodbc18", "08S01", "TCP Provider: Error code 0x68 (104)"),  # ECONNRESET while fetching
        ("freetds", "HY000", "Unknown error"),  # FreeTDS 1.3 does not name a reset
    ],
)
def test_a_reset_mid_result_breaks_the_fetch_and_the_connection(
    serve: Callable[..., Served], request: pytest.FixtureRequest, kind: str, state: str, text: str
) -> None:
    driver: OdbcDriver = request.getfixturevalue(kind)
    rows = [(n,) for n in range(100)]
    served = serve(
        {"select n from t": [ResultSet((Column("n", SqlType.INT),), rows)], "select 1": OK},
        faults=Faults(reset_after_rows=10),
    )
    with served.connect(driver) as cnxn:
        with pytest.raises(pyodbc.Error) as caught:
            cnxn.cursor().execute("select n from t").fetchall()
        assert sqlstate(caught.value) == state
        assert text in str(caught.value)
        with pytest.raises(pyodbc.Error):
            cnxn.cursor().execute("select 1")


def test_one_server_carries_200_instances(lab_certificate: tuple[Path, Path], driver: OdbcDriver) -> None:
    cert, key = lab_certificate
    with LabSqlServer(cert_file=cert, key_file=key) as server:
        backends = [CannedBackend(name=f"sql{n:03d}", answers={"select 1": OK}) for n in range(200)]
        where = [server.add(b) for b in backends]
        assert len({port for _, port in where}) == 200

        def login_and_query(address: tuple[str, int]) -> int:
            text = connection_string(
                driver,
                *address,
                user=USER,
                password=PASSWORD,
                encrypt="mandatory",
                trust_server_certificate=True,
                login_timeout=10,
            )
            with pyodbc.connect(text, autocommit=True, timeout=10) as cnxn:
                return int(cnxn.cursor().execute("select 1").fetchone()[0])

        with ThreadPoolExecutor(max_workers=16) as pool:
            assert list(pool.map(login_and_query, where)) == [1] * 200
        for b in backends:
            stats = server.stats(b.name)
            assert (stats.connections, stats.logins, stats.encryption["full"]) == (1, 1, 1)
