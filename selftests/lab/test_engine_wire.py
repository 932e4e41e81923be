"""The engine behind the real TDS server, read by pyodbc through Driver 18 and FreeTDS, as the gate reads it."""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Iterator
from dataclasses import dataclass, fields, is_dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyodbc
import pytest

from linkgate.drivers import OdbcDriver, connection_string, find_drivers
from linkgate.environment import Auth, Connection, Encrypt, Timeouts
from linkgate.lab.engine import SimulatedInstance, writes
from linkgate.lab.results import ResultSet
from linkgate.lab.tds.server import LabSqlServer
from linkgate.probes import sql_queries as q
from linkgate.probes.facts import Fact
from linkgate.probes.odbc import OdbcSession, QueryFailed, Rows
from linkgate.probes.sql import bind, read_managed_instance, read_sql_server
from selftests.lab.engine_fixtures import PASSWORD, PASSWORD_VARIABLE, lab_password, scenario, write_overlay
from selftests.lab.relay import (
    COLMETADATA,
    DONE,
    DONE_COUNT,
    DONE_ERROR,
    DONE_MORE,
    ERROR,
    ROW,
    Relay,
    Tok,
    answer_to,
    read_tokens,
    tds_messages,
)

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


def test_catalog_functions_of_a_column_read_row_by_row_through_the_driver(
    driver: OdbcDriver, served: tuple[SimulatedInstance, str, int]
) -> None:
    """DB_NAME(database_id) and DB_ID(name) over many rows, as a DBA's query writes them: each row gets its own
    database, the same one a join to sys.databases gives."""
    with connect(driver, served) as cnxn:
        cursor = cnxn.cursor()
        named = cursor.execute(
            "SELECT DB_NAME(database_id), physical_name FROM sys.master_files ORDER BY physical_name"
        ).fetchall()
        joined = cursor.execute(
            "SELECT d.name, f.physical_name FROM sys.master_files f "
            "JOIN sys.databases d ON d.database_id = f.database_id ORDER BY f.physical_name"
        ).fetchall()
        assert [tuple(r) for r in named] == [tuple(r) for r in joined]
        assert {"master", "SalesDB"} <= {r[0] for r in named}
        ids = cursor.execute("SELECT DB_ID(name), database_id FROM sys.databases WHERE name = ?", "SalesDB").fetchall()
        assert [tuple(r) for r in ids] == [(5, 5)]


def gate_connection(driver: OdbcDriver, host: str, port: int, user: str) -> Connection:
    """How an environment file would declare this simulated instance (Encrypt=mandatory, the lab's certificate
    trusted), for the gate's own OdbcSession."""
    return Connection(
        server=host,
        port=port,
        auth=Auth.SQL,
        user=user,
        password_env=PASSWORD_VARIABLE,
        driver=driver.kind,
        encrypt=Encrypt.MANDATORY,
        trust_server_certificate=True,
        server_certificate=None,
        host_name_in_certificate=None,
    )


def test_a_permission_error_mid_batch_through_the_driver_and_the_gates_query_batch(
    driver: OdbcDriver, served: tuple[SimulatedInstance, str, int]
) -> None:
    """The lab runs on after a 229 and sends the next result set, as SQL Server does (on the wire:
    test_a_statement_error_the_batch_runs_on_after_goes_out_as_sql_server_sends_it); pyodbc raises the
    229 at nextset() through either driver and then drops the batch's later result sets (a failed
    SQLMoreResults makes it free the statement), so query_batch re-runs what it had not read, one by one:
    each statement still gets its own rows or its own error."""
    instance, host, port = served
    statements = ("SELECT 1 AS a", "SELECT backup_set_id FROM msdb.dbo.backupset", "SELECT 2 AS b")
    with connect(driver, served, user="reader") as cnxn:
        cursor = cnxn.cursor()
        cursor.execute("\n".join(statements))
        assert [tuple(r) for r in cursor.fetchall()] == [(1,)]
        with pytest.raises(pyodbc.Error) as denied:
            cursor.nextset()
        assert "(229)" in denied.value.args[1]
        assert not cursor.nextset()  # sent (see the relay test), but pyodbc freed the statement
    conn = gate_connection(driver, host, port, "reader")
    session = OdbcSession("lab/sql01", conn, Timeouts(connect=5, query=10))
    try:
        with lab_password():
            first, second, third = session.query_batch(statements)
    finally:
        session.close()
    assert isinstance(first, Rows)
    assert first.rows == [(1,)]
    assert isinstance(second, QueryFailed)
    assert "(229)" in str(second)
    assert isinstance(third, Rows)
    assert third.rows == [(2,)]
    assert session.round_trips == 3
    assert [e.text for e in instance.log()[-2:]] == list(statements[1:])


