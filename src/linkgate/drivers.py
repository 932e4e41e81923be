"""The ODBC drivers for SQL Server on this machine, and connection strings in each one's dialect.

Two drivers matter: Microsoft ODBC Driver 18 (what production uses; `Encrypt=yes` by default, TDS 8.0
strict) and FreeTDS (what a bare Debian box has). Driver 18 is found registered with unixODBC
(`odbcinst.ini`) or, failing that, inside the `mssql-python-odbc` wheel, whose `.so` loads with the
system unixODBC when named by path (`DRIVER={/path/libmsodbcsql-18.*.so*}`): it carries its own
`libodbcinst.so.2` next to it (RPATH), so no extra environment is needed.

The two drivers spell the same wish differently (`SERVER=tcp:host,port;Encrypt=yes` against
`SERVER=host;PORT=port;Encryption=require`), which is why callers describe what they want and this
module writes the keywords.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

DriverKind = Literal["msodbc18", "freetds"]
EncryptMode = Literal["strict", "mandatory", "optional", "off"]

MSODBC18_NAME = "ODBC Driver 18 for SQL Server"
FREETDS_NAME = "FreeTDS"
FREETDS_LIBRARY = "libtdsodbc.so"
FREETDS_TDS_VERSION = "7.4"

# Where distributions put FreeTDS's ODBC driver when it is not registered with unixODBC.
_FREETDS_PATHS = (
    f"/usr/lib/{platform.machine()}-linux-gnu/odbc/{FREETDS_LIBRARY}",  # Debian, Ubuntu
    "/usr/lib64/libtdsodbc.so.0",  # RHEL, Fedora (EPEL)
    "/usr/local/lib/libtdsodbc.so",  # built from source
)

# The mssql-python-odbc wheel's directory per distribution family (its libs/linux/<family>/<arch>/lib).
_WHEEL_FAMILIES = {
    "debian": "debian_ubuntu",
    "ubuntu": "debian_ubuntu",
    "rhel": "rhel",
    "centos": "rhel",
    "fedora": "rhel",
    "suse": "suse",
    "opensuse": "suse",
    "sles": "suse",
    "alpine": "alpine",
}


_MSODBC18_ENCRYPT = {"strict": "strict", "mandatory": "yes", "optional": "optional", "off": "no"}
_FREETDS_ENCRYPTION = {"strict": "strict", "mandatory": "require", "optional": "request", "off": "off"}


class DriverNotFound(LookupError):
    """No installed ODBC driver matches what the environment asked for."""


@dataclass(frozen=True)
class OdbcDriver:
    """One usable ODBC driver: `name` when registered with unixODBC, else its shared library `path`."""

    kind: DriverKind
    name: str
    path: Path | None
    registered: bool

    @property
    def keyword(self) -> str:
        """The value of DRIVER= : the registered name, or the library path when it is not registered."""
        return self.name if self.registered or self.path is None else str(self.path)

    def __str__(self) -> str:
        return f"{self.kind} ({self.keyword})"


def find_drivers() -> list[OdbcDriver]:
    """The drivers present here, Driver 18 first (the one production uses), each kind at most once."""
    registered = _registered_drivers()
    found: list[OdbcDriver] = []
    ms = _registered_of_kind(registered, "msodbc18") or _wheel_msodbc18()
    if ms is not None:
        found.append(ms)
    tds = _registered_of_kind(registered, "freetds") or _unregistered_freetds()
    if tds is not None:
        found.append(tds)
    return found


def resolve(spec: str) -> OdbcDriver:
    """The driver an environment file names: `auto`, a kind, a registered name, or a library path.

    `auto` takes Driver 18 when present, else FreeTDS. Raises DriverNotFound naming what exists.
    """
    drivers = find_drivers()
    wanted = spec.strip()
    if wanted.lower() == "auto":
        if drivers:
            return drivers[0]
        raise DriverNotFound("no ODBC driver for SQL Server found (neither Driver 18 nor FreeTDS)")
    for driver in drivers:
        if wanted.lower() in (driver.kind, driver.name.lower()) or (driver.path and wanted == str(driver.path)):
            return driver
    if "/" in wanted and Path(wanted).is_file():
        return OdbcDriver(_kind_of(wanted), Path(wanted).name, Path(wanted), registered=False)
    for name, path in _registered_drivers().items():
        if name.lower() == wanted.lower():
            return OdbcDriver(
                _kind_of(f"{name} {path}"), name, Path(path) if Path(path).is_absolute() else None, registered=True
            )
    available = ", ".join(str(d) for d in drivers) or "none"
    raise DriverNotFound(f"ODBC driver {spec!r} not found (available: {available})")


def connection_string(
    driver: OdbcDriver,
    server: str,
    port: int,
    *,
    user: str | None,
    password: str | None,
    database: str = "master",
    encrypt: EncryptMode = "mandatory",
    trust_server_certificate: bool = False,
    server_certificate: str | None = None,
    login_timeout: int | None = None,
    app_name: str = "linkgate",
    extra: Mapping[str, str] | None = None,
) -> str:
    """An ODBC connection string for `driver` (it holds the password: never log it).

    `encrypt` follows Driver 18's vocabulary: `strict` (TDS 8.0, TLS before anything; certificate
    always checked), `mandatory` (TLS for the whole session), `optional` (TLS for the login only unless
    the server forces it), `off` (as optional, but asking for no encryption at all). For FreeTDS they
    map to `Encryption=strict|require|request|off`. FreeTDS 1.3 checks no server certificate: it has
    no connection-string keyword for a CA (measured: `CAFile`, `ca file` are ignored; only freetds.conf
    can set one), so `trust_server_certificate` and `server_certificate` only reach Driver 18.
    `extra` keywords are appended as given (e.g. `Authentication`, `HostNameInCertificate`).

    `login_timeout` is not written into the string: measured here, Driver 18 ignores `LoginTimeout`,
    `Connect Timeout` and friends (15 s regardless) and FreeTDS only knows `Timeout`, which is also its
    query timeout. The one setting both honour is SQL_ATTR_LOGIN_TIMEOUT: `pyodbc.connect(text, timeout=N)`.
    The parameter is accepted so that callers state it next to the string; they must pass it to pyodbc.
    """
    pairs: list[tuple[str, str]] = [("DRIVER", driver.keyword)]
    if driver.kind == "msodbc18":
        pairs.append(("SERVER", f"tcp:{server},{port}"))
    else:
        pairs += [("SERVER", server), ("PORT", str(port)), ("TDS_Version", FREETDS_TDS_VERSION)]
    if user is not None:
        pairs.append(("UID", user))
    if password is not None:
        pairs.append(("PWD", password))
    pairs += [("DATABASE", database), ("APP", app_name)]
    if driver.kind == "msodbc18":
        pairs.append(("Encrypt", _MSODBC18_ENCRYPT[encrypt]))
        pairs.append(("TrustServerCertificate", "yes" if trust_server_certificate else "no"))
        if server_certificate:
            pairs.append(("ServerCertificate", server_certificate))
    else:
        pairs.append(("Encryption", _FREETDS_ENCRYPTION[encrypt]))
    pairs += list((extra or {}).items())
    return ";".join(f"{key}={_quote(driver.kind, value)}" for key, value in pairs) + ";"


def _quote(kind: DriverKind, value: str) -> str:
    """ODBC value syntax: braces around values that hold `;`, braces or edge spaces.

    Driver 18 reads `}}` inside braces as one `}` (the ODBC rule). FreeTDS 1.3 does not unescape: it
    takes everything up to the `}` that is followed by `;` or the end, so the value goes in verbatim
    and only `};` inside it cannot be expressed (measured, see selftests/lab/test_drivers.py).
    """
    if not any(c in value for c in ";{}") and value == value.strip():
        return value
    if kind == "msodbc18":
        return "{" + value.replace("}", "}}") + "}"
    if "};" in value:
        raise ValueError("FreeTDS cannot be given a connection-string value containing '};'")
    return "{" + value + "}"


def _kind_of(text: str) -> DriverKind:
    lowered = text.lower()
    if "tdsodbc" in lowered or "freetds" in lowered:
        return "freetds"
    if "msodbcsql" in lowered or "sql server" in lowered:
        return "msodbc18"
    raise DriverNotFound(f"{text!r} is neither Microsoft ODBC Driver 18 nor FreeTDS")


def _registered_drivers() -> dict[str, str]:
    """Registered driver name → its Driver= library, from unixODBC's odbcinst.ini (ODBCSYSINI honoured)."""
    try:
        import pyodbc  # the driver manager's own list: what DRIVER={name} will really find
    except ImportError:
        return {}
    names = list(pyodbc.drivers())
    ini = configparser.ConfigParser(interpolation=None, strict=False)
    ini.read(Path(os.environ.get("ODBCSYSINI", "/etc")) / "odbcinst.ini")
    return {name: ini.get(name, "Driver", fallback="") for name in names}


