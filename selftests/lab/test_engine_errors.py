"""Mistakes and missing permissions fail with SQL Server's own error numbers, states and classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from linkgate.lab.engine import SimulatedInstance
from linkgate.lab.results import Message, Outcome, ResultSet, RowCount, SqlError
from selftests.lab.engine_fixtures import PASSWORD, error, login, result, run, scenario, write_overlay

READER = """extends: healthy
description: a login without VIEW SERVER STATE and without msdb access
instances:
  sql01:
    logins:
      reader:
        password_env: LINKGATE_LAB_PASSWORD
        databases: {SalesDB: [db_datareader]}
"""


@pytest.fixture(scope="module")
def reader(tmp_path_factory: pytest.TempPathFactory) -> SimulatedInstance:
    path = write_overlay(tmp_path_factory.mktemp("overlay"), "reader.yaml", READER)
    return SimulatedInstance(scenario(path).instances["sql01"])


@pytest.mark.parametrize(
    ("sql", "number", "message"),
    [
        ("SELECT nosuch FROM sys.databases", 207, "Invalid column name 'nosuch'."),
        ("SELECT d.recovery_model_dsc FROM sys.databases d", 207, "Invalid column name 'recovery_model_dsc'."),
        ("SELECT * FROM sys.nosuch", 208, "Invalid object name 'sys.nosuch'."),
        ("SELECT * FROM msdb.dbo.backupsett", 208, "Invalid object name 'msdb.dbo.backupsett'."),
        ("SELECT * FROM dbo.backupset", 208, "Invalid object name 'dbo.backupset'."),
        ("SELECT * FROM nodb.sys.tables", 208, "Invalid object name 'nodb.sys.tables'."),
        ("SELECT * FROM lab.sys_databases", 208, "Invalid object name 'lab.sys_databases'."),
        ("SELECT * FROM sys.dm_hadr_fabric_nodes", 208, "Invalid object name 'sys.dm_hadr_fabric_nodes'."),
        ("EXEC sp_nosuch", 2812, "Could not find stored procedure 'sp_nosuch'."),
        ("EXEC nodb.sys.sp_executesql N'SELECT 1'", 2812, "Could not find stored procedure 'nodb.sys.sp_executesql'."),
        ("SELECT FROM WHERE", 102, None),
        ("SELECT NOSUCHFUNC(1)", 195, "'NOSUCHFUNC' is not a recognized built-in function name."),
        ("SELECT read_csv('/etc/passwd')", 195, "'read_csv' is not a recognized built-in function name."),
        ("SELECT getenv('HOME')", 195, "'getenv' is not a recognized built-in function name."),
        ("SELECT @undeclared", 137, 'Must declare the scalar variable "@undeclared".'),
        (
            "SELECT CAST('abc' AS int)",
            245,
            "Conversion failed when converting the varchar value 'abc' to data type int.",
        ),
        ("USE nodb", 911, "Database 'nodb' does not exist. Make sure that the name is entered correctly."),
        ("DBCC CHECKDB", 2526, None),
        ("SET NOSUCHOPTION ON", 195, "'NOSUCHOPTION' is not a recognized SET option."),
        ("CREATE TABLE dbo.t (a int)", 3906, 'Failed to update database "master" because the database is read-only.'),
        ("DROP TABLE #never", 3701, None),
    ],
)
def test_errors_as_sql_server(sql: str, number: int, message: str | None) -> None:
    e = error(run(login(), sql))
    assert e.number == number
    if message is not None:
        assert e.message == message


def test_classes_decide_the_sqlstate() -> None:
    session = login()
    assert error(run(session, "SELECT x FROM sys.databases")).severity == 16
    assert error(run(session, "SELECT FROM")).severity == 15


def numbers_and_rows(outcomes: list[Outcome]) -> list[int | list[tuple[Any, ...]]]:
    """A batch's outcomes as the client sees them in order: each error's number, each result set's rows."""
    return [o.number if isinstance(o, SqlError) else o.rows for o in outcomes if isinstance(o, SqlError | ResultSet)]


def test_deferred_name_resolution_ends_the_batch_at_that_statement() -> None:
    """208: the statements before it ran and their results were sent; nothing after it runs."""
    outcomes = run(login(), "SELECT 1; SELECT * FROM sys.nosuch; SELECT 2;")
    assert numbers_and_rows(outcomes) == [[(1,)], 208]