RAN_ON_AFTER = {
    "denied": ("SELECT 1 AS a; SELECT backup_set_id FROM msdb.dbo.backupset; SELECT 2 AS b", 229, "42000"),
    "dynamic": ("EXEC(N'SELECT 1 AS a; SELECT * FROM sys.nosuch; SELECT 9 AS z'); SELECT 2 AS b", 208, "42S02"),
}
"""A batch that runs on after a statement error: a 229 (statement-terminating), and a 208 inside dynamic SQL
(it ends only the dynamic SQL, not the batch that ran it: `SELECT 9` never runs, `SELECT 2` does)."""


def _sent_through_a_relay(freetds: OdbcDriver, served: tuple[SimulatedInstance, str, int], sql: str) -> list[Tok]:
    """Run `sql` as reader through FreeTDS with Encryption=off via a relay; the tokens of the lab's answer."""
    _, host, port = served
    relay = Relay((host, port))
    text = connection_string(
        freetds, "127.0.0.1", relay.port, user="reader", password=PASSWORD, encrypt="off", login_timeout=5
    )
    cnxn = pyodbc.connect(text, autocommit=True, timeout=5)
    cursor = cnxn.cursor().execute(sql)
    assert [tuple(r) for r in cursor.fetchall()] == [(1,)]
    with pytest.raises(pyodbc.Error):
        cursor.nextset()
    cnxn.close()
    relay.join()
    return read_tokens(answer_to(tds_messages(bytes(relay.sent)), tds_messages(bytes(relay.received)), sql))


@pytest.mark.parametrize("case", list(RAN_ON_AFTER))
def test_a_statement_error_the_batch_runs_on_after_goes_out_as_sql_server_sends_it(
    freetds: OdbcDriver, served: tuple[SimulatedInstance, str, int], case: str
) -> None:
    """Read on the wire: the first result set, the ERROR, a DONE with DONE_ERROR | DONE_MORE (MS-TDS 2.2.7.6),
    then the second result set and the final DONE with its own status: DONE_COUNT, one row, nothing more."""
    sql, number, _ = RAN_ON_AFTER[case]
    assert _sent_through_a_relay(freetds, served, sql) == [
        Tok(COLMETADATA, count=1),
        Tok(ROW, values=(1,)),
        Tok(DONE, status=DONE_COUNT | DONE_MORE, curcmd=0xC1, count=1),
        Tok(ERROR, number=number),
        Tok(DONE, status=DONE_ERROR | DONE_MORE),
        Tok(COLMETADATA, count=1),
        Tok(ROW, values=(2,)),
        Tok(DONE, status=DONE_COUNT, curcmd=0xC1, count=1),
    ]


@pytest.mark.parametrize("case", list(RAN_ON_AFTER))
def test_after_a_statement_error_pyodbc_gives_the_rows_before_it_then_the_error_at_nextset(
    driver: OdbcDriver, served: tuple[SimulatedInstance, str, int], case: str
) -> None:
    """Through both drivers: the first set's rows, then nextset() raises the error with its SQLSTATE. The second
    set was sent (the relay test), yet neither driver's pyodbc cursor gives it: pyodbc frees the statement when
    SQLMoreResults fails, so nextset() is False from then on. The connection stays usable."""
    sql, number, state = RAN_ON_AFTER[case]
    with connect(driver, served, user="reader") as cnxn:
        cursor = cnxn.cursor().execute(sql)
        assert [tuple(r) for r in cursor.fetchall()] == [(1,)]
        with pytest.raises(pyodbc.Error) as caught:
            cursor.nextset()
        assert caught.value.args[0] == state
        assert f"({number})" in caught.value.args[1]
        assert not cursor.nextset()
        assert cnxn.cursor().execute("SELECT 7").fetchone()[0] == 7


def test_a_compile_error_fails_the_whole_batch_at_execute(
    driver: OdbcDriver, served: tuple[SimulatedInstance, str, int]
) -> None:
    """A missing column anywhere in the batch: execute() itself raises 207, no result set comes first."""
    with connect(driver, served) as cnxn:
        with pytest.raises(pyodbc.Error) as column:
            cnxn.cursor().execute("SELECT 1 AS a; SELECT nosuch FROM sys.databases")
        assert column.value.args[0] == "42S22"
        assert "(207)" in column.value.args[1]


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
        assert FIRST_OF_300_AND_297[driver.kind] in state.value.args[1]


