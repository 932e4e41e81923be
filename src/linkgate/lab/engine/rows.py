"""An instance's system-view rows, derived from its scenario facts (pure Python, no DuckDB).

`system_rows(profile)` answers "what would SQL Server show in each view for these facts": a FULL
database with a full backup has a started log chain, a TDE database puts tempdb's key in
sys.dm_database_encryption_keys, a FILESTREAM database has an FD filegroup with a container, and so on.
Ids, GUIDs, LSNs and thumbprints are derived deterministically from names, so runs are repeatable.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from linkgate.lab.engine.profile import Profile
from linkgate.lab.engine.schema import TABLES, SystemTable, split_override_key
from linkgate.lab.results import SqlType
from linkgate.lab.scenario import BackupSpec, DatabaseSpec, InstanceSpec

Row = dict[str, Any]
Placed = tuple[SystemTable, str | None, Row]
"""A row for a table; the middle item is the database of a database-scoped table."""

SYSTEM_DB_IDS = {"master": 1, "tempdb": 2, "model": 3, "msdb": 4}
FIXED_SERVER_ROLES = (
    "public",
    "sysadmin",
    "securityadmin",
    "serveradmin",
    "setupadmin",
    "processadmin",
    "diskadmin",
    "dbcreator",
    "bulkadmin",
)
FIXED_DATABASE_ROLES = (
    "db_owner",
    "db_accessadmin",
    "db_securityadmin",
    "db_ddladmin",
    "db_backupoperator",
    "db_datareader",
    "db_datawriter",
    "db_denydatareader",
    "db_denydatawriter",
)
MSDB_ROLES = (
    "SQLAgentUserRole",
    "SQLAgentReaderRole",
    "SQLAgentOperatorRole",
    "DatabaseMailUserRole",
    "db_ssisadmin",
    "db_ssisltduser",
    "db_ssisoperator",
    "TargetServersRole",
)
PERMISSION_CODES = {
    "CONNECT SQL": "COSQ",
    "VIEW SERVER STATE": "VWSS",
    "VIEW ANY DEFINITION": "VWAD",
    "VIEW ANY DATABASE": "VWDB",
    "ALTER ANY AVAILABILITY GROUP": "ALAG",
    "ALTER ANY ENDPOINT": "ALHE",
    "CREATE ENDPOINT": "CRHE",
    "CONTROL SERVER": "CL",
    "ALTER ANY LOGIN": "ALLG",
    "ALTER ANY DATABASE": "ALDB",
    "CREATE ANY DATABASE": "CRDB",
    "ALTER SERVER STATE": "ALSS",
    "VIEW SERVER PERFORMANCE STATE": "VSPS",
    "VIEW SERVER SECURITY STATE": "VSSS",
}
SYSTEM_LOGIN = "NT AUTHORITY\\SYSTEM"
RECOVERY_CODES = {"FULL": 1, "BULK_LOGGED": 2, "SIMPLE": 3}
STATE_CODES = {
    "ONLINE": 0,
    "RESTORING": 1,
    "RECOVERING": 2,
    "RECOVERY_PENDING": 3,
    "SUSPECT": 4,
    "EMERGENCY": 5,
    "OFFLINE": 6,
}
ENDPOINT_STATES = {"STARTED": 0, "STOPPED": 1, "DISABLED": 2}
ENDPOINT_ROLES = {"DISABLED": 0, "PARTNER": 1, "WITNESS": 2, "ALL": 3}
CONNECTION_AUTH = {
    "NTLM": 1,
    "KERBEROS": 2,
    "NEGOTIATE": 3,
    "CERTIFICATE": 4,
    "NTLM, CERTIFICATE": 5,
    "KERBEROS, CERTIFICATE": 6,
    "NEGOTIATE, CERTIFICATE": 7,
    "CERTIFICATE, NTLM": 8,
    "CERTIFICATE, KERBEROS": 9,
    "CERTIFICATE, NEGOTIATE": 10,
}
ALGORITHMS = {
    "NONE": 0,
    "RC4": 1,
    "AES": 2,
    "NONE, RC4": 3,
    "NONE, AES": 4,
    "RC4, AES": 5,
    "AES, RC4": 6,
    "NONE, RC4, AES": 7,
    "NONE, AES, RC4": 8,
}
SERVICE_STATUS = {
    "STOPPED": 1,
    "START PENDING": 2,
    "STOP PENDING": 3,
    "RUNNING": 4,
    "CONTINUE PENDING": 5,
    "PAUSE PENDING": 6,
    "PAUSED": 7,
}
SERVICE_STARTUP = {"OTHER": 0, "AUTOMATIC": 2, "MANUAL": 3, "DISABLED": 4}
AG_CLUSTER_TYPES = {"WSFC": 0, "EXTERNAL": 1, "NONE": 2}
CONFIGURATIONS = (
    # configuration_id, name, minimum, maximum, default, description, is_dynamic, is_advanced
    (518, "show advanced options", 0, 1, 0, "show advanced options", True, False),
    (1538, "cost threshold for parallelism", 0, 32767, 5, "cost threshold for parallelism", True, True),
    (1539, "max degree of parallelism", 0, 32767, 0, "maximum degree of parallelism", True, True),
    (1543, "min server memory (MB)", 0, 2147483647, 0, "Minimum size of server memory (MB)", True, True),
    (1544, "max server memory (MB)", 128, 2147483647, 2147483647, "Maximum size of server memory (MB)", True, True),
    (1562, "clr enabled", 0, 1, 0, "CLR user code execution enabled in the server", True, False),
    (1568, "default trace enabled", 0, 1, 1, "Enable or disable the default trace", True, True),
    (
        1576,
        "remote admin connections",
        0,
        1,
        0,
        "Dedicated Admin Connections are allowed from remote clients",
        True,
        False,
    ),
    (1579, "backup compression default", 0, 1, 0, "Enable compression of backups by default", True, False),
    (1584, "backup checksum default", 0, 1, 0, "Enable checksum of backups by default", True, False),
    (16384, "Agent XPs", 0, 1, 0, "Enable or disable Agent XPs", True, True),
    (16386, "Database Mail XPs", 0, 1, 0, "Enable or disable Database Mail XPs", True, True),
    (16390, "xp_cmdshell", 0, 1, 0, "Enable or disable command shell", True, True),
)
SYSTEM_CERTIFICATES = (
    "##MS_SQLResourceSigningCertificate##",
    "##MS_SQLReplicationSigningCertificate##",
    "##MS_SQLAuthenticatorCertificate##",
    "##MS_AgentSigningCertificate##",
)


def stable_guid(*parts: str) -> uuid.UUID:
    """A GUID that depends only on `parts`, so every run shows the same ids."""
    return uuid.uuid5(uuid.NAMESPACE_URL, "linkgate-lab:" + "/".join(parts))


def thumbprint(name: str, given: str | None = None) -> bytes:
    """A certificate's SHA-1 thumbprint: the scenario's hex, or derived from the name."""
    if given:
        return bytes.fromhex(given.removeprefix("0x"))
    return hashlib.sha1(name.encode()).digest()


class _Builder:
    """Collects rows while walking the facts once."""

    def __init__(self, p: Profile) -> None:
        self.p = p
        self.s: InstanceSpec = p.spec
        self.rows: list[Placed] = []
        self.db_ids = dict(SYSTEM_DB_IDS)
        for i, name in enumerate(self.s.databases, start=5):
            self.db_ids[name] = i
        self.cert_ids = {name: 256 + i for i, name in enumerate(self.s.certificates)}

    def add(self, table: str, row: Row, database: str | None = None) -> None:
        self.rows.append((TABLES[table], database, row))

    # ---- helpers over the facts

    def guid(self, db: str) -> uuid.UUID:
        spec = self.s.databases.get(db)
        return (spec.database_guid if spec and spec.database_guid else None) or stable_guid(self.s.name, db)

    def full_backups(self, db: str, spec: DatabaseSpec) -> list[BackupSpec]:
        current = self.guid(db)
        return [b for b in spec.backups if b.type == "D" and (b.database_guid or current) == current]

    def log_chain_started(self, db: str, spec: DatabaseSpec) -> bool:
        if spec.log_chain_started is not None:
            return spec.log_chain_started
        return spec.recovery_model != "SIMPLE" and bool(self.full_backups(db, spec))

    def data_dir(self) -> str:
        if self.p.on_windows:
            return f"C:\\Program Files\\Microsoft SQL Server\\{self.p.instance_id}\\MSSQL\\DATA\\"
        return "/var/opt/mssql/data/"

    def all_databases(self) -> Iterator[tuple[str, int, DatabaseSpec | None]]:
        for name, db_id in self.db_ids.items():
            yield name, db_id, self.s.databases.get(name)


def system_rows(p: Profile) -> list[Placed]:
    """Every system-table row of the instance, including the scenario's raw `tables:` rows."""
    b = _Builder(p)
    _databases(b)
    _files(b)
    _principals(b)
    _security_objects(b)
    _server_state(b)
    _endpoints(b)
    _availability(b)
    _backups(b)
    if p.managed and p.spec.fabric:
        _fabric(b)
    return _apply_overrides(b)


