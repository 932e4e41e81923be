"""The lab's SQL Server Agent and the DDL the active probes need: msdb job procedures and tables, CREATE/DROP
CERTIFICATE and ENDPOINT, and `tnc` job steps that really connect from the simulated server's namespace."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from linkgate.lab import netns as nx
from linkgate.lab.engine import SimulatedInstance, classify
from linkgate.lab.engine.network import TcpAttempt
from linkgate.lab.engine.session import EngineSession
from linkgate.lab.runner import Lab
from selftests.lab.engine_fixtures import (
    PASSWORD,
    dicts,
    error,
    lab_password,
    login,
    result,
    run,
    scenario,
    write_overlay,
)

ADD_JOB = """
EXEC msdb.dbo.sp_add_job @job_name = N'{job}', @enabled = 1
EXEC msdb.dbo.sp_add_jobstep @job_name = N'{job}', @step_name = N'probe', @step_id = 1,
    @subsystem = N'PowerShell', @command = N'{command}', @database_name = N'master', @flags = 40
EXEC msdb.dbo.sp_add_jobserver @job_name = N'{job}', @server_name = N'(local)'
"""
TEST_CERT = "CREATE CERTIFICATE lg_TEST_CERT WITH SUBJECT = N'Certificate for SQL Server', EXPIRY_DATE = N'3/30/2051'"
TEST_ENDPOINT = """CREATE ENDPOINT lg_TEST_ENDPOINT
    STATE=STARTED
    AS TCP (LISTENER_PORT=5022, LISTENER_IP = ALL)
    FOR DATABASE_MIRRORING (ROLE=ALL, AUTHENTICATION = CERTIFICATE lg_TEST_CERT, ENCRYPTION = REQUIRED ALGORITHM AES)"""
NO_ENDPOINT_LISTENER = """extends: healthy
hosts:
  machines:
    sql01:
      listeners: []
"""


def _finished(session: EngineSession, job: str, timeout: float = 10.0) -> dict[str, Any]:
    """The job's sysjobactivity row once it stopped (polled, bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = dicts(
            result(
                run(
                    session,
                    "SELECT a.stop_execution_date, a.job_history_id FROM msdb.dbo.sysjobs j "
                    "JOIN msdb.dbo.sysjobactivity a ON a.job_id = j.job_id "
                    f"WHERE j.name = N'{job}'",
                )
            )
        )
        if rows and rows[0]["stop_execution_date"] is not None:
            return rows[0]
        time.sleep(0.05)
    raise AssertionError(f"{job} did not finish within {timeout} s")


def _run_tnc(session: EngineSession, job: str, command: str) -> str:
    """Create, start and wait for a one-step job; its sysjobstepslogs log (the article's NetHelper reads it)."""
    assert [o for o in run(session, ADD_JOB.format(job=job, command=command)) if hasattr(o, "number")] == []
    run(session, f"EXEC msdb.dbo.sp_start_job @job_name = N'{job}'")
    _finished(session, job)
    rows = dicts(
        result(
            run(
                session,
                "SELECT sjsl.log FROM msdb.dbo.sysjobs sj "
                "JOIN msdb.dbo.sysjobsteps sjs ON sj.job_id = sjs.job_id "
                "JOIN msdb.dbo.sysjobstepslogs sjsl ON sjs.step_uid = sjsl.step_uid "
                f"WHERE sj.name = N'{job}'",
            )
        )
    )
    run(session, f"EXEC msdb.dbo.sp_delete_job @job_name = N'{job}'")
    return str(rows[0]["log"])


# ---- without a network: procedures, tables, errors


def test_job_lifecycle_fills_and_empties_msdb_tables() -> None:
    mi = login("mi01")
    log = _run_tnc(mi, "lg_lifecycle", "tnc 198.18.1.10 -port 5022 -InformationLevel Quiet")
    assert log.splitlines()[-1] == "False"  # an engine-only instance has no machine: nothing is reachable
    assert "no machine" in log
    for table in ("sysjobs", "sysjobs_view", "sysjobsteps", "sysjobactivity", "sysjobhistory"):
        assert result(run(mi, f"SELECT count(*) FROM msdb.dbo.{table}")).rows == [(0,)], table


