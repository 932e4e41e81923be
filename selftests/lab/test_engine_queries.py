"""The statements the gate sends (linkgate.probes.sql_queries) and the spec's alternatives answer with the
scenario's facts and SQL Server's types; the same statements through the real drivers: test_engine_wire.py."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from linkgate.lab.results import MAX, DatabaseChanged, Message, ReturnStatus, SqlType, Variant
from linkgate.probes import sql_queries as q
from selftests.lab.engine_fixtures import dicts, login, result, results, run, shape

NV = SqlType.NVARCHAR
SALES_GUID = uuid.UUID("6f1c2b0e-3c4d-4a8e-9a51-0d3c1b7e5a10")

# The statements the gate sends are its own constants (linkgate.probes.sql_queries), never copies of them:
# a copy drifts (five did). Only the spec's alternatives the gate does not send are written out here.
SQL_08_B = """SET NOCOUNT ON;
CREATE TABLE #tf (TraceFlag int, Status int, Global int, Session int);
INSERT INTO #tf EXEC (N'DBCC TRACESTATUS(-1) WITH NO_INFOMSGS');
SELECT TraceFlag, Status, Global, Session FROM #tf WHERE TraceFlag IN (1800, 9567);
DROP TABLE #tf;"""
SQL_15 = (q.XTP_AND_FILESTREAM, q.LOG_FILES, q.FILETABLES, q.MEMORY_OPTIMIZED_TABLES)


def numbered(sql: str) -> str:
    """A gate statement's `?` placeholders as @P1, @P2… — what both drivers' sp_prepexec sends to the server."""
    parts = sql.split("?")
    return parts[0] + "".join(f"@P{i}{part}" for i, part in enumerate(parts[1:], start=1))


def test_sql_01_sysadmin_and_login_name() -> None:
    rs = result(run(login(), q.LOGIN))
    assert shape(rs) == [("is_sysadmin", SqlType.INT, None), ("login_name", NV, 128)]
    assert rs.rows == [(1, "linkgate")]


def test_sql_02_version_edition_build() -> None:
    rs = result(run(login(), q.PRODUCT))
    assert shape(rs) == [
        ("product_version", NV, 128),
        ("product_level", NV, 128),
        ("product_update_level", NV, 128),
        ("kb", NV, 128),
        ("edition", NV, 128),
        ("engine_edition", SqlType.INT, None),
        ("collation", NV, 128),
        ("product_update_type", NV, 128),
        ("version_string", NV, 300),
    ]
    version, level, update, kb, edition, engine, collation, update_type, text = rs.rows[0]
    assert (version, level, update, kb, edition, engine, collation, update_type) == (
        "16.0.4135.4",
        "RTM",
        "CU14",
        "KB5038325",
        "Developer Edition (64-bit)",
        3,
        "SQL_Latin1_General_CP1_CI_AS",
        None,  # SQL Server has no update policy: ProductUpdateType is a managed-instance property
    )
    assert text.startswith("Microsoft SQL Server 2022 (RTM-CU14) (KB5038325) - 16.0.4135.4 (X64)")
    assert "on Linux (Ubuntu 22.04)" in text


def test_sql_04_host_platform() -> None:
    rs = result(run(login(), q.HOST_INFO))
    assert shape(rs) == [("host_platform", NV, 256), ("host_distribution", NV, 256), ("host_release", NV, 256)]
    assert rs.rows == [("Linux", "Ubuntu", "22.04")]


def test_sql_05_master_key_both_forms() -> None:
    session = login()
    rs = result(run(session, q.MASTER_KEY))
    assert shape(rs) == [
        ("name", NV, 128),
        ("symmetric_key_id", SqlType.INT, None),
        ("create_date", SqlType.DATETIME, None),
    ]
    assert [r[:2] for r in rs.rows] == [("##MS_DatabaseMasterKey##", 101)]
    seed = results(run(session, "USE master;\nSELECT * FROM sys.symmetric_keys WHERE name LIKE '%DatabaseMasterKey%';"))
    assert [d["symmetric_key_id"] for d in dicts(seed[0])] == [101]


def test_sql_06_hadr_enabled_and_manager_running() -> None:
    rs = result(run(login(), q.HADR))
    assert shape(rs) == [("is_hadr_enabled", SqlType.INT, None), ("hadr_manager_status", SqlType.INT, None)]
    assert rs.rows == [(1, 1)]


