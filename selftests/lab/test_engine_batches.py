"""Batches as clients send them: several statements, semicolons optional, blocks, procedures, #temp tables."""

from __future__ import annotations

from linkgate.lab.engine.batch import Block, IfStatement, Statement, split_batch
from linkgate.lab.results import Message, ReturnStatus, RowCount, SqlType
from selftests.lab.engine_fixtures import error, login, result, results, run, shape


def test_split_without_semicolons_keeps_union_insert_select_and_table_hints() -> None:
    nodes = split_batch(
        "SET NOCOUNT ON SELECT 1 UNION SELECT 2\nINSERT INTO #t SELECT a FROM t WITH (NOLOCK)\n"
        "DBCC TRACESTATUS(-1) WITH NO_INFOMSGS"
    )
    assert [n.text for n in nodes if isinstance(n, Statement)] == [
        "SET NOCOUNT ON",
        "SELECT 1 UNION SELECT 2",
        "INSERT INTO #t SELECT a FROM t WITH (NOLOCK)",
        "DBCC TRACESTATUS(-1) WITH NO_INFOMSGS",
    ]


def test_split_if_else_and_blocks() -> None:
    (node,) = split_batch("IF EXISTS (SELECT 1) BEGIN SELECT 1; SELECT 2; END ELSE SELECT 3")
    assert isinstance(node, IfStatement)
    assert node.condition == "EXISTS (SELECT 1)"
    assert isinstance(node.then, Block)
    assert len(node.then.body) == 2
    assert isinstance(node.otherwise, Statement)
    assert node.otherwise.text == "SELECT 3"


def test_if_runs_the_branch_its_condition_selects() -> None:
    session = login()
    batch = (
        "IF OBJECT_ID('tempdb..#probe') IS NOT NULL DROP TABLE #probe;\n"
        "IF CAST(SERVERPROPERTY('IsHadrEnabled') AS int) = 1 SELECT 'on' AS hadr ELSE SELECT 'off' AS hadr"
    )
    assert result(run(session, batch)).rows == [("on",)]


def test_print_and_transactions() -> None:
    outcomes = run(login(), "BEGIN TRAN; PRINT 'hello ' + @@SERVERNAME; COMMIT")
    assert Message(0, "hello sql01") in outcomes
    assert not any(isinstance(o, Exception) for o in outcomes)


def test_dbcc_tracestatus_forms() -> None:
    session = login(scenario_name="sql-tf9567-missing")
    everything = run(session, "DBCC TRACESTATUS")
    assert result(everything).rows == [(1800, 1, 1, 0)]
    assert everything[-1] == Message(
        2528,
        "DBCC execution completed. If DBCC printed error messages, contact your system administrator.",
        severity=10,
    )
    asked = result(run(session, "DBCC TRACESTATUS(1800, 9567) WITH NO_INFOMSGS"))
    assert asked.rows == [(1800, 1, 1, 0), (9567, 0, 0, 0)]


def test_temp_tables_are_per_session() -> None:
    first, second = login(), login()
    run(first, "CREATE TABLE #mine (a int, b nvarchar(10)); INSERT INTO #mine VALUES (1, N'x')")
    rs = result(run(first, "SELECT a, b FROM #mine"))
    assert shape(rs) == [("a", SqlType.INT, None), ("b", SqlType.NVARCHAR, 10)]
    assert rs.rows == [(1, "x")]
    assert error(run(second, "SELECT a FROM #mine")).number == 208
    assert error(run(first, "CREATE TABLE #mine (a int)")).number == 2714
    assert run(first, "DROP TABLE #mine") == [RowCount(None)]


def test_nocount_hides_row_counts() -> None:
    session = login()
    counted = run(session, "CREATE TABLE #c (a int); INSERT INTO #c VALUES (1), (2)")
    assert counted[-1] == RowCount(2)
    quiet = run(session, "SET NOCOUNT ON; INSERT INTO #c VALUES (3)")
    assert quiet[-1] == RowCount(None)


def test_sp_executesql_by_name_with_declared_parameters() -> None:
    session = login()
    outcomes = session.call_procedure(
        "sp_executesql", [("", "SELECT name FROM sys.databases WHERE database_id = @id"), ("", "@id int"), ("", 5)]
    )
    assert result(outcomes).rows == [("SalesDB",)]
    assert outcomes[-1] == ReturnStatus(0)
    named = session.call_procedure(
        "[sys].[sp_executesql]",
        [("@stmt", "SELECT @a + @b AS s"), ("@params", "@a int, @b int"), ("@b", 2), ("@a", 40)],
    )
    assert result(named).rows == [(42,)]


def test_sp_executesql_in_another_database_then_back() -> None:
    session = login()
    outcomes = session.call_procedure("InventoryDB.sys.sp_executesql", [("", "SELECT DB_NAME() AS db")])
    assert result(outcomes).rows == [("InventoryDB",)]
    assert session.database == "master"


def test_dynamic_exec_batch() -> None:
    assert result(run(login(), "EXEC (N'SELECT ''dynamic'' AS x')")).rows == [("dynamic",)]


def test_driver_catalog_procedures() -> None:
    session = login()
    by_rpc = result(session.call_procedure("[sys].sp_datatype_info_100", [("@ODBCVer", 4)]))
    assert [c.name for c in by_rpc.columns][:3] == ["TYPE_NAME", "DATA_TYPE", "PRECISION"]
    assert {"nvarchar", "int", "datetime", "sql_variant"} <= {r[0] for r in by_rpc.rows}
    freetds_batch = result(run(session, "sp_datatype_info_100 12,3"))
    assert {r[0] for r in freetds_batch.rows} == {"varchar"}
    described = result(
        session.call_procedure(
            "sp_describe_undeclared_parameters",
            [("@tsql", "SELECT name FROM sys.databases WHERE name = @P1 AND database_id > @P2"), ("@params", None)],
        )
    )
    assert [(r[0], r[1], r[3]) for r in described.rows] == [(1, "@P1", "nvarchar(4000)"), (2, "@P2", "nvarchar(4000)")]


def test_unknown_procedure_by_rpc_is_2812() -> None:
    assert error(login().call_procedure("sp_who_knows", [])).number == 2812


def test_parameters_bind_as_the_drivers_send_them() -> None:
    rs = result(run(login(), "SELECT name FROM sys.databases WHERE name = @P1 OR database_id = @P2", P1="msdb", P2=5))
    assert sorted(rs.rows) == [("SalesDB",), ("msdb",)]


def test_statements_after_set_options_and_lock_timeout() -> None:
    outcomes = run(login(), "SET LOCK_TIMEOUT 5000; SET ANSI_NULLS ON; SELECT @@LOCK_TIMEOUT AS t")
    assert results(outcomes)[0].rows == [(5000,)]
