"""The T-SQL the gate sends, one constant per fact group, as the spec words it (prerequisites-spec §3-§4).

Every SERVERPROPERTY, registry and configuration value is CAST, because those are sql_variant and
pyodbc with Driver 18 cannot read an int-based sql_variant. All of it is read-only.
"""

LOGIN = "SELECT IS_SRVROLEMEMBER(N'sysadmin') AS is_sysadmin, SUSER_SNAME() AS login_name;"

PRODUCT = """
SELECT CAST(SERVERPROPERTY('ProductVersion')         AS nvarchar(128)) AS product_version,
       CAST(SERVERPROPERTY('ProductLevel')           AS nvarchar(128)) AS product_level,
       CAST(SERVERPROPERTY('ProductUpdateLevel')     AS nvarchar(128)) AS product_update_level,
       CAST(SERVERPROPERTY('ProductUpdateReference') AS nvarchar(128)) AS kb,
       CAST(SERVERPROPERTY('Edition')                AS nvarchar(128)) AS edition,
       CAST(SERVERPROPERTY('EngineEdition')          AS int)           AS engine_edition,
       CAST(SERVERPROPERTY('Collation')              AS nvarchar(128)) AS collation,
       CAST(SERVERPROPERTY('ProductUpdateType')      AS nvarchar(128)) AS product_update_type,
       @@VERSION                                                       AS version_string;
"""

HOST_INFO = "SELECT host_platform, host_distribution, host_release FROM sys.dm_os_host_info;"

MASTER_KEY = """
SELECT name, symmetric_key_id, create_date FROM master.sys.symmetric_keys WHERE symmetric_key_id = 101;
"""

HADR = """
SELECT CAST(SERVERPROPERTY('IsHadrEnabled')     AS int) AS is_hadr_enabled,
       CAST(SERVERPROPERTY('HadrManagerStatus') AS int) AS hadr_manager_status;
"""

TRACE_FLAGS = "DBCC TRACESTATUS(-1) WITH NO_INFOMSGS;"

STARTUP_PARAMETERS = """
SELECT registry_key, value_name, CAST(value_data AS nvarchar(4000)) AS value_data
FROM sys.dm_server_registry
WHERE registry_key LIKE N'%Parameters' AND value_name LIKE N'SQLArg%';
"""

AGENT_SERVICE = """
SELECT servicename, startup_type_desc, status_desc
FROM sys.dm_server_services WHERE servicename LIKE N'SQL Server Agent%';
"""

AGENT_XPS = "SELECT CAST(value_in_use AS int) AS agent_xps FROM sys.configurations WHERE name = N'Agent XPs';"

AGENT_OPERATOR = "EXEC msdb.sys.sp_executesql N'SELECT IS_ROLEMEMBER(N''SQLAgentOperatorRole'') AS is_agent_operator;';"

ENDPOINTS = """
SELECT e.name, e.type_desc, e.state_desc, e.role_desc, e.connection_auth_desc,
       e.is_encryption_enabled, e.encryption_algorithm_desc, t.port, t.ip_address,
       c.name AS certificate_name, c.expiry_date
FROM sys.database_mirroring_endpoints e
JOIN sys.tcp_endpoints t ON t.endpoint_id = e.endpoint_id
LEFT JOIN master.sys.certificates c ON c.certificate_id = e.certificate_id;
"""

WSFC_CLUSTER = "SELECT cluster_name, quorum_type_desc, quorum_state_desc FROM sys.dm_hadr_cluster;"

WSFC_MEMBERS = "SELECT member_name, member_type_desc, member_state_desc FROM sys.dm_hadr_cluster_members;"

WSFC_SYSTEM_GRANTS = """
SELECT sp.permission_name, sp.state_desc
FROM sys.server_permissions sp JOIN sys.server_principals p ON p.principal_id = sp.grantee_principal_id
WHERE p.name = N'NT AUTHORITY\\SYSTEM'
  AND sp.permission_name IN (N'ALTER ANY AVAILABILITY GROUP', N'CONNECT SQL', N'VIEW SERVER STATE');
"""

START_TIME = "SELECT sqlserver_start_time FROM sys.dm_os_sys_info;"

DATABASE_STATE = """
SELECT d.name, d.recovery_model_desc, d.state_desc, drs.last_log_backup_lsn, drs.database_guid,
       d.is_broker_enabled
FROM sys.databases d
JOIN sys.database_recovery_status drs ON drs.database_id = d.database_id
WHERE d.name = ?;
"""

