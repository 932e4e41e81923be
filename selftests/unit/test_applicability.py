"""Applicability decided from the environment alone (at collection) or left to the target's facts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from linkgate.applicability import FactsContext, decided_before_facts
from linkgate.catalog import Prereq, Severity
from linkgate.conditions import ACTIVE_PROBES, ALWAYS, MI_TO_SQL, SQL_TO_MI, Condition, fact_holds, host_os_is
from linkgate.environment import load_environment
from linkgate.gate import Gate, Options
from linkgate.gather import FactsCache
from linkgate.probes.facts import EvidenceRecorder
from linkgate.redaction import Redactor
from linkgate.targets import Kind, targets_for
from selftests.unit.test_environment import CLIENT_HOST, VALID, write


def prereq(applies: Condition) -> Prereq:
    return Prereq(
        "sql-example",
        "An example holds.",
        "why",
        Severity.REQUIRED,
        applies,
        "fix it",
        "docs",
        "SQL-00",
        "sql",
        "test_example",
        "tests.example",
    )


@pytest.fixture
def gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Gate:
    monkeypatch.setenv("LG_TEST_PW", "s3cret-value")
    env = load_environment(write(tmp_path, VALID))  # sql01: Linux, no host declared; direction SQL_TO_MI
    return Gate(
        env,
        Options(tmp_path, fail_on_recommended=False, active_probes=False, today=dt.date(2026, 1, 1)),
        FactsCache(env),
        Redactor(),
        is_controller=True,
    )


def test_the_environment_alone_settles_these(gate: Gate) -> None:
    (server,) = targets_for(gate.environment, Kind.SQL_SERVER)
    (host,) = targets_for(gate.environment, Kind.HOST)
    assert decided_before_facts(gate, prereq(ALWAYS), host) == (
        "applies only when the host of sql01 is declared (sql_servers.sql01.host)"
    )
    assert decided_before_facts(gate, prereq(ACTIVE_PROBES), server) == (
        "applies only when active probes are enabled (--active-probes or active_probes: true)"
    )
    assert decided_before_facts(gate, prereq(MI_TO_SQL), server) == (
        "applies only when the managed instance is the initial primary (direction MI_TO_SQL)"
    )
    assert decided_before_facts(gate, prereq(host_os_is("windows")), server) == (
        "applies only when SQL Server runs on Windows"
    )
    # A static part that fails first needs no facts even when a fact-based part follows.
    assert decided_before_facts(gate, prereq(MI_TO_SQL & fact_holds("x", "sql.major", bool)), server) is not None


def test_what_needs_facts_or_applies_is_left_to_the_run(gate: Gate) -> None:
    (server,) = targets_for(gate.environment, Kind.SQL_SERVER)
    assert decided_before_facts(gate, prereq(ALWAYS), server) is None
    assert decided_before_facts(gate, prereq(SQL_TO_MI), server) is None
    assert (
        decided_before_facts(gate, prereq(fact_holds("SQL Server is 2016", "sql.major", lambda v: v == 13)), server)
        is None
    )
    assert decided_before_facts(gate, prereq(SQL_TO_MI & fact_holds("x", "sql.major", bool)), server) is None
    assert gate.cache._futures == {}, "nothing was read from any target"


def test_the_client_check_applies_only_when_client_host_is_declared(tmp_path: Path, gate: Gate) -> None:
    (client,) = targets_for(gate.environment, Kind.CLIENT)
    assert decided_before_facts(gate, prereq(ALWAYS), client) == (
        "applies only when the environment declares client_host (the machine that runs SSMS)"
    )
    env = load_environment(write(tmp_path, VALID + CLIENT_HOST))
    declared = Gate(
        env,
        Options(tmp_path, fail_on_recommended=False, active_probes=False, today=dt.date(2026, 1, 1)),
        FactsCache(env),
        Redactor(),
        is_controller=True,
    )
    (client,) = targets_for(env, Kind.CLIENT)
    assert decided_before_facts(declared, prereq(ALWAYS), client) is None
    # The client has no facts for conditions: a fact-based condition on it is a gate bug, said as such at run time.
    with pytest.raises(KeyError, match="the client machine has no facts"):
        FactsContext(declared, client, EvidenceRecorder()).fact("sql.major")
    assert declared.cache._futures == {}, "nothing was read from any target"
