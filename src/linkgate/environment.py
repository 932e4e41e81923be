"""The environment file: what the gate checks, loaded and validated strictly before anything connects.

`environments/<name>.yaml` declares the link direction, the cloud, the SQL Servers (with the databases
to link), the managed instance, optionally the Azure resources and the hosts, and waivers. Secrets are
referenced by environment-variable name and never written in the file. Every mistake is reported as one
`EnvironmentFileError` naming the file, the key path and the line, e.g.
``environments/prod.yaml:14: sql_servers.sql01.port: expected an integer from 1 to 65535, got 'abc'``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import ipaddress
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Direction(enum.Enum):
    """Which side is the initial primary of the link."""

    SQL_TO_MI = "SQL_TO_MI"
    MI_TO_SQL = "MI_TO_SQL"


class Cloud(enum.Enum):
    AZURE = "AzureCloud"
    US_GOVERNMENT = "AzureUSGovernment"
    CHINA = "AzureChinaCloud"


class Auth(enum.Enum):
    """How the gate logs in to SQL Server or the managed instance."""

    SQL = "sql"  # SQL login: user + password_env
    WINDOWS = "windows"  # integrated (Kerberos) authentication of the account running the gate
    ENTRA_PASSWORD = "entra-password"  # Microsoft Entra user + password_env
    ENTRA_SERVICE_PRINCIPAL = "entra-service-principal"  # client id (user) + secret (password_env)
    ENTRA_DEFAULT = "entra-default"  # Entra credential chain of the driver (managed identity, CLI…)


class Encrypt(enum.Enum):
    """Driver 18's Encrypt keyword. Mandatory is its default and SQL Server's production setting."""

    STRICT = "strict"
    MANDATORY = "mandatory"
    OPTIONAL = "optional"


class HostOS(enum.Enum):
    LINUX = "linux"
    WINDOWS = "windows"


@dataclass(frozen=True)
class Connection:
    """How to reach one SQL endpoint over ODBC. `password_env` names the variable holding the secret."""

    server: str
    port: int
    auth: Auth
    user: str | None
    password_env: str | None
    driver: str
    encrypt: Encrypt
    trust_server_certificate: bool
    server_certificate: str | None
    host_name_in_certificate: str | None

    def password(self) -> str | None:
        """The secret, read from the environment at the moment it is needed, never stored."""
        return os.environ.get(self.password_env) if self.password_env else None


@dataclass(frozen=True)
class HostSpec:
    """How testinfra reaches the machine that runs SQL Server (or the SSMS client)."""

    backend: str  # ssh | paramiko | winrm | local
    address: str | None
    user: str | None
    port: int | None
    identity_file: str | None
    password_env: str | None
    ssh_config: str | None
    known_hosts: str | None
    winrm_http: bool = False  # WinRM over HTTP (5985, NTLM-encrypted messages) instead of HTTPS (5986)

    def testinfra_spec(self) -> str:
        """The testinfra host spec, without any secret (secrets go in as keyword arguments)."""
        if self.backend == "local":
            return "local://"
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{self.backend}://{user}{self.address}{port}"


@dataclass(frozen=True)
class SqlServer:
    """One SQL Server to link, with the databases to replicate."""

    name: str
    connection: Connection
    instance: str
    host_os: HostOS
    endpoint_port: int
    address_seen_by_mi: ipaddress.IPv4Address | None
    databases: tuple[str, ...]
    host: HostSpec | None


@dataclass(frozen=True)
class ManagedInstance:
    name: str
    connection: Connection
    fqdn: str
    subnet: ipaddress.IPv4Network
    databases: tuple[str, ...]


@dataclass(frozen=True)
class AzureTarget:
    """Where the managed instance lives in Azure Resource Manager (optional)."""

    subscription_id: str
    resource_group: str
    instance_name: str
    sql_vm_nic_id: str | None
    sql_vm_subnet_id: str | None
    arm_endpoint: str | None  # override (the lab); normally derived from the cloud
    authority: str | None  # override (the lab); normally derived from the cloud
    ca_bundle: str | None  # extra CA bundle to trust (the lab's endpoint)


@dataclass(frozen=True)
class Waiver:
    """An accepted, owned, time-boxed exception for one prerequisite on one target."""

    prerequisite: str
    target: str  # "sql01", "sql01/SalesDB", "mi01" or "*"
    reason: str
    owner: str
    expires: dt.date

    def covers(self, prereq_id: str, target: str) -> bool:
        if self.prerequisite != prereq_id:
            return False
        return self.target in ("*", target) or target.startswith(self.target + "/")

    def expired(self, today: dt.date) -> bool:
        return today > self.expires


@dataclass(frozen=True)
class Timeouts:
    connect: float
    query: float


@dataclass(frozen=True)
class LabSpec:
    """`pytest --env demo`: the environment is served by the built-in lab, started for the run."""

    scenario: str
    overlays: tuple[str, ...]


@dataclass(frozen=True)
class Environment:
    name: str
    path: Path
    description: str
    direction: Direction
    cloud: Cloud
    sql_servers: Mapping[str, SqlServer]
    managed_instance: ManagedInstance
    azure: AzureTarget | None
    timeouts: Timeouts
    waivers: tuple[Waiver, ...]
    lab: LabSpec | None
    active_probes: bool
    secret_variables: tuple[str, ...] = field(default=())
    client_host: HostSpec | None = None  # the Windows machine that runs SSMS (spec CLIENT-01), when declared

    def secrets(self) -> list[str]:
        """Every secret value this environment uses, for redaction of reports and logs."""
        return [v for k in self.secret_variables if (v := os.environ.get(k))]


class EnvironmentFileError(Exception):
    """A mistake in an environment file, naming the file, the line and the key path."""

    def __init__(self, path: Path, key: str, message: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line else f"{path}"
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")
        self.path = path
        self.key = key
        self.line = line


T = TypeVar("T")


class _Reader:
    """Walks the YAML document with the key path at hand, so every error can say where it is."""

    def __init__(self, path: Path, root_node: yaml.Node | None) -> None:
        self.path = path
        self.root_node = root_node
        self.secret_variables: list[str] = []

    def fail(self, key: str, message: str) -> EnvironmentFileError:
        return EnvironmentFileError(self.path, key, message, self._line_of(key))

    def _line_of(self, key: str) -> int | None:
        node = self.root_node
        line = node.start_mark.line + 1 if node is not None else None
        for part in key.split(".") if key else []:
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    if k.value == part:
                        line, node = k.start_mark.line + 1, v
                        break
                else:
                    return line
            elif isinstance(node, yaml.SequenceNode) and part.strip("[]").isdigit():
                index = int(part.strip("[]"))
                if index >= len(node.value):
                    return line
                node = node.value[index]
                line = node.start_mark.line + 1
            else:
                return line
        return line

    def mapping(
        self, value: Any, key: str, allowed: set[str], required: frozenset[str] | set[str] = frozenset()
    ) -> dict[str, Any]:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {_kind(value)}")
        for k in value:
            if not isinstance(k, str):
                raise self.fail(key, f"keys must be strings, got {k!r}")
            if k not in allowed:
                hint = _closest(k, allowed)
                raise self.fail(
                    _join(key, k),
                    "unknown key"
                    + (f" (did you mean '{hint}'?)" if hint else "")
                    + f"; allowed: {', '.join(sorted(allowed))}",
                )
        for k in sorted(required - value.keys()):
            raise self.fail(_join(key, k), "required key is missing")
        return value

    def string(self, value: Any, key: str, *, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"expected a non-empty string, got {_kind(value)}")
        if pattern is not None and not pattern.match(value):
            raise self.fail(key, f"{value!r} is not {what or 'valid'}")
        return value

    def optional_string(self, value: Any, key: str) -> str | None:
        return None if value is None else self.string(value, key)

    def integer(self, value: Any, key: str, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.fail(key, f"expected an integer from {lo} to {hi}, got {value!r}")
        return value

    def number(self, value: Any, key: str, lo: float, hi: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise self.fail(key, f"expected a number from {lo} to {hi}, got {value!r}")
        return float(value)

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}")
        return value

    def choice(self, value: Any, key: str, kind: type[enum.Enum]) -> Any:
        names = [str(m.value) for m in kind]
        for member in kind:
            if isinstance(value, str) and value.lower() == str(member.value).lower():
                return member
        raise self.fail(key, f"expected one of {', '.join(names)}, got {value!r}")

    def names(self, value: Any, key: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail(key, f"expected a non-empty list of names, got {_kind(value)}")
        out = tuple(self.string(v, f"{key}.[{i}]") for i, v in enumerate(value))
        for i, name in enumerate(out):
            if out.index(name) != i:
                raise self.fail(f"{key}.[{i}]", f"{name!r} is listed twice")
        return out

    def secret_env(self, value: Any, key: str) -> str | None:
        if value is None:
            return None
        name = self.string(value, key, pattern=ENV_VAR, what="an environment variable name")
        if name not in os.environ:
            raise self.fail(key, f"environment variable {name} is not set (it must hold the secret)")
        self.secret_variables.append(name)
        return name

    def each(self, value: Any, key: str, build: Callable[[str, Any, str], T]) -> dict[str, T]:
        items = self.mapping(value, key, set(value) if isinstance(value, dict) else set())
        if not items:
            raise self.fail(key, "expected at least one entry")
        out: dict[str, T] = {}
        for name, spec in items.items():
            self.string(name, _join(key, name), pattern=NAME, what="a valid name (letters, digits, _ . -)")
            out[name] = build(name, spec, _join(key, name))
        return out


CONNECTION_KEYS = {
    "server",
    "port",
    "auth",
    "user",
    "password_env",
    "driver",
    "encrypt",
    "trust_server_certificate",
    "server_certificate",
    "host_name_in_certificate",
}


def _connection(r: _Reader, spec: dict[str, Any], key: str) -> Connection:
    auth = r.choice(spec.get("auth", "sql"), _join(key, "auth"), Auth)
    user = r.optional_string(spec.get("user"), _join(key, "user"))
    password_env = r.secret_env(spec.get("password_env"), _join(key, "password_env"))
    needs_user = auth in (Auth.SQL, Auth.ENTRA_PASSWORD, Auth.ENTRA_SERVICE_PRINCIPAL)
    if needs_user and user is None:
        raise r.fail(_join(key, "user"), f"required with auth {auth.value}")
    if needs_user and password_env is None:
        raise r.fail(
            _join(key, "password_env"),
            f"required with auth {auth.value} (the name of the "
            "environment variable holding the password; never the password itself)",
        )
    if "password" in spec:
        raise r.fail(
            _join(key, "password"), "secrets are never written in environment files; use password_env: VARIABLE_NAME"
        )
    return Connection(
        server=r.string(spec.get("server"), _join(key, "server")),
        port=r.integer(spec.get("port", 1433), _join(key, "port"), 1, 65535),
        auth=auth,
        user=user,
        password_env=password_env,
        driver=r.string(spec.get("driver", "auto"), _join(key, "driver")),
        encrypt=r.choice(spec.get("encrypt", "mandatory"), _join(key, "encrypt"), Encrypt),
        trust_server_certificate=r.boolean(
            spec.get("trust_server_certificate", False), _join(key, "trust_server_certificate")
        ),
        server_certificate=_path(r, spec.get("server_certificate"), _join(key, "server_certificate")),
        host_name_in_certificate=r.optional_string(
            spec.get("host_name_in_certificate"), _join(key, "host_name_in_certificate")
        ),
    )


HOST_KEYS = {
    "backend",
    "address",
    "user",
    "port",
    "identity_file",
    "password_env",
    "ssh_config",
    "known_hosts",
    "winrm_http",
}


def _host(r: _Reader, value: Any, key: str) -> HostSpec | None:
    if value is None:
        return None
    spec = r.mapping(value, key, HOST_KEYS, {"backend"})
    backend = spec["backend"]
    if backend not in ("ssh", "paramiko", "winrm", "local"):
        raise r.fail(_join(key, "backend"), f"expected one of ssh, paramiko, winrm, local, got {backend!r}")
    if backend != "local" and "address" not in spec:
        raise r.fail(_join(key, "address"), f"required with backend {backend}")
    if "winrm_http" in spec and backend != "winrm":
        raise r.fail(_join(key, "winrm_http"), f"only for backend winrm, not {backend}")
    return HostSpec(
        backend=backend,
        address=r.optional_string(spec.get("address"), _join(key, "address")),
        user=r.optional_string(spec.get("user"), _join(key, "user")),
        port=r.integer(spec["port"], _join(key, "port"), 1, 65535) if "port" in spec else None,
        identity_file=_path(r, spec.get("identity_file"), _join(key, "identity_file")),
        password_env=r.secret_env(spec.get("password_env"), _join(key, "password_env")),
        ssh_config=_path(r, spec.get("ssh_config"), _join(key, "ssh_config")),
        known_hosts=_path(r, spec.get("known_hosts"), _join(key, "known_hosts")),
        winrm_http=r.boolean(spec.get("winrm_http", False), _join(key, "winrm_http")),
    )


def _sql_server(r: _Reader, name: str, value: Any, key: str) -> SqlServer:
    allowed = CONNECTION_KEYS | {"instance", "host_os", "endpoint_port", "address_seen_by_mi", "databases", "host"}
    spec = r.mapping(value, key, allowed, {"server", "databases"})
    ip = spec.get("address_seen_by_mi")
    return SqlServer(
        name=name,
        connection=_connection(r, spec, key),
        instance=r.string(spec.get("instance", "MSSQLSERVER"), _join(key, "instance")),
        host_os=r.choice(spec.get("host_os", "windows"), _join(key, "host_os"), HostOS),
        endpoint_port=r.integer(spec.get("endpoint_port", 5022), _join(key, "endpoint_port"), 1, 65535),
        address_seen_by_mi=_ip(r, ip, _join(key, "address_seen_by_mi")) if ip is not None else None,
        databases=r.names(spec.get("databases"), _join(key, "databases")),
        host=_host(r, spec.get("host"), _join(key, "host")),
    )


def _managed_instance(r: _Reader, value: Any, key: str) -> ManagedInstance:
    allowed = CONNECTION_KEYS | {"name", "fqdn", "subnet", "databases"}
    spec = r.mapping(value, key, allowed, {"name", "server", "fqdn", "subnet"})
    subnet_key = _join(key, "subnet")
    try:
        subnet = ipaddress.IPv4Network(r.string(spec["subnet"], subnet_key))
    except ValueError as e:
        raise r.fail(subnet_key, f"expected an IPv4 network such as 10.0.0.0/24 ({e})") from None
    dbs = spec.get("databases")
    return ManagedInstance(
        name=r.string(spec["name"], _join(key, "name"), pattern=NAME, what="a valid name"),
        connection=_connection(r, spec, key),
        fqdn=r.string(spec["fqdn"], _join(key, "fqdn")),
        subnet=subnet,
        databases=r.names(dbs, _join(key, "databases")) if dbs is not None else (),
    )


def _azure(r: _Reader, value: Any, key: str) -> AzureTarget | None:
    if value is None:
        return None
    allowed = {
        "subscription_id",
        "resource_group",
        "instance_name",
        "sql_vm_nic_id",
        "sql_vm_subnet_id",
        "arm_endpoint",
        "authority",
        "ca_bundle",
    }
    spec = r.mapping(value, key, allowed, {"subscription_id", "resource_group", "instance_name"})
    return AzureTarget(
        subscription_id=r.string(spec["subscription_id"], _join(key, "subscription_id")),
        resource_group=r.string(spec["resource_group"], _join(key, "resource_group")),
        instance_name=r.string(spec["instance_name"], _join(key, "instance_name")),
        sql_vm_nic_id=r.optional_string(spec.get("sql_vm_nic_id"), _join(key, "sql_vm_nic_id")),
        sql_vm_subnet_id=r.optional_string(spec.get("sql_vm_subnet_id"), _join(key, "sql_vm_subnet_id")),
        arm_endpoint=r.optional_string(spec.get("arm_endpoint"), _join(key, "arm_endpoint")),
        authority=r.optional_string(spec.get("authority"), _join(key, "authority")),
        ca_bundle=_path(r, spec.get("ca_bundle"), _join(key, "ca_bundle")),
    )


def _waivers(r: _Reader, value: Any, key: str, known_ids: Callable[[str], bool] | None) -> tuple[Waiver, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise r.fail(key, f"expected a list of waivers, got {_kind(value)}")
    out = []
    for i, item in enumerate(value):
        k = f"{key}.[{i}]"
        spec = r.mapping(
            item,
            k,
            {"prerequisite", "target", "reason", "owner", "expires"},
            {"prerequisite", "target", "reason", "owner", "expires"},
        )
        pid = r.string(spec["prerequisite"], _join(k, "prerequisite"))
        if known_ids is not None and not known_ids(pid):
            raise r.fail(_join(k, "prerequisite"), f"unknown prerequisite id {pid!r}")
        expires = spec["expires"]
        if isinstance(expires, str):
            with contextlib.suppress(ValueError):
                expires = dt.date.fromisoformat(expires)
        if not isinstance(expires, dt.date) or isinstance(expires, dt.datetime):
            raise r.fail(_join(k, "expires"), f"expected a date such as 2027-01-31, got {spec['expires']!r}")
        out.append(
            Waiver(
                prerequisite=pid,
                target=r.string(spec["target"], _join(k, "target")),
                reason=r.string(spec["reason"], _join(k, "reason")),
                owner=r.string(spec["owner"], _join(k, "owner")),
                expires=expires,
            )
        )
    return tuple(out)


TOP_KEYS = {
    "description",
    "direction",
    "cloud",
    "sql_servers",
    "managed_instance",
    "azure",
    "timeouts",
    "waivers",
    "lab",
    "active_probes",
    "client_host",
}


def load_environment(path: Path, *, known_ids: Callable[[str], bool] | None = None) -> Environment:
    """Load and validate an environment file; raise EnvironmentFileError on the first mistake.

    `known_ids` validates waiver prerequisite ids against the catalogue.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise EnvironmentFileError(path, "", f"cannot read the environment file ({e.strerror})") from None
    try:
        node, data = parse_yaml(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise EnvironmentFileError(path, "", f"not valid YAML: {getattr(e, 'problem', e)}", line) from None
    r = _Reader(path, node)
    top = r.mapping(data, "", TOP_KEYS, {"direction", "sql_servers", "managed_instance"})
    sql_servers = r.each(top["sql_servers"], "sql_servers", lambda n, v, k: _sql_server(r, n, v, k))
    mi = _managed_instance(r, top["managed_instance"], "managed_instance")
    if mi.name in sql_servers:
        raise r.fail("managed_instance.name", f"{mi.name!r} is also the name of a SQL Server")
    timeouts = r.mapping(top.get("timeouts"), "timeouts", {"connect", "query"})
    lab = _lab(r, top.get("lab"))
    return Environment(
        name=path.stem,
        path=path,
        description=str(top.get("description") or ""),
        direction=r.choice(top["direction"], "direction", Direction),
        cloud=r.choice(top.get("cloud", "AzureCloud"), "cloud", Cloud),
        sql_servers=sql_servers,
        managed_instance=mi,
        azure=_azure(r, top.get("azure"), "azure"),
        timeouts=Timeouts(
            connect=r.number(timeouts.get("connect", 15), "timeouts.connect", 1, 600),
            query=r.number(timeouts.get("query", 30), "timeouts.query", 1, 3600),
        ),
        waivers=_waivers(r, top.get("waivers"), "waivers", known_ids),
        lab=lab,
        active_probes=r.boolean(top.get("active_probes", False), "active_probes"),
        client_host=_host(r, top.get("client_host"), "client_host"),
        secret_variables=tuple(dict.fromkeys(r.secret_variables)),
    )


def _lab(r: _Reader, value: Any) -> LabSpec | None:
    if value is None:
        return None
    spec = r.mapping(value, "lab", {"scenario", "overlays"}, {"scenario"})
    overlays = spec.get("overlays") or []
    return LabSpec(
        scenario=r.string(spec["scenario"], "lab.scenario"),
        overlays=tuple(r.string(o, f"lab.overlays.[{i}]") for i, o in enumerate(overlays)),
    )


SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's loader where PyYAML has it (its wheels do): a 200-server file parses in a tenth of the time."""


def parse_yaml(text: str) -> tuple[yaml.Node | None, Any]:
    """The node tree (for line numbers in errors) and the data of one YAML document, parsed once."""
    loader = SafeLoader(text)
    try:
        node = loader.get_single_node()
        return node, loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()


def lab_secret_variables(path: Path) -> list[str]:
    """The password_env names an environment file uses, read without validating (for the lab to set them)."""
    data = parse_yaml(path.read_text(encoding="utf-8"))[1] or {}
    return sorted(set(_find_key(data, "password_env")))


def _find_key(value: Any, key: str) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key and isinstance(v, str):
                yield v
            else:
                yield from _find_key(v, key)
    elif isinstance(value, list):
        for v in value:
            yield from _find_key(v, key)


def _path(r: _Reader, value: Any, key: str) -> str | None:
    if value is None:
        return None
    text = r.string(value, key)
    base = r.path.parent
    p = Path(text).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _ip(r: _Reader, value: Any, key: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(r.string(value, key))
    except ValueError:
        raise r.fail(key, f"expected an IPv4 address, got {value!r}") from None


def _join(key: str, part: str) -> str:
    return f"{key}.{part}" if key else part


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: f"{value!r}", bool: f"{value}"}.get(type(value), repr(value))


def _closest(word: str, options: set[str]) -> str | None:
    import difflib

    matches = difflib.get_close_matches(word, sorted(options), n=1, cutoff=0.75)
    return matches[0] if matches else None


def resolve_environment_path(name_or_path: str, root: Path) -> Path:
    """`--env prod` → <root>/environments/prod.yaml; a path to a .yaml file is taken as is."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or os.sep in name_or_path:
        return candidate if candidate.is_absolute() else (Path.cwd() / candidate)
    return root / "environments" / f"{name_or_path}.yaml"


def available_environments(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / "environments").glob("*.yaml"))