def _databases(b: _Builder) -> None:
    for name, db_id, spec in b.all_databases():
        system_recovery = {"model": "FULL"}.get(name, "SIMPLE")
        recovery = spec.recovery_model if spec else system_recovery
        state = spec.state if spec else "ONLINE"
        ag = next((g for g, ag in b.s.availability_groups.items() if name in ag.databases), None)
        b.add(
            "sys.databases",
            {
                "name": name,
                "database_id": db_id,
                "owner_sid": b"\x01",
                "compatibility_level": (
                    spec.compatibility_level if spec and spec.compatibility_level else b.p.major * 10
                ),
                "create_date": (spec.create_date if spec and spec.create_date else dt.datetime(2024, 3, 14, 9, 26, 53)),
                "collation_name": b.s.collation,
                "user_access": 0,
                "user_access_desc": "MULTI_USER",
                "is_read_only": False,
                "is_auto_close_on": False,
                "is_auto_shrink_on": False,
                "state": STATE_CODES.get(state, 0),
                "state_desc": state,
                "is_in_standby": False,
                "is_cleanly_shutdown": False,
                "snapshot_isolation_state": 0,
                "snapshot_isolation_state_desc": "OFF",
                "is_read_committed_snapshot_on": False,
                "recovery_model": RECOVERY_CODES[recovery],
                "recovery_model_desc": recovery,
                "page_verify_option": 2,
                "page_verify_option_desc": "CHECKSUM",
                "is_trustworthy_on": name == "msdb",
                "is_broker_enabled": spec.broker_enabled if spec else name == "msdb",
                "log_reuse_wait": 0,
                "log_reuse_wait_desc": "NOTHING",
                "is_encrypted": bool(spec and spec.tde and spec.tde.state >= 2) or (name == "tempdb" and _any_tde(b)),
                "is_master_key_encrypted_by_server": name == "master" and b.s.master_key,
                "is_published": False,
                "is_distributor": False,
                "service_broker_guid": stable_guid(b.s.name, name, "broker"),
                "is_cdc_enabled": False,
                "is_memory_optimized_elevate_to_snapshot_on": False,
                "group_database_id": stable_guid(b.s.name, ag, name) if ag else None,
                "replica_id": stable_guid(b.s.name, ag, "replica") if ag else None,
                "is_query_store_on": spec is not None,
                "is_accelerated_database_recovery_on": (bool(spec and spec.accelerated_database_recovery)),
            },
        )
        guid = b.guid(name)
        chain = spec is not None and b.log_chain_started(name, spec)
        b.add(
            "sys.database_recovery_status",
            {
                "database_id": db_id,
                "database_guid": guid,
                "family_guid": guid,
                "last_log_backup_lsn": Decimal(f"{40 + db_id}000000{db_id:05d}00001") if chain else None,
                "recovery_fork_guid": stable_guid(b.s.name, name, "fork"),
                "first_recovery_fork_guid": stable_guid(b.s.name, name, "fork"),
                "fork_point_lsn": None,
            },
        )
    for name, spec in b.s.databases.items():
        if spec.tde is not None:
            cert = spec.tde.certificate
            b.add(
                "sys.dm_database_encryption_keys",
                _dek(
                    b,
                    name,
                    spec.tde.state,
                    spec.tde.algorithm,
                    spec.tde.key_length,
                    spec.tde.encryptor_type,
                    thumbprint(cert, b.s.certificates[cert].thumbprint) if cert else b"\x00" * 20,
                ),
            )
    if _any_tde(b):
        b.add("sys.dm_database_encryption_keys", _dek(b, "tempdb", 3, "AES", 256, "ASYMMETRIC KEY", b""))


