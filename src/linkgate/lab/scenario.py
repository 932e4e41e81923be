"""Lab scenarios: what each simulated instance, host and Azure resource looks like, as data.

A scenario is a YAML file in `linkgate/lab/scenarios/` (or anywhere, by path). `healthy.yaml` passes
every prerequisite; an overlay names what it `extends:` and holds only the keys it changes, deep-merged
(mappings merge, lists replace, `null` deletes a key). Instances are validated into frozen dataclasses
(`InstanceSpec`); the `hosts:` and `azure:` sections stay raw mappings for the lab parts that own them.
Every problem is a `ScenarioError` naming the file and the key path, before anything starts.

Example overlay (`my-simple-db.yaml`, next to your environment file)::

    extends: healthy
    description: SalesDB was switched to SIMPLE recovery
    expect: [sql-db-full-recovery]
    instances:
      sql01:
        databases:
          SalesDB: {recovery_model: SIMPLE}
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import types
import typing
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from linkgate.lab.backend import Faults

SCENARIO_DIR = Path(__file__).with_name("scenarios")
SYSTEM_DATABASES = ("master", "tempdb", "model", "msdb")
_SECRET = {"secret": True}
KeyPath = tuple[str, ...]


class ScenarioError(ValueError):
    """A scenario file is malformed: `file` and `key` (dotted path) say where."""

    def __init__(self, file: Path | str, key: str, message: str) -> None:
        super().__init__(f"{file}: {key or '<top>'}: {message}")
        self.file = str(file)
        self.key = key
        self.message = message


# --------------------------------------------------------------------------------------------------
# The typed model. Field names are the YAML keys; defaults describe a healthy SQL Server 2022.


@dataclass(frozen=True)
class HostPlatform:
    """sys.dm_os_host_info (2017+); 2016 shows its OS only in @@VERSION."""

    platform: str = "Linux"
    distribution: str = "Ubuntu"
    release: str = "22.04"
    service_pack_level: str = ""
    sku: int | None = None


@dataclass(frozen=True)
class HadrSpec:
    """SERVERPROPERTY IsHadrEnabled / HadrManagerStatus (None: 1 when enabled, else 0)."""

    enabled: bool = True
    manager_status: int | None = None


@dataclass(frozen=True)
class TraceFlagSpec:
    """Global trace flags running now (DBCC TRACESTATUS) and configured at startup (-T parameters)."""

    running: tuple[int, ...] = ()
    startup: tuple[int, ...] = ()


@dataclass(frozen=True)
class ServiceSpec:
    """One row of sys.dm_server_services."""

    status: str = "Running"
    startup: str = "Automatic"
    account: str | None = None


@dataclass(frozen=True)
class ServicesSpec:
    engine: ServiceSpec = ServiceSpec()
    agent: ServiceSpec = ServiceSpec()


@dataclass(frozen=True)
class LoginSpec:
    """A SQL login. The password is read from the environment variable `password_env` at load."""

    password_env: str
    server_roles: tuple[str, ...] = ()
    permissions: tuple[str, ...] = ()
    """Server permissions granted (e.g. VIEW SERVER STATE); sysadmin implies all."""
    databases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Databases where the login has a user, with that user's database roles (e.g. msdb: [SQLAgentOperatorRole])."""
    disabled: bool = False
    default_database: str = "master"
    password: str = field(default="", repr=False, compare=False, metadata=_SECRET)


@dataclass(frozen=True)
class CertificateSpec:
    """A certificate in master (endpoint authentication, TDE)."""

    expiry: dt.datetime
    start: dt.datetime | None = None
    subject: str | None = None
    thumbprint: str | None = None
    """Hex (SHA-1, 40 digits); None: derived from the name, stable across runs."""