FIRST_OF_300_AND_297 = {"msodbc18": "(300)", "freetds": "(297)"}
"""Both errors of a server DMV read without VIEW SERVER STATE go out, 300 then 297, in one statement; pyodbc
shows the first diagnostic record only: Driver 18's is the 300, FreeTDS's the 297 (measured here)."""


# What each driver does with a bare SERVERPROPERTY (sql_variant), measured here and as tds-driver-notes.md §7 found:
# (pyodbc error class, args) for the int-based IsHadrEnabled, and the nvarchar-based ProductVersion's outcome.
BARE_SERVERPROPERTY = {
    "msodbc18": (
        pyodbc.ProgrammingError,
        ("ODBC SQL type -16 is not yet supported.  column-index=0  type=-16", "HY106"),
        "16.0.4135.4",
    ),
    "freetds": (
        pyodbc.Error,
        ("HY091", "[HY091] [FreeTDS][SQL Server]Descriptor type out of range (0) (SQLColAttribute)"),
        None,
    ),  # FreeTDS cannot describe any sql_variant column: the text one fails the same way
}


def test_uncast_serverproperty_is_a_sql_variant_and_cast_reads_it(
    driver: OdbcDriver, served: tuple[SimulatedInstance, str, int]
) -> None:
    """Why the gate CASTs: real SQL Server sends sql_variant, and pyodbc fails on an int-based one with each driver
    (Driver 18: pyodbc has no converter for the variant's SQL_C_SLONG; FreeTDS: no descriptor for the type)."""
    error_class, args, text_value = BARE_SERVERPROPERTY[driver.kind]
    with connect(driver, served) as cnxn:
        cursor = cnxn.cursor()
        with pytest.raises(pyodbc.Error) as caught:
            cursor.execute("SELECT SERVERPROPERTY('IsHadrEnabled')").fetchall()
        assert type(caught.value) is error_class
        assert caught.value.args == args
        cursor = cnxn.cursor()  # the connection survives; CAST makes the same property an int column
        assert cursor.execute("SELECT CAST(SERVERPROPERTY('IsHadrEnabled') AS int)").fetchall()[0][0] == 1
        assert cursor.execute(q.HADR).fetchall()[0][0] == 1  # and so does the gate's own statement
        if text_value is None:
            with pytest.raises(pyodbc.Error) as text_error:
                cnxn.cursor().execute("SELECT SERVERPROPERTY('ProductVersion')").fetchall()
            assert text_error.value.args == args
        else:
            assert cnxn.cursor().execute("SELECT SERVERPROPERTY('ProductVersion')").fetchone()[0] == text_value


# (pyodbc error class, SQLSTATE) of a failed login per driver; the number is SQL Server's 18456 either way.
LOGIN_FAILED = {"msodbc18": (pyodbc.InterfaceError, "28000"), "freetds": (pyodbc.ProgrammingError, "42000")}


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
    error_class, state = LOGIN_FAILED[driver.kind]
    assert type(caught.value) is error_class
    assert caught.value.args[0] == state
    assert caught.value.args[1].endswith("[SQL Server]Login failed for user 'linkgate'. (18456) (SQLDriverConnect)")
    assert writes(instance.log()) == []


# --- the gate's own statements, through each driver ------------------------------------------------------------------
#
# Every constant of linkgate.probes.sql_queries, found by iterating the module (so one added later is picked up and
# fails here until it has an expected answer), run as the gate runs it against the instance it targets, through each
# ODBC driver, with at least one scenario whose answer is not empty.

EXTRAS = """extends: healthy
instances:
  sql01:
    wsfc: {cluster_name: WSFC01, members: [SQLNODE1, SQLNODE2], quorum_type: NODE_AND_FILE_SHARE_MAJORITY}
    databases:
      SalesDB: {filetables: 2}
"""


@dataclass(frozen=True)
class Answer:
    """What one gate statement returns on one scenario's instance: `rows` over `columns`, compared as a sorted list."""

    instance: str
    rows: list[tuple[Any, ...]]
    columns: tuple[str, ...] | None = None  # None: every column, in order
    scenario: str = "healthy"  # a built-in scenario, or "extras": healthy with the EXTRAS overlay
    database: str | None = None  # binds each `?`; with `in_database`, also the context (q.in_database)
    in_database: bool = False