def test_sql_07_wsfc_queries_on_2016_without_a_cluster() -> None:
    session = login(scenario_name="sql-2016-without-wsfc")
    statements = (q.WSFC_CLUSTER, q.WSFC_MEMBERS, q.WSFC_SYSTEM_GRANTS)
    clusters, members, grants = (result(run(session, sql)) for sql in statements)
    assert clusters.rows == []
    assert members.rows == []
    assert shape(clusters) == [("cluster_name", NV, 128), ("quorum_type_desc", NV, 50), ("quorum_state_desc", NV, 50)]
    assert shape(grants) == [("permission_name", NV, 128), ("state_desc", NV, 60)]
    assert sorted(grants.rows) == sorted(
        [("ALTER ANY AVAILABILITY GROUP", "GRANT"), ("CONNECT SQL", "GRANT"), ("VIEW SERVER STATE", "GRANT")]
    )


def test_sql_08_option_a_dbcc_result_set() -> None:
    rs = result(run(login(), q.TRACE_FLAGS))
    assert shape(rs) == [(n, SqlType.SMALLINT, None) for n in ("TraceFlag", "Status", "Global", "Session")]
    assert rs.rows == [(1800, 1, 1, 0), (9567, 1, 1, 0)]


def test_sql_08_option_b_temp_table() -> None:
    outcomes = run(login(), SQL_08_B)
    rs = result(outcomes)
    assert shape(rs) == [(n, SqlType.INT, None) for n in ("TraceFlag", "Status", "Global", "Session")]
    assert rs.rows == [(1800, 1, 1, 0), (9567, 1, 1, 0)]


def test_sql_08_no_flags_running_gives_no_result_set_but_option_b_still_rows_nothing() -> None:
    session = login(scenario_name="sql-trace-flags-restart-pending")
    assert run(session, q.TRACE_FLAGS) == []
    assert result(run(session, SQL_08_B)).rows == []


def test_sql_09_startup_parameters_on_windows_show_the_trace_flags() -> None:
    rs = result(run(login(scenario_name="sql-windows-10-host"), q.STARTUP_PARAMETERS))
    assert shape(rs) == [("registry_key", NV, 256), ("value_name", NV, 256), ("value_data", NV, 4000)]
    values = [r[2] for r in rs.rows]
    assert values[-2:] == ["-T1800", "-T9567"]
    assert all(r[0].endswith("\\MSSQL16.MSSQLSERVER\\MSSQLServer\\Parameters") for r in rs.rows)


def test_sql_09_startup_parameters_are_not_visible_on_linux() -> None:
    assert result(run(login(), q.STARTUP_PARAMETERS)).rows == []


def test_sql_10_recovery_with_parameter() -> None:
    rs = result(run(login(), numbered(q.DATABASE_STATE), P1="SalesDB"))
    assert shape(rs) == [
        ("name", NV, 128),
        ("recovery_model_desc", NV, 60),
        ("state_desc", NV, 60),
        ("last_log_backup_lsn", SqlType.NUMERIC, None),
        ("database_guid", SqlType.UNIQUEIDENTIFIER, None),
        ("is_broker_enabled", SqlType.BIT, None),
    ]
    assert (rs.columns[3].precision, rs.columns[3].scale) == (25, 0)
    name, model, state, lsn, guid, broker = rs.rows[0]
    assert (name, model, state, guid, broker) == ("SalesDB", "FULL", "ONLINE", SALES_GUID, True)
    assert isinstance(lsn, Decimal)


def test_sql_10_simple_recovery_has_no_log_chain() -> None:
    rs = result(run(login(scenario_name="sql-db-simple-recovery"), numbered(q.DATABASE_STATE), P1="salesdb"))
    assert [(r[1], r[3]) for r in rs.rows] == [("SIMPLE", None)]


def test_sql_11_last_full_backup_with_two_parameters() -> None:
    rs = result(run(login(), numbered(q.LAST_FULL_BACKUP), P1="SalesDB", P2="SalesDB"))
    assert shape(rs) == [
        ("backup_finish_date", SqlType.DATETIME, None),
        ("recovery_model", NV, 60),
        ("is_copy_only", SqlType.BIT, None),
        ("has_backup_checksums", SqlType.BIT, None),
        ("checkpoint_lsn", SqlType.NUMERIC, None),
        ("database_backup_lsn", SqlType.NUMERIC, None),
    ]
    assert rs.rows[0][:4] == (dt.datetime(2025, 11, 2, 23, 10, 5), "FULL", False, True)


