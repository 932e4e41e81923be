"""The catalog's result cache: clones share the answers to what they have in common, and nothing else.

A query's result is reused only for the same statement, values and session variables over the same
values of the columns it reads (catalog.py, usage.py). These tests prove both halves: a fleet's clones
answer the catalog questions once, and every difference that decides an answer — a column's values,
a parameter, a session's identity, the objects an instance creates at run time (certificates,
endpoints, Agent jobs), live sessions, the clock — makes DuckDB run the query again.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from linkgate.lab.engine import SimulatedInstance
from linkgate.lab.engine.catalog import Catalog
from linkgate.lab.engine.session import EngineSession
from linkgate.lab.engine.translate import narrowed, translate
from linkgate.lab.results import ResultSet
from selftests.lab.engine_fixtures import PASSWORD, error, result, run, scenario

DATABASES = "SELECT name, recovery_model_desc FROM sys.databases ORDER BY database_id"
CERTIFICATES = "SELECT name FROM sys.certificates ORDER BY name"
ENDPOINTS = "SELECT name, state_desc FROM sys.endpoints ORDER BY name"
JOBS = "SELECT name, enabled FROM msdb.dbo.sysjobs ORDER BY name"
TEST_CERT = "CREATE CERTIFICATE lg_cache_cert WITH SUBJECT = N'cache test', EXPIRY_DATE = N'3/30/2051'"
TEST_ENDPOINT = """CREATE ENDPOINT lg_cache_endpoint STATE=STOPPED AS TCP (LISTENER_PORT=5022, LISTENER_IP = ALL)
    FOR DATABASE_MIRRORING (ROLE=ALL, AUTHENTICATION = CERTIFICATE lg_cache_cert,
    ENCRYPTION = REQUIRED ALGORITHM AES)"""
_names = itertools.count(1)


@pytest.fixture
def catalog() -> Catalog:
    """A catalog of the test's own, so that its counters and cache start empty."""
    return Catalog()


def clone(catalog: Catalog, scenario_name: str = "healthy", instance: str = "sql01") -> SimulatedInstance:
    """An instance of the scenario under a new name, as bench/fleet.py clones sql01."""
    spec = scenario(scenario_name).instances[instance]
    name = f"clone{next(_names):03d}"
    return SimulatedInstance(dataclasses.replace(spec, name=name, server_name=name, machine_name=name), catalog=catalog)


def session(instance: SimulatedInstance) -> EngineSession:
    return instance.login("linkgate", PASSWORD, None)


def rows(s: EngineSession, sql: str, **params: object) -> list[tuple[object, ...]]:
    return result(run(s, sql, **params)).rows


def counts(catalog: Catalog) -> tuple[int, int]:
    return catalog.hits, catalog.misses


def test_clones_share_the_answers_to_what_they_have_in_common(catalog: Catalog) -> None:
    a, b = session(clone(catalog)), session(clone(catalog))
    first = rows(a, DATABASES)
    assert counts(catalog) == (0, 1)
    assert rows(b, DATABASES) == first
    assert counts(catalog) == (1, 1)
    assert ("SalesDB", "FULL") in first


def test_a_column_whose_values_differ_is_read_by_each_instance(catalog: Catalog) -> None:
    """Clones differ in GUIDs derived from their names: a query reading one runs on each instance."""
    a, b = session(clone(catalog)), session(clone(catalog))
    query = "SELECT name, service_broker_guid FROM sys.databases WHERE name = N'master'"
    assert rows(a, query) != rows(b, query)
    assert counts(catalog) == (0, 2)
    assert rows(a, "SELECT name FROM sys.databases WHERE name = N'master'") == [("master",)]
    assert rows(b, "SELECT name FROM sys.databases WHERE name = N'master'") == [("master",)]
    assert counts(catalog) == (1, 3)


def test_a_different_scenario_gets_its_own_answer(catalog: Catalog) -> None:
    query = "SELECT recovery_model_desc FROM sys.databases WHERE name = N'SalesDB'"
    assert rows(session(clone(catalog)), query) == [("FULL",)]
    assert rows(session(clone(catalog, "sql-db-simple-recovery")), query) == [("SIMPLE",)]