SALES_GUID = "6F1C2B0E-3C4D-4A8E-9A51-0D3C1B7E5A10"  # pyodbc returns a uniqueidentifier as text
INVENTORY_GUID = "2B7E9D44-8A1F-4C36-B0D2-5E9F7A6C3D21"
PRODUCT_COLUMNS = (
    "product_version",
    "product_level",
    "product_update_level",
    "kb",
    "edition",
    "engine_edition",
    "collation",
    "product_update_type",
)
WINDOWS_DATA = "C:\\Program Files\\Microsoft SQL Server\\MSSQL16.MSSQLSERVER\\MSSQL\\"
TDE_COLUMNS = ("name", "encryption_state", "encryptor_type", "certificate_name", "expiry_date")
ANSWERS: dict[str, tuple[Answer, ...]] = {
    "LOGIN": (
        Answer("sql01", [(1, "linkgate")]),
        Answer("mi01", [(1, "linkgate")]),
        Answer("sql01", [(0, "linkgate")], scenario="sql-not-sysadmin"),
    ),
    "PRODUCT": (
        Answer(
            "sql01",
            [
                (
                    "16.0.4135.4",
                    "RTM",
                    "CU14",
                    "KB5038325",
                    "Developer Edition (64-bit)",
                    3,
                    "SQL_Latin1_General_CP1_CI_AS",
                    None,
                )
            ],
            PRODUCT_COLUMNS,
        ),
        Answer(
            "mi01",
            [("12.0.2000.8", "RTM", None, None, "SQL Azure", 8, "SQL_Latin1_General_CP1_CI_AS", "CU")],
            PRODUCT_COLUMNS,
        ),
    ),
    "HOST_INFO": (
        Answer("sql01", [("Linux", "Ubuntu", "22.04")]),
        Answer("sql01", [("Windows", "Windows 10 Pro", "10.0")], scenario="sql-windows-10-host"),
    ),
    "MASTER_KEY": (
        Answer("sql01", [("##MS_DatabaseMasterKey##", 101)], ("name", "symmetric_key_id")),
        Answer("sql01", [], scenario="sql-no-master-key"),
    ),
    "HADR": (Answer("sql01", [(1, 1)]), Answer("sql01", [(0, 0)], scenario="sql-hadr-disabled")),
    "TRACE_FLAGS": (
        Answer("sql01", [(1800, 1, 1, 0), (9567, 1, 1, 0)]),
        Answer("sql01", [(1800, 1, 1, 0)], scenario="sql-tf9567-missing"),
    ),
    "STARTUP_PARAMETERS": (
        Answer(
            "sql01",
            [
                (f"-{o}{WINDOWS_DATA}{f}",)
                for o, f in (("d", "DATA\\master.mdf"), ("e", "Log\\ERRORLOG"), ("l", "DATA\\mastlog.ldf"))
            ]
            + [("-T1800",), ("-T9567",)],
            ("value_data",),
            scenario="sql-windows-10-host",
        ),
        Answer("sql01", []),  # on Linux the registry view shows no SQLArg values
    ),
    "AGENT_SERVICE": (
        Answer("sql01", [("SQL Server Agent (MSSQLSERVER)", "Automatic", "Running")]),
        Answer("sql01", [("Stopped",)], ("status_desc",), scenario="sql-agent-stopped"),
    ),
    "AGENT_XPS": (Answer("sql01", [(1,)]), Answer("sql01", [(0,)], scenario="sql-agent-stopped")),
    "AGENT_OPERATOR": (
        Answer("sql01", [(0,)]),
        Answer("sql01", [(1,)], scenario="sql-not-sysadmin"),
        Answer("mi01", [(0,)]),
    ),
    "ENDPOINTS": (
        Answer(
            "sql01",
            [
                (
                    "Hadr_endpoint",
                    "DATABASE_MIRRORING",
                    "STARTED",
                    "ALL",
                    "CERTIFICATE",
                    True,
                    "RC4",
                    5022,
                    None,
                    "LinkEndpointCert",
                    dt.datetime(2030, 6, 30),
                )
            ],
            scenario="sql-endpoint-rc4",
        ),
        Answer("sql01", []),
    ),
    "WSFC_CLUSTER": (
        Answer("sql01", [("WSFC01", "NODE_AND_FILE_SHARE_MAJORITY", "NORMAL_QUORUM")], scenario="extras"),
        Answer("sql01", [], scenario="sql-2016-without-wsfc"),
    ),
    "WSFC_MEMBERS": (
        Answer("sql01", [("SQLNODE1", "CLUSTER_NODE", "UP"), ("SQLNODE2", "CLUSTER_NODE", "UP")], scenario="extras"),
    ),
    "WSFC_SYSTEM_GRANTS": (
        Answer(
            "sql01",
            [("ALTER ANY AVAILABILITY GROUP", "GRANT"), ("CONNECT SQL", "GRANT"), ("VIEW SERVER STATE", "GRANT")],
        ),
    ),
    "START_TIME": (Answer("sql01", [(dt.datetime(2025, 11, 3, 6, 12, 41),)]),),
    "DATABASE_STATE": (
        Answer(
            "sql01",
            [("SalesDB", "FULL", "ONLINE", SALES_GUID, True)],
            ("name", "recovery_model_desc", "state_desc", "database_guid", "is_broker_enabled"),
            database="SalesDB",
        ),
        Answer(
            "sql01",
            [("InventoryDB", "FULL", INVENTORY_GUID)],
            ("name", "recovery_model_desc", "database_guid"),
            database="InventoryDB",
        ),
        Answer(
            "sql01",
            [("SIMPLE", None)],
            ("recovery_model_desc", "last_log_backup_lsn"),
            database="SalesDB",
            scenario="sql-db-simple-recovery",
        ),
    ),
    "ACCELERATED_RECOVERY": (
        Answer("sql01", [("SalesDB", True)], database="SalesDB"),
        Answer("sql01", [("SalesDB", False)], database="SalesDB", scenario="sql-db-adr-off"),
    ),
    "LOG_FILE_PATHS": (
        Answer("sql01", [("SalesDB", "/var/opt/mssql/data/SalesDB_log.ldf")], database="SalesDB"),
        Answer(
            "sql01",
            [("SalesDB", "/var/opt/mssql/data/SalesDB_log.ldf"), ("SalesDB", "/var/opt/mssql/data/SalesDB_log_2.ldf")],
            database="SalesDB",
            scenario="sql-db-two-log-files",
        ),
    ),
    "SERVER_MACHINE": (Answer("sql01", [("sql01",)]), Answer("mi01", [("DB123",)])),
    "LAST_FULL_BACKUP": (
        Answer(
            "sql01",
            [(dt.datetime(2025, 11, 2, 23, 10, 5), "FULL", False, True)],
            ("backup_finish_date", "recovery_model", "is_copy_only", "has_backup_checksums"),
            database="SalesDB",
        ),
        Answer("sql01", [], database="SalesDB", scenario="sql-db-copy-only-backups"),
    ),
    "TDE": (
        Answer(
            "sql01",
            [("SalesDB", 3, "CERTIFICATE", "TDECert", dt.datetime(2024, 6, 30))],
            TDE_COLUMNS,
            database="SalesDB",
            scenario="sql-db-tde-expired-certificate",
        ),
        Answer("sql01", [], database="SalesDB"),
    ),
    "XTP_AND_FILESTREAM": (
        Answer(
            "sql01",
            [("FX", "MEMORY_OPTIMIZED_DATA_FILEGROUP", 2)],
            database="SalesDB",
            in_database=True,
            scenario="sql-db-two-xtp-containers",
        ),
        Answer(
            "sql01",
            [("FD", "FILESTREAM_DATA_FILEGROUP", 1)],
            database="SalesDB",
            in_database=True,
            scenario="sql-db-filestream",
        ),
    ),
    "LOG_FILES": (
        Answer("sql01", [(2,)], database="SalesDB", in_database=True, scenario="sql-db-two-log-files"),
        Answer("sql01", [(1,)], database="SalesDB", in_database=True),
    ),
    "FILETABLES": (
        Answer("sql01", [(2,)], database="SalesDB", in_database=True, scenario="extras"),
        Answer("sql01", [(0,)], database="SalesDB", in_database=True),
    ),
    "MEMORY_OPTIMIZED_TABLES": (
        Answer("sql01", [(1,)], database="SalesDB", in_database=True, scenario="sql-db-two-xtp-containers"),
    ),
    "AVAILABILITY_GROUPS": (
        Answer("sql01", [("AG_Sales", 2)], database="SalesDB", scenario="sql-db-multi-database-ag"),
        Answer("sql01", [], database="SalesDB"),
    ),
    "FABRIC_PARAMETERS": (
        Answer(
            "mi01",
            [
                ("ClusterName", "Network", "tr123456.west-us.worker.database.windows.net"),
                ("DnsRecordName", "Network", "mi01.a1b2c3d4e5f6.database.windows.net"),
                ("HadrPort", "SQL", "11002"),
                ("InstanceName", "SQL", "a1b2c3d4e5f6"),
            ],
        ),
    ),
    "FABRIC_PRIMARY": (Answer("mi01", [("DB123", "fabric:/Worker.CL/ManagedServer/a1b2c3d4e5f6")]),),
}


