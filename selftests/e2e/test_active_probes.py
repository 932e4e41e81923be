"""The opt-in active probes against the lab: read-only without them; with them, both directions tested the
article's way, and the lab left exactly as it was — after success, failure, SIGTERM and SIGKILL."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from linkgate.environment import load_environment
from linkgate.evidence import Evidence
from linkgate.lab.backend import LoggedStatement
from linkgate.lab.engine import SimulatedInstance, writes
from linkgate.lab.runner import Lab
from linkgate.lab.scenario import load_scenario
from linkgate.probes.active import ActiveProbes, Connectivity
from linkgate.probes.facts import Fact
from linkgate.probes.odbc import OdbcSession, QueryFailed, Rows
from selftests.e2e.harness import ROOT, GateRun, run_pytest_gate

ACTIVE = ("net-mi-reaches-sql-5022", "net-sql-reaches-mi-active")
ACTIVE_TESTS = "tests/network/test_active.py"
OBJECT = re.compile(r"linkgate_([0-9a-f]{8})_\w+")
WINDOWS_SQL01 = """extends: healthy
instances:
  sql01:
    host: {platform: Windows, distribution: Windows Server 2022 Datacenter, release: "10.0"}
"""


@dataclass
class LabGate:
    """One lab kept across gate runs (so a second run meets what the first left), and the gate's state dir."""

    lab: Lab
    env: Path
    state: Path
    workdir: Path

    def run(self, *args: str) -> GateRun:
        reports = self.workdir / f"reports-{len(list(self.workdir.glob('reports-*')))}"
        before = {n: len(b.log()) for n, b in self.lab.backends.items()}
        proc = run_pytest_gate(self.env, reports, *args, timeout=120)
        statements = {n: b.log()[before[n] :] for n, b in self.lab.backends.items()}
        return GateRun(proc.returncode, proc.stdout, proc.stderr, reports, statements)

    def start(self, *args: str) -> subprocess.Popen[str]:
        command = [
            sys.executable,
            "-m",
            "pytest",
            f"--env={self.env}",
            f"--reports={self.workdir / 'killed'}",
            "-p",
            "no:cacheprovider",
            "-q",
            *args,
        ]
        return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def wait_for(self, instance: str, needle: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(needle in s.text for s in self.lab.backends[instance].log()):
                return
            time.sleep(0.02)
        raise AssertionError(f"{instance} never received {needle!r}")

    def leftovers(self) -> dict[str, list[str]]:
        """Every job, endpoint and certificate an instance holds beyond its scenario's (rows it owns)."""
        found: dict[str, list[str]] = {}
        for name, backend in self.lab.backends.items():
            assert isinstance(backend, SimulatedInstance)
            own = [
                str(r["name"])
                for table in ("dbo.sysjobs", "sys.endpoints", "sys.certificates")
                for r in backend.catalog.owned(backend.own_id, table)
            ]
            if own:
                found[name] = own
        return found

    def ledgers(self) -> list[Path]:
        return sorted((self.state / "ledgers").glob("*"))


@pytest.fixture
def lab_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., LabGate]]:
    """lab_gate(scenario, overlays=()) → a running lab with its environment file; the ledger in tmp_path."""
    monkeypatch.setenv("LINKGATE_STATE_DIR", str(tmp_path / "state"))
    labs: list[Lab] = []

    def make(scenario: str, overlays: tuple[Path, ...] = ()) -> LabGate:
        lab = Lab(load_scenario(scenario, overlays), ephemeral_ports=True).start()
        labs.append(lab)
        env = tmp_path / "lab.yaml"
        env.write_text(yaml.safe_dump(lab.environment(), sort_keys=False))
        return LabGate(lab, env, tmp_path / "state", tmp_path)

    yield make
    for lab in labs:
        lab.stop()


def _texts(statements: dict[str, list[LoggedStatement]], instance: str) -> list[str]:
    return [s.text for s in writes(statements[instance])]


def _record(run: GateRun, prerequisite: str) -> dict[str, Any]:
    (record,) = [r for r in run.records() if r["prerequisite"] == prerequisite]
    return record