def _any_tde(b: _Builder) -> bool:
    return any(d.tde is not None and d.tde.state >= 2 for d in b.s.databases.values())


def _dek(b: _Builder, db: str, state: int, algorithm: str, length: int, encryptor: str, thumb: bytes) -> Row:
    when = dt.datetime(2024, 6, 2, 10, 0, 0)
    return {
        "database_id": b.db_ids[db],
        "encryption_state": state,
        "create_date": when,
        "regenerate_date": when,
        "modify_date": when,
        "set_date": when,
        "opened_date": when,
        "key_algorithm": algorithm,
        "key_length": length,
        "encryptor_thumbprint": thumb,
        "encryptor_type": encryptor,
        "percent_complete": 0.0,
    }


def _files(b: _Builder) -> None:
    for name, db_id, spec in b.all_databases():
        groups = [("PRIMARY", "FG", "ROWS_FILEGROUP", 0)]
        log_files = spec.log_files if spec else 1
        if spec and spec.filestream_containers:
            groups.append((f"{name}_FileStream", "FD", "FILESTREAM_DATA_FILEGROUP", spec.filestream_containers))
        if spec and spec.xtp_containers:
            groups.append((f"{name}_InMemory", "FX", "MEMORY_OPTIMIZED_DATA_FILEGROUP", spec.xtp_containers))
        files: list[Row] = [_file(b, name, 1, 0, "ROWS", 1, name, f"{name}.mdf")]
        for i in range(log_files):
            suffix = "" if i == 0 else f"_{i + 1}"
            files.append(_file(b, name, len(files) + 1, 1, "LOG", 0, f"{name}_log{suffix}", f"{name}_log{suffix}.ldf"))
        for space_id, (group, code, desc, containers) in enumerate(groups, start=1):
            b.add(
                "sys.filegroups",
                {
                    "name": group,
                    "data_space_id": space_id,
                    "type": code,
                    "type_desc": desc,
                    "is_default": space_id == 1,
                    "is_system": False,
                    "filegroup_guid": (None if space_id == 1 else stable_guid(b.s.name, name, group)),
                    "log_filegroup_id": None,
                    "is_read_only": False,
                    "is_autogrow_all_files": False,
                },
                name,
            )
            for c in range(containers):
                files.append(
                    _file(b, name, len(files) + 1, 2, "FILESTREAM", space_id, f"{group}_{c + 1}", f"{group}_{c + 1}")
                )
        for row in files:
            b.add("sys.database_files", row, name)
            b.add("sys.master_files", {"database_id": db_id, **row})
        _tables(b, name, spec)