@dataclass(frozen=True)
class EndpointSpec:
    """A DATABASE_MIRRORING endpoint (sys.database_mirroring_endpoints + sys.tcp_endpoints)."""

    port: int = 5022
    state: Literal["STARTED", "STOPPED", "DISABLED"] = "STARTED"
    role: Literal["DISABLED", "PARTNER", "WITNESS", "ALL"] = "ALL"
    authentication: str = "CERTIFICATE"
    certificate: str | None = None
    encryption: Literal["DISABLED", "SUPPORTED", "REQUIRED"] = "REQUIRED"
    algorithm: str = "AES"
    ip_address: str | None = None


@dataclass(frozen=True)
class BackupSpec:
    """One msdb.dbo.backupset row."""

    finished: dt.datetime
    type: Literal["D", "I", "L", "F", "G", "P", "Q"] = "D"
    copy_only: bool = False
    checksum: bool = True
    recovery_model: Literal["FULL", "BULK-LOGGED", "SIMPLE"] = "FULL"
    database_guid: uuid.UUID | None = None
    """None: the database's current guid (another value: a backup of an earlier incarnation)."""


@dataclass(frozen=True)
class TdeSpec:
    """The database encryption key (sys.dm_database_encryption_keys)."""

    state: int = 3
    certificate: str | None = None
    encryptor_type: Literal["CERTIFICATE", "ASYMMETRIC KEY"] = "CERTIFICATE"
    algorithm: str = "AES"
    key_length: int = 256


@dataclass(frozen=True)
class DatabaseSpec:
    """A user database; files, filegroups and log-chain facts are derived from these."""

    recovery_model: Literal["FULL", "BULK_LOGGED", "SIMPLE"] = "FULL"
    state: str = "ONLINE"
    database_guid: uuid.UUID | None = None
    log_chain_started: bool | None = None
    """None: derived — not SIMPLE and a full backup of the current incarnation exists."""
    backups: tuple[BackupSpec, ...] = ()
    tde: TdeSpec | None = None
    filestream_containers: int = 0
    filetables: int = 0
    log_files: int = 1
    xtp_containers: int = 0
    memory_optimized_tables: int = 0
    broker_enabled: bool = True
    accelerated_database_recovery: bool = False
    compatibility_level: int | None = None
    create_date: dt.datetime | None = None


@dataclass(frozen=True)
class WsfcSpec:
    """The Windows Server failover cluster SQL Server 2016 needs (sys.dm_hadr_cluster[_members])."""

    cluster_name: str
    members: tuple[str, ...] = ()
    quorum_type: str = "NODE_MAJORITY"


@dataclass(frozen=True)
class AvailabilityGroupSpec:
    databases: tuple[str, ...]
    cluster_type: Literal["WSFC", "EXTERNAL", "NONE"] = "NONE"
    is_distributed: bool = False


@dataclass(frozen=True)
class FabricSpec:
    """A managed instance's fabric DMVs: what the article's parameter query reads."""

    dns_record_name: str
    cluster_name: str
    instance_name: str
    node: str = "DB123"
    hadr_port: int = 11002
    replica_role: int = 2


@dataclass(frozen=True)
class TableRows:
    """Raw rows for one system table (`tables:` escape hatch): appended, or replacing all rows."""

    rows: tuple[Mapping[str, Any], ...] = ()
    replace: bool = False


