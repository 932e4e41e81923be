"""The article's two-way connectivity tests, run from T-SQL over the gate's own connections (spec NET-03).

Both directions are tested exactly as "Prepare your environment for a link" does it:

- managed instance → SQL Server:5022: on SQL Server a test certificate and a STARTED test endpoint on
  the endpoint port (only when no database mirroring endpoint exists: an existing one is reused), then
  on the managed instance the Agent job `NetHelper` whose PowerShell step runs
  `tnc <SQL Server address> -port <port> -InformationLevel Quiet` (@flags=40, so the step's output is
  in msdb.dbo.sysjobstepslogs). The gate polls msdb.dbo.sysjobactivity itself instead of creating the
  article's ExecuteNetHelper procedure: one object fewer to leave behind.
- SQL Server → managed instance: on SQL Server the Agent job `TestMILinkConnection`, whose two steps
  test the managed instance's FQDN on 5022 and its current node on the HADR port; each step's message
  in msdb.dbo.sysjobhistory carries `TcpTestSucceeded : True|False`. SQL Server Agent on Linux has no
  PowerShell subsystem, so there this direction is tested from the host over testinfra instead, and
  the result says so.

Every object is named `linkgate_<run id>_<what>`, recorded in the ledger before it is created
(linkgate.ledger) and removed in reverse order in `finally` — after success, failure, a timeout,
Ctrl-C or SIGTERM (turned into KeyboardInterrupt while a probe runs, then raised again once the
objects are gone). A signal that lands while a statement is in flight makes the ODBC driver drop that
connection (its wait fails with EINTR: "TCP Provider: Error code 0x2714"), so a removal that fails is
retried once over a new session. A run first removes what dead runs' ledgers name on this
environment's targets and reports it. Nothing here runs unless the gate was started with
--active-probes (or `active_probes: true`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from linkgate.environment import Environment
from linkgate.evidence import Evidence
from linkgate.ledger import Entry, Ledger, LedgerError, stale
from linkgate.probes.facts import Fact, FactUnavailable
from linkgate.probes.net import HostNetwork
from linkgate.probes.odbc import OdbcSession, QueryFailed
from linkgate.probes.sql import Fabric

MI_ENDPOINT_PORT = 5022
JOB_TIMEOUT = 90.0
"""How long a job may run before the probe gives up (the article's ExecuteNetHelper waits 90 s)."""
POLL_INTERVAL = 0.25
HOST = re.compile(r"^[A-Za-z0-9.:-]+$")
TCP_RESULT = re.compile(r"TcpTestSucceeded\s*:\s*(True|False)", re.IGNORECASE)
REMOTE_ADDRESS = re.compile(r"RemoteAddress\s*:\s*(\S*)", re.IGNORECASE)

REMOVE = {
    "job": "IF EXISTS (SELECT 1 FROM msdb.dbo.sysjobs WHERE name = N'{name}') "
    "EXEC msdb.dbo.sp_delete_job @job_name = N'{name}', @delete_unused_schedule = 1",
    "endpoint": "IF EXISTS (SELECT 1 FROM sys.endpoints WHERE name = N'{name}') DROP ENDPOINT [{name}]",
    "certificate": "IF EXISTS (SELECT 1 FROM master.sys.certificates WHERE name = N'{name}') DROP CERTIFICATE [{name}]",
}
"""How each kind of object is removed; idempotent, because a ledger may name an object never created."""


class ProbeTimeout(Exception):
    """A job did not finish in time (its objects are still removed)."""


@dataclass(frozen=True)
class TcpTest:
    """One TCP test of a probe: from where, to host:port, whether it connected, and what the tool said."""

    source: str
    host: str
    port: int
    succeeded: bool
    detail: str

    def describe(self) -> str:
        verdict = "connected" if self.succeeded else "did not connect"
        return f"{self.source} → {self.host}:{self.port} {verdict}" + (f" ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class Connectivity:
    """The result of one direction's active probe: how it was probed, each TCP test, and notes for the report."""

    direction: str
    method: str
    tests: tuple[TcpTest, ...]
    notes: tuple[str, ...] = ()

    @property
    def connected(self) -> bool:
        return bool(self.tests) and all(t.succeeded for t in self.tests)

    def explanation(self) -> str:
        """Why it failed (or what passed), with how it was probed and the notes, in one paragraph."""
        failed = [t for t in self.tests if not t.succeeded] or list(self.tests)
        parts = [f"{self.direction}: " + "; ".join(t.describe() for t in failed), f"probed by {self.method}"]
        return ". ".join([*parts, *self.notes])


def _job_step_test(source: str, host: str, port: int, message: str) -> TcpTest:
    """A TestMILinkConnection step's result from its sysjobhistory message (`TcpTestSucceeded : True`)."""
    result, remote = TCP_RESULT.search(message), REMOTE_ADDRESS.search(message)
    if result is None:
        return TcpTest(source, host, port, False, message[:300] or "the step did not run")
    detail = f"RemoteAddress {remote.group(1) or '(none)'}" if remote else ""
    return TcpTest(source, host, port, result.group(1).lower() == "true", detail)


def _literal(text: str) -> str:
    return "N'" + text.replace("'", "''") + "'"


def _host(text: str) -> str:
    if not HOST.match(text):
        raise ValueError(f"not a host name or address: {text!r}")
    return text


@dataclass
class _Sigterm:
    """SIGTERM during one probe: whether it arrived, and whether the probe's objects are being removed."""

    received: int | None = None
    removing: bool = False

    def interrupt(self) -> None:
        """While the probe runs, stop it (KeyboardInterrupt) if SIGTERM arrived; while removing, never.

        The handler raises the interrupt itself, but that one does not always get out: a signal that lands
        while pyodbc waits in the driver mostly runs the handler inside pyodbc's decoding of the driver's
        message, and pyodbc drops the exception (the statement fails with "HY000 The driver did not supply
        an error!" instead). So every statement of the probe checks again when it returns.
        """
        if self.received is not None and not self.removing:
            raise KeyboardInterrupt(f"signal {self.received}: removing the active probes' objects first")

    def reraise(self) -> None:
        """After the removal: KeyboardInterrupt if SIGTERM arrived at any point, so the gate stops now."""
        if self.received is not None:
            raise KeyboardInterrupt(f"signal {self.received}: the active probes' objects were removed first")


@contextlib.contextmanager
def _sigterm_interrupts(state: _Sigterm) -> Iterator[None]:
    """While a probe has objects out, SIGTERM or Ctrl-C (SIGINT) raises KeyboardInterrupt (once, and not
    during the removal). Raised, the interrupt reaches the probe's `finally`, which removes the objects.

    Ctrl-C needs the same handling as SIGTERM: Python's own SIGINT handler raises KeyboardInterrupt, which
    pyodbc drops when it lands inside a driver call (see `_Sigterm.interrupt`), and the gate carried on.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        first = state.received is None
        state.received = signum
        if first:
            state.interrupt()

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@dataclass
class _Run:
    """One probe's work on the targets: evidence in order, and the objects it created (in its ledger)."""

    ledger: Ledger
    reopen: Callable[[OdbcSession], OdbcSession]
    """A new session to the same target, in place of one a removal failed on."""
    evidence: list[Evidence] = field(default_factory=list)
    created: list[tuple[Entry, OdbcSession]] = field(default_factory=list)
    sigterm: _Sigterm = field(default_factory=_Sigterm)

    def sql(self, session: OdbcSession, statement: str, *, record: bool = True) -> list[dict[str, Any]]:
        """Run one statement and keep its evidence; then stop the probe if SIGTERM arrived meanwhile."""
        try:
            rows = session.query(statement)
        except QueryFailed as e:
            self.evidence.append(e.evidence)
            self.sigterm.interrupt()
            raise
        if record:
            self.evidence.append(rows.evidence)
        self.sigterm.interrupt()
        return rows.dicts()

    def create(self, session: OdbcSession, kind: str, name: str, statements: list[str]) -> None:
        """Ledger first, then the statements that create the object."""
        entry = Entry(session.target, f"{session.conn.server},{session.conn.port}", kind, name)
        self.ledger.record(entry)
        self.created.append((entry, session))
        for statement in statements:
            self.sql(session, statement)

    def remove_all(self) -> list[str]:
        """Remove what was created, newest first; what could not be removed stays in the ledger.

        A removal that fails is tried once more over a new session (which then serves the target's other
        removals): an interrupt during the probe's last statement leaves its session dead (the driver drops
        the connection: 08S01 "Communication link failure" from then on) or still busy with that statement
        ("Connection is busy with results for another command"), and a new session inherits neither. The
        statements are idempotent, so trying twice is safe; each try is bounded by the environment's
        connect and query timeouts.
        """
        problems = []
        replaced: dict[str, OdbcSession] = {}
        while self.created:
            entry, session = self.created.pop()
            session = replaced.get(session.target, session)
            statement = REMOVE[entry.kind].format(name=entry.name)
            try:
                self.sql(session, statement)
            except QueryFailed:
                replaced[session.target] = self.reopen(session)
                try:
                    self.sql(replaced[session.target], statement)
                except QueryFailed as e:
                    problems.append(f"could not remove {entry.describe()}: {e}")
                    continue
            self.ledger.forget(entry)
        return problems


class ActiveProbes:
    """The active probes of one gate process: one ledger, one run id, each probe run once and kept."""

    def __init__(
        self,
        env: Environment,
        open_session: Callable[[str], OdbcSession],
        ledger_dir: Path,
        *,
        run_id: str | None = None,
        job_timeout: float = JOB_TIMEOUT,
    ) -> None:
        self.env = env
        self._open_session = open_session
        self.run_id = run_id or secrets.token_hex(4)
        self.ledger = Ledger(ledger_dir, self.run_id)
        self.job_timeout = job_timeout
        self._lock = threading.RLock()
        self._results: dict[tuple[str, str], Fact[Connectivity]] = {}
        self._swept: tuple[tuple[Evidence, ...], tuple[str, ...]] | None = None
        self._sessions: dict[str, OdbcSession] = {}

    def _session(self, target: str) -> OdbcSession:
        """The probes' own session to a target (opened once; probes run one at a time, under the lock)."""
        if target not in self._sessions:
            self._sessions[target] = self._open_session(target)
        return self._sessions[target]

    def _reopen(self, failed: OdbcSession) -> OdbcSession:
        """A new session to `failed`'s target, which replaces it for the probes that follow; `failed` is closed."""
        with contextlib.suppress(Exception):  # a dead connection may fail to close too: it is dropped either way
            failed.close()
        fresh = self._open_session(failed.target)
        self._sessions[failed.target] = fresh
        return fresh

    def name(self, what: str) -> str:
        """The name of an object this run creates: linkgate_<run id>_<what>."""
        return f"linkgate_{self.run_id}_{what}"

    # ---- the two directions

    def mi_to_sql(self, server: str) -> Fact[Connectivity]:
        """The managed instance's NetHelper job tests TCP to SQL Server `server`'s endpoint port."""
        return self._once(
            ("mi-to-sql", server),
            f"TCP from the managed instance to {server}",
            lambda run: self._mi_to_sql(run, server),
        )

    def sql_to_mi(self, server: str, fabric: Fabric, host: HostNetwork | None) -> Fact[Connectivity]:
        """SQL Server `server` tests TCP to the managed instance on 5022 and on its node's HADR port."""
        return self._once(
            ("sql-to-mi", server),
            f"TCP from {server} to the managed instance",
            lambda run: self._sql_to_mi(run, server, fabric, host),
        )

    def _once(self, key: tuple[str, str], what: str, probe: Callable[[_Run], Connectivity]) -> Fact[Connectivity]:
        with self._lock:
            known = self._results.get(key)
            if known is not None:
                return known
            swept_evidence, swept_notes = self.sweep()
            run = _Run(self.ledger, self._reopen)
            run.evidence.extend(swept_evidence)
            value: Connectivity | None = None
            error: str | None = None
            with _sigterm_interrupts(run.sigterm):
                try:
                    value = probe(run)
                except (QueryFailed, FactUnavailable, ProbeTimeout, ValueError) as e:
                    error = str(e)
                finally:
                    run.sigterm.removing = True
                    problems = run.remove_all()
                run.sigterm.reraise()
            if problems:
                error = "; ".join([*([error] if error else []), *problems])
            if value is not None:
                value = Connectivity(value.direction, value.method, value.tests, (*value.notes, *swept_notes))
                run.evidence.append(
                    Evidence(
                        key[1],
                        "network",
                        f"active probe: {value.direction}",
                        ". ".join([f"probed by {value.method}", *value.notes]),
                    )
                )
            fact = Fact(what, key[1], tuple(run.evidence), value, error)
            self._results[key] = fact
            return fact

    def _mi_to_sql(self, run: _Run, server_name: str) -> Connectivity:
        server = self.env.sql_servers[server_name]
        if server.address_seen_by_mi is None:
            raise FactUnavailable(
                "the address the managed instance reaches SQL Server at",
                server_name,
                f"declare sql_servers.{server_name}.address_seen_by_mi",
            )
        address, port = str(server.address_seen_by_mi), server.endpoint_port
        sql = self._session(server_name)
        mi = self._session(self.env.managed_instance.name)
        notes = []
        existing = run.sql(
            sql,
            "SELECT e.name, e.state_desc, t.port FROM sys.database_mirroring_endpoints AS e "
            "JOIN sys.tcp_endpoints AS t ON t.endpoint_id = e.endpoint_id",
        )
        if existing:
            e = existing[0]
            notes.append(
                f"reused {server_name}'s existing mirroring endpoint {e['name']} ({e['state_desc']}, port "
                f"{e['port']}) instead of creating a test endpoint"
            )
        else:
            cert, endpoint = self.name("TEST_CERT"), self.name("TEST_ENDPOINT")
            expiry = (dt.date.today() + dt.timedelta(days=30)).strftime("%Y%m%d")
            run.create(
                sql,
                "certificate",
                cert,
                [
                    f"CREATE CERTIFICATE [{cert}] WITH SUBJECT = N'linkgate test endpoint (run {self.run_id})', "
                    f"EXPIRY_DATE = N'{expiry}'"
                ],
            )
            run.create(
                sql,
                "endpoint",
                endpoint,
                [
                    f"CREATE ENDPOINT [{endpoint}] STATE=STARTED AS TCP (LISTENER_PORT={int(port)}, LISTENER_IP = ALL) "
                    f"FOR DATABASE_MIRRORING (ROLE=ALL, AUTHENTICATION = CERTIFICATE [{cert}], "
                    "ENCRYPTION = REQUIRED ALGORITHM AES)"
                ],
            )
            notes.append(f"created the test endpoint {endpoint} on {server_name} for the test, then dropped it")
        job = self.name("NetHelper")
        command = f"tnc {_host(address)} -port {int(port)} -InformationLevel Quiet"
        run.create(
            mi,
            "job",
            job,
            [
                f"EXEC msdb.dbo.sp_add_job @job_name = {_literal(job)}, @enabled = 1, "
                "@description = N'linkgate: test SQL Managed Instance to SQL Server network connectivity'",
                f"EXEC msdb.dbo.sp_add_jobstep @job_name = {_literal(job)}, "
                "@step_name = N'TNC network probe from SQL MI to SQL Server', @step_id = 1, @os_run_priority = 0, "
                f"@subsystem = N'PowerShell', @command = {_literal(command)}, @database_name = N'master', @flags = 40",
                f"EXEC msdb.dbo.sp_update_job @job_name = {_literal(job)}, @start_step_id = 1",
                f"EXEC msdb.dbo.sp_add_jobserver @job_name = {_literal(job)}, @server_name = N'(local)'",
            ],
        )
        self._run_job(run, mi, job)
        rows = run.sql(
            mi,
            "SELECT sj.name AS JobName, sjsl.date_modified AS [Date executed], "
            "sjs.step_name AS [Step executed], sjsl.log AS [Connectivity status] "
            "FROM msdb.dbo.sysjobs AS sj "
            "LEFT JOIN msdb.dbo.sysjobsteps AS sjs ON sj.job_id = sjs.job_id "
            "LEFT JOIN msdb.dbo.sysjobstepslogs AS sjsl ON sjs.step_uid = sjsl.step_uid "
            f"WHERE sj.name = {_literal(job)}",
        )
        log = str(rows[0]["Connectivity status"] or "") if rows else ""
        answer = [line.strip() for line in log.splitlines() if line.strip()]
        succeeded = bool(answer) and answer[-1] == "True"
        test = TcpTest(
            f"{self.env.managed_instance.name} (Agent job {job})",
            address,
            port,
            succeeded,
            "job log: " + " / ".join(answer) if answer else "the job step wrote no log",
        )
        return Connectivity(
            f"{self.env.managed_instance.name} → {server_name}:{port}",
            f"the Agent job {job} on {self.env.managed_instance.name} (the article's NetHelper)",
            (test,),
            tuple(notes),
        )

    def _sql_to_mi(self, run: _Run, server_name: str, fabric: Fabric, host: HostNetwork | None) -> Connectivity:
        mi = self.env.managed_instance
        if not fabric.node or not fabric.hadr_port:
            raise FactUnavailable(
                "the managed instance's node and HADR port",
                mi.name,
                "its fabric DMVs name no primary node or HADR port",
            )
        targets = [(mi.fqdn, MI_ENDPOINT_PORT), (fabric.node, fabric.hadr_port)]
        server = self.env.sql_servers[server_name]
        if server.host_os.value == "linux":
            if host is None:
                raise FactUnavailable(
                    "TCP from the SQL Server host",
                    server_name,
                    "SQL Server Agent on Linux cannot run PowerShell job steps; declare "
                    f"sql_servers.{server_name}.host so the gate can test from the host",
                )
            tests = []
            for name, port in targets:
                fact = host.connect(name, port)
                run.evidence.extend(fact.evidence)
                connect = fact.get()
                tests.append(TcpTest(f"{server_name}'s host", name, port, connect.connected, connect.outcome))
            return Connectivity(
                f"{server_name} → {mi.name}",
                f"a TCP connection from {server_name}'s host over "
                "testinfra: SQL Server Agent on Linux cannot run the article's PowerShell job "
                "(TestMILinkConnection)",
                tuple(tests),
            )
        sql = self._session(server_name)
        job = self.name("TestMILinkConnection")
        statements = [f"EXEC msdb.dbo.sp_add_job @job_name = {_literal(job)}, @enabled = 1"]
        for step, (name, port) in enumerate(targets, start=1):
            title = "Test Port 5022" if step == 1 else "Test HADR Port"
            command = (
                f"tnc {_host(name)} -port {int(port)} | select ComputerName, RemoteAddress, TcpTestSucceeded | "
                "Format-List"
            )
            after = "@on_success_action = 3, @on_fail_action = 3, " if step < len(targets) else ""
            statements.append(
                f"EXEC msdb.dbo.sp_add_jobstep @job_name = {_literal(job)}, @step_name = N'{title}', "
                f"@step_id = {step}, @cmdexec_success_code = 0, {after}@subsystem = N'PowerShell', "
                f"@command = {_literal(command)}, @database_name = N'master'"
            )
        statements.append(f"EXEC msdb.dbo.sp_add_jobserver @job_name = {_literal(job)}, @server_name = N'(local)'")
        run.create(sql, "job", job, statements)
        self._run_job(run, sql, job)
        rows = run.sql(
            sql,
            "SELECT JH.step_id, JH.step_name, SUBSTRING(JH.message, CHARINDEX('TcpTestSucceeded', "
            "JH.message), CHARINDEX('Process Exit', JH.message) - CHARINDEX('TcpTestSucceeded', "
            "JH.message)) AS TcpTestResult, SUBSTRING(JH.message, CHARINDEX('RemoteAddress', "
            "JH.message), CHARINDEX('TcpTestSucceeded', JH.message) - CHARINDEX('RemoteAddress', "
            "JH.message)) AS RemoteAddressResult, JH.run_status, JH.run_duration, JH.message "
            "FROM msdb.dbo.sysjobhistory AS JH JOIN msdb.dbo.sysjobs AS J ON JH.job_id = J.job_id "
            f"WHERE J.name = {_literal(job)} AND JH.step_id <> 0 ORDER BY JH.step_id",
        )
        by_step = {int(r["step_id"]): str(r["message"] or "") for r in rows}
        tests = []
        for step, (name, port) in enumerate(targets, start=1):
            tests.append(_job_step_test(f"{server_name} (Agent job {job})", name, port, by_step.get(step, "")))
        return Connectivity(
            f"{server_name} → {mi.name}",
            f"the Agent job {job} on {server_name} (the article's TestMILinkConnection)",
            tuple(tests),
        )

    def _run_job(self, run: _Run, session: OdbcSession, job: str) -> None:
        """Start the job and wait, bounded, until msdb says it stopped."""
        run.sql(session, f"EXEC msdb.dbo.sp_start_job @job_name = {_literal(job)}")
        poll = (
            "SELECT a.start_execution_date, a.stop_execution_date FROM msdb.dbo.sysjobs AS j "
            f"JOIN msdb.dbo.sysjobactivity AS a ON a.job_id = j.job_id WHERE j.name = {_literal(job)}"
        )
        deadline = time.monotonic() + self.job_timeout
        polls = 0
        while True:
            polls += 1
            rows = run.sql(session, poll, record=False)
            if rows and rows[0]["stop_execution_date"] is not None:
                break
            if time.monotonic() >= deadline:
                run.sql(session, poll)
                raise ProbeTimeout(f"the Agent job {job} did not finish within {self.job_timeout:g} s")
            time.sleep(POLL_INTERVAL)
        run.sql(session, poll)  # the finished state, as evidence (once, not every poll)

    # ---- leftovers of interrupted runs

    def sweep(self) -> tuple[tuple[Evidence, ...], tuple[str, ...]]:
        """Remove (once per process) what dead runs' ledgers name on this environment's targets; say what went."""
        with self._lock:
            if self._swept is None:
                self._swept = self._sweep()
            return self._swept

    def _addresses(self) -> dict[str, str]:
        servers = {n: s.connection for n, s in self.env.sql_servers.items()}
        servers[self.env.managed_instance.name] = self.env.managed_instance.connection
        return {n: f"{c.server},{c.port}" for n, c in servers.items()}

    def _sweep(self) -> tuple[tuple[Evidence, ...], tuple[str, ...]]:
        addresses = self._addresses()
        evidence: list[Evidence] = []
        notes: list[str] = []
        try:
            leftovers = stale(self.ledger.directory)
        except LedgerError as e:
            return (), (str(e),)
        for found in leftovers:
            if not found.entries or any(addresses.get(e.target) != e.address for e in found.entries):
                continue  # another environment's run: not ours to touch
            ledger = found.adopt()
            run = _Run(ledger, self._reopen, created=[(e, self._session(e.target)) for e in found.entries])
            problems = run.remove_all()
            evidence.extend(run.evidence)
            removed = [e.describe() for e in found.entries if e not in ledger.entries]
            notes.append(
                f"removed what an interrupted run ({found.run_id}, pid {found.pid}) left behind: "
                + ", ".join(removed or ["nothing was left"])
                + (f"; still there: {'; '.join(problems)}" if problems else "")
            )
        return tuple(evidence), tuple(notes)