def test_job_history_has_each_step_and_the_job_outcome() -> None:
    mi = login("mi01")
    run(mi, ADD_JOB.format(job="lg_history", command="tnc nowhere.example -port 1"))
    run(mi, "EXEC msdb.dbo.sp_start_job @job_name = N'lg_history'")
    _finished(mi, "lg_history")
    rows = dicts(
        result(
            run(
                mi,
                "SELECT step_id, run_status, message FROM msdb.dbo.sysjobhistory h "
                "JOIN msdb.dbo.sysjobs j ON j.job_id = h.job_id WHERE j.name = N'lg_history' "
                "ORDER BY step_id",
            )
        )
    )
    run(mi, "EXEC msdb.dbo.sp_delete_job @job_name = N'lg_history'")
    assert [(r["step_id"], r["run_status"]) for r in rows] == [(0, 1), (1, 1)]  # tnc exits 0 even when it fails
    assert "TcpTestSucceeded : False  Process Exit Code 0.  The step succeeded." in rows[1]["message"]
    assert rows[0]["message"].startswith("The job succeeded.")


class _HeldNetwork:
    """A machine whose TCP connects wait until released: a `tnc` step that runs as long as the test wants."""

    timeout = 30.0

    def __init__(self) -> None:
        self.release = threading.Event()

    def connect(self, host: str, port: int) -> TcpAttempt:
        self.release.wait(self.timeout)
        return TcpAttempt(host, host, port, True)