def test_without_active_probes_nothing_is_written_and_they_do_not_apply(lab_gate: Callable[..., LabGate]) -> None:
    gate = lab_gate("healthy")
    run = gate.run()
    assert run.returncode == 0, run.stdout[-3000:]
    assert [s.text for log in run.statements.values() for s in writes(log)] == []
    for prerequisite in ACTIVE:
        record = _record(run, prerequisite)
        assert record["outcome"] == "not-applicable"
        assert "--active-probes" in record["message"]


def test_healthy_lab_passes_both_directions_and_keeps_nothing(lab_gate: Callable[..., LabGate]) -> None:
    gate = lab_gate("healthy")
    run = gate.run("--active-probes")
    assert run.returncode == 0, run.stdout[-3000:]
    assert {_record(run, p)["outcome"] for p in ACTIVE} == {"passed"}
    sql01, mi01 = _texts(run.statements, "sql01"), _texts(run.statements, "mi01")
    assert [w.split()[0:2] for w in sql01] == [
        ["CREATE", "CERTIFICATE"],
        ["CREATE", "ENDPOINT"],
        ["IF", "EXISTS"],
        ["IF", "EXISTS"],
    ]
    assert "DROP ENDPOINT" in sql01[2]
    assert "DROP CERTIFICATE" in sql01[3]
    assert [re.search(r"sp_\w+", w).group(0) for w in mi01] == [  # type: ignore[union-attr]
        "sp_add_job",
        "sp_add_jobstep",
        "sp_update_job",
        "sp_add_jobserver",
        "sp_start_job",
        "sp_delete_job",
    ]
    assert "-InformationLevel Quiet" in mi01[1]
    assert "@flags = 40" in mi01[1]
    assert len({m for w in sql01 + mi01 for m in OBJECT.findall(w)}) == 1, "one run id names every object"
    assert not any("PROCEDURE" in w.upper() for w in sql01 + mi01)
    assert gate.leftovers() == {}
    assert gate.ledgers() == []
    sql_to_mi = "\n".join(e["result"] for e in _record(run, "net-sql-reaches-mi-active")["evidence"])
    assert "SQL Server Agent on Linux cannot run the article's PowerShell job" in sql_to_mi


def test_inbound_5022_blocked_fails_with_the_jobs_evidence(lab_gate: Callable[..., LabGate]) -> None:
    gate = lab_gate("active-host-inbound-5022-dropped")
    run = gate.run(ACTIVE_TESTS)
    assert run.returncode == 1
    record = _record(run, "net-mi-reaches-sql-5022")
    assert record["outcome"] == "failed"
    assert "did not connect" in record["message"]
    assert "TCP connect to" in record["message"]
    (log,) = [e for e in record["evidence"] if "sysjobstepslogs" in e["command"]]
    assert "False" in log["result"]
    assert _record(run, "net-sql-reaches-mi-active")["outcome"] == "passed"
    assert gate.leftovers() == {}
    assert gate.ledgers() == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_signal_mid_probe_removes_everything_before_the_gate_exits(
    lab_gate: Callable[..., LabGate], signum: signal.Signals
) -> None:
    """The signal often lands while sp_start_job is in flight: the driver then drops the probe's connection to
    mi01, so the job is removed over a new one; and the gate stops there (interrupted) instead of carrying on."""
    gate = lab_gate("active-host-inbound-5022-dropped")  # the job's tnc waits for a dropped SYN: time to signal
    proc = gate.start(ACTIVE_TESTS)
    gate.wait_for("mi01", "sp_start_job")
    assert gate.leftovers(), "the probe's objects exist while it runs"
    proc.send_signal(signum)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output[-2000:]
    assert gate.leftovers() == {}, output[-3000:]
    assert gate.ledgers() == []


def test_after_a_killed_run_the_next_one_removes_the_leftovers_and_says_so(lab_gate: Callable[..., LabGate]) -> None:
    gate = lab_gate("active-host-inbound-5022-dropped")
    proc = gate.start(ACTIVE_TESTS)
    gate.wait_for("mi01", "sp_start_job")
    proc.kill()
    proc.communicate(timeout=30)
    left = gate.leftovers()
    assert sorted(left) == ["mi01", "sql01"]
    (ledger,) = gate.ledgers()
    run_id = ledger.stem
    assert {OBJECT.match(n).group(1) for names in left.values() for n in names} == {run_id}  # type: ignore[union-attr]

    again = gate.run(ACTIVE_TESTS)
    assert gate.leftovers() == {}
    assert gate.ledgers() == []
    for prerequisite in ACTIVE:
        results = "\n".join(e["result"] for e in _record(again, prerequisite)["evidence"])
        assert f"removed what an interrupted run ({run_id}" in results
        assert all(name in results for names in left.values() for name in names)