def test_sql_11_copy_only_backups_do_not_count() -> None:
    copy_only = login(scenario_name="sql-db-copy-only-backups")
    assert result(run(copy_only, numbered(q.LAST_FULL_BACKUP), P1="SalesDB", P2="SalesDB")).rows == []


def test_sql_12_agent_service_and_agent_xps() -> None:
    session = login()
    service, xps = (result(run(session, sql)) for sql in (q.AGENT_SERVICE, q.AGENT_XPS))
    assert shape(service) == [("servicename", NV, 256), ("startup_type_desc", NV, 256), ("status_desc", NV, 256)]
    assert service.rows == [("SQL Server Agent (MSSQLSERVER)", "Automatic", "Running")]
    assert shape(xps) == [("agent_xps", SqlType.INT, None)]
    assert xps.rows == [(1,)]
    stopped = login(scenario_name="sql-agent-stopped")
    assert result(run(stopped, q.AGENT_SERVICE)).rows[0][2] == "Stopped"
    assert result(run(stopped, q.AGENT_XPS)).rows == [(0,)]


def test_sql_12_the_spec_also_reads_the_agents_start_time_as_datetimeoffset() -> None:
    sql = "SELECT last_startup_time FROM sys.dm_server_services WHERE servicename LIKE N'SQL Server Agent%';"
    rs = result(run(login(), sql))
    assert shape(rs) == [("last_startup_time", SqlType.DATETIMEOFFSET, None)]
    assert rs.rows[0][0].tzinfo is not None


def test_sql_13_sysadmin_or_agent_operator_in_msdb() -> None:
    outcomes = run(login(), q.LOGIN + q.AGENT_OPERATOR)
    sysadmin, operator = results(outcomes)
    assert sysadmin.rows == [(1, "linkgate")]
    assert operator.rows == [(0,)]
    assert shape(operator) == [("is_agent_operator", SqlType.INT, None)]
    assert ReturnStatus(0) in outcomes
    sysadmin, operator = results(run(login(scenario_name="sql-not-sysadmin"), q.LOGIN + q.AGENT_OPERATOR))
    assert sysadmin.rows == [(0, "linkgate")]
    assert operator.rows == [(1,)]


def test_sql_14_tde_state_and_certificate() -> None:
    rs = result(run(login(scenario_name="sql-db-tde-expired-certificate"), numbered(q.TDE), P1="SalesDB"))
    assert shape(rs) == [
        ("name", NV, 128),
        ("encryption_state", SqlType.INT, None),
        ("encryptor_type", NV, 32),
        ("encryptor_thumbprint", SqlType.VARCHAR, 42),
        ("certificate_name", NV, 128),
        ("expiry_date", SqlType.DATETIME, None),
    ]
    name, state, kind, thumbprint, certificate, expiry = rs.rows[0]
    assert (name, state, kind, certificate, expiry) == (
        "SalesDB",
        3,
        "CERTIFICATE",
        "TDECert",
        dt.datetime(2024, 6, 30),
    )
    assert thumbprint.startswith("0x")
    assert len(thumbprint) == 42
    assert thumbprint == thumbprint.upper().replace("0X", "0x")
    assert result(run(login(), numbered(q.TDE), P1="SalesDB")).rows == []


@pytest.mark.parametrize(
    ("scenario_name", "expected"),
    [
        ("healthy", ([], 1, 0, 0)),
        ("sql-db-filestream", ([("FD", "FILESTREAM_DATA_FILEGROUP", 1)], 1, 0, 0)),
        ("sql-db-two-log-files", ([], 2, 0, 0)),
        ("sql-db-two-xtp-containers", ([("FX", "MEMORY_OPTIMIZED_DATA_FILEGROUP", 2)], 1, 0, 1)),
    ],
)
def test_sql_15_database_features_in_the_database_context(
    scenario_name: str, expected: tuple[list[tuple[str, str, int]], int, int, int]
) -> None:
    session = login(scenario_name=scenario_name)
    groups, logs, filetables, memopt = (result(run(session, q.in_database("SalesDB", sql))) for sql in SQL_15)
    assert shape(groups) == [("type", SqlType.CHAR, 2), ("type_desc", NV, 60), ("containers", SqlType.INT, None)]
    assert (groups.rows, logs.rows[0][0], filetables.rows[0][0], memopt.rows[0][0]) == expected
    assert session.database == "master"