def test_parameters_and_the_sessions_identity_decide_answers(catalog: Catalog) -> None:
    a, b = session(clone(catalog)), session(clone(catalog))
    query = "SELECT name FROM sys.databases WHERE name = @P1"
    assert rows(a, query, P1="SalesDB") == [("SalesDB",)]
    assert rows(a, query, P1="InventoryDB") == [("InventoryDB",)]
    assert rows(b, query, P1="msdb") == [("msdb",)]
    assert rows(a, "SELECT @@SERVERNAME") != rows(b, "SELECT @@SERVERNAME")
    again = session(a.instance)
    assert rows(a, "SELECT @@SPID") != rows(again, "SELECT @@SPID")


def test_certificates_and_endpoints_an_instance_creates_invalidate_its_answers(catalog: Catalog) -> None:
    a, b = session(clone(catalog)), session(clone(catalog))
    before = rows(a, CERTIFICATES)
    assert rows(b, CERTIFICATES) == before
    assert counts(catalog) == (1, 1)
    endpoints = rows(a, ENDPOINTS)
    run(a, TEST_CERT)
    assert rows(a, CERTIFICATES) == sorted([*before, ("lg_cache_cert",)])
    assert rows(b, CERTIFICATES) == before  # the other clone did not create it
    run(a, TEST_ENDPOINT)
    assert ("lg_cache_endpoint", "STOPPED") in rows(a, ENDPOINTS)
    assert rows(b, ENDPOINTS) == endpoints
    run(a, "DROP ENDPOINT lg_cache_endpoint")
    assert rows(a, ENDPOINTS) == endpoints
    run(a, "DROP CERTIFICATE lg_cache_cert")
    assert rows(a, CERTIFICATES) == before


def test_agent_jobs_invalidate_the_msdb_answers(catalog: Catalog) -> None:
    a = session(clone(catalog))
    assert rows(a, JOBS) == []
    run(a, "EXEC msdb.dbo.sp_add_job @job_name = N'lg_cache_job', @enabled = 1")
    assert rows(a, JOBS) == [("lg_cache_job", 1)]
    run(a, "EXEC msdb.dbo.sp_update_job @job_name = N'lg_cache_job', @enabled = 0")
    assert rows(a, JOBS) == [("lg_cache_job", 0)]
    run(a, "EXEC msdb.dbo.sp_delete_job @job_name = N'lg_cache_job'")
    assert rows(a, JOBS) == []


def test_live_sessions_are_never_cached(catalog: Catalog) -> None:
    instance = clone(catalog)
    a = session(instance)
    query = "SELECT COUNT(*) FROM sys.dm_exec_sessions WHERE is_user_process = 1 AND login_name = N'linkgate'"
    first = int(str(rows(a, query)[0][0]))
    session(instance)
    assert rows(a, query) == [(first + 1,)]
    assert counts(catalog) == (0, 0)


@pytest.mark.parametrize(
    ("statement", "deterministic"),
    [
        ("SELECT name FROM sys.databases", True),
        ("SELECT GETDATE()", False),
        ("SELECT SYSDATETIME()", False),
        ("SELECT GETUTCDATE()", False),
        ("SELECT CURRENT_TIMESTAMP", False),
        ("SELECT NEWID()", False),
        ("SELECT RAND()", False),
        ("SELECT name FROM sys.databases WHERE create_date < DATEADD(day, -1, GETDATE())", False),
    ],
)
def test_the_clock_and_randomness_are_never_cached(statement: str, deterministic: bool) -> None:
    assert translate(statement, "master").deterministic is deterministic


def test_temp_tables_are_never_cached(catalog: Catalog) -> None:
    a = session(clone(catalog))
    run(a, "CREATE TABLE #t (n int); INSERT INTO #t SELECT database_id FROM sys.databases")
    assert rows(a, "SELECT COUNT(*) FROM #t") == [(6,)]
    run(a, "INSERT INTO #t SELECT database_id FROM sys.databases")
    assert rows(a, "SELECT COUNT(*) FROM #t") == [(12,)]


def test_writes_the_lab_refuses_change_no_answer(catalog: Catalog) -> None:
    a = session(clone(catalog))
    before = rows(a, DATABASES)
    assert error(run(a, "ALTER DATABASE SalesDB SET RECOVERY SIMPLE")).number == 3906
    assert error(run(a, "UPDATE sys.databases SET recovery_model_desc = N'SIMPLE'")).number == 3906
    assert rows(a, DATABASES) == before