def gate_statements() -> list[str]:
    """The names of every statement constant of linkgate.probes.sql_queries, read from the module each run."""
    return sorted(k for k, v in vars(q).items() if k.isupper() and isinstance(v, str))


class Lab:
    """Scenario instances served on the session's TDS server, with one connection per (scenario, instance, driver)."""

    def __init__(self, server: LabSqlServer, overlay_dir: Path) -> None:
        self.server = server
        self.overlay = write_overlay(overlay_dir, "extras.yaml", EXTRAS)
        self.served: dict[tuple[str, str], tuple[SimulatedInstance, str, int]] = {}
        self.connections: dict[tuple[str, str, str], pyodbc.Connection] = {}

    def instance(self, scenario_name: str, name: str) -> tuple[SimulatedInstance, str, int]:
        key = (scenario_name, name)
        if key not in self.served:
            source = self.overlay if scenario_name == "extras" else scenario_name
            instance = SimulatedInstance(scenario(source).instances[name])
            self.served[key] = (instance, *self.server.add(instance))
        return self.served[key]

    def connect(self, driver: OdbcDriver, scenario_name: str, name: str) -> pyodbc.Connection:
        key = (scenario_name, name, driver.kind)
        if key not in self.connections:
            self.connections[key] = connect(driver, self.instance(scenario_name, name))
        return self.connections[key]

    def close(self) -> None:
        for cnxn in self.connections.values():
            cnxn.close()
        for instance, _, _ in self.served.values():
            instance.close()


