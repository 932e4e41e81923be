"""The engine behind the real TDS server, read by pyodbc through Driver 18 and FreeTDS, as the gate reads it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal

import pyodbc
import pytest

from linkgate.drivers import OdbcDriver, connection_string
from linkgate.lab.engine import SimulatedInstance, writes
from linkgate.lab.tds.server import LabSqlServer
from selftests.lab.engine_fixtures import PASSWORD, scenario, write_overlay

pytestmark = pytest.mark.lab

READER = """extends: healthy
instances:
  sql01:
    logins:
      reader: {password_env: LINKGATE_LAB_PASSWORD}
"""


@pytest.fixture(scope="module")
def served(
    tds_server: LabSqlServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SimulatedInstance, str, int]]:
    overlay = write_overlay(tmp_path_factory.mktemp("overlay"), "reader.yaml", READER)
    instance = SimulatedInstance(scenario(overlay).instances["sql01"])
    host, port = tds_server.add(instance)
    yield instance, host, port
    instance.close()


def connect(
    driver: OdbcDriver, served: tuple[SimulatedInstance, str, int], user: str = "linkgate", database: str = "master"
) -> pyodbc.Connection:
    _, host, port = served
    text = connection_string(
        driver,
        host,
        port,
        user=user,
        password=PASSWORD,
        database=database,
        encrypt="mandatory",
        trust_server_certificate=True,
        login_timeout=5,
    )
    return pyodbc.connect(text, autocommit=True, timeout=5)


def test_product_and_parameterised_recovery_query(
    driver: OdbcDriver, served: tuple[SimulatedInstance, str, int]
) -> None:
    with connect(driver, served) as cnxn:
        cursor = cnxn.cursor()
        row = cursor.execute(
            "SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)), "
            "CAST(SERVERPROPERTY('EngineEdition') AS int), @@VERSION"
        ).fetchone()
        assert (row[0], row[1]) == ("16.0.4135.4", 3)
        assert row[2].startswith("Microsoft SQL Server 2022")
        row = cursor.execute(
            "SELECT d.recovery_model_desc, drs.last_log_backup_lsn FROM sys.databases d "
            "JOIN sys.database_recovery_status drs ON drs.database_id = d.database_id "
            "WHERE d.name = ?",
            "SalesDB",
        ).fetchone()
        assert row[0] == "FULL"
        assert isinstance(row[1], Decimal)


def test_database_context_temp_tables_and_backups(
    driver: OdbcDriver, served: tuple[SimulatedInstance, str, int]
) -> None:
    with connect(driver, served) as cnxn:
        cursor = cnxn.cursor()
        logs = cursor.execute(
            "EXEC [SalesDB].sys.sp_executesql N'SELECT COUNT(*) AS log_files FROM sys.database_files WHERE type = 1;'"
        ).fetchall()
        assert [tuple(r) for r in logs] == [(1,)]
        flags = cursor.execute(
            "SET NOCOUNT ON; CREATE TABLE #tf (TraceFlag int, Status int, Global int, Session int);"
            " INSERT INTO #tf EXEC (N'DBCC TRACESTATUS(-1) WITH NO_INFOMSGS');"
            " SELECT TraceFlag, Global FROM #tf; DROP TABLE #tf;"
        ).fetchall()
        assert sorted(tuple(r) for r in flags) == [(1800, 1), (9567, 1)]
        backup = cursor.execute(
            "SELECT TOP (1) backup_finish_date, has_backup_checksums FROM msdb.dbo.backupset "
            "WHERE database_name = ? AND is_copy_only = 0",
            "SalesDB",
        ).fetchone()
        assert tuple(backup) == (dt.datetime(2025, 11, 2, 23, 10, 5), True)


def test_errors_reach_the_client_with_their_sqlstate(
    driver: OdbcDriver, served: tuple[SimulatedInstance, str, int]
) -> None:
    with connect(driver, served) as cnxn:
        with pytest.raises(pyodbc.Error) as missing:
            cnxn.cursor().execute("SELECT * FROM msdb.dbo.backupsett").fetchall()
        assert missing.value.args[0] == "42S02"
        assert "(208)" in missing.value.args[1]
        with pytest.raises(pyodbc.Error) as column:
            cnxn.cursor().execute("SELECT recovery_model_dsc FROM sys.databases").fetchall()
        assert column.value.args[0] == "42S22"
        assert "(207)" in column.value.args[1]
    with connect(driver, served, user="reader") as cnxn:
        with pytest.raises(pyodbc.Error) as denied:
            cnxn.cursor().execute("SELECT * FROM msdb.dbo.backupset").fetchall()
        assert denied.value.args[0] == "42000"
        assert "(229)" in denied.value.args[1]
        with pytest.raises(pyodbc.Error) as state:
            cnxn.cursor().execute("SELECT sqlserver_start_time FROM sys.dm_os_sys_info").fetchall()
        assert "(300)" in state.value.args[1]


def test_uncast_serverproperty_int_is_a_sql_variant_pyodbc_cannot_read(
    driver: OdbcDriver, served: tuple[SimulatedInstance, str, int]
) -> None:
    """Why the gate CASTs: real SQL Server sends sql_variant, and pyodbc fails on an int-based one."""
    with connect(driver, served) as cnxn, pytest.raises(pyodbc.Error) as caught:
        cnxn.cursor().execute("SELECT SERVERPROPERTY('IsHadrEnabled')").fetchall()
    assert {"HY106", "HY091"} & {str(a) for a in caught.value.args}  # Driver 18: type -16; FreeTDS: descriptor


def test_login_failure_and_the_log_shows_reads_only(
    driver: OdbcDriver, served: tuple[SimulatedInstance, str, int]
) -> None:
    instance, host, port = served
    text = connection_string(
        driver,
        host,
        port,
        user="linkgate",
        password="wrong",
        encrypt="mandatory",
        trust_server_certificate=True,
        login_timeout=5,
    )
    with pytest.raises(pyodbc.Error) as caught:
        pyodbc.connect(text, timeout=5)
    assert "Login failed for user 'linkgate'." in caught.value.args[1]
    assert writes(instance.log()) == []