def test_sql_16_endpoint_with_certificate() -> None:
    rs = result(run(login(scenario_name="sql-endpoint-rc4"), q.ENDPOINTS))
    assert shape(rs) == [
        ("name", NV, 128),
        ("type_desc", NV, 60),
        ("state_desc", NV, 60),
        ("role_desc", NV, 60),
        ("connection_auth_desc", NV, 60),
        ("is_encryption_enabled", SqlType.BIT, None),
        ("encryption_algorithm_desc", NV, 60),
        ("port", SqlType.INT, None),
        ("ip_address", NV, 45),
        ("certificate_name", NV, 128),
        ("expiry_date", SqlType.DATETIME, None),
    ]
    assert rs.rows == [
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
    ]
    assert result(run(login(), q.ENDPOINTS)).rows == []


def test_sql_17_collation() -> None:
    sql = "SELECT CAST(SERVERPROPERTY('Collation') AS nvarchar(128)) AS collation;"
    assert result(run(login(), sql)).rows == [("SQL_Latin1_General_CP1_CI_AS",)]
    assert result(run(login(scenario_name="sql-collation-mismatch"), sql)).rows == [("Latin1_General_CI_AS",)]


def test_sql_18_broker_and_adr() -> None:
    rs = result(run(login(), numbered(q.ACCELERATED_RECOVERY), P1="SalesDB"))
    assert shape(rs) == [("name", NV, 128), ("is_accelerated_database_recovery_on", SqlType.BIT, None)]
    assert rs.rows == [("SalesDB", True)]
    off = login(scenario_name="sql-db-adr-off")
    assert result(run(off, numbered(q.ACCELERATED_RECOVERY), P1="SalesDB")).rows == [("SalesDB", False)]
    broker = result(run(login(scenario_name="sql-db-broker-disabled"), numbered(q.DATABASE_STATE), P1="SalesDB"))
    assert [d["is_broker_enabled"] for d in dicts(broker)] == [False]


def test_sql_19_availability_group_database_count() -> None:
    rs = result(run(login(scenario_name="sql-db-multi-database-ag"), numbered(q.AVAILABILITY_GROUPS), P1="SalesDB"))
    assert shape(rs) == [("name", NV, 128), ("db_count", SqlType.INT, None)]
    assert rs.rows == [("AG_Sales", 2)]
    assert result(run(login(), numbered(q.AVAILABILITY_GROUPS), P1="SalesDB")).rows == []


def test_sql_20_start_time() -> None:
    rs = result(run(login(), q.START_TIME))
    assert shape(rs) == [("sqlserver_start_time", SqlType.DATETIME, None)]
    assert rs.rows == [(dt.datetime(2025, 11, 3, 6, 12, 41),)]


def test_mi_01_02_engine_edition_and_update_policy() -> None:
    session = login("mi01")
    assert result(run(session, "SELECT CAST(SERVERPROPERTY('EngineEdition') AS int);")).rows == [(8,)]
    update = result(run(session, "SELECT CAST(SERVERPROPERTY('ProductUpdateType') AS nvarchar(128));"))
    assert shape(update) == [("", NV, 128)]
    assert update.rows == [("CU",)]
    always = login("mi01", "azure-always-up-to-date-mi-primary")
    assert result(run(always, "SELECT CAST(SERVERPROPERTY('ProductUpdateType') AS nvarchar(128));")).rows == [
        ("Continuous",)
    ]


