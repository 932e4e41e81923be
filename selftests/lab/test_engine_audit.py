"""The statement log and the read-only classifier: how a self-test proves the gate changed nothing."""

from __future__ import annotations

import pytest

from linkgate.lab.engine import SimulatedInstance, classify, writes
from linkgate.probes import sql_queries
from selftests.lab.engine_fixtures import PASSWORD, scenario

GATE_STATEMENTS = [v for k, v in vars(sql_queries).items() if k.isupper() and isinstance(v, str)]


@pytest.mark.parametrize(
    "text",
    [
        "SELECT 1",
        "SET NOCOUNT ON; SELECT name FROM sys.databases",
        "USE msdb",
        "DBCC TRACESTATUS(-1) WITH NO_INFOMSGS",
        "SET NOCOUNT ON;\nCREATE TABLE #tf (TraceFlag int, Status int, Global int, Session int);\n"
        "INSERT INTO #tf EXEC (N'DBCC TRACESTATUS(-1) WITH NO_INFOMSGS');\nSELECT * FROM #tf;\nDROP TABLE #tf;",
        "EXEC msdb.sys.sp_executesql N'SELECT IS_ROLEMEMBER(N''SQLAgentOperatorRole'')'",
        "DECLARE @x sql_variant = (SELECT SERVERPROPERTY('IsHadrEnabled')) SELECT @x",
        "IF OBJECT_ID('tempdb..#t') IS NOT NULL DROP TABLE #t",
        "sp_datatype_info_100 12,3",
        *GATE_STATEMENTS,
    ],
)
def test_read_only(text: str) -> None:
    assert classify(text) == "read"


@pytest.mark.parametrize(
    "text",
    [
        "CREATE ENDPOINT TEST_ENDPOINT STATE=STARTED AS TCP (LISTENER_PORT=5022) FOR DATABASE_MIRRORING (ROLE=ALL)",
        "CREATE CERTIFICATE TEST_CERT WITH SUBJECT = 'x'",
        "ALTER DATABASE [SalesDB] SET RECOVERY FULL",
        "BACKUP DATABASE [SalesDB] TO DISK = N'/tmp/x.bak' WITH CHECKSUM",
        "INSERT INTO dbo.t VALUES (1)",
        "SELECT 1; DROP TABLE dbo.t",
        "EXEC msdb.dbo.sp_add_job @job_name = N'NetHelper'",
        "EXEC sp_executesql N'DROP ENDPOINT TEST_ENDPOINT'",
        "EXEC (N'CREATE LOGIN x WITH PASSWORD = ''y''')",
        "DBCC TRACEON(1800, -1)",
        "GRANT VIEW SERVER STATE TO [x]",
        "IF 1 = 1 BEGIN SELECT 1; DELETE FROM dbo.t; END",
        "SELECT name INTO dbo.copy FROM sys.databases",
        "this is not sql at all (",
    ],
)
def test_state_changing(text: str) -> None:
    assert classify(text) == "write"


def test_the_log_records_every_batch_and_procedure_call_and_writes_finds_the_changes() -> None:
    instance = SimulatedInstance(scenario().instances["sql01"])
    session = instance.login("linkgate", PASSWORD, None)
    session.execute("SELECT 1")
    session.execute("SELECT name FROM sys.databases WHERE name = @P1", {"P1": "SalesDB"})
    session.call_procedure("sp_executesql", [("", "SELECT 2")])
    session.call_procedure("sp_executesql", [("", "ALTER DATABASE SalesDB SET RECOVERY SIMPLE")])
    session.execute("CREATE TABLE dbo.t (a int)")
    log = instance.log()
    assert [(e.kind, e.text, e.login, e.database) for e in log] == [
        ("batch", "SELECT 1", "linkgate", "master"),
        ("rpc", "SELECT name FROM sys.databases WHERE name = @P1", "linkgate", "master"),
        ("proc", "sp_executesql", "linkgate", "master"),
        ("proc", "sp_executesql", "linkgate", "master"),
        ("batch", "CREATE TABLE dbo.t (a int)", "linkgate", "master"),
    ]
    assert log[1].params == {"P1": "SalesDB"}
    assert [e.text for e in writes(log)] == ["sp_executesql", "CREATE TABLE dbo.t (a int)"]