def test_a_cached_answer_is_the_answer_duckdb_gives(catalog: Catalog) -> None:
    """Every query of the gate's SQL Server read, on a clone answered from the cache and on one of a fresh
    catalog that has never seen it: the same result sets."""
    from linkgate.probes import sql_queries as q
    from linkgate.probes.sql import bind

    batch = "\n".join(
        s.strip()
        for s in (
            q.LOGIN, q.PRODUCT, q.MASTER_KEY, q.HADR, q.STARTUP_PARAMETERS, q.AGENT_SERVICE, q.AGENT_XPS,
            q.AGENT_OPERATOR, q.ENDPOINTS, q.START_TIME, q.HOST_INFO, bind(q.DATABASE_STATE, "SalesDB"),
            bind(q.LAST_FULL_BACKUP, "SalesDB", "SalesDB"), bind(q.TDE, "SalesDB"),
            q.in_database("SalesDB", q.XTP_AND_FILESTREAM), q.in_database("SalesDB", q.LOG_FILES),
        )
    )  # fmt: skip
    run(session(clone(catalog)), batch)
    cached = [o for o in run(session(clone(catalog)), batch) if isinstance(o, ResultSet)]
    assert catalog.hits > 0
    spec = clone(catalog).spec
    fresh = [o for o in run(session(SimulatedInstance(spec, catalog=Catalog())), batch) if isinstance(o, ResultSet)]
    assert len(cached) == len(fresh) == 16
    for one, other in zip(cached, fresh, strict=True):
        assert one.columns == other.columns
        assert [_without_names(r) for r in one.rows] == [_without_names(r) for r in other.rows]


def _without_names(row: tuple[object, ...]) -> tuple[object, ...]:
    """A row with the clones' own names blanked (@@VERSION and host names carry them)."""
    return tuple("<clone>" if isinstance(v, str) and v.startswith("clone") else v for v in row)


def test_usage_names_the_columns_a_statement_reads(catalog: Catalog) -> None:
    a = session(clone(catalog))
    t = translate("SELECT COUNT(*) AS log_files FROM sys.database_files WHERE type = 1", "salesdb")
    assert catalog.usage(("test", t.sql), t.sql, {}, {"lg_i": 1}, t.storages) == (
        ("lab.sys_database_files", ("lg_db", "type")),
    )
    star = translate("SELECT * FROM sys.symmetric_keys", "master")
    usage = catalog.usage(("test", star.sql), star.sql, {}, {"lg_i": 1}, star.storages)
    assert usage is not None
    assert len(usage[0][1] or ()) == 1 + len(star.tables[0].table.columns)  # lg_db and every column
    assert rows(a, "SELECT COUNT(*) FROM sys.database_files WHERE type = 1") == [(1,)]  # master's log file


def test_a_statement_runs_with_only_the_columns_it_uses(catalog: Catalog) -> None:
    """Derived tables list the columns the statement reads; `*` keeps them all; the answers do not change."""
    a = session(clone(catalog))
    query = "SELECT d.name, f.type_desc FROM sys.databases d JOIN sys.master_files f ON f.database_id = d.database_id"
    t = translate(query, "master")
    usage = catalog.usage(("test", t.sql), t.sql, {}, {"lg_i": 1}, t.storages)
    assert usage is not None
    narrow = narrowed(t.sql, tuple(ref.table.storage for ref in t.tables), usage)
    assert narrow.count('"recovery_model_desc"') == 0
    assert '"database_id"' in narrow
    assert '"type_desc"' in narrow
    assert len(narrow) < len(t.sql) / 2
    star = translate("SELECT * FROM sys.databases", "master")
    star_usage = catalog.usage(("test", star.sql), star.sql, {}, {"lg_i": 1}, star.storages)
    assert star_usage is not None
    assert narrowed(star.sql, ("lab.sys_databases",), star_usage) == star.sql
    fresh = session(SimulatedInstance(a.instance.spec, catalog=Catalog()))
    assert rows(a, query + " ORDER BY d.name, f.type_desc") == rows(fresh, query + " ORDER BY d.name, f.type_desc")
