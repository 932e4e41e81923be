"""Targets: the fan-out of prerequisites, and the order the checks run in."""

from __future__ import annotations

from pathlib import Path

import pytest

from linkgate.environment import load_environment
from linkgate.targets import Kind, Target, fanout_kind, in_target_order, targets_for
from selftests.unit.test_environment import CLIENT_HOST, VALID, write

TWO_SERVERS = VALID.replace(
    "managed_instance:",
    """  sql02:
    server: 10.0.0.6
    user: checker
    password_env: LG_TEST_PW
    databases: [CrmDB]
managed_instance:""",
)


@pytest.fixture(autouse=True)
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LG_TEST_PW", "s3cret-value")


def test_checks_run_target_by_target_in_the_order_facts_are_read(tmp_path: Path) -> None:
    env = load_environment(write(tmp_path, TWO_SERVERS))
    # As pytest collects them: prerequisite by prerequisite, each over every target.
    collected: list[tuple[str, Target | None]] = [("setup-free", None)]
    for prereq, kind in (
        ("sql-sysadmin", Kind.SQL_SERVER),
        ("sql-db-full-recovery", Kind.DATABASE),
        ("mi-engine-edition", Kind.MANAGED_INSTANCE),
        ("host-mssql-service", Kind.HOST),
    ):
        collected += [(prereq, t) for t in targets_for(env, kind)]
    ordered = in_target_order(env, collected, lambda pair: pair[1])
    assert [(p, t.label if t else "") for p, t in ordered] == [
        ("setup-free", ""),
        ("mi-engine-edition", "mi01"),
        ("sql-sysadmin", "sql01"),
        ("sql-db-full-recovery", "sql01/SalesDB"),
        ("sql-db-full-recovery", "sql01/HrDB"),
        ("host-mssql-service", "sql01"),
        ("sql-sysadmin", "sql02"),
        ("sql-db-full-recovery", "sql02/CrmDB"),
        ("host-mssql-service", "sql02"),
    ]
    assert sorted(ordered, key=id) == sorted(collected, key=id)  # nothing lost, nothing doubled


def test_the_client_machine_is_one_target_declared_or_not(tmp_path: Path) -> None:
    # Declared or not, one target: when it is not, the check is reported not applicable with the reason
    # (selftests/unit/test_applicability.py) instead of vanishing from the report.
    for text in (TWO_SERVERS, TWO_SERVERS + CLIENT_HOST):
        env = load_environment(write(tmp_path, text))
        (client,) = targets_for(env, Kind.CLIENT)
        assert (client.id, client.kind, client.database, client.host_os) == (
            "prod/client_host",
            Kind.CLIENT,
            None,
            "windows",
        )
    assert fanout_kind(["evidence", "client_host", "linkgate_target"]) is Kind.CLIENT
    assert fanout_kind(["evidence", "sql_host"]) is Kind.HOST


def test_a_host_check_reading_sql_server_facts_is_fanned_out_over_hosts() -> None:
    # sql_host wins over sql_server: the check is skipped where no host is declared instead of failing to reach it.
    assert fanout_kind(["sql_server", "sql_host", "evidence"]) is Kind.HOST
    assert fanout_kind(["sql_server", "evidence"]) is Kind.SQL_SERVER
    assert fanout_kind(["database", "sql_host"]) is Kind.DATABASE


def test_client_checks_run_after_every_server(tmp_path: Path) -> None:
    env = load_environment(write(tmp_path, TWO_SERVERS + CLIENT_HOST))
    collected = [("client-ssms-version", t) for t in targets_for(env, Kind.CLIENT)]
    collected += [("sql-sysadmin", t) for t in targets_for(env, Kind.SQL_SERVER)]
    collected += [("mi-engine-edition", t) for t in targets_for(env, Kind.MANAGED_INSTANCE)]
    ordered = in_target_order(env, collected, lambda pair: pair[1])
    assert [t.label for _, t in ordered] == ["mi01", "sql01", "sql02", "client_host"]
