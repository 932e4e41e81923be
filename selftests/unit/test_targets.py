"""Targets: the fan-out of prerequisites, and the order the checks run in."""

from __future__ import annotations

from pathlib import Path

import pytest

from linkgate.environment import load_environment
from linkgate.targets import Kind, Target, in_target_order, targets_for
from selftests.unit.test_environment import VALID, write

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
    for prereq, kind in (("sql-sysadmin", Kind.SQL_SERVER), ("sql-db-full-recovery", Kind.DATABASE),
                         ("mi-engine-edition", Kind.MANAGED_INSTANCE), ("host-mssql-service", Kind.HOST)):
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