def test_mi_03_the_articles_fabric_query_verbatim() -> None:
    article = """SELECT 'DECLARE @serverName NVARCHAR(512) = N''' + value + ''''
FROM sys.dm_hadr_fabric_config_parameters
WHERE parameter_name = 'DnsRecordName'

UNION

SELECT 'DECLARE @node NVARCHAR(512) = N''' + NodeName + '.' + Cluster + ''''
FROM (
    SELECT SUBSTRING(replica_address, 0, CHARINDEX('\\', replica_address)) AS NodeName,
        RIGHT(service_name, CHARINDEX('/', REVERSE(service_name)) - 1) AppName,
        JoinCol = 1
    FROM sys.dm_hadr_fabric_partitions fp
    INNER JOIN sys.dm_hadr_fabric_replicas fr
        ON fp.partition_id = fr.partition_id
    INNER JOIN sys.dm_hadr_fabric_nodes fn
        ON fr.node_name = fn.node_name
    WHERE service_name LIKE '%ManagedServer%'
        AND replica_role = 2
) t1
LEFT JOIN (
    SELECT value AS Cluster,
        JoinCol = 1
    FROM sys.dm_hadr_fabric_config_parameters
    WHERE parameter_name = 'ClusterName'
    ) t2
    ON (t1.JoinCol = t2.JoinCol)
INNER JOIN (
    SELECT [value] AS AppName
    FROM sys.dm_hadr_fabric_config_parameters
    WHERE section_name = 'SQL'
        AND parameter_name = 'InstanceName'
    ) t3
    ON (t1.AppName = t3.AppName)

UNION

SELECT 'DECLARE @port NVARCHAR(512) = N''' + value + ''''
FROM sys.dm_hadr_fabric_config_parameters
WHERE parameter_name = 'HadrPort';"""
    rs = result(run(login("mi01"), article))
    assert [c.name for c in rs.columns] == [""]
    assert sorted(r[0] for r in rs.rows) == [
        "DECLARE @node NVARCHAR(512) = N'DB123.tr123456.west-us.worker.database.windows.net'",
        "DECLARE @port NVARCHAR(512) = N'11002'",
        "DECLARE @serverName NVARCHAR(512) = N'mi01.a1b2c3d4e5f6.database.windows.net'",
    ]


def test_mi_03_simple_reads_of_the_fabric_views() -> None:
    session = login("mi01")
    params = dicts(
        result(run(session, "SELECT section_name, parameter_name, value FROM sys.dm_hadr_fabric_config_parameters"))
    )
    assert {p["parameter_name"]: p["value"] for p in params}["HadrPort"] == "11002"
    replicas = result(
        run(
            session,
            "SELECT node_name, replica_role, replica_address FROM sys.dm_hadr_fabric_replicas WHERE replica_role = 2",
        )
    )
    assert ("DB123", 2, "DB123\\a1b2c3d4e5f6:11002") in replicas.rows
    assert result(run(session, "SELECT COUNT(*) FROM sys.dm_hadr_fabric_nodes")).rows == [(3,)]
    assert len(result(run(session, "SELECT * FROM sys.dm_hadr_fabric_partitions")).rows) == 2


def test_mi_04_mi_database_encryption_reads_like_sql_14() -> None:
    rs = result(run(login("mi01"), numbered(q.TDE), P1="SalesDB"))
    assert rs.rows == []


def test_serverproperty_is_sql_variant_unless_cast() -> None:
    rs = result(
        run(
            login(),
            "SELECT SERVERPROPERTY('IsHadrEnabled') AS v, "
            "CAST(SERVERPROPERTY('IsHadrEnabled') AS int) "
            "AS i, SERVERPROPERTY('ProductVersion') AS t, SERVERPROPERTY('NoSuchProperty') AS n",
        )
    )
    assert shape(rs) == [
        ("v", SqlType.SQL_VARIANT, None),
        ("i", SqlType.INT, None),
        ("t", SqlType.SQL_VARIANT, None),
        ("n", SqlType.SQL_VARIANT, None),
    ]
    variant, integer, text, missing = rs.rows[0]
    assert isinstance(variant, Variant)
    assert variant.base.type is SqlType.INT
    assert variant.value == 1
    assert integer == 1
    assert isinstance(text, Variant)
    assert text.base.type is NV
    assert text.value == "16.0.4135.4"
    assert missing is None


def test_registry_and_configuration_values_are_sql_variant() -> None:
    session = login(scenario_name="sql-windows-10-host")
    registry = result(
        run(session, "SELECT value_name, value_data FROM sys.dm_server_registry WHERE value_name = 'HADR_Enabled'")
    )
    assert registry.columns[1].type is SqlType.SQL_VARIANT
    assert registry.rows[0][1] == Variant(registry.rows[0][1].base, 1)
    assert registry.rows[0][1].base.type is SqlType.INT
    config = result(run(session, "SELECT value, value_in_use FROM sys.configurations WHERE name = 'Agent XPs'"))
    assert [c.type for c in config.columns] == [SqlType.SQL_VARIANT, SqlType.SQL_VARIANT]
    assert config.rows[0][1].value == 1


