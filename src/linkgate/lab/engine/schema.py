"""The system views and tables the lab answers, with SQL Server's documented column names and types.

Only documented columns exist (a subset of each view, never invented names), so a misspelled column
fails with 207 as on SQL Server. Types are the documented ones because the wire carries them: the
TDS layer encodes exactly these `Column`s. `scope` decides where a name resolves: server-scoped views
from every database, database-scoped ones per database, msdb tables only in msdb.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from linkgate.lab.results import MAX, Column, SqlType

Scope = Literal["server", "database", "msdb"]
VIEW_SERVER_STATE = "VIEW SERVER STATE"

_TYPE = re.compile(r"^(\w+)(?:\((max|\d+)(?:,\s*(\d+))?\))?$")


def sql_type(text: str) -> tuple[SqlType, int | None, int | None, int | None]:
    """'nvarchar(60)' → (NVARCHAR, 60, None, None); 'numeric(25,0)' → (NUMERIC, None, 25, 0).

    sysname is nvarchar(128), as SQL Server defines it. numeric stays numeric (not decimal): SQL Server
    keeps them apart on the wire, and an LSN column is numeric(25,0).
    """
    m = _TYPE.match(text.strip().lower())
    if not m:
        raise ValueError(f"not a SQL Server type: {text!r}")
    name, size, scale = m.group(1), m.group(2), m.group(3)
    if name == "sysname":
        return SqlType.NVARCHAR, 128, None, None
    kind = SqlType(name)
    if kind in (SqlType.DECIMAL, SqlType.NUMERIC):
        return kind, None, int(size or 18), int(scale or 0)
    if kind in (SqlType.DATETIME2, SqlType.DATETIMEOFFSET, SqlType.TIME):
        return kind, None, None, int(size) if size else 7
    if size is None:
        return kind, (1 if kind in _SIZED else None), None, None
    return kind, MAX if size == "max" else int(size), None, None


_SIZED = {SqlType.CHAR, SqlType.VARCHAR, SqlType.NCHAR, SqlType.NVARCHAR, SqlType.BINARY, SqlType.VARBINARY}


def column(name: str, type_text: str, nullable: bool = True) -> Column:
    kind, length, precision, scale = sql_type(type_text)
    return Column(name, kind, length, precision, scale, nullable)


@dataclass(frozen=True)
class SystemTable:
    """One system view/table: `name` is schema.table as written in T-SQL (e.g. sys.databases)."""

    name: str
    scope: Scope
    columns: tuple[Column, ...]
    permission: str | None = None
    """Server permission needed to read it (sysadmin implies all); None: public."""
    available: Callable[[bool, int], bool] = lambda managed, major: True
    """(is managed instance, major version) → whether this version has it."""

    @property
    def storage(self) -> str:
        """The DuckDB table holding every instance's rows."""
        return "lab." + self.name.replace(".", "_")

    def column(self, name: str) -> Column | None:
        lowered = name.lower()
        return next((c for c in self.columns if c.name.lower() == lowered), None)


def _table(
    name: str,
    scope: Scope,
    spec: str,
    permission: str | None = None,
    available: Callable[[bool, int], bool] | None = None,
) -> SystemTable:
    cols = []
    for line in spec.strip().splitlines():
        for item in line.split(";"):
            if item.strip():
                col_name, col_type = item.strip().split(" ", 1)
                cols.append(column(col_name, col_type))
    if available is None:
        return SystemTable(name, scope, tuple(cols), permission)
    return SystemTable(name, scope, tuple(cols), permission, available)


def _sql_server_only(managed: bool, major: int) -> bool:
    return not managed


def _managed_only(managed: bool, major: int) -> bool:
    return managed


_ENDPOINT_COMMON = """
name sysname; endpoint_id int; principal_id int; protocol tinyint; protocol_desc nvarchar(60); type tinyint
type_desc nvarchar(60); state tinyint; state_desc nvarchar(60); is_admin_endpoint bit
"""