def _file(
    b: _Builder, db: str, file_id: int, kind: int, kind_desc: str, space: int, logical: str, physical: str
) -> Row:
    return {
        "file_id": file_id,
        "file_guid": stable_guid(b.s.name, db, logical),
        "type": kind,
        "type_desc": kind_desc,
        "data_space_id": space,
        "name": logical,
        "physical_name": b.data_dir() + physical,
        "state": 0,
        "state_desc": "ONLINE",
        "size": 1024 if kind != 2 else 0,
        "max_size": -1,
        "growth": 8192 if kind == 0 else 10,
        "is_media_read_only": False,
        "is_read_only": False,
        "is_sparse": False,
        "is_percent_growth": kind == 1,
        "is_name_reserved": False,
    }


def _tables(b: _Builder, db: str, spec: DatabaseSpec | None) -> None:
    if spec is None:
        return
    made = dt.datetime(2024, 3, 14, 9, 30, 0)
    kinds = [(f"Documents{i + 1}", True, False) for i in range(spec.filetables)]
    kinds += [(f"SessionState{i + 1}", False, True) for i in range(spec.memory_optimized_tables)]
    for i, (table, filetable, memopt) in enumerate(kinds):
        b.add(
            "sys.tables",
            {
                "name": table,
                "object_id": 901578250 + i * 16,
                "principal_id": None,
                "schema_id": 1,
                "parent_object_id": 0,
                "type": "U",
                "type_desc": "USER_TABLE",
                "create_date": made,
                "modify_date": made,
                "is_ms_shipped": False,
                "is_published": False,
                "is_schema_published": False,
                "lob_data_space_id": 0,
                "filestream_data_space_id": 2 if filetable else None,
                "max_column_id_used": 4,
                "lock_on_bulk_load": False,
                "uses_ansi_nulls": True,
                "is_replicated": False,
                "has_replication_filter": False,
                "is_merge_published": False,
                "is_sync_tran_subscribed": False,
                "has_unchecked_assembly_data": False,
                "text_in_row_limit": 0,
                "large_value_types_out_of_row": False,
                "is_tracked_by_cdc": False,
                "lock_escalation": 0,
                "lock_escalation_desc": "TABLE",
                "is_filetable": filetable,
                "is_memory_optimized": memopt,
                "durability": 0,
                "durability_desc": "SCHEMA_AND_DATA",
                "temporal_type": 0,
                "temporal_type_desc": "NON_TEMPORAL_TABLE",
                "history_table_id": None,
                "is_remote_data_archive_enabled": False,
                "is_external": False,
            },
            db,
        )


def _principals(b: _Builder) -> None:
    made = dt.datetime(2024, 3, 14, 9, 20, 0)
    ids: dict[str, int] = {"sa": 1}
    server = [("sa", "S", "SQL_LOGIN", False)]
    for i, role in enumerate(FIXED_SERVER_ROLES, start=2):
        ids[role] = i
        server.append((role, "R", "SERVER_ROLE", True))
    ids[SYSTEM_LOGIN] = 259
    server.append((SYSTEM_LOGIN, "U", "WINDOWS_LOGIN", False))
    for i, login in enumerate(b.s.logins, start=267):
        ids[login] = i
        server.append((login, "S", "SQL_LOGIN", False))
    for name, code, desc, fixed in server:
        spec = b.s.logins.get(name)
        b.add(
            "sys.server_principals",
            {
                "name": name,
                "principal_id": ids[name],
                "sid": hashlib.md5(name.encode()).digest(),
                "type": code,
                "type_desc": desc,
                "is_disabled": int(bool(spec and spec.disabled)),
                "create_date": made,
                "modify_date": made,
                "default_database_name": None if fixed else (spec.default_database if spec else "master"),
                "default_language_name": None if fixed else "us_english",
                "credential_id": None,
                "owning_principal_id": 1 if fixed and name != "public" else None,
                "is_fixed_role": fixed and name != "public",
            },
        )
    grants: list[tuple[str, str]] = [("sa", "CONNECT SQL")]
    grants += [(SYSTEM_LOGIN, perm) for perm in b.s.system_permissions]
    for login, spec in b.s.logins.items():
        grants += [(login, "CONNECT SQL")] + [(login, perm) for perm in spec.permissions if perm != "CONNECT SQL"]
        for role in spec.server_roles:
            if role.lower() in ids:
                b.add(
                    "sys.server_role_members",
                    {"role_principal_id": ids[role.lower()], "member_principal_id": ids[login]},
                )
    b.add("sys.server_role_members", {"role_principal_id": ids["sysadmin"], "member_principal_id": 1})
    for login, perm in grants:
        b.add(
            "sys.server_permissions",
            {
                "class": 100,
                "class_desc": "SERVER",
                "major_id": 0,
                "minor_id": 0,
                "grantee_principal_id": ids[login],
                "grantor_principal_id": 1,
                "type": PERMISSION_CODES.get(perm.upper(), perm.upper()[:4]),
                "permission_name": perm.upper(),
                "state": "G",
                "state_desc": "GRANT",
            },
        )
    for db, _, _ in b.all_databases():
        _database_principals(b, db, made)