@pytest.fixture(scope="module")
def lab(tds_server: LabSqlServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    served = Lab(tds_server, tmp_path_factory.mktemp("extras"))
    yield served
    served.close()


def fetch(cnxn: pyodbc.Connection, sql: str, params: tuple[str, ...] = ()) -> tuple[tuple[str, ...], list[Any]]:
    """(column names, rows) of the first result set, as OdbcSession.query reads it."""
    cursor = cnxn.cursor()
    cursor.execute(sql, *params) if params else cursor.execute(sql)
    while cursor.description is None and cursor.nextset():
        pass
    assert cursor.description is not None, f"no result set for {sql!r}"
    columns = tuple(d[0] for d in cursor.description)
    rows = [tuple(r) for r in cursor.fetchall()]
    cursor.close()
    return columns, rows


def projected(columns: tuple[str, ...], rows: list[Any], wanted: tuple[str, ...] | None) -> list[tuple[Any, ...]]:
    if wanted is None:
        return sorted(rows, key=repr)
    index = [columns.index(c) for c in wanted]
    return sorted((tuple(r[i] for i in index) for r in rows), key=repr)


# Statements the lab answers wrongly today, each with the reason; strict, so a fix turns them into failures to remove.
# (LOG_FILE_PATHS was one while it used DB_NAME(database_id): the engine still fails on DB_NAME(<column>).)
LAB_BUGS: dict[str, str] = {}


def statement_params() -> list[Any]:
    """gate_statements(), each known lab bug marked as a strict xfail that must fail with the lab's error."""
    return [
        pytest.param(n, marks=pytest.mark.xfail(reason=LAB_BUGS[n], raises=pyodbc.ProgrammingError, strict=True))
        if n in LAB_BUGS
        else n
        for n in gate_statements()
    ]


@pytest.mark.parametrize("name", statement_params())
def test_every_gate_statement_gives_the_scenarios_answer(driver: OdbcDriver, lab: Lab, name: str) -> None:
    """The statement text the gate sends, as the gate sends it (`?` bound as N'…' literals by probes.sql.bind,
    per-database ones through in_database) and, when it has `?`, also as a driver-prepared parameterised query."""
    answers = ANSWERS.get(name)
    assert answers, f"sql_queries.{name} has no expected answer: add one to ANSWERS in {__name__}"
    for answer in answers:
        text: str = getattr(q, name)
        values = (answer.database,) * text.count("?") if answer.database else ()
        if answer.in_database:
            assert answer.database is not None
            text = q.in_database(answer.database, text)
        cnxn = lab.connect(driver, answer.scenario, answer.instance)
        where = f"{name} on {answer.scenario}/{answer.instance} through {driver.kind}"
        columns, rows = fetch(cnxn, bind(text, *values) if values else text)
        assert projected(columns, rows, answer.columns) == sorted(answer.rows, key=repr), where
        if values:
            assert fetch(cnxn, text, values) == (columns, rows), f"{where}, as a parameterised query"


# --- the gate's fact readers, in process, through each driver --------------------------------------------------------

# Facts the lab cannot read today (see LAB_BUGS), by path: their error must at least be the same through both drivers.
FACT_BUGS: frozenset[str] = frozenset()


def read_facts(driver: OdbcDriver, where: tuple[SimulatedInstance, str, int], flavour: str) -> Any:
    """read_sql_server / read_managed_instance over a real OdbcSession, as the gate's fixtures call them."""
    _, host, port = where
    conn = gate_connection(driver, host, port, "linkgate")
    session = OdbcSession(f"lab/{flavour}", conn, Timeouts(connect=5, query=10))
    try:
        with lab_password():
            if flavour == "sqlserver":
                return read_sql_server(session, ("SalesDB", "InventoryDB"))
            return read_managed_instance(session, ("SalesDB",))
    finally:
        session.close()


def fact_table(facts: object, prefix: str = "") -> dict[str, tuple[Any, bool]]:
    """Every Fact of a facts object by its path (databases.SalesDB.tde, …) → (value, failed)."""
    table: dict[str, tuple[Any, bool]] = {}
    for f in fields(facts):  # type: ignore[arg-type]
        value = getattr(facts, f.name)
        if isinstance(value, Fact):
            table[prefix + f.name] = (value.value, value.error is not None)
        elif isinstance(value, dict):
            for key, item in value.items():
                table.update(
                    fact_table(item, f"{prefix}{f.name}.{key}.")
                    if is_dataclass(item)
                    else {f"{prefix}{f.name}.{key}": (item.value, item.error is not None)}
                )
    return table


@pytest.fixture(scope="module")
def facts_by_driver(lab: Lab) -> dict[str, dict[str, dict[str, tuple[Any, bool]]]]:
    found = {d.kind: d for d in find_drivers()}
    if set(found) != {"msodbc18", "freetds"}:
        pytest.skip(f"comparing drivers needs Driver 18 and FreeTDS; found {sorted(found)}")
    return {
        kind: {
            flavour: fact_table(read_facts(driver, lab.instance("healthy", name), flavour))
            for name, flavour in (("sql01", "sqlserver"), ("mi01", "managed-instance"))
        }
        for kind, driver in found.items()
    }


def test_the_fact_readers_read_the_same_facts_through_both_drivers(
    facts_by_driver: dict[str, dict[str, dict[str, tuple[Any, bool]]]],
) -> None:
    ms, tds = facts_by_driver["msodbc18"], facts_by_driver["freetds"]
    for flavour in ("sqlserver", "managed-instance"):
        assert ms[flavour].keys() == tds[flavour].keys()
        differing = {k: (ms[flavour][k], tds[flavour][k]) for k in ms[flavour] if ms[flavour][k] != tds[flavour][k]}
        assert not differing, f"{flavour}: Driver 18 and FreeTDS read different facts: {differing}"
        failed = {k for k, (_, error) in ms[flavour].items() if error}
        assert failed <= FACT_BUGS, f"{flavour}: facts that could not be read: {sorted(failed - FACT_BUGS)}"


def test_the_fact_readers_read_the_healthy_scenario(
    facts_by_driver: dict[str, dict[str, dict[str, tuple[Any, bool]]]],
) -> None:
    for kind, by_flavour in facts_by_driver.items():
        sql = {k: v for k, (v, _) in by_flavour["sqlserver"].items()}
        assert sql["login"].is_sysadmin, kind
        product = sql["product"]
        assert (product.version, product.engine_edition, product.update_level) == ((16, 0, 4135, 4), 3, "CU14"), kind
        assert (sql["hadr"].enabled, sql["hadr"].manager_status) == (1, 1), kind
        assert sql["trace_flags"] == frozenset({1800, 9567}), kind
        assert sql["master_key"].present, kind
        assert (sql["agent"].service_status, sql["agent"].agent_xps) == ("Running", 1), kind
        assert sql["endpoints"] == (), kind
        assert sql["start_time"] == dt.datetime(2025, 11, 3, 6, 12, 41), kind
        for db in ("SalesDB", "InventoryDB"):
            state = sql[f"databases.{db}.state"]
            assert (state.exists, state.recovery_model, state.state) == (True, "FULL", "ONLINE"), (kind, db)
            assert isinstance(state.last_log_backup_lsn, Decimal), (kind, db)
            assert sql[f"databases.{db}.last_full_backup"].has_checksums, (kind, db)
            assert not sql[f"databases.{db}.tde"].encrypted, (kind, db)
            storage = sql[f"databases.{db}.storage"]
            assert (storage.log_files, storage.filestream_filegroups, storage.xtp_containers) == (1, 0, None)
            assert sql[f"databases.{db}.availability_groups"].groups == (), (kind, db)
        mi = {k: v for k, (v, _) in by_flavour["managed-instance"].items()}
        assert mi["product"].engine_edition == 8, kind
        assert mi["product"].update_type == "CU", kind
        fabric = mi["fabric"]
        assert fabric.hadr_port is not None, kind
        assert 11000 <= fabric.hadr_port <= 11999, kind
        assert fabric.node_endpoint == "DB123.tr123456.west-us.worker.database.windows.net:11002", kind
        assert fabric.dns_record_name == "mi01.a1b2c3d4e5f6.database.windows.net", kind


LSN_QUERY = (
    "SELECT TOP 1 b.first_lsn, b.last_lsn, b.database_backup_lsn, drs.last_log_backup_lsn, "
    "CAST(1.5 AS decimal(5,2)) AS fraction FROM msdb.dbo.backupset b "
    "JOIN sys.database_recovery_status drs ON drs.database_id = DB_ID(b.database_name) "
    "WHERE b.database_name = 'SalesDB' AND b.type = 'D' ORDER BY b.backup_finish_date DESC"
)
LSN_COLUMNS = ("first_lsn", "last_lsn", "database_backup_lsn", "last_log_backup_lsn")


def _exact_numeric_codes(colmetadata: bytes) -> list[int]:
    """The TYPE_INFO code of each column of a COLMETADATA token made only of DECIMALN / NUMERICN columns:
    count, then per column UserType (u32), Flags (u16), code, length, precision, scale, name (B_VARCHAR)."""
    assert colmetadata[0] == 0x81, "the answer does not start with COLMETADATA"
    (count,), at, codes = struct.unpack_from("<H", colmetadata, 1), 3, []
    for _ in range(count):
        at += 6
        codes.append(colmetadata[at])
        assert codes[-1] in (0x6A, 0x6C), f"column {len(codes)} is not an exact numeric: {codes[-1]:#04x}"
        at += 4
        at += 1 + 2 * colmetadata[at]
    return codes


def test_lsn_columns_travel_as_numeric_and_a_decimal_as_decimal(
    freetds: OdbcDriver, served: tuple[SimulatedInstance, str, int]
) -> None:
    """Read on the wire (Encryption=off through a relay): each LSN column is NUMERICN (0x6C) numeric(25,0), as
    SQL Server declares them, and a CAST to decimal stays DECIMALN (0x6A)."""
    _, host, port = served
    relay = Relay((host, port))
    text = connection_string(
        freetds, "127.0.0.1", relay.port, user="linkgate", password=PASSWORD, encrypt="off", login_timeout=5
    )
    cnxn = pyodbc.connect(text, autocommit=True, timeout=5)
    assert cnxn.cursor().execute(LSN_QUERY).fetchone() is not None
    cnxn.close()
    relay.join()
    requests, responses = tds_messages(bytes(relay.sent)), tds_messages(bytes(relay.received))
    answer = next(
        responses[i][1]
        for i, (kind, body) in enumerate(requests)
        if kind == 0x01 and "backupset".encode("utf-16-le") in body
    )
    assert _exact_numeric_codes(answer) == [0x6C, 0x6C, 0x6C, 0x6C, 0x6A]


def test_lsns_read_back_exactly_as_whole_decimals(
    driver: OdbcDriver, served: tuple[SimulatedInstance, str, int]
) -> None:
    """pyodbc makes each LSN a Decimal with scale 0 and every digit the instance holds (they exceed 2**53, so a
    float anywhere on the way would show), and describes them as numeric(25,0)."""
    instance, _, _ = served
    expected = instance.login("linkgate", PASSWORD, None).execute(LSN_QUERY)
    assert isinstance(expected[0], ResultSet)
    with connect(driver, served) as cnxn:
        cursor = cnxn.cursor().execute(LSN_QUERY)
        row = tuple(cursor.fetchone())
        description = [d[:2] + d[4:6] for d in cursor.description]
    assert row == expected[0].rows[0]
    assert all(isinstance(v, Decimal) and v.as_tuple().exponent == 0 for v in row[:4]), row
    assert min(row[0], row[1], row[3]) > 2**53  # (database_backup_lsn is 0: the full backup has no base)
    assert description == [(name, Decimal, 25, 0) for name in LSN_COLUMNS] + [("fraction", Decimal, 5, 2)]