@pytest.mark.parametrize(
    ("batch", "expected"),
    [
        ("EXEC(N'SELECT 1 AS a; SELECT * FROM sys.nosuch; SELECT 9 AS z'); SELECT 2 AS b", [[(1,)], 208, [(2,)]]),
        ("EXEC (N'SELECT 1 AS a; SELECT nosuch FROM sys.databases'); SELECT 2 AS b", [207, [(2,)]]),
        ("EXEC(N'SELECT FROM WHERE'); SELECT 2 AS b", [102, [(2,)]]),
        ("EXEC sp_executesql N'SELECT * FROM sys.nosuch'; SELECT 2 AS b", [208, [(2,)]]),
        ("EXEC sp_executesql N'SELECT @x AS a; SELECT @nope', N'@x int', 1; SELECT 2 AS b", [[(1,)], 137, [(2,)]]),
        ("EXEC(N'EXEC(N''SELECT * FROM sys.nosuch''); SELECT 3 AS c'); SELECT 2 AS b", [208, [(3,)], [(2,)]]),
    ],
)
def test_a_compile_error_or_208_in_dynamic_sql_ends_only_the_dynamic_sql(batch: str, expected: list[Any]) -> None:
    """Dynamic SQL is its own scope (Sommarskog: scope-abortion): its compile error, or a 208 met when a statement
    is reached, ends it (what it sent before stays sent) and the batch that ran it goes on with the next statement.
    Each level of nesting is a scope of its own."""
    assert numbers_and_rows(run(login(), batch)) == expected


def test_a_dynamic_scope_in_another_database_ends_back_in_the_callers() -> None:
    """EXEC db.sys.sp_executesql whose SQL fails to compile: the error, then the batch goes on in master."""
    outcomes = run(login(), "EXEC SalesDB.sys.sp_executesql N'SELECT 1 AS a; SELECT FROM WHERE'; SELECT DB_NAME()")
    assert numbers_and_rows(outcomes) == [102, [("master",)]]


def test_a_run_time_error_in_dynamic_sql_still_ends_the_whole_batch() -> None:
    """A conversion error (245) is batch-aborting from any depth: nothing after it runs, inside or outside."""
    outcomes = run(login(), "EXEC(N'SELECT 1 AS a; SELECT CAST(''abc'' AS int); SELECT 9 AS z'); SELECT 2 AS b")
    assert numbers_and_rows(outcomes) == [[(1,)], 245]


@pytest.mark.parametrize(
    ("batch", "number"),
    [
        ("SELECT 1 AS a; SELECT nosuch FROM sys.databases; SELECT 2 AS b", 207),
        ("PRINT 'ran'; SELECT d.nosuch FROM sys.databases d", 207),
        ("SELECT 1 AS a; SELECT NOSUCHFUNC(1)", 195),
        ("SELECT 1 AS a; SELECT FROM WHERE", 102),
        ("SELECT 1 AS a; IF 1 = 0 SELECT nosuch FROM sys.databases", 207),
        ("SELECT 1 AS a; IF 1 = 0 BEGIN SELECT 2 AS b; SELECT nosuch FROM sys.databases END", 207),
    ],
)
def test_a_compile_error_fails_the_batch_before_anything_runs(batch: str, number: int) -> None:
    """SQL Server compiles the whole batch first: a missing column, function or a syntax error anywhere in it
    (a branch never taken included) is the batch's only outcome."""
    outcomes = run(login(), batch)
    assert numbers_and_rows(outcomes) == [number]
    assert not [o for o in outcomes if isinstance(o, Message)]


def test_a_compile_error_leaves_the_session_as_it_was() -> None:
    """Nothing ran: the #temp table the batch would have created does not exist, NOCOUNT is still off."""
    session = login()
    outcomes = run(session, "SET NOCOUNT ON; CREATE TABLE #t (a int); SELECT nosuch FROM sys.databases")
    assert numbers_and_rows(outcomes) == [207]
    assert error(run(session, "SELECT a FROM #t")).number == 208
    assert [o for o in run(session, "CREATE TABLE #t (a int)") if isinstance(o, RowCount)] == [RowCount(None)]
    assert [o.count for o in run(session, "INSERT INTO #t VALUES (1)") if isinstance(o, RowCount)] == [1]