def _database_principals(b: _Builder, db: str, made: dt.datetime) -> None:
    principals = [
        ("public", 0, "R", "DATABASE_ROLE", False),
        ("dbo", 1, "S", "SQL_USER", False),
        ("guest", 2, "S", "SQL_USER", False),
        ("INFORMATION_SCHEMA", 3, "S", "SQL_USER", False),
        ("sys", 4, "S", "SQL_USER", False),
    ]
    role_ids: dict[str, int] = {"public": 0}
    for i, role in enumerate(FIXED_DATABASE_ROLES):
        role_ids[role.lower()] = 16384 + i
        principals.append((role, 16384 + i, "R", "DATABASE_ROLE", True))
    if db == "msdb":
        for i, role in enumerate(MSDB_ROLES, start=10):
            role_ids[role.lower()] = i
            principals.append((role, i, "R", "DATABASE_ROLE", False))
    users = [
        (login, spec) for login, spec in b.s.logins.items() if any(d.lower() == db.lower() for d in spec.databases)
    ]
    for i, (login, _) in enumerate(users, start=5):
        principals.append((login, i, "S", "SQL_USER", False))
    for name, pid, code, desc, fixed in principals:
        b.add(
            "sys.database_principals",
            {
                "name": name,
                "principal_id": pid,
                "type": code,
                "type_desc": desc,
                "default_schema_name": "dbo" if code == "S" else None,
                "create_date": made,
                "modify_date": made,
                "owning_principal_id": 1 if code == "R" and name != "public" else None,
                "sid": hashlib.md5(name.encode()).digest() if code == "S" else None,
                "is_fixed_role": fixed,
                "authentication_type": 1 if code == "S" else 0,
                "authentication_type_desc": "INSTANCE" if code == "S" else "NONE",
            },
            db,
        )
    for i, (_, spec) in enumerate(users, start=5):
        roles = next(r for d, r in spec.databases.items() if d.lower() == db.lower())
        for role in roles:
            if role.lower() in role_ids:
                b.add(
                    "sys.database_role_members",
                    {"role_principal_id": role_ids[role.lower()], "member_principal_id": i},
                    db,
                )


def _security_objects(b: _Builder) -> None:
    made = dt.datetime(2024, 3, 14, 9, 22, 0)
    if b.s.master_key:
        b.add("sys.symmetric_keys", _key("##MS_DatabaseMasterKey##", 101, made, b), "master")
    b.add("sys.symmetric_keys", _key("##MS_ServiceMasterKey##", 102, made, b), "master")
    certs: list[tuple[str, int, dt.datetime, dt.datetime | None, str | None, str | None]] = [
        (n, 101 + i, made + dt.timedelta(days=3650 * 3), None, None, None) for i, n in enumerate(SYSTEM_CERTIFICATES)
    ]
    certs += [(n, b.cert_ids[n], c.expiry, c.start, c.subject, c.thumbprint) for n, c in b.s.certificates.items()]
    for name, cid, expiry, start, subject, given in certs:
        b.add(
            "sys.certificates",
            {
                "name": name,
                "certificate_id": cid,
                "principal_id": 1,
                "pvt_key_encryption_type": "MK",
                "pvt_key_encryption_type_desc": "ENCRYPTED_BY_MASTER_KEY",
                "is_active_for_begin_dialog": True,
                "issuer_name": subject or name,
                "cert_serial_number": thumbprint(name, given)[:8].hex(" "),
                "sid": b"\x01\x06" + thumbprint(name, given)[:8],
                "string_sid": None,
                "subject": subject or name,
                "expiry_date": expiry,
                "start_date": start or made,
                "thumbprint": thumbprint(name, given),
                "attested_by": None,
                "pvt_key_last_backup_date": None,
                "key_length": 2048,
            },
            "master",
        )


def _key(name: str, key_id: int, made: dt.datetime, b: _Builder) -> Row:
    return {
        "name": name,
        "principal_id": 1,
        "symmetric_key_id": key_id,
        "key_length": 256,
        "key_algorithm": "A3",
        "algorithm_desc": "AES_256",
        "create_date": made,
        "modify_date": made,
        "key_guid": stable_guid(b.s.name, name),
    }


