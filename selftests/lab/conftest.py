"""Shared fixtures of the lab's self-tests: a certificate, a running TDS server, the ODBC drivers.

The protocol tests use `CannedBackend`, a minimal InstanceBackend that answers statements from a
table of outcomes, so that every wire type and error can be put in front of the real drivers without
depending on the SQL engine. (The engine's own fixtures live in engine_fixtures.py.)
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyodbc
import pytest

from linkgate.drivers import EncryptMode, OdbcDriver, connection_string, find_drivers
from linkgate.lab.backend import Faults, LoggedStatement
from linkgate.lab.certs import write_self_signed
from linkgate.lab.results import Column, DatabaseChanged, Message, Outcome, ResultSet, SqlError, SqlType
from linkgate.lab.tds import LabSqlServer

USER = "sa"
PASSWORD = "Lab;P@ss{w}rd"  # `;` and braces: proves connection_string's quoting and the LOGIN7 decoding
SERVER_NAME = "LABSQL01"
VERSION = (16, 0, 4135, 4)
DRIVER_KINDS = ("msodbc18", "freetds")

Answer = list[Outcome] | Callable[[Mapping[str, Any] | None], list[Outcome]]

# What SQL Server's sp_datatype_info_100 answers first for the types pyodbc asks about at connect:
# pyodbc sizes str/bytes parameters and the datetime fraction from it (datetime: 23 → milliseconds).
TYPE_INFO = {12: ("varchar", 8000), -9: ("nvarchar", 4000), -3: ("varbinary", 8000), 93: ("datetime", 23)}
TYPE_INFO_COLUMNS = (
    Column("TYPE_NAME", SqlType.NVARCHAR, 128),
    Column("DATA_TYPE", SqlType.SMALLINT),
    Column("PRECISION", SqlType.INT),
)


def _type_info(data_type: int) -> list[Outcome]:
    name, precision = TYPE_INFO[data_type]
    return [ResultSet(TYPE_INFO_COLUMNS, [(name, data_type, precision)])]


def type_info_answers() -> dict[str, Answer]:
    """sp_datatype_info_100 as Driver 18 calls it (RPC by name) and as FreeTDS does (a batch)."""
    answers: dict[str, Answer] = {f"sp_datatype_info_100 {t},3": _type_info(t) for t in TYPE_INFO}
    answers["proc:sys.sp_datatype_info_100"] = lambda params: _type_info(int(next(iter((params or {}).values()))))
    return answers


@dataclass
class CannedBackend:
    """An InstanceBackend whose answers are a table: statement text (or "proc:<name>") → outcomes."""

    name: str = "canned"
    answers: dict[str, Answer] = field(default_factory=type_info_answers)
    faults: Faults = field(default_factory=Faults)
    users: dict[str, str] = field(default_factory=lambda: {USER: PASSWORD})
    statements: list[LoggedStatement] = field(default_factory=list)
    logins: list[dict[str, str]] = field(default_factory=list)

    @property
    def product_version(self) -> tuple[int, int, int, int]:
        return VERSION

    @property
    def server_name(self) -> str:
        return SERVER_NAME

    def login(
        self, user: str, password: str, database: str | None, *, app_name: str = "", host_name: str = ""
    ) -> CannedSession:
        self.logins.append({"user": user, "database": database or "", "app_name": app_name, "host_name": host_name})
        if self.users.get(user) != password:
            raise SqlError(18456, f"Login failed for user '{user}'.", state=8, severity=14)
        return CannedSession(self, user, database or "master")

    def log(self) -> list[LoggedStatement]:
        return list(self.statements)


@dataclass
class CannedSession:
    backend: CannedBackend
    user: str
    current: str

    @property
    def database(self) -> str:
        return self.current

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Outcome]:
        kind = "batch" if params is None else "rpc"
        self._log(sql, kind, dict(params or {}))
        text = sql.strip()
        if text.lower().startswith("use "):
            old, self.current = self.current, text[4:].strip(" []")
            return [
                DatabaseChanged(old, self.current),
                Message(5701, f"Changed database context to '{self.current}'.", state=1),
            ]
        answer = self.backend.answers.get(text)
        if answer is None:
            return [SqlError(208, f"Invalid object name '{text[:40]}'.", severity=16)]
        return answer(params) if callable(answer) else list(answer)

    def call_procedure(self, name: str, params: list[tuple[str, Any]]) -> list[Outcome]:
        self._log(name, "proc", dict(params))
        answer = self.backend.answers.get(f"proc:{name}")
        if answer is None:
            return [SqlError(2812, f"Could not find stored procedure '{name}'.", state=62, severity=16)]
        return answer(dict(params)) if callable(answer) else list(answer)

    def _log(self, text: str, kind: str, params: dict[str, Any]) -> None:
        self.backend.statements.append(LoggedStatement(dt.datetime.now(), self.user, self.current, text, kind, params))


@pytest.fixture(scope="session")
def lab_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_self_signed(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def tds_server(lab_certificate: tuple[Path, Path]) -> Iterator[LabSqlServer]:
    cert, key = lab_certificate
    with LabSqlServer(cert_file=cert, key_file=key) as server:
        yield server


_DRIVERS = {d.kind: d for d in find_drivers()}
_INSTANCE_NUMBERS = itertools.count(1)


@pytest.fixture(params=DRIVER_KINDS)
def driver(request: pytest.FixtureRequest) -> OdbcDriver:
    """Each ODBC driver in turn; absent ones skip, loudly, with what is missing."""
    found = _DRIVERS.get(request.param)
    if found is None:
        pytest.skip(f"ODBC driver {request.param} is not installed on this machine (drivers.find_drivers())")
    return found


@pytest.fixture
def msodbc18() -> OdbcDriver:
    found = _DRIVERS.get("msodbc18")
    if found is None:
        pytest.skip("Microsoft ODBC Driver 18 is not installed on this machine (drivers.find_drivers())")
    return found


@pytest.fixture
def freetds() -> OdbcDriver:
    found = _DRIVERS.get("freetds")
    if found is None:
        pytest.skip("FreeTDS is not installed on this machine (drivers.find_drivers())")
    return found


@dataclass
class Served:
    """A CannedBackend served by the session's TDS server, and how to connect to it.

    pyodbc caches what it learns on a first connect (SQLGetTypeInfo: datetime precision, …) per
    connection string for the life of the process, and a freed loopback port comes back to a later
    backend; so each backend gets its own application name, or a test would inherit an earlier
    backend's answers (seen in CI: datetime parameters sent as whole seconds).
    """

    backend: CannedBackend
    server: LabSqlServer
    host: str
    port: int
    certificate: Path

    def connect(
        self,
        driver: OdbcDriver,
        *,
        encrypt: EncryptMode = "mandatory",
        trust: bool = True,
        user: str = USER,
        password: str = PASSWORD,
        database: str = "master",
        timeout: int = 5,
        server_certificate: str | None = None,
        autocommit: bool = True,
    ) -> pyodbc.Connection:
        text = connection_string(
            driver,
            self.host,
            self.port,
            user=user,
            password=password,
            database=database,
            encrypt=encrypt,
            trust_server_certificate=trust,
            server_certificate=server_certificate,
            login_timeout=timeout,
            app_name=self.app_name,
        )
        return pyodbc.connect(text, autocommit=autocommit, timeout=timeout)

    @property
    def app_name(self) -> str:
        return f"linkgate-{self.backend.name}"


@pytest.fixture
def serve(tds_server: LabSqlServer, lab_certificate: tuple[Path, Path]) -> Callable[..., Served]:
    """`serve(answers, faults=...)`: a fresh canned instance on a free loopback port."""

    def make(
        answers: dict[str, Answer] | None = None, *, faults: Faults | None = None, name: str | None = None
    ) -> Served:
        backend = CannedBackend(
            name=name or f"canned-{next(_INSTANCE_NUMBERS)}",
            answers={**type_info_answers(), **(answers or {})},
            faults=faults or Faults(),
        )
        host, port = tds_server.add(backend)
        return Served(backend, tds_server, host, port, lab_certificate[0])

    return make


def sqlstate(error: BaseException) -> str:
    """The SQLSTATE pyodbc puts first in an error's args."""
    return str(error.args[0]) if error.args else ""