def test_the_seeds_declare_sql_variant_batch() -> None:
    seed = """-- Is the availability groups feature enabled on this SQL Server
DECLARE @IsHadrEnabled sql_variant = (select SERVERPROPERTY('IsHadrEnabled'))
SELECT
    @IsHadrEnabled as 'Is HADR enabled',
    CASE @IsHadrEnabled
        WHEN 0 THEN 'Availability groups DISABLED.'
        WHEN 1 THEN 'Availability groups ENABLED.'
        ELSE 'Unknown status.'
    END
    as 'HADR status'"""
    rs = result(run(login(), seed))
    assert [c.name for c in rs.columns] == ["Is HADR enabled", "HADR status"]
    assert rs.columns[0].type is SqlType.SQL_VARIANT
    assert rs.rows[0][0].value == 1
    assert rs.rows[0][1] == "Availability groups ENABLED."


def test_identity_functions_and_globals() -> None:
    rs = result(
        run(
            login(),
            "SELECT @@SERVERNAME AS s, DB_ID() AS i, DB_NAME() AS n, DB_ID(N'SalesDB') AS sales, "
            "DB_NAME(4) AS four, @@SPID AS spid, GETDATE() AS now, "
            "HAS_PERMS_BY_NAME(NULL, NULL, 'VIEW SERVER STATE') AS vss",
        )
    )
    assert shape(rs) == [
        ("s", NV, 128),
        ("i", SqlType.INT, None),
        ("n", NV, 128),
        ("sales", SqlType.INT, None),
        ("four", NV, 128),
        ("spid", SqlType.SMALLINT, None),
        ("now", SqlType.DATETIME, None),
        ("vss", SqlType.INT, None),
    ]
    server, db_id, db_name, sales, four, spid, now, vss = rs.rows[0]
    assert (server, db_id, db_name, sales, four, vss) == ("sql01", 1, "master", 5, "msdb", 1)
    assert spid >= 51
    assert now.tzinfo is None
    assert abs((now - dt.datetime.now()).total_seconds()) < 60


def test_db_name_and_db_id_of_a_column_are_evaluated_row_by_row() -> None:
    """DB_NAME(database_id) over many rows names each row's database, as a join to sys.databases does: the
    lookup's own columns must not capture the argument (it once compared database_id with itself)."""
    session = login()
    by_function = result(
        run(session, "SELECT DB_NAME(database_id) AS db, physical_name FROM sys.master_files ORDER BY physical_name")
    )
    by_join = result(
        run(
            session,
            "SELECT d.name, f.physical_name FROM sys.master_files f JOIN sys.databases d "
            "ON d.database_id = f.database_id ORDER BY f.physical_name",
        )
    )
    assert shape(by_function)[0] == ("db", NV, 128)
    assert len({row[0] for row in by_function.rows}) > 1
    assert by_function.rows == by_join.rows
    ids = result(run(session, "SELECT name, DB_ID(name) AS id, database_id FROM sys.databases"))
    assert len(ids.rows) == 6
    assert all(row[1] == row[2] for row in ids.rows), ids.rows


def test_db_id_and_db_name_of_the_current_database_keep_its_case() -> None:
    """DB_ID() and DB_NAME() in a mixed-case database answer its id and its name as written; names compare
    case-insensitively, as under SQL_Latin1_General_CP1_CI_AS."""
    rs = result(run(login(database="SalesDB"), "SELECT DB_ID() AS i, DB_NAME() AS n, DB_ID(N'salesdb') AS ci"))
    assert rs.rows == [(5, "SalesDB", 5)]


def test_role_membership_functions_of_a_column_are_evaluated_row_by_row() -> None:
    """IS_SRVROLEMEMBER('sysadmin', name) per login agrees with sys.server_role_members, whether the argument
    is written bare or qualified with an alias the lookup also used (l.name)."""
    session = login()
    members = result(
        run(
            session,
            "SELECT l.name FROM sys.server_role_members m "
            "JOIN sys.server_principals r ON r.principal_id = m.role_principal_id "
            "JOIN sys.server_principals l ON l.principal_id = m.member_principal_id WHERE r.name = 'sysadmin'",
        )
    )
    expected = {name for (name,) in members.rows}
    assert expected
    assert "public" not in expected
    for sql in (
        "SELECT name, IS_SRVROLEMEMBER('sysadmin', name) FROM sys.server_principals",
        "SELECT l.name, IS_SRVROLEMEMBER(N'SysAdmin', l.name) FROM sys.server_principals l",
    ):
        rows = result(run(session, sql)).rows
        assert {name for name, flag in rows if flag == 1} == expected, sql
        assert {flag for _, flag in rows} == {0, 1}, sql
    users = result(
        run(login(database="SalesDB"), "SELECT name, IS_ROLEMEMBER('db_owner', name) FROM sys.database_principals")
    ).rows
    assert dict(users)["dbo"] == 1
    assert dict(users)["guest"] == 0