def _server_state(b: _Builder) -> None:
    p, s = b.p, b.s
    start = p.start_time
    b.add(
        "sys.dm_os_sys_info",
        {
            "cpu_ticks": 1_000_000_000,
            "ms_ticks": 86_400_000,
            "cpu_count": 4,
            "hyperthread_ratio": 4,
            "physical_memory_kb": 16_777_216,
            "virtual_memory_kb": 137_438_953_344,
            "committed_kb": 1_048_576,
            "committed_target_kb": 12_582_912,
            "max_workers_count": 512,
            "scheduler_count": 4,
            "scheduler_total_count": 15,
            "sqlserver_start_time_ms_ticks": 1000,
            "sqlserver_start_time": start,
            "affinity_type": 2,
            "affinity_type_desc": "AUTO",
            "virtual_machine_type": 1,
            "virtual_machine_type_desc": "HYPERVISOR",
        },
    )
    host = s.host
    b.add(
        "sys.dm_os_host_info",
        {
            "host_platform": "Windows" if p.managed else host.platform,
            "host_distribution": "Windows Server 2022 Datacenter" if p.managed else host.distribution,
            "host_release": "10.0" if p.managed else host.release,
            "host_service_pack_level": host.service_pack_level,
            "host_sku": host.sku if host.sku is not None else (8 if p.on_windows or p.managed else None),
            "os_language_version": 1033,
        },
    )
    for row in _configurations(b):
        b.add("sys.configurations", row)
    if p.managed:
        return
    services = (("SQL Server", s.services.engine, "sqlservr"), ("SQL Server Agent", s.services.agent, "sqlagent"))
    for i, (label, service, exe) in enumerate(services):
        running = service.status.upper() == "RUNNING"
        account = service.account or (
            f"NT Service\\{'MSSQLSERVER' if i == 0 else 'SQLSERVERAGENT'}" if p.on_windows else "mssql"
        )
        b.add(
            "sys.dm_server_services",
            {
                "servicename": f"{label} ({p.service_id})",
                "startup_type": SERVICE_STARTUP.get(service.startup.upper(), 0),
                "startup_type_desc": service.startup,
                "status": SERVICE_STATUS.get(service.status.upper(), 1),
                "status_desc": service.status,
                "process_id": 4242 + i if running else None,
                "last_startup_time": start.replace(tzinfo=dt.UTC) if running else None,
                "service_account": account,
                "filename": (
                    f'"C:\\Program Files\\Microsoft SQL Server\\{p.instance_id}\\MSSQL\\Binn\\{exe}.exe" '
                    f"-s{p.service_id}"
                )
                if p.on_windows
                else f"/opt/mssql/bin/{exe}",
                "is_clustered": "N",
                "cluster_nodename": None,
                "instant_file_initialization_enabled": "Y",
            },
        )
    _registry(b)
    _sessions(b)


def _configurations(b: _Builder) -> Iterator[Row]:
    agent_running = b.s.services.agent.status.upper() == "RUNNING" and not b.p.managed
    derived = {"agent xps": b.s.agent_xps if b.s.agent_xps is not None else int(agent_running or b.p.managed)}
    overrides = {k.lower(): v for k, v in b.s.configurations.items()}
    for cid, name, low, high, default, description, dynamic, advanced in CONFIGURATIONS:
        value = overrides.get(name.lower(), derived.get(name.lower(), default))
        yield {
            "configuration_id": cid,
            "name": name,
            "value": value,
            "minimum": low,
            "maximum": high,
            "value_in_use": value,
            "description": description,
            "is_dynamic": dynamic,
            "is_advanced": advanced,
        }


def _registry(b: _Builder) -> None:
    p = b.p
    base = f"HKLM\\Software\\Microsoft\\Microsoft SQL Server\\{p.instance_id}"
    rows: list[tuple[str, str, Any]] = [(f"{base}\\MSSQLServer\\CurrentVersion", "CurrentVersion", p.version_text)]
    if p.on_windows:
        data = b.data_dir()
        args = [f"-d{data}master.mdf", f"-e{data.replace('DATA', 'Log')}ERRORLOG", f"-l{data}mastlog.ldf"]
        args += [f"-T{flag}" for flag in b.s.trace_flags.startup]
        rows += [(f"{base}\\MSSQLServer\\Parameters", f"SQLArg{i}", arg) for i, arg in enumerate(args)]
        rows += [
            (f"{base}\\MSSQLServer\\HADR", "HADR_Enabled", p.hadr_enabled),
            (f"{base}\\MSSQLServer\\SuperSocketNetLib\\Tcp\\IPAll", "TcpPort", "1433"),
            (f"HKLM\\SYSTEM\\CurrentControlSet\\Services\\{p.service_id}", "ObjectName", f"NT Service\\{p.service_id}"),
        ]
    for key, name, value in rows:
        b.add("sys.dm_server_registry", {"registry_key": key, "value_name": name, "value_data": value})


def _sessions(b: _Builder) -> None:
    start = b.p.start_time
    system: list[tuple[int, str, str | None]] = [(i, "sa", None) for i in (1, 2, 3, 4)]
    if b.s.services.agent.status.upper() == "RUNNING":
        agent = "NT SERVICE\\SQLSERVERAGENT" if b.p.on_windows else "sa"
        system += [(51, agent, "SQLAgent - Generic Refresher"), (52, agent, "SQLAgent - Job invocation engine")]
    for sid, login, program in system:
        b.add(
            "sys.dm_exec_sessions",
            {
                "session_id": sid,
                "login_time": start,
                "host_name": b.p.machine_name if program else None,
                "program_name": program,
                "host_process_id": None,
                "client_version": 7 if program else None,
                "client_interface_name": "ODBC" if program else None,
                "login_name": login,
                "status": "sleeping",
                "database_id": 4 if program else 1,
                "original_login_name": login,
                "is_user_process": program is not None,
            },
        )