@dataclass(frozen=True)
class InstanceSpec:
    """One simulated SQL Server or managed instance. None fields are derived from the flavour and version."""

    name: str
    flavour: Literal["sqlserver", "managed-instance"] = "sqlserver"
    address: str = "127.0.0.1"
    port: int = 0
    faults: Faults = field(default_factory=Faults)
    server_name: str | None = None
    machine_name: str | None = None
    instance_name: str | None = None
    version: str | None = None
    product_level: str | None = None
    product_update_level: str | None = None
    product_update_reference: str | None = None
    update_type: str | None = None
    edition: str | None = None
    engine_edition: int | None = None
    host: HostPlatform = HostPlatform()
    collation: str = "SQL_Latin1_General_CP1_CI_AS"
    hadr: HadrSpec = HadrSpec()
    trace_flags: TraceFlagSpec = TraceFlagSpec()
    master_key: bool = True
    start_time: dt.datetime | None = None
    services: ServicesSpec = ServicesSpec()
    agent_xps: int | None = None
    configurations: Mapping[str, int] = field(default_factory=dict)
    logins: Mapping[str, LoginSpec] = field(default_factory=dict)
    certificates: Mapping[str, CertificateSpec] = field(default_factory=dict)
    endpoints: Mapping[str, EndpointSpec] = field(default_factory=dict)
    wsfc: WsfcSpec | None = None
    system_permissions: tuple[str, ...] = ("CONNECT SQL",)
    """Server permissions granted to NT AUTHORITY\\SYSTEM."""
    availability_groups: Mapping[str, AvailabilityGroupSpec] = field(default_factory=dict)
    databases: Mapping[str, DatabaseSpec] = field(default_factory=dict)
    fabric: FabricSpec | None = None
    tables: Mapping[str, TableRows] = field(default_factory=dict)

    @property
    def is_managed_instance(self) -> bool:
        return self.flavour == "managed-instance"


@dataclass(frozen=True)
class Scenario:
    """A loaded, validated scenario."""

    name: str
    description: str
    expect: tuple[str, ...]
    environment: Mapping[str, Any]
    instances: Mapping[str, InstanceSpec]
    hosts: Mapping[str, Any]
    azure: Mapping[str, Any]
    files: tuple[Path, ...] = ()
    """The files merged into this scenario, base first."""


# --------------------------------------------------------------------------------------------------
# Loading and merging


def list_scenarios() -> list[str]:
    """The bundled scenario names (file stems), sorted."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def load_scenario(name_or_path: str | Path, overlays: Sequence[str | Path] = ()) -> Scenario:
    """Load a bundled scenario by name, or a scenario/overlay file by path, then apply `overlays` in order.

    An overlay given in `overlays` applies on top of what came before; its own `extends:` is ignored.
    """
    chain = _chain(_locate(name_or_path, None))
    merged: dict[str, Any] = {}
    origin: dict[KeyPath, Path] = {}
    for path, data in chain:
        _merge(merged, data, (), path, origin)
    files = [p for p, _ in chain]
    for overlay in overlays:
        path = _locate(overlay, None)
        data = _read(path)
        data.pop("extends", None)
        _merge(merged, data, (), path, origin)
        files.append(path)
    merged.pop("extends", None)
    return _scenario(files[-1].stem, merged, _Origins(origin, files[-1]), tuple(files))


def _locate(ref: str | Path, relative_to: Path | None) -> Path:
    text = str(ref)
    if isinstance(ref, str) and "/" not in text and not text.endswith((".yaml", ".yml")):
        path = SCENARIO_DIR / f"{text}.yaml"
        if not path.is_file():
            raise ScenarioError(
                relative_to or text,
                "extends" if relative_to else "",
                f"no scenario named {text!r} (known: {', '.join(list_scenarios())})",
            )
        return path
    path = Path(ref)
    if not path.is_absolute() and relative_to is not None:
        path = relative_to.parent / path
    if not path.is_file():
        raise ScenarioError(relative_to or path, "extends" if relative_to else "", f"file not found: {path}")
    return path.resolve()


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ScenarioError(path, "", f"cannot read YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ScenarioError(path, "", f"expected a mapping at the top, got {_kind(data)}")
    return data


def _chain(path: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The files from the base scenario to `path`, following `extends:`."""
    chain: list[tuple[Path, dict[str, Any]]] = []
    seen: set[Path] = set()
    current: Path | None = path
    while current is not None:
        if current in seen:
            raise ScenarioError(current, "extends", "circular extends: " + " → ".join(str(p) for p, _ in chain))
        seen.add(current)
        data = _read(current)
        chain.append((current, data))
        parent = data.get("extends")
        if parent is not None and not isinstance(parent, str):
            raise ScenarioError(current, "extends", f"expected a scenario name or path, got {_kind(parent)}")
        current = _locate(parent, current) if parent else None
    return list(reversed(chain))