def test_deleting_a_running_job_returns_at_once_and_the_job_writes_nothing_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As msdb's sp_delete_job, which only notifies Agent: the lab answers it on the TDS loop thread, so waiting
    for the step would stall every session, and a step that ends later must not write rows back."""
    mi = login("mi01")
    network = _HeldNetwork()
    monkeypatch.setattr(mi.instance.agent, "network", network)
    run(mi, ADD_JOB.format(job="lg_running", command="tnc 198.18.1.10 -port 5022 -InformationLevel Quiet"))
    run(mi, "EXEC msdb.dbo.sp_start_job @job_name = N'lg_running'")
    (step,) = [t for t in threading.enumerate() if t.name == "lab-agent-lg_running"]
    releaser = threading.Timer(2.0, network.release.set)  # a delete that waits for the step fails, not hangs
    releaser.start()
    started = time.monotonic()
    try:
        deleted = run(mi, "EXEC msdb.dbo.sp_delete_job @job_name = N'lg_running'")
        seconds = time.monotonic() - started
    finally:
        network.release.set()
        releaser.cancel()
        step.join(timeout=5)
    assert [o for o in deleted if hasattr(o, "number")] == []
    assert seconds < 1.0, f"sp_delete_job waited {seconds:.1f} s for the running step"
    assert not step.is_alive()
    for table in ("sysjobs", "sysjobs_view", "sysjobsteps", "sysjobactivity", "sysjobhistory", "sysjobstepslogs"):
        assert result(run(mi, f"SELECT count(*) FROM msdb.dbo.{table}")).rows == [(0,)], table
    assert error(run(mi, "EXEC msdb.dbo.sp_start_job @job_name = N'lg_running'")).number == 14262


@pytest.mark.parametrize(
    ("statement", "number"),
    [
        ("EXEC msdb.dbo.sp_start_job @job_name = N'lg_missing'", 14262),
        ("EXEC msdb.dbo.sp_delete_job @job_name = N'lg_missing'", 14262),
        ("EXEC sp_add_job @job_name = N'lg_in_master'", 2812),  # msdb's procedures exist only in msdb
    ],
)
def test_job_procedures_answer_sql_server_errors(statement: str, number: int) -> None:
    assert error(run(login("mi01"), statement)).number == number


def test_a_job_needs_a_job_server_and_a_unique_name() -> None:
    mi = login("mi01")
    run(mi, "EXEC msdb.dbo.sp_add_job @job_name = N'lg_unserved'")
    try:
        assert error(run(mi, "EXEC msdb.dbo.sp_add_job @job_name = N'lg_unserved'")).number == 14261
        assert error(run(mi, "EXEC msdb.dbo.sp_start_job @job_name = N'lg_unserved'")).number == 14256
    finally:
        run(mi, "EXEC msdb.dbo.sp_delete_job @job_name = N'lg_unserved'")


def test_sql_server_on_linux_has_no_powershell_subsystem() -> None:
    sql = login("sql01")
    run(sql, "EXEC msdb.dbo.sp_add_job @job_name = N'lg_linux'")
    try:
        step = "EXEC msdb.dbo.sp_add_jobstep @job_name = N'lg_linux', @step_name = N's', @subsystem = N'PowerShell'"
        assert error(run(sql, step)).number == 14234
    finally:
        run(sql, "EXEC msdb.dbo.sp_delete_job @job_name = N'lg_linux'")


def test_job_procedures_need_sysadmin_or_an_agent_role() -> None:
    reader = login("sql01", "sql-no-agent-job-permission")
    failure = error(run(reader, "EXEC msdb.dbo.sp_add_job @job_name = N'lg_denied'"))
    assert failure.number == 229
    assert "sp_add_job" in failure.message


def test_certificate_and_endpoint_follow_sql_server_rules() -> None:
    sql = login("sql01")
    assert run(sql, TEST_CERT)[-1].__class__.__name__ == "RowCount"
    try:
        assert error(run(sql, TEST_CERT)).number == 15232
        run(sql, TEST_ENDPOINT)
        endpoint = dicts(
            result(
                run(
                    sql,
                    "SELECT e.name, e.state_desc, e.connection_auth_desc, "
                    "e.encryption_algorithm_desc, t.port FROM sys.database_mirroring_endpoints e "
                    "JOIN sys.tcp_endpoints t ON t.endpoint_id = e.endpoint_id",
                )
            )
        )
        assert endpoint == [
            {
                "name": "lg_TEST_ENDPOINT",
                "state_desc": "STARTED",
                "connection_auth_desc": "CERTIFICATE",
                "encryption_algorithm_desc": "AES",
                "port": 5022,
            }
        ]
        assert error(run(sql, TEST_ENDPOINT.replace("lg_TEST_ENDPOINT", "lg_second"))).number == 7862
        assert error(run(sql, "DROP CERTIFICATE lg_TEST_CERT")).number == 15352  # the endpoint uses it
    finally:
        run(sql, "DROP ENDPOINT lg_TEST_ENDPOINT")
        run(sql, "DROP CERTIFICATE lg_TEST_CERT")
    assert result(run(sql, "SELECT count(*) FROM sys.certificates WHERE name = N'lg_TEST_CERT'")).rows == [(0,)]
    assert error(run(sql, "DROP ENDPOINT lg_TEST_ENDPOINT")).number == 15151


def test_ddl_stays_refused_beyond_the_probes_objects() -> None:
    no_key = login("sql01", "sql-no-master-key")
    assert error(run(no_key, TEST_CERT)).number == 15581
    assert error(run(login("mi01"), TEST_ENDPOINT)).number == 40517
    assert error(run(login("sql01", "sql-no-agent-job-permission"), TEST_CERT)).number == 15247
    stopped = login("sql01", "sql-endpoint-stopped")
    assert error(run(stopped, "DROP ENDPOINT Hadr_endpoint")).number == 3906  # the scenario's own stays
    assert error(run(stopped, "DROP CERTIFICATE LinkEndpointCert")).number == 3906


@pytest.mark.parametrize(
    "statement",
    [
        TEST_CERT,
        TEST_ENDPOINT,
        "DROP ENDPOINT lg_TEST_ENDPOINT",
        "DROP CERTIFICATE [lg_TEST_CERT]",
        "EXEC msdb.dbo.sp_add_job @job_name = N'x'",
        "EXEC msdb.dbo.sp_start_job @job_name = N'x'",
        "IF EXISTS (SELECT 1 FROM msdb.dbo.sysjobs WHERE name = N'x') EXEC msdb.dbo.sp_delete_job @job_name = N'x'",
        "CREATE PROCEDURE ExecuteNetHelper AS SELECT 1",
    ],
)
def test_audit_classifies_the_probes_statements_as_writes(statement: str) -> None:
    assert classify(statement) == "write"


def test_audit_reads_of_job_tables_stay_reads() -> None:
    statement = (
        "SELECT sjsl.log FROM msdb.dbo.sysjobs sj JOIN msdb.dbo.sysjobsteps sjs ON sj.job_id = sjs.job_id "
        "JOIN msdb.dbo.sysjobstepslogs sjsl ON sjs.step_uid = sjsl.step_uid"
    )
    assert classify(statement) == "read"


# ---- on lab machines: real connections from the namespaces


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The healthy lab without sql01's configured 5022 listener: only a STARTED endpoint opens that port."""
    overlay = write_overlay(tmp_path_factory.mktemp("agent"), "no-listener.yaml", NO_ENDPOINT_LISTENER)
    with lab_password(), Lab(scenario("healthy", [overlay]), ephemeral_ports=True) as running:
        yield running