def _endpoints(b: _Builder) -> None:
    builtin = [
        (1, "Dedicated Admin Connection", 2, "TCP"),
        (2, "TSQL Local Machine", 4, "SHARED_MEMORY"),
        (3, "TSQL Named Pipes", 3, "NAMED_PIPES"),
        (4, "TSQL Default TCP", 2, "TCP"),
        (5, "TSQL Default VIA", 5, "VIA"),
    ]
    for eid, name, protocol, protocol_desc in builtin:
        common = {
            "name": name,
            "endpoint_id": eid,
            "principal_id": 1,
            "protocol": protocol,
            "protocol_desc": protocol_desc,
            "type": 2,
            "type_desc": "TSQL",
            "state": 0 if eid != 5 else 1,
            "state_desc": "STARTED" if eid != 5 else "STOPPED",
            "is_admin_endpoint": eid == 1,
        }
        b.add("sys.endpoints", common)
        if protocol == 2:
            b.add("sys.tcp_endpoints", {**common, "port": 0, "is_dynamic_port": True, "ip_address": None})
    for i, (name, e) in enumerate(b.s.endpoints.items()):
        common = {
            "name": name,
            "endpoint_id": 65536 + i,
            "principal_id": 1,
            "protocol": 2,
            "protocol_desc": "TCP",
            "type": 4,
            "type_desc": "DATABASE_MIRRORING",
            "state": ENDPOINT_STATES[e.state],
            "state_desc": e.state,
            "is_admin_endpoint": False,
        }
        auth = e.authentication.upper().replace(" ", "").replace(",", ", ")
        algorithm = e.algorithm.upper().replace(" ", "").replace(",", ", ")
        if e.encryption == "DISABLED":
            algorithm = "NONE"
        b.add("sys.endpoints", common)
        b.add("sys.tcp_endpoints", {**common, "port": e.port, "is_dynamic_port": False, "ip_address": e.ip_address})
        b.add(
            "sys.database_mirroring_endpoints",
            {
                **common,
                "role": ENDPOINT_ROLES[e.role],
                "role_desc": e.role,
                "is_encryption_enabled": e.encryption != "DISABLED",
                "connection_auth": CONNECTION_AUTH.get(auth, 4),
                "connection_auth_desc": auth,
                "certificate_id": b.cert_ids[e.certificate] if e.certificate else 0,
                "encryption_algorithm": ALGORITHMS.get(algorithm, 2),
                "encryption_algorithm_desc": algorithm,
            },
        )


def _availability(b: _Builder) -> None:
    for name, ag in b.s.availability_groups.items():
        group_id = stable_guid(b.s.name, "ag", name)
        b.add(
            "sys.availability_groups",
            {
                "group_id": group_id,
                "name": name,
                "resource_id": str(stable_guid(b.s.name, name, "resource")),
                "resource_group_id": str(stable_guid(b.s.name, name, "resource-group")),
                "failure_condition_level": 3,
                "health_check_timeout": 30000,
                "automated_backup_preference": 2,
                "automated_backup_preference_desc": "secondary",
                "version": 1,
                "basic_features": False,
                "dtc_support": False,
                "db_failover": True,
                "is_distributed": ag.is_distributed,
                "cluster_type": AG_CLUSTER_TYPES[ag.cluster_type],
                "cluster_type_desc": ag.cluster_type.lower(),
                "required_synchronized_secondaries_to_commit": 0,
                "sequence_number": 4294967297,
            },
        )
        for db in ag.databases:
            b.add(
                "sys.availability_databases_cluster",
                {
                    "group_id": group_id,
                    "group_database_id": stable_guid(b.s.name, name, db),
                    "database_name": db,
                    "truncation_lsn": Decimal("41000000012300001"),
                },
            )
    wsfc = b.s.wsfc
    if wsfc is None:
        return
    b.add(
        "sys.dm_hadr_cluster",
        {
            "cluster_name": wsfc.cluster_name,
            "quorum_type": 0,
            "quorum_type_desc": wsfc.quorum_type,
            "quorum_state": 1,
            "quorum_state_desc": "NORMAL_QUORUM",
        },
    )
    for member in wsfc.members or (b.p.machine_name,):
        b.add(
            "sys.dm_hadr_cluster_members",
            {
                "member_name": member,
                "member_type": 0,
                "member_type_desc": "CLUSTER_NODE",
                "member_state": 1,
                "member_state_desc": "UP",
                "number_of_quorum_votes": 1,
            },
        )