def _registered_of_kind(registered: dict[str, str], kind: DriverKind) -> OdbcDriver | None:
    for name, library in registered.items():
        try:
            found = _kind_of(f"{name} {library}")
        except DriverNotFound:
            continue
        if found == kind and (kind == "freetds" or "18" in name):
            path = Path(library) if Path(library).is_absolute() else None  # relative: the manager's lib dir
            return OdbcDriver(kind, name, path, registered=True)
    return None


def _wheel_msodbc18() -> OdbcDriver | None:
    """Driver 18 from the mssql-python-odbc wheel, for this distribution family and architecture."""
    spec = importlib.util.find_spec("mssql_python_odbc")
    if spec is None or spec.origin is None:
        return None
    family = _distribution_family()
    if family is None:
        return None
    arch = {"aarch64": "arm64"}.get(platform.machine(), platform.machine())
    lib = Path(spec.origin).parent / "libs" / "linux" / family / arch / "lib"
    candidates = sorted(lib.glob("libmsodbcsql-18*.so*"))
    return OdbcDriver("msodbc18", MSODBC18_NAME, candidates[-1], registered=False) if candidates else None


def _distribution_family() -> str | None:
    """The wheel's family directory for this Linux distribution, from /etc/os-release ID and ID_LIKE."""
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        return None
    ids = [release.get("ID", ""), *release.get("ID_LIKE", "").split()]
    return next((_WHEEL_FAMILIES[i] for i in ids if i in _WHEEL_FAMILIES), None)


def _unregistered_freetds() -> OdbcDriver | None:
    path = next((Path(p) for p in _FREETDS_PATHS if Path(p).is_file()), None)
    return OdbcDriver("freetds", FREETDS_NAME, path, registered=False) if path else None
