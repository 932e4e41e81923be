"""Helpers for the engine's and the scenarios' self-tests: load a scenario, log in, run T-SQL, read outcomes.

Instances are real `SimulatedInstance`s over the process's shared DuckDB catalog; nothing is faked.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from linkgate.lab.engine import SimulatedInstance
from linkgate.lab.engine.session import EngineSession
from linkgate.lab.results import Column, Outcome, ResultSet, SqlError, SqlType
from linkgate.lab.scenario import Scenario, load_scenario

PASSWORD = "Lg!engine-selftest-7"
PASSWORD_VARIABLE = "LINKGATE_LAB_PASSWORD"


@contextmanager
def lab_password(value: str | None = PASSWORD) -> Iterator[None]:
    """LINKGATE_LAB_PASSWORD set (or unset) for the duration, as the lab runner sets it."""
    previous = os.environ.get(PASSWORD_VARIABLE)
    if value is None:
        os.environ.pop(PASSWORD_VARIABLE, None)
    else:
        os.environ[PASSWORD_VARIABLE] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(PASSWORD_VARIABLE, None)
        else:
            os.environ[PASSWORD_VARIABLE] = previous


def scenario(name: str | Path = "healthy", overlays: Sequence[str | Path] = ()) -> Scenario:
    with lab_password():
        return load_scenario(name, overlays)


@functools.cache
def instance(name: str = "sql01", scenario_name: str = "healthy") -> SimulatedInstance:
    """One instance per (instance, scenario) for the whole test run: building them is cheap, but not free."""
    return SimulatedInstance(scenario(scenario_name).instances[name])


def login(name: str = "sql01", scenario_name: str = "healthy", database: str | None = None) -> EngineSession:
    return instance(name, scenario_name).login("linkgate", PASSWORD, database)


def run(session: EngineSession, sql: str, **params: Any) -> list[Outcome]:
    """A batch (no params) or a parameterised statement (@P1… as the drivers' sp_prepexec sends them)."""
    return session.execute(sql, params or None)


def results(outcomes: Sequence[Outcome]) -> list[ResultSet]:
    errors = [o for o in outcomes if isinstance(o, SqlError)]
    assert not errors, f"unexpected errors: {errors}"
    return [o for o in outcomes if isinstance(o, ResultSet)]


def result(outcomes: Sequence[Outcome]) -> ResultSet:
    """The one result set of a batch that must not fail."""
    found = results(outcomes)
    assert len(found) == 1, f"expected one result set, got {len(found)}: {outcomes}"
    return found[0]


def error(outcomes: Sequence[Outcome]) -> SqlError:
    """The first error of a batch that must fail."""
    found = [o for o in outcomes if isinstance(o, SqlError)]
    assert found, f"expected an error, got {outcomes}"
    return found[0]


def shape(rs: ResultSet) -> list[tuple[str, SqlType, int | None]]:
    """(name, type, length) of each column: what COLMETADATA carries."""
    return [(c.name, c.type, c.length) for c in rs.columns]


def typed(
    name: str, kind: SqlType, length: int | None = None, precision: int | None = None, scale: int | None = None
) -> Column:
    return Column(name, kind, length, precision, scale)


def dicts(rs: ResultSet) -> list[dict[str, Any]]:
    return [dict(zip((c.name for c in rs.columns), row, strict=True)) for row in rs.rows]


def write_overlay(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path