TABLES: dict[str, SystemTable] = {
    t.name: t
    for t in (
        _table(
            "sys.databases",
            "server",
            """
            name sysname; database_id int; source_database_id int; owner_sid varbinary(85); create_date datetime
            compatibility_level tinyint; collation_name sysname; user_access tinyint; user_access_desc nvarchar(60)
            is_read_only bit; is_auto_close_on bit; is_auto_shrink_on bit; state tinyint; state_desc nvarchar(60)
            is_in_standby bit; is_cleanly_shutdown bit; snapshot_isolation_state tinyint
            snapshot_isolation_state_desc nvarchar(60); is_read_committed_snapshot_on bit; recovery_model tinyint
            recovery_model_desc nvarchar(60); page_verify_option tinyint; page_verify_option_desc nvarchar(60)
            is_trustworthy_on bit; is_broker_enabled bit; log_reuse_wait tinyint; log_reuse_wait_desc nvarchar(60)
            is_encrypted bit; is_master_key_encrypted_by_server bit; is_published bit; is_distributor bit
            service_broker_guid uniqueidentifier; is_cdc_enabled bit; group_database_id uniqueidentifier
            replica_id uniqueidentifier; is_memory_optimized_elevate_to_snapshot_on bit; is_query_store_on bit
            is_accelerated_database_recovery_on bit
        """,
        ),
        _table(
            "sys.database_recovery_status",
            "server",
            """
            database_id int; database_guid uniqueidentifier; family_guid uniqueidentifier
            last_log_backup_lsn numeric(25,0); recovery_fork_guid uniqueidentifier
            first_recovery_fork_guid uniqueidentifier; fork_point_lsn numeric(25,0)
        """,
        ),
        _table(
            "sys.master_files",
            "server",
            """
            database_id int; file_id int; file_guid uniqueidentifier; type tinyint; type_desc nvarchar(60)
            data_space_id int; name sysname; physical_name nvarchar(260); state tinyint; state_desc nvarchar(60)
            size int; max_size int; growth int; is_media_read_only bit; is_read_only bit; is_sparse bit
            is_percent_growth bit; is_name_reserved bit
        """,
        ),
        _table(
            "sys.configurations",
            "server",
            """
            configuration_id int; name nvarchar(35); value sql_variant; minimum sql_variant; maximum sql_variant
            value_in_use sql_variant; description nvarchar(255); is_dynamic bit; is_advanced bit
        """,
        ),
        _table(
            "sys.server_principals",
            "server",
            """
            name sysname; principal_id int; sid varbinary(85); type char(1); type_desc nvarchar(60); is_disabled int
            create_date datetime; modify_date datetime; default_database_name sysname; default_language_name sysname
            credential_id int; owning_principal_id int; is_fixed_role bit
        """,
        ),
        _table("sys.server_role_members", "server", "role_principal_id int; member_principal_id int"),
        _table(
            "sys.server_permissions",
            "server",
            """
            class tinyint; class_desc nvarchar(60); major_id int; minor_id int; grantee_principal_id int
            grantor_principal_id int; type char(4); permission_name nvarchar(128); state char(1)
            state_desc nvarchar(60)
        """,
        ),
        _table("sys.endpoints", "server", _ENDPOINT_COMMON),
        _table(
            "sys.tcp_endpoints",
            "server",
            _ENDPOINT_COMMON
            + """
            port int; is_dynamic_port bit; ip_address nvarchar(45)
        """,
        ),
        _table(
            "sys.database_mirroring_endpoints",
            "server",
            _ENDPOINT_COMMON
            + """
            role tinyint; role_desc nvarchar(60); is_encryption_enabled bit; connection_auth tinyint
            connection_auth_desc nvarchar(60); certificate_id int; encryption_algorithm tinyint
            encryption_algorithm_desc nvarchar(60)
        """,
        ),
        _table(
            "sys.availability_groups",
            "server",
            """
            group_id uniqueidentifier; name sysname; resource_id nvarchar(40); resource_group_id nvarchar(40)
            failure_condition_level int; health_check_timeout int; automated_backup_preference tinyint
            automated_backup_preference_desc nvarchar(60); version smallint; basic_features bit; dtc_support bit
            db_failover bit; is_distributed bit; cluster_type tinyint; cluster_type_desc nvarchar(60)
            required_synchronized_secondaries_to_commit int; sequence_number bigint
        """,
        ),
        _table(
            "sys.availability_databases_cluster",
            "server",
            """
            group_id uniqueidentifier; group_database_id uniqueidentifier; database_name nvarchar(128)
            truncation_lsn numeric(25,0)
        """,
        ),
        _table(
            "sys.dm_hadr_cluster",
            "server",
            """
            cluster_name nvarchar(128); quorum_type tinyint; quorum_type_desc nvarchar(50); quorum_state tinyint
            quorum_state_desc nvarchar(50)
        """,
            VIEW_SERVER_STATE,
            _sql_server_only,
        ),
        _table(
            "sys.dm_hadr_cluster_members",
            "server",
            """
            member_name nvarchar(128); member_type tinyint; member_type_desc nvarchar(50); member_state tinyint
            member_state_desc nvarchar(60); number_of_quorum_votes int
        """,
            VIEW_SERVER_STATE,
            _sql_server_only,
        ),
        _table(
            "sys.dm_os_sys_info",
            "server",
            """
            cpu_ticks bigint; ms_ticks bigint; cpu_count int; hyperthread_ratio int; physical_memory_kb bigint
            virtual_memory_kb bigint; committed_kb bigint; committed_target_kb bigint; max_workers_count int
            scheduler_count int; scheduler_total_count int; sqlserver_start_time_ms_ticks bigint
            sqlserver_start_time datetime; affinity_type int; affinity_type_desc nvarchar(60)
            virtual_machine_type int; virtual_machine_type_desc nvarchar(60)
        """,
            VIEW_SERVER_STATE,
        ),
        _table(
            "sys.dm_os_host_info",
            "server",
            """
            host_platform nvarchar(256); host_distribution nvarchar(256); host_release nvarchar(256)
            host_service_pack_level nvarchar(256); host_sku int; os_language_version int
        """,
            None,
            lambda managed, major: managed or major >= 14,
        ),
        _table(
            "sys.dm_server_services",
            "server",
            """
            servicename nvarchar(256); startup_type int; startup_type_desc nvarchar(256); status int
            status_desc nvarchar(256); process_id int; last_startup_time datetimeoffset(7)
            service_account nvarchar(256); filename nvarchar(256); is_clustered nvarchar(1)
            cluster_nodename nvarchar(256); instant_file_initialization_enabled nvarchar(1)
        """,
            VIEW_SERVER_STATE,
            _sql_server_only,
        ),
        _table(
            "sys.dm_server_registry",
            "server",
            """
            registry_key nvarchar(256); value_name nvarchar(256); value_data sql_variant
        """,
            VIEW_SERVER_STATE,
            _sql_server_only,
        ),
        _table(
            "sys.dm_exec_sessions",
            "server",
            """
            session_id smallint; login_time datetime; host_name nvarchar(128); program_name nvarchar(128)
            host_process_id int; client_version int; client_interface_name nvarchar(32); login_name nvarchar(128)
            status nvarchar(30); database_id smallint; original_login_name nvarchar(128); is_user_process bit
        """,
        ),
        _table(
            "sys.dm_database_encryption_keys",
            "server",
            """
            database_id int; encryption_state int; create_date datetime; regenerate_date datetime
            modify_date datetime; set_date datetime; opened_date datetime; key_algorithm nvarchar(32)
            key_length int; encryptor_thumbprint varbinary(20); encryptor_type nvarchar(32); percent_complete real
        """,
            VIEW_SERVER_STATE,
        ),
        _table(
            "sys.dm_hadr_fabric_config_parameters",
            "server",
            """
            section_name nvarchar(256); parameter_name nvarchar(256); value nvarchar(4000)
        """,
            VIEW_SERVER_STATE,
            _managed_only,
        ),
        _table(
            "sys.dm_hadr_fabric_partitions",
            "server",
            """
            partition_id uniqueidentifier; service_name nvarchar(512)
        """,
            VIEW_SERVER_STATE,
            _managed_only,
        ),
        _table(
            "sys.dm_hadr_fabric_replicas",
            "server",
            """
            partition_id uniqueidentifier; replica_id bigint; replica_role int; replica_status int
            replica_address nvarchar(512); node_name nvarchar(256)
        """,
            VIEW_SERVER_STATE,
            _managed_only,
        ),
        _table("sys.dm_hadr_fabric_nodes", "server", "node_name nvarchar(256)", VIEW_SERVER_STATE, _managed_only),
        _table(
            "sys.symmetric_keys",
            "database",
            """
            name sysname; principal_id int; symmetric_key_id int; key_length int; key_algorithm char(2)
            algorithm_desc nvarchar(60); create_date datetime; modify_date datetime; key_guid uniqueidentifier
        """,
        ),
        _table(
            "sys.certificates",
            "database",
            """
            name sysname; certificate_id int; principal_id int; pvt_key_encryption_type char(2)
            pvt_key_encryption_type_desc nvarchar(60); is_active_for_begin_dialog bit; issuer_name nvarchar(442)
            cert_serial_number nvarchar(64); sid varbinary(85); string_sid nvarchar(128); subject nvarchar(4000)
            expiry_date datetime; start_date datetime; thumbprint varbinary(32); attested_by nvarchar(260)
            pvt_key_last_backup_date datetime; key_length int
        """,
        ),
        _table(
            "sys.filegroups",
            "database",
            """
            name sysname; data_space_id int; type char(2); type_desc nvarchar(60); is_default bit; is_system bit
            filegroup_guid uniqueidentifier; log_filegroup_id int; is_read_only bit; is_autogrow_all_files bit
        """,
        ),
        _table(
            "sys.database_files",
            "database",
            """
            file_id int; file_guid uniqueidentifier; type tinyint; type_desc nvarchar(60); data_space_id int
            name sysname; physical_name nvarchar(260); state tinyint; state_desc nvarchar(60); size int
            max_size int; growth int; is_media_read_only bit; is_read_only bit; is_sparse bit
            is_percent_growth bit; is_name_reserved bit
        """,
        ),
        _table(
            "sys.tables",
            "database",
            """
            name sysname; object_id int; principal_id int; schema_id int; parent_object_id int; type char(2)
            type_desc nvarchar(60); create_date datetime; modify_date datetime; is_ms_shipped bit
            is_published bit; is_schema_published bit; lob_data_space_id int; filestream_data_space_id int
            max_column_id_used int; lock_on_bulk_load bit; uses_ansi_nulls bit; is_replicated bit
            has_replication_filter bit; is_merge_published bit; is_sync_tran_subscribed bit
            has_unchecked_assembly_data bit; text_in_row_limit int; large_value_types_out_of_row bit
            is_tracked_by_cdc bit; lock_escalation tinyint; lock_escalation_desc nvarchar(60); is_filetable bit
            is_memory_optimized bit; durability tinyint; durability_desc nvarchar(60); temporal_type tinyint
            temporal_type_desc nvarchar(60); history_table_id int; is_remote_data_archive_enabled bit
            is_external bit
        """,
        ),
        _table(
            "sys.database_principals",
            "database",
            """
            name sysname; principal_id int; type char(1); type_desc nvarchar(60); default_schema_name sysname
            create_date datetime; modify_date datetime; owning_principal_id int; sid varbinary(85)
            is_fixed_role bit; authentication_type int; authentication_type_desc nvarchar(60)
        """,
        ),
        _table("sys.database_role_members", "database", "role_principal_id int; member_principal_id int"),
        # SQL Server Agent's job tables in msdb (the lab's Agent fills them: engine/agent.py)
        _table(
            "dbo.sysjobs",
            "msdb",
            """
            job_id uniqueidentifier; originating_server_id int; name sysname; enabled tinyint
            description nvarchar(512); start_step_id int; category_id int; owner_sid varbinary(85)
            date_created datetime; date_modified datetime; version_number int
        """,
        ),
        _table(
            "dbo.sysjobs_view",
            "msdb",
            """
            job_id uniqueidentifier; originating_server nvarchar(128); name sysname; enabled tinyint
            description nvarchar(512); start_step_id int; category_id int; owner_sid varbinary(85)
            date_created datetime; date_modified datetime; version_number int
        """,
        ),
        _table(
            "dbo.sysjobsteps",
            "msdb",
            """
            job_id uniqueidentifier; step_id int; step_name sysname; subsystem nvarchar(40); command nvarchar(max)
            flags int; cmdexec_success_code int; on_success_action tinyint; on_success_step_id int
            on_fail_action tinyint; on_fail_step_id int; database_name sysname; last_run_outcome int
            last_run_duration int; last_run_date int; last_run_time int; step_uid uniqueidentifier
        """,
        ),
        _table(
            "dbo.sysjobactivity",
            "msdb",
            """
            session_id int; job_id uniqueidentifier; run_requested_date datetime; run_requested_source sysname
            queued_date datetime; start_execution_date datetime; last_executed_step_id int
            last_executed_step_date datetime; stop_execution_date datetime; job_history_id int
            next_scheduled_run_date datetime
        """,
        ),
        _table(
            "dbo.sysjobhistory",
            "msdb",
            """
            instance_id int; job_id uniqueidentifier; step_id int; step_name sysname; sql_message_id int
            sql_severity int; message nvarchar(4000); run_status int; run_date int; run_time int; run_duration int
            retries_attempted int; server sysname
        """,
        ),
        _table(
            "dbo.sysjobstepslogs",
            "msdb",
            """
            log_id int; log nvarchar(max); date_created datetime; date_modified datetime; log_size bigint
            step_uid uniqueidentifier
        """,
        ),
        _table(
            "dbo.backupset",
            "msdb",
            """
            backup_set_id int; backup_set_uuid uniqueidentifier; media_set_id int; first_family_number tinyint
            first_media_number smallint; last_family_number tinyint; last_media_number smallint
            catalog_family_number tinyint; catalog_media_number smallint; position int; expiration_date datetime
            software_vendor_id int; name nvarchar(128); description nvarchar(255); user_name nvarchar(128)
            software_major_version tinyint; software_minor_version tinyint; software_build_version smallint
            time_zone smallint; mtf_minor_version tinyint; first_lsn numeric(25,0); last_lsn numeric(25,0)
            checkpoint_lsn numeric(25,0); database_backup_lsn numeric(25,0); database_creation_date datetime
            backup_start_date datetime; backup_finish_date datetime; type char(1); sort_order smallint
            code_page smallint; compatibility_level tinyint; database_version int; backup_size numeric(20,0)
            database_name nvarchar(128); server_name nvarchar(128); machine_name nvarchar(128); flags int
            unicode_locale int; unicode_compare_style int; collation_name nvarchar(128); is_password_protected bit
            recovery_model nvarchar(60); has_bulk_logged_data bit; is_snapshot bit; is_readonly bit
            is_single_user bit; has_backup_checksums bit; is_damaged bit; begins_log_chain bit
            has_incomplete_metadata bit; is_force_offline bit; is_copy_only bit
            first_recovery_fork_guid uniqueidentifier; last_recovery_fork_guid uniqueidentifier
            fork_point_lsn numeric(25,0); database_guid uniqueidentifier; family_guid uniqueidentifier
            differential_base_lsn numeric(25,0); differential_base_guid uniqueidentifier
            compressed_backup_size numeric(20,0); key_algorithm nvarchar(32); encryptor_thumbprint varbinary(20)
            encryptor_type nvarchar(32)
        """,
        ),
    )
}