def test_what_sql_server_compiles_only_when_reached_fails_there() -> None:
    """Columns of a #temp table created in the batch, and statements after a USE, bind when they run: the
    statements before them have run and sent their results."""
    session = login()
    temp = run(session, "CREATE TABLE #late (a int); SELECT 1 AS x; SELECT nosuch FROM #late")
    assert numbers_and_rows(temp) == [[(1,)], 207]
    used = run(session, "SELECT 1 AS x; USE SalesDB; SELECT nosuch FROM sys.tables")
    assert numbers_and_rows(used) == [[(1,)], 207]


def test_permission_errors_end_the_statement_and_the_batch_runs_on(reader: SimulatedInstance) -> None:
    """229 and 300/297 are statement-terminating: the next statements still run and send their rows."""
    session = reader.login("reader", PASSWORD, None)
    outcomes = run(
        session,
        "SELECT 1 AS a; SELECT * FROM msdb.dbo.backupset; SELECT sqlserver_start_time FROM sys.dm_os_sys_info; "
        "SELECT 2 AS b; SELECT * FROM sys.nosuch; SELECT 3 AS c",
    )
    assert numbers_and_rows(outcomes) == [[(1,)], 229, 300, 297, [(2,)], 208]


def test_view_server_state_denied_is_300_then_297(reader: SimulatedInstance) -> None:
    session = reader.login("reader", PASSWORD, None)
    outcomes = run(session, "SELECT sqlserver_start_time FROM sys.dm_os_sys_info")
    assert [(e.number, e.severity) for e in outcomes if isinstance(e, SqlError)] == [(300, 14), (297, 16)]
    assert error(outcomes).message == "VIEW SERVER STATE permission was denied on object 'server', database 'master'."
    assert error(run(session, "SELECT * FROM sys.dm_server_registry")).number == 300
    assert result(run(session, "SELECT host_platform FROM sys.dm_os_host_info")).rows == [("Linux",)]


def test_own_session_only_without_view_server_state(reader: SimulatedInstance) -> None:
    session = reader.login("reader", PASSWORD, None)
    rows = result(run(session, "SELECT session_id, login_name FROM sys.dm_exec_sessions")).rows
    assert [r[1] for r in rows] == ["reader"]
    everyone = result(run(login(), "SELECT login_name FROM sys.dm_exec_sessions")).rows
    assert ("sa",) in everyone


def test_backupset_without_msdb_access_is_229(reader: SimulatedInstance) -> None:
    session = reader.login("reader", PASSWORD, None)
    e = error(run(session, "SELECT * FROM msdb.dbo.backupset"))
    assert (e.number, e.state, e.severity) == (229, 5, 14)
    assert e.message == "The SELECT permission was denied on the object 'backupset', database 'msdb', schema 'dbo'."


def test_database_without_a_user_is_916(reader: SimulatedInstance) -> None:
    session = reader.login("reader", PASSWORD, None)
    assert error(run(session, "USE InventoryDB")).number == 916
    assert error(run(session, "SELECT * FROM InventoryDB.sys.tables")).number == 916
    assert result(run(session, "SELECT COUNT(*) FROM SalesDB.sys.tables")).rows == [(0,)]
    assert result(
        run(session, "SELECT IS_SRVROLEMEMBER('sysadmin'), HAS_PERMS_BY_NAME(NULL, NULL, 'VIEW SERVER STATE')")
    ).rows == [(0, 0)]


@pytest.mark.parametrize(
    ("user", "password", "state"),
    [
        ("linkgate", "wrong", 8),
        ("nobody", PASSWORD, 5),
        ("LINKGATE", "wrong", 8),
    ],
)
def test_login_failed_18456(user: str, password: str, state: int) -> None:
    instance = SimulatedInstance(scenario().instances["sql01"])
    with pytest.raises(SqlError) as caught:
        instance.login(user, password, None)
    assert (caught.value.number, caught.value.state, caught.value.severity) == (18456, state, 14)
    assert caught.value.message == f"Login failed for user '{user}'."


def test_login_to_a_missing_database_is_4060() -> None:
    instance = SimulatedInstance(scenario().instances["sql01"])
    with pytest.raises(SqlError) as caught:
        instance.login("linkgate", PASSWORD, "NoSuchDB")
    assert caught.value.number == 4060
    assert instance.login("linkgate", PASSWORD, "salesdb").database == "SalesDB"


def test_scenario_password_is_required(tmp_path: Path) -> None:
    assert login().login_name == "linkgate"