def _merge(into: dict[str, Any], data: Mapping[str, Any], at: KeyPath, path: Path, origin: dict[KeyPath, Path]) -> None:
    """Deep-merge `data` into `into`: mappings merge, anything else replaces, None deletes."""
    for key, value in data.items():
        where = (*at, str(key))
        if value is None:
            into.pop(key, None)
            origin[where] = path
        elif isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value, where, path, origin)
        else:
            into[key] = _copy(value)
            origin[where] = path


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


@dataclass
class _Origins:
    """Which file set each key path, so errors name the file the user must fix."""

    paths: dict[KeyPath, Path]
    default: Path

    def file_of(self, key: KeyPath) -> Path:
        for n in range(len(key), 0, -1):
            if key[:n] in self.paths:
                return self.paths[key[:n]]
        return self.default

    def error(self, key: KeyPath, message: str) -> ScenarioError:
        return ScenarioError(self.file_of(key), ".".join(key), message)


TOP_KEYS = {"description", "expect", "environment", "instances", "hosts", "azure"}


def _scenario(name: str, data: dict[str, Any], o: _Origins, files: tuple[Path, ...]) -> Scenario:
    for key in data:
        if key not in TOP_KEYS:
            raise o.error((str(key),), f"unknown key (expected one of {', '.join(sorted(TOP_KEYS))})")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise o.error(("description",), f"expected text, got {_kind(description)}")
    expect = _build(tuple[str, ...], data.get("expect", []), ("expect",), o)
    sections = {}
    for key in ("environment", "hosts", "azure", "instances"):
        section = data.get(key, {})
        if not isinstance(section, dict):
            raise o.error((key,), f"expected a mapping, got {_kind(section)}")
        sections[key] = section
    instances = {}
    for iname, raw in sections["instances"].items():
        where = ("instances", str(iname))
        if not isinstance(raw, dict):
            raise o.error(where, f"expected a mapping, got {_kind(raw)}")
        spec = _build(InstanceSpec, {"name": str(iname), **raw}, where, o)
        instances[str(iname)] = _resolve_secrets(_check_instance(spec, where, o), where, o)
    return Scenario(
        name=name,
        description=description,
        expect=expect,
        environment=types.MappingProxyType(sections["environment"]),
        instances=types.MappingProxyType(instances),
        hosts=types.MappingProxyType(sections["hosts"]),
        azure=types.MappingProxyType(sections["azure"]),
        files=files,
    )


def _check_instance(spec: InstanceSpec, where: KeyPath, o: _Origins) -> InstanceSpec:
    """Cross-field rules the types cannot express."""
    for db in spec.databases:
        if db.lower() in SYSTEM_DATABASES:
            raise o.error((*where, "databases", db), "system databases are built in; list user databases only")
    for ag, group in spec.availability_groups.items():
        for i, db in enumerate(group.databases):
            if db not in spec.databases:
                raise o.error((*where, "availability_groups", ag, "databases", str(i)), f"no database {db!r}")
    for ep, endpoint in spec.endpoints.items():
        if endpoint.certificate is not None and endpoint.certificate not in spec.certificates:
            raise o.error((*where, "endpoints", ep, "certificate"), f"no certificate {endpoint.certificate!r}")
    for db, database in spec.databases.items():
        cert = database.tde.certificate if database.tde else None
        if cert is not None and cert not in spec.certificates:
            raise o.error((*where, "databases", db, "tde", "certificate"), f"no certificate {cert!r}")
    if spec.version is not None:
        parts = spec.version.split(".")
        if len(parts) != 4 or not all(p.isdigit() for p in parts):
            raise o.error((*where, "version"), f"expected a build like 16.0.4135.4, got {spec.version!r}")
    if spec.is_managed_instance and spec.fabric is None:
        raise o.error((*where, "fabric"), "a managed instance needs its fabric parameters")
    _check_tables(spec, where, o)
    return spec