def test_schema_name_is_t_sqls_not_duckdbs_current_schema() -> None:
    """SCHEMA_NAME() is the caller's default schema and SCHEMA_NAME(id) the schema with that id, per row."""
    session = login(database="SalesDB")
    rs = result(run(session, "SELECT SCHEMA_NAME() AS s, SCHEMA_NAME(4) AS sys_schema, SCHEMA_NAME(99) AS none"))
    assert shape(rs)[0] == ("s", NV, 128)
    assert rs.rows == [("dbo", "sys", None)]
    per_row = result(run(session, "SELECT name, SCHEMA_NAME(principal_id) FROM sys.database_principals"))
    by_name = dict(per_row.rows)
    assert (by_name["dbo"], by_name["guest"], by_name["sys"], by_name["public"]) == ("dbo", "guest", "sys", None)


def test_object_id_sees_link_procedures_only_on_link_builds() -> None:
    sql = (
        "SELECT OBJECT_ID(N'sys.sp_certificate_add_issuer') AS p, OBJECT_ID('sys.databases') AS v, OBJECT_ID('x') AS x"
    )
    proc, view, missing = result(run(login(), sql)).rows[0]
    assert proc is not None
    assert view is not None
    assert missing is None
    older = login(scenario_name="sql-2016-without-wsfc")
    assert result(run(older, sql)).rows[0][0] is not None  # 13.0.7000.253 is the Azure Connect pack


def test_use_changes_context_with_message_5701() -> None:
    session = login()
    outcomes = run(session, "USE msdb; SELECT DB_NAME() AS db;")
    assert outcomes[:2] == [DatabaseChanged("master", "msdb"), Message(5701, "Changed database context to 'msdb'.")]
    assert result(outcomes).rows == [("msdb",)]
    assert session.database == "msdb"
    assert result(run(session, "SELECT COUNT(*) FROM dbo.backupset")).rows == [(2,)]


def test_database_scoped_views_follow_the_context() -> None:
    session = login(database="SalesDB")
    filegroups = "SELECT name FROM sys.filegroups ORDER BY data_space_id"
    assert result(run(session, filegroups)).rows == [("PRIMARY",)]
    assert result(run(session, "SELECT name FROM InventoryDB.sys.database_files WHERE type = 0")).rows == [
        ("InventoryDB",)
    ]
    server_scoped = result(run(session, "SELECT COUNT(*) FROM sys.databases")).rows
    assert server_scoped == [(6,)]


def test_case_insensitive_comparisons_like_ci_as() -> None:
    rs = result(
        run(login(), "SELECT name FROM SYS.DATABASES WHERE NAME = 'salesdb' AND recovery_model_desc IN ('full')")
    )
    assert rs.rows == [("SalesDB",)]


def test_string_plus_is_concatenation_and_integer_division_truncates() -> None:
    rs = result(
        run(
            login(),
            "SELECT name + N'_x' AS n, 7 / 2 AS d, CAST(1 AS bit) AS b FROM sys.databases WHERE database_id = 5",
        )
    )
    assert rs.rows == [("SalesDB_x", 3, True)]
    assert rs.columns[2].type is SqlType.BIT


def test_top_brackets_and_three_part_names() -> None:
    rs = result(run(login(), "SELECT TOP 2 [name] FROM [master].[sys].[databases] ORDER BY [database_id]"))
    assert rs.rows == [("master",), ("tempdb",)]


def test_long_text_falls_back_to_nvarchar_max() -> None:
    rs = result(run(login(), "SELECT REPLICATE(N'x', 5000) AS long_text"))
    assert rs.columns[0].type is NV
    assert rs.columns[0].length in (4000, MAX)