def _login(lab: Lab, name: str) -> EngineSession:
    backend = lab.backends[name]
    assert isinstance(backend, SimulatedInstance)
    return backend.login("linkgate", PASSWORD, None)


def test_tnc_connects_from_the_managed_instances_namespace_only_while_an_endpoint_listens(lab: Lab) -> None:
    mi, sql = _login(lab, "mi01"), _login(lab, "sql01")
    address = lab.hosts.address("sql01")
    command = f"tnc {address} -port 5022 -InformationLevel Quiet"
    assert _run_tnc(mi, "lg_before", command).splitlines() == [
        f"WARNING: TCP connect to ({address} : 5022) failed",
        "False",
    ]
    run(sql, TEST_CERT)
    run(sql, TEST_ENDPOINT)
    try:
        assert _run_tnc(mi, "lg_during", command) == "True"
        assert nx.tcp_connects_from(lab.hosts.netns("mi01"), str(address), 5022)
    finally:
        run(sql, "DROP ENDPOINT lg_TEST_ENDPOINT")
        run(sql, "DROP CERTIFICATE lg_TEST_CERT")
    assert not nx.tcp_connects_from(lab.hosts.netns("mi01"), str(address), 5022, timeout=0.5)


def test_tnc_format_list_resolves_names_through_the_machines_hosts_file(lab: Lab) -> None:
    mi = _login(lab, "mi01")
    fqdn = "mi01.a1b2c3d4e5f6.database.windows.net"
    command = (
        f"tnc {lab.hosts.address('mi01')} -port 11002 | select ComputerName, RemoteAddress, TcpTestSucceeded "
        "| Format-List"
    )
    log = _run_tnc(mi, "lg_format_list", command)
    assert log.splitlines() == [
        f"ComputerName     : {lab.hosts.address('mi01')}",
        f"RemoteAddress    : {lab.hosts.address('mi01')}",
        "TcpTestSucceeded : True",
    ]
    network = lab.backends["sql01"]
    assert isinstance(network, SimulatedInstance)
    assert network.network is not None
    assert str(network.network.resolve(fqdn)) == lab.hosts.translate("198.18.2.4")


def test_an_unknown_powershell_command_fails_the_step(lab: Lab) -> None:
    mi = _login(lab, "mi01")
    log = _run_tnc(mi, "lg_unknown", "Invoke-WebRequest http://198.18.1.10")
    assert "is not recognized" in log