OWNED_TABLES = frozenset(
    {
        "sys.endpoints",
        "sys.tcp_endpoints",
        "sys.database_mirroring_endpoints",
        "sys.certificates",
        "dbo.sysjobs",
        "dbo.sysjobs_view",
        "dbo.sysjobsteps",
        "dbo.sysjobactivity",
        "dbo.sysjobhistory",
        "dbo.sysjobstepslogs",
    }
)
"""Tables that also hold an instance's own rows (objects created at run time: jobs, test endpoints,
certificates), stored under the instance's own id next to the scenario's shared rows."""


def find(schema: str, name: str) -> SystemTable | None:
    """The system table `schema.name` (case-insensitive), or None."""
    return TABLES.get(f"{schema.lower()}.{name.lower()}")


def lookup_override_target(key: str, databases: Iterable[str]) -> SystemTable:
    """The table a scenario's `tables:` key names: [database.]schema.table; KeyError says why not."""
    _, table = split_override_key(key, databases)
    return table


def split_override_key(key: str, databases: Iterable[str]) -> tuple[str | None, SystemTable]:
    """'SalesDB.sys.tables' → ('SalesDB', sys.tables); 'sys.configurations' → (None, ...)."""
    parts = key.split(".")
    if len(parts) not in (2, 3):
        raise KeyError(f"expected [database.]schema.table, got {key!r}")
    table = find(parts[-2], parts[-1])
    if table is None:
        raise KeyError(f"no system table {'.'.join(parts[-2:])!r} (known: {', '.join(sorted(TABLES))})")
    database = parts[0] if len(parts) == 3 else None
    known = {d.lower(): d for d in (*databases, "master", "msdb", "tempdb", "model")}
    if database is not None and database.lower() not in known:
        raise KeyError(f"no database {database!r}")
    if table.scope == "database" and database is None:
        raise KeyError(f"{table.name} is per database: write <database>.{table.name}")
    return (known[database.lower()] if database else None), table
