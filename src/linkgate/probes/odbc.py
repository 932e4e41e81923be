"""One ODBC session per target: connect once, run read-only queries, record each as evidence.

pyodbc is imported lazily so that loading an environment or building reports never needs a driver.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from linkgate import drivers
from linkgate.environment import Auth, Connection, Timeouts
from linkgate.evidence import Evidence, render_rows


class QueryFailed(Exception):
    """A query failed on the server or in the driver; `evidence` holds the query and the error."""

    def __init__(self, message: str, evidence: Evidence) -> None:
        super().__init__(message)
        self.evidence = evidence


@dataclass(frozen=True)
class Rows:
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    evidence: Evidence

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r, strict=True)) for r in self.rows]

    def one(self) -> dict[str, Any] | None:
        d = self.dicts()
        return d[0] if d else None


def driver_error(e: BaseException) -> str:
    """The driver's own message: pyodbc errors carry (SQLSTATE, message)."""
    args: tuple[Any, ...] = tuple(getattr(e, "args", ()))
    if len(args) >= 2 and isinstance(args[1], str):
        return f"{args[0]} {args[1]}"
    return str(e) or type(e).__name__


def connection_string(conn: Connection, timeouts: Timeouts, *, database: str = "master") -> str:
    """The ODBC connection string for this connection (it contains the password: never log it)."""
    driver = drivers.resolve(conn.driver)
    encrypt: Literal["strict", "mandatory", "optional"] = conn.encrypt.value
    extra: dict[str, str] = {}
    if conn.auth is Auth.WINDOWS:
        extra["Trusted_Connection"] = "yes"
    elif conn.auth is Auth.ENTRA_PASSWORD:
        extra["Authentication"] = "ActiveDirectoryPassword"
    elif conn.auth is Auth.ENTRA_SERVICE_PRINCIPAL:
        extra["Authentication"] = "ActiveDirectoryServicePrincipal"
    elif conn.auth is Auth.ENTRA_DEFAULT:
        extra["Authentication"] = "ActiveDirectoryDefault"
    if driver.kind == "msodbc18":
        # Driver 18 retries a failed login once after 10 s by default; a gate reports a dead target after one
        # connect timeout instead (and a slow one costs the timeout once, not twice plus the interval).
        extra["ConnectRetryCount"] = "0"
    if conn.host_name_in_certificate:
        extra["HostNameInCertificate"] = conn.host_name_in_certificate
    return drivers.connection_string(
        driver,
        conn.server,
        conn.port,
        user=conn.user if conn.auth is not Auth.WINDOWS else None,
        password=conn.password(),
        database=database,
        encrypt=encrypt,
        trust_server_certificate=conn.trust_server_certificate,
        server_certificate=conn.server_certificate,
        extra=extra,
    )


class OdbcSession:
    """A lazily opened pyodbc connection to one target, reused by every query of the worker."""

    def __init__(self, target: str, conn: Connection, timeouts: Timeouts) -> None:
        self.target = target
        self.conn = conn
        self.timeouts = timeouts
        self._cnxn: Any = None
        self.connections_opened = 0
        self.round_trips = 0

    def connect(self) -> None:
        import pyodbc

        if self._cnxn is not None:
            return
        where = f"{self.conn.server},{self.conn.port}"
        started = time.monotonic()
        try:
            self.connections_opened += 1
            cnxn = pyodbc.connect(
                connection_string(self.conn, self.timeouts), autocommit=True, timeout=int(max(1, self.timeouts.connect))
            )
        except Exception as e:  # pyodbc.Error, or a driver that cannot be found
            message = driver_error(e)
            evidence = Evidence(
                self.target,
                "SQL",
                f"connect to {where} as {self.conn.user or self.conn.auth.value}",
                message,
                ok=False,
                seconds=time.monotonic() - started,
            )
            raise QueryFailed(message, evidence) from e
        cnxn.timeout = int(max(1, self.timeouts.query))
        self._cnxn = cnxn

    def query(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        """Run one statement and fetch its first result set."""
        self.connect()
        started = time.monotonic()
        shown = _with_params(sql, params)
        try:
            cursor = self._cnxn.cursor()
            self.round_trips += 1
            cursor.execute(sql, *params) if params else cursor.execute(sql)
            while cursor.description is None and cursor.nextset():
                pass
            columns = tuple(d[0] for d in cursor.description) if cursor.description else ()
            rows = [tuple(r) for r in cursor.fetchall()] if columns else []
            cursor.close()
        except Exception as e:
            message = driver_error(e)
            raise QueryFailed(
                message, Evidence(self.target, "SQL", shown, message, ok=False, seconds=time.monotonic() - started)
            ) from e
        evidence = Evidence(self.target, "SQL", shown, render_rows(columns, rows), seconds=time.monotonic() - started)
        return Rows(columns, rows, evidence)

    def query_batch(self, statements: Sequence[str]) -> list[Rows | QueryFailed]:
        """Run statements in one round trip, one result set each; each gets its own rows or error.

        If the batch fails part-way (a permission error, a statement that returns no result set), the
        statements not yet read are run one by one, so an error belongs to exactly one statement.
        """
        self.connect()
        results: list[Rows | QueryFailed] = []
        if len(statements) > 1:
            started = time.monotonic()
            try:
                cursor = self._cnxn.cursor()
                self.round_trips += 1
                cursor.execute("\n".join(s.strip() for s in statements))
                for i, statement in enumerate(statements):
                    if i and not cursor.nextset():
                        break
                    if cursor.description is None:
                        break
                    columns = tuple(d[0] for d in cursor.description)
                    rows = [tuple(r) for r in cursor.fetchall()]
                    evidence = Evidence(
                        self.target,
                        "SQL",
                        statement.strip(),
                        render_rows(columns, rows),
                        seconds=time.monotonic() - started,
                    )
                    results.append(Rows(columns, rows, evidence))
                cursor.close()
            except Exception:
                pass
        for statement in statements[len(results) :]:
            try:
                results.append(self.query(statement))
            except QueryFailed as e:
                results.append(e)
        return results

    def close(self) -> None:
        if self._cnxn is not None:
            try:
                self._cnxn.close()
            finally:
                self._cnxn = None


def _with_params(sql: str, params: Sequence[Any]) -> str:
    text = sql.strip()
    if params:
        text += "\n-- parameters: " + ", ".join(repr(p) for p in params)
    return text
