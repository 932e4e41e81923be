"""How the gate behaves on the wire: read-only, secrets kept, dead targets, waivers, the demo command."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from linkgate.lab.engine import writes
from selftests.e2e.harness import ROOT, GateRunner, run_pytest_gate


def test_gate_sends_nothing_that_changes_state(gate: GateRunner) -> None:
    run = gate("healthy")
    assert run.returncode == 0
    sent = [s for log in run.statements.values() for s in log]
    assert any("symmetric_key_id = 101" in s.text for s in sent), "the gate's own queries are in the log"
    assert [s.text for s in writes(sent)] == []


def test_secrets_never_reach_any_output(gate: GateRunner) -> None:
    """Nothing any process writes carries a password: the controller, and xdist workers (-n 2) that hold the
    secrets too and send their reports over execnet."""
    password = os.environ["LINKGATE_LAB_PASSWORD"]
    run = gate("healthy", "-v", "-n", "2")
    assert "2 workers [" in run.stdout, "the checks really ran on two workers"
    assert password not in run.text_of_every_output()

    def wrong_password(env: dict[str, Any]) -> None:
        env["managed_instance"]["password_env"] = "LINKGATE_WRONG_PASSWORD"

    os.environ["LINKGATE_WRONG_PASSWORD"] = "Wr0ng-but-secret-" + password[-6:]
    try:
        failed = gate("healthy", "-v", "-n", "2", edit=wrong_password)
    finally:
        wrong = os.environ.pop("LINKGATE_WRONG_PASSWORD")
    everything = failed.text_of_every_output()
    assert failed.returncode == 1
    assert "Login failed for user 'linkgate'" in everything
    assert wrong not in everything
    assert password not in everything


def test_unreachable_target_errors_every_check_once(gate: GateRunner) -> None:
    run = gate("fault-sql-refuses-connections")
    assert run.returncode == 1
    sql01 = [r for r in run.records() if r["target"].split("/")[0] == "sql01" and r["prerequisite"].startswith("sql-")]
    applicable = [r for r in sql01 if r["outcome"] != "not-applicable"]
    assert applicable, "every sql01 check must be reported"
    assert {r["outcome"] for r in applicable} == {"error"}
    assert all("unreachable" in r["message"] for r in applicable)
    # The host's own view agrees: nothing listens where SQL Server should.
    assert run.outcome_of("host-mssql-service", "sql01") == "failed"
    assert {r["outcome"] for r in run.records() if r["target"] == "mi01"} <= {"passed", "not-applicable"}


def test_waivers_accept_a_failure_until_they_expire(gate: GateRunner) -> None:
    def waive(expires: dt.date) -> Any:
        def edit(env: dict[str, Any]) -> None:
            env["waivers"] = [
                {
                    "prerequisite": "sql-master-key",
                    "target": "sql01",
                    "reason": "created at cutover",
                    "owner": "dba@example.com",
                    "expires": expires.isoformat(),
                }
            ]

        return edit

    waived = gate("sql-no-master-key", edit=waive(dt.date.today() + dt.timedelta(days=30)))
    assert waived.returncode == 0
    assert waived.outcome_of("sql-master-key", "sql01") == "waived"
    expired = gate("sql-no-master-key", edit=waive(dt.date.today() - dt.timedelta(days=1)))
    assert expired.returncode == 1
    assert expired.outcome_of("sql-master-key", "sql01") == "failed"
    (record,) = expired.records("failed")
    assert "expired" in record["message"]


def test_readme_first_command_runs_the_demo(tmp_path: Any) -> None:
    """`pytest --env demo` starts the lab itself and writes the three reports."""
    proc = run_pytest_gate(ROOT / "environments" / "demo.yaml", tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junit.xml", "linkgate.html", "summary.json"]
    assert "linkgate verdict for demo: GO" in proc.stdout