ACCELERATED_RECOVERY = """
SELECT name, is_accelerated_database_recovery_on FROM sys.databases WHERE name = ?;
"""
"""Only sent to SQL Server 2019 (major 15) and later: the column does not exist before."""

LOG_FILE_PATHS = """
SELECT d.name AS db, mf.physical_name
FROM sys.master_files mf JOIN sys.databases d ON d.database_id = mf.database_id
WHERE mf.type = 1 AND d.name = ?
ORDER BY mf.file_id;
"""
"""The log files' paths (HOST-L-04/HOST-W-04 read the sector size of the volume holding the first one)."""

SERVER_MACHINE = """
SELECT CAST(SERVERPROPERTY('ComputerNamePhysicalNetBIOS') AS nvarchar(128)) AS physical_node;
"""
"""The Windows node SQL Server runs on now: the local member of its failover cluster (2016, SQL-07)."""

LAST_FULL_BACKUP = """
SELECT TOP (1) bs.backup_finish_date, bs.recovery_model, bs.is_copy_only, bs.has_backup_checksums,
       bs.checkpoint_lsn, bs.database_backup_lsn
FROM msdb.dbo.backupset bs
WHERE bs.database_name = ? AND bs.type = 'D' AND bs.is_copy_only = 0 AND bs.recovery_model = N'FULL'
  AND bs.database_guid = (SELECT database_guid FROM sys.database_recovery_status WHERE database_id = DB_ID(?))
ORDER BY bs.backup_finish_date DESC;
"""

TDE = """
SELECT d.name, dek.encryption_state, dek.encryptor_type,
       CONVERT(varchar(42), dek.encryptor_thumbprint, 1) AS encryptor_thumbprint,
       c.name AS certificate_name, c.expiry_date
FROM sys.dm_database_encryption_keys dek
JOIN sys.databases d ON d.database_id = dek.database_id
LEFT JOIN master.sys.certificates c ON c.thumbprint = dek.encryptor_thumbprint
WHERE d.name = ?;
"""


def in_database(database: str, statement: str) -> str:
    """Run a statement in a database's context (database-scoped catalog views) without USE."""
    quoted_db = database.replace("]", "]]")
    quoted_statement = statement.strip().replace("'", "''")
    return f"EXEC [{quoted_db}].sys.sp_executesql N'{quoted_statement}';"


XTP_AND_FILESTREAM = """
SELECT fg.type, fg.type_desc, COUNT(df.file_id) AS containers
FROM sys.filegroups fg LEFT JOIN sys.database_files df ON df.data_space_id = fg.data_space_id
WHERE fg.type IN ('FX','FD') GROUP BY fg.type, fg.type_desc;
"""

LOG_FILES = "SELECT COUNT(*) AS log_files FROM sys.database_files WHERE type = 1;"

FILETABLES = "SELECT COUNT(*) AS filetables FROM sys.tables WHERE is_filetable = 1;"

MEMORY_OPTIMIZED_TABLES = "SELECT COUNT(*) AS memopt_tables FROM sys.tables WHERE is_memory_optimized = 1;"

AVAILABILITY_GROUPS = """
SELECT ag.name, COUNT(adc.database_name) AS db_count
FROM sys.availability_groups ag JOIN sys.availability_databases_cluster adc ON adc.group_id = ag.group_id
WHERE ag.group_id IN (SELECT group_id FROM sys.availability_databases_cluster WHERE database_name = ?)
GROUP BY ag.name;
"""

FABRIC_PARAMETERS = """
SELECT parameter_name, section_name, CAST(value AS nvarchar(512)) AS value
FROM sys.dm_hadr_fabric_config_parameters
WHERE parameter_name IN (N'DnsRecordName', N'ClusterName', N'HadrPort', N'InstanceName');
"""

FABRIC_PRIMARY = """
SELECT SUBSTRING(replica_address, 0, CHARINDEX('\\', replica_address)) AS node_name, service_name
FROM sys.dm_hadr_fabric_partitions fp
INNER JOIN sys.dm_hadr_fabric_replicas fr ON fp.partition_id = fr.partition_id
INNER JOIN sys.dm_hadr_fabric_nodes fn ON fr.node_name = fn.node_name
WHERE service_name LIKE '%ManagedServer%' AND replica_role = 2;
"""