def _backups(b: _Builder) -> None:
    set_id = 0
    for db, spec in b.s.databases.items():
        guid = b.guid(db)
        for n, backup in enumerate(spec.backups):
            set_id += 1
            lsn = Decimal(f"{40 + b.db_ids[db]}000000{n + 1:05d}00001")
            b.add(
                "dbo.backupset",
                {
                    "backup_set_id": set_id,
                    "backup_set_uuid": stable_guid(b.s.name, db, "backup", str(n)),
                    "media_set_id": set_id,
                    "first_family_number": 1,
                    "first_media_number": 1,
                    "last_family_number": 1,
                    "last_media_number": 1,
                    "catalog_family_number": 1,
                    "catalog_media_number": 1,
                    "position": 1,
                    "software_vendor_id": 4608,
                    "name": f"{db}-Full Database Backup" if backup.type == "D" else None,
                    "description": None,
                    "user_name": next(iter(b.s.logins), "sa"),
                    "software_major_version": b.p.major,
                    "software_minor_version": 0,
                    "software_build_version": b.p.version[2],
                    "time_zone": 0,
                    "mtf_minor_version": 0,
                    "first_lsn": lsn,
                    "last_lsn": lsn + 100000,
                    "checkpoint_lsn": lsn,
                    "database_backup_lsn": lsn - 1000000 if n else Decimal(0),
                    "database_creation_date": dt.datetime(2024, 3, 14, 9, 26, 53),
                    "backup_start_date": backup.finished - dt.timedelta(minutes=4),
                    "backup_finish_date": backup.finished,
                    "type": backup.type,
                    "sort_order": 52,
                    "code_page": 0,
                    "compatibility_level": b.p.major * 10,
                    "database_version": 957,
                    "backup_size": Decimal(5_402_624),
                    "database_name": db,
                    "server_name": b.p.server_name,
                    "machine_name": b.p.machine_name,
                    "flags": 512,
                    "unicode_locale": 1033,
                    "unicode_compare_style": 196609,
                    "collation_name": b.s.collation,
                    "is_password_protected": False,
                    "recovery_model": backup.recovery_model,
                    "has_bulk_logged_data": False,
                    "is_snapshot": False,
                    "is_readonly": False,
                    "is_single_user": False,
                    "has_backup_checksums": backup.checksum,
                    "is_damaged": False,
                    "begins_log_chain": n == 0 and not backup.copy_only,
                    "has_incomplete_metadata": False,
                    "is_force_offline": False,
                    "is_copy_only": backup.copy_only,
                    "first_recovery_fork_guid": stable_guid(b.s.name, db, "fork"),
                    "last_recovery_fork_guid": stable_guid(b.s.name, db, "fork"),
                    "fork_point_lsn": None,
                    "database_guid": backup.database_guid or guid,
                    "family_guid": backup.database_guid or guid,
                    "differential_base_lsn": None,
                    "differential_base_guid": None,
                    "compressed_backup_size": Decimal(5_402_624),
                    "key_algorithm": None,
                    "encryptor_thumbprint": None,
                    "encryptor_type": None,
                },
            )


def _fabric(b: _Builder) -> None:
    f = b.s.fabric
    assert f is not None
    for section, name, value in (
        ("SQL", "InstanceName", f.instance_name),
        ("SQL", "HadrPort", str(f.hadr_port)),
        ("Network", "DnsRecordName", f.dns_record_name),
        ("Network", "ClusterName", f.cluster_name),
    ):
        b.add("sys.dm_hadr_fabric_config_parameters", {"section_name": section, "parameter_name": name, "value": value})
    nodes = [f.node] + [f"DB{n}" for n in (900, 901) if f"DB{n}" != f.node]
    for node in nodes:
        b.add("sys.dm_hadr_fabric_nodes", {"node_name": node})
    services = (
        (f"fabric:/Worker.CL/ManagedServer/{f.instance_name}", True),
        ("fabric:/System/FailoverManagerService", False),
    )
    for service, ours in services:
        partition = stable_guid(b.s.name, "partition", service)
        b.add("sys.dm_hadr_fabric_partitions", {"partition_id": partition, "service_name": service})
        for i, node in enumerate(nodes):
            role = (f.replica_role if i == 0 else 3) if ours else (2 if i == 1 else 3)
            b.add(
                "sys.dm_hadr_fabric_replicas",
                {
                    "partition_id": partition,
                    "replica_id": 132000000000000000 + i,
                    "replica_role": role,
                    "replica_status": 3,
                    "replica_address": f"{node}\\{f.instance_name}:{f.hadr_port}" if ours else f"{node}\\FM:19000",
                    "node_name": node,
                },
            )


def _apply_overrides(b: _Builder) -> list[Placed]:
    rows = b.rows
    for key, override in b.s.tables.items():
        database, table = split_override_key(key, b.s.databases)
        database = database if table.scope == "database" else None
        if override.replace:
            rows = [r for r in rows if not (r[0] is table and (database is None or r[1] == database))]
        rows += [(table, database, _coerce(table, row)) for row in override.rows]
    return rows


def _coerce(table: SystemTable, row: Mapping[str, Any]) -> Row:
    """A raw `tables:` row with YAML scalars turned into the column types (hex → bytes, text → GUID)."""
    out: Row = {}
    for key, value in row.items():
        column = table.column(key)
        assert column is not None  # the loader checked the names
        if isinstance(value, str) and column.type in (SqlType.VARBINARY, SqlType.BINARY):
            value = bytes.fromhex(value.removeprefix("0x"))
        elif isinstance(value, str) and column.type is SqlType.UNIQUEIDENTIFIER:
            value = uuid.UUID(value)
        elif (
            isinstance(value, int | float | str)
            and column.type in (SqlType.DECIMAL, SqlType.NUMERIC)
            and not isinstance(value, bool)
        ):
            value = Decimal(str(value))
        out[column.name] = value
    return out