def test_sql_server_on_windows_runs_the_articles_agent_job(lab_gate: Callable[..., LabGate], tmp_path: Path) -> None:
    overlay = tmp_path / "windows.yaml"
    overlay.write_text(WINDOWS_SQL01)
    gate = lab_gate("healthy", (overlay,))
    run = gate.run("--active-probes", ACTIVE_TESTS)
    record = _record(run, "net-sql-reaches-mi-active")
    assert record["outcome"] == "passed", record["message"]
    (history,) = [e for e in record["evidence"] if "sysjobhistory" in e["command"]]
    assert history["result"].count("TcpTestSucceeded : True") == 2
    steps = [s.text for s in writes(run.statements["sql01"]) if "sp_add_jobstep" in s.text]
    assert len(steps) == 2
    assert "Format-List" in steps[0]
    assert "-port 11002" in steps[1]
    assert gate.leftovers() == {}


class _DiesAfterStartingTheJob(OdbcSession):
    """A session whose connection is lost once sp_start_job returns, as the driver loses it when SIGTERM lands
    mid-statement: from then on every statement fails without reaching the server."""

    dead = False

    def query(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        if self.dead:
            message = "08S01 [Microsoft][ODBC Driver 18 for SQL Server]Communication link failure"
            raise QueryFailed(message, Evidence(self.target, "SQL", sql, message, ok=False))
        rows = super().query(sql, params)
        self.dead = "sp_start_job" in sql
        return rows


def _mi_to_sql(
    gate: LabGate, sessions: list[OdbcSession], *, first_mi_session: type[OdbcSession] = OdbcSession, **options: Any
) -> Fact[Connectivity]:
    """The MI → SQL Server probe on sql01, run here over sessions of the test's own (kept in `sessions`,
    closed after); the first session to the managed instance is a `first_mi_session`."""
    env = load_environment(gate.env)

    def open_session(name: str) -> OdbcSession:
        mi = name == env.managed_instance.name
        target = env.managed_instance if mi else env.sql_servers[name]
        first = not any(s.target == name for s in sessions)
        kind = first_mi_session if mi and first else OdbcSession
        sessions.append(kind(name, target.connection, env.timeouts))
        return sessions[-1]

    try:
        return ActiveProbes(env, open_session, gate.state / "ledgers", **options).mi_to_sql("sql01")
    finally:
        for session in sessions:
            session.close()


def test_a_probe_whose_session_died_removes_its_job_over_a_new_one(lab_gate: Callable[..., LabGate]) -> None:
    gate = lab_gate("active-host-inbound-5022-dropped")
    sessions: list[OdbcSession] = []
    fact = _mi_to_sql(gate, sessions, first_mi_session=_DiesAfterStartingTheJob)
    assert fact.error is not None
    assert "Communication link failure" in fact.error
    assert "could not remove" not in fact.error
    removals = [e for e in fact.evidence if "sp_delete_job" in e.command]
    assert [e.ok for e in removals] == [False, True], "tried on the dead session, then done over a new one"
    assert [s.target for s in sessions].count("mi01") == 2
    assert gate.leftovers() == {}
    assert gate.ledgers() == []


def test_a_job_that_outlives_its_timeout_is_an_error_and_still_removed(lab_gate: Callable[..., LabGate]) -> None:
    gate = lab_gate("active-host-inbound-5022-dropped")  # tnc waits 2 s for the dropped SYN
    fact = _mi_to_sql(gate, [], job_timeout=0.3)
    assert fact.error is not None
    assert "did not finish within 0.3 s" in fact.error
    assert any("sp_delete_job" in e.command for e in fact.evidence)
    assert gate.leftovers() == {}
    assert gate.ledgers() == []