def _check_tables(spec: InstanceSpec, where: KeyPath, o: _Origins) -> None:
    # Imported here: the engine package imports this module for InstanceSpec.
    from linkgate.lab.engine.schema import lookup_override_target

    for table, override in spec.tables.items():
        at = (*where, "tables", table)
        try:
            system_table = lookup_override_target(table, spec.databases)
        except KeyError as e:
            raise o.error(at, str(e.args[0])) from None
        known = {c.name.lower() for c in system_table.columns}
        for i, row in enumerate(override.rows):
            for column in row:
                if str(column).lower() not in known:
                    raise o.error((*at, "rows", str(i), str(column)), f"{system_table.name} has no column {column!r}")


def _resolve_secrets(spec: InstanceSpec, where: KeyPath, o: _Origins) -> InstanceSpec:
    logins = {}
    for name, login in spec.logins.items():
        value = os.environ.get(login.password_env)
        if not value:
            raise o.error(
                (*where, "logins", name, "password_env"),
                f"environment variable {login.password_env} is not set (it must hold the password)",
            )
        logins[name] = dataclasses.replace(login, password=value)
    return dataclasses.replace(spec, logins=types.MappingProxyType(logins))


# --------------------------------------------------------------------------------------------------
# A small typed builder: YAML values → the dataclasses above, with key paths in every error.


def _build(tp: Any, value: Any, at: KeyPath, o: _Origins) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _build(options[0], value, at, o)
    if origin is Literal:
        allowed = typing.get_args(tp)
        for choice in allowed:
            if isinstance(value, str) and value.upper() == str(choice).upper():
                return choice
        raise o.error(at, f"expected one of {', '.join(map(str, allowed))}, got {value!r}")
    if origin is tuple:
        item = typing.get_args(tp)[0]
        if not isinstance(value, list):
            raise o.error(at, f"expected a list, got {_kind(value)}")
        return tuple(_build(item, v, (*at, str(i)), o) for i, v in enumerate(value))
    if origin is Mapping:
        item = typing.get_args(tp)[1]
        if not isinstance(value, dict):
            raise o.error(at, f"expected a mapping, got {_kind(value)}")
        return types.MappingProxyType({str(k): _build(item, v, (*at, str(k)), o) for k, v in value.items()})
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _dataclass(tp, value, at, o)
    return _scalar(tp, value, at, o)


def _dataclass(cls: type, value: Any, at: KeyPath, o: _Origins) -> Any:
    if not isinstance(value, dict):
        raise o.error(at, f"expected a mapping, got {_kind(value)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("secret")}
    for key in value:
        if key not in fields:
            hint = " (secrets are never written in scenarios; use password_env)" if key == "password" else ""
            raise o.error((*at, str(key)), f"unknown key (expected one of {', '.join(sorted(fields))}){hint}")
    kwargs = {}
    for name, f in fields.items():
        if name in value:
            kwargs[name] = _build(hints[name], value[name], (*at, name), o)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise o.error((*at, name), "required key is missing")
    return cls(**kwargs)


def _scalar(tp: Any, value: Any, at: KeyPath, o: _Origins) -> Any:
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
    elif tp is dt.datetime:
        if isinstance(value, dt.datetime):
            return value.replace(tzinfo=None) if value.tzinfo is None else value
        if isinstance(value, dt.date):
            return dt.datetime(value.year, value.month, value.day)
        if isinstance(value, str):
            try:
                return dt.datetime.fromisoformat(value)
            except ValueError:
                pass
    elif tp is uuid.UUID:
        try:
            return uuid.UUID(str(value))
        except ValueError:
            pass
    raise o.error(at, f"expected {_type_name(tp)}, got {value!r}")


def _type_name(tp: Any) -> str:
    return {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "text",
        dt.datetime: "a date/time (YYYY-MM-DD HH:MM:SS)",
        uuid.UUID: "a GUID",
    }.get(tp, str(tp))


def _kind(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "text", type(None): "nothing"}
    return names.get(type(value), type(value).__name__)
