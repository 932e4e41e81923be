"""The only DDL the lab accepts: CREATE/DROP CERTIFICATE and CREATE/DROP ENDPOINT … FOR DATABASE_MIRRORING.

The article's MI → SQL Server test creates `TEST_CERT` and `TEST_ENDPOINT` on SQL Server, then drops
them. The lab answers those statements as SQL Server does (permissions 15247, the master key 15581,
one mirroring endpoint per instance 7862, missing objects 15151, a certificate an endpoint uses
15352) and keeps the new objects as rows the instance owns (sys.certificates, sys.endpoints,
sys.tcp_endpoints, sys.database_mirroring_endpoints). A STARTED endpoint opens a real listener on its
port in the server's machine namespace (`network.MachineNetwork.listen`), and DROP closes it.

Everything else stays refused: the scenario's own certificates and endpoints cannot be dropped (3906,
the read-only database error the lab gives every other write).
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import secrets
from typing import TYPE_CHECKING, Any

from linkgate.lab.engine import errors
from linkgate.lab.engine.rows import ALGORITHMS, CONNECTION_AUTH, ENDPOINT_ROLES, ENDPOINT_STATES
from linkgate.lab.results import Outcome, RowCount, SqlError

if TYPE_CHECKING:
    from linkgate.lab.engine.instance import SimulatedInstance
    from linkgate.lab.engine.session import EngineSession

NAME = r"(\[[^\]]+\]|\w+)"
STRING = r"N?'((?:[^']|'')*)'"
CREATE_CERTIFICATE = re.compile(
    rf"^CREATE\s+CERTIFICATE\s+{NAME}\s+(?:AUTHORIZATION\s+{NAME}\s+)?WITH\s+(.+)$", re.IGNORECASE | re.DOTALL
)
CERTIFICATE_OPTION = re.compile(rf"(SUBJECT|EXPIRY_DATE|START_DATE)\s*=\s*{STRING}", re.IGNORECASE)
CREATE_ENDPOINT = re.compile(
    rf"^CREATE\s+ENDPOINT\s+{NAME}\s+(?:AUTHORIZATION\s+{NAME}\s+)?(?:STATE\s*=\s*(STARTED|STOPPED|DISABLED)\s+)?"
    r"AS\s+TCP\s*\((.*?)\)\s*FOR\s+DATABASE_MIRRORING\s*\((.*)\)$",
    re.IGNORECASE | re.DOTALL,
)
LISTENER_PORT = re.compile(r"LISTENER_PORT\s*=\s*(\d+)", re.IGNORECASE)
LISTENER_IP = re.compile(r"LISTENER_IP\s*=\s*(ALL|\(\s*'?([\d.]+)'?\s*\))", re.IGNORECASE)
ROLE = re.compile(r"ROLE\s*=\s*(ALL|PARTNER|WITNESS)", re.IGNORECASE)
AUTHENTICATION = re.compile(rf"AUTHENTICATION\s*=\s*(CERTIFICATE\s+{NAME}|WINDOWS(?:\s+\w+)?)", re.IGNORECASE)
ENCRYPTION = re.compile(
    r"ENCRYPTION\s*=\s*(REQUIRED|SUPPORTED|DISABLED)(?:\s+ALGORITHM\s+([\w ]+?))?\s*(?:,|$)", re.IGNORECASE
)
DROP = re.compile(rf"^DROP\s+(CERTIFICATE|ENDPOINT)\s+{NAME}$", re.IGNORECASE)
DATE_FORMATS = ("%m/%d/%Y", "%Y%m%d", "%Y-%m-%d", "%Y-%m-%d %H:%M:%S", "%m/%d/%Y %H:%M:%S")
_ids = itertools.count(1)


def handles(text: str) -> bool:
    """Whether `text` is a CREATE/DROP of a certificate or an endpoint (everything else is not DDL the lab takes)."""
    words = text.split(None, 2)
    return (
        len(words) >= 2 and words[0].upper() in ("CREATE", "DROP") and words[1].upper() in ("CERTIFICATE", "ENDPOINT")
    )


def run(session: EngineSession, text: str) -> list[Outcome]:
    """Execute one CREATE/DROP CERTIFICATE/ENDPOINT statement on the session's instance."""
    if not session.sysadmin:
        raise SqlError(15247, "User does not have permission to perform this action.", severity=16)
    drop = DROP.match(text)
    if drop:
        kind, name = drop.group(1).upper(), _unquote(drop.group(2))
        return _drop_certificate(session, name) if kind == "CERTIFICATE" else _drop_endpoint(session.instance, name)
    if text.split()[1].upper() == "CERTIFICATE":
        return _create_certificate(session, text)
    return _create_endpoint(session.instance, text)


def _unquote(name: str) -> str:
    return name[1:-1] if name.startswith("[") else name


def _create_certificate(session: EngineSession, text: str) -> list[Outcome]:
    match = CREATE_CERTIFICATE.match(text)
    if match is None:
        raise errors.syntax_error(text.split()[2] if len(text.split()) > 2 else text)
    instance, database = session.instance, session.database
    name = _unquote(match.group(1))
    options = {m.group(1).upper(): m.group(2).replace("''", "'") for m in CERTIFICATE_OPTION.finditer(match.group(3))}
    if database.lower() != "master" or not instance.spec.master_key:
        raise SqlError(
            15581,
            "Please create a master key in the database or open the master key in the session before performing "
            "this operation.",
            severity=16,
        )
    if _certificate(instance, database, name) is not None:
        raise SqlError(
            15232,
            f"A certificate with name '{name}' already exists or this certificate already has been added to the "
            "database.",
            severity=16,
        )
    now = dt.datetime.now().replace(microsecond=0)
    thumbprint = secrets.token_bytes(20)
    subject = options.get("SUBJECT", name)
    instance.catalog.insert_owned(
        instance.own_id,
        "sys.certificates",
        {
            "name": name,
            "certificate_id": 4096 + next(_ids),
            "principal_id": 1,
            "pvt_key_encryption_type": "MK",
            "pvt_key_encryption_type_desc": "ENCRYPTED_BY_MASTER_KEY",
            "is_active_for_begin_dialog": True,
            "issuer_name": subject,
            "cert_serial_number": thumbprint[:8].hex(" "),
            "sid": b"\x01\x06" + thumbprint[:8],
            "subject": subject,
            "expiry_date": _date(options.get("EXPIRY_DATE")) or now.replace(year=now.year + 1),
            "start_date": _date(options.get("START_DATE")) or now,
            "thumbprint": thumbprint,
            "key_length": 2048,
        },
        database,
    )
    return [RowCount(None)]


def _date(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    for fmt in DATE_FORMATS:
        try:
            return dt.datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
    raise SqlError(241, "Conversion failed when converting date and/or time from character string.", severity=16)


def _certificate(instance: SimulatedInstance, database: str, name: str) -> dict[str, Any] | None:
    """The certificate `name` in `database` (the scenario's or one created since), or None."""
    instance.load(("lab.sys_certificates",))
    con = instance.catalog.connection()
    try:
        row = con.execute(
            "SELECT certificate_id, lg_i FROM lab.sys_certificates WHERE lg_i IN (?, ?) AND lg_db = ? AND name = ?",
            [instance.row_set_id, instance.own_id, database, name],
        ).fetchone()
    finally:
        con.close()
    return None if row is None else {"certificate_id": row[0], "owned": row[1] == instance.own_id}


def _mirroring_endpoints(instance: SimulatedInstance) -> list[tuple[str, bool]]:
    """(name, created at run time) of every DATABASE_MIRRORING endpoint of the instance."""
    instance.load(("lab.sys_database_mirroring_endpoints",))
    con = instance.catalog.connection()
    try:
        rows = con.execute(
            "SELECT name, lg_i FROM lab.sys_database_mirroring_endpoints WHERE lg_i IN (?, ?)",
            [instance.row_set_id, instance.own_id],
        ).fetchall()
    finally:
        con.close()
    return [(str(name), lg_i == instance.own_id) for name, lg_i in rows]


def _create_endpoint(instance: SimulatedInstance, text: str) -> list[Outcome]:
    if instance.profile.managed:
        raise SqlError(40517, "Keyword or statement option 'ENDPOINT' is not supported in this version of SQL Server.")
    match = CREATE_ENDPOINT.match(text)
    if match is None:
        raise errors.syntax_error(text.split()[2] if len(text.split()) > 2 else text)
    name, state = _unquote(match.group(1)), (match.group(3) or "STOPPED").upper()
    tcp, mirroring = match.group(4), match.group(5)
    port_match = LISTENER_PORT.search(tcp)
    if port_match is None:
        raise errors.syntax_error(")")
    port = int(port_match.group(1))
    ip = LISTENER_IP.search(tcp)
    if _mirroring_endpoints(instance):
        raise SqlError(
            7862,
            "An endpoint of the requested type already exists.  Only one endpoint of this type is supported.  "
            "Use ALTER ENDPOINT or DROP the existing endpoint and execute the CREATE ENDPOINT statement.",
            severity=16,
        )
    role_match = ROLE.search(mirroring)
    role = role_match.group(1).upper() if role_match else "ALL"
    auth_match = AUTHENTICATION.search(mirroring)
    certificate_id = 0
    auth = "NEGOTIATE"
    if auth_match is not None and auth_match.group(1).upper().startswith("CERTIFICATE"):
        cert_name = _unquote(auth_match.group(2))
        cert = _certificate(instance, "master", cert_name)
        if cert is None:
            raise SqlError(
                15151,
                f"Cannot find the certificate '{cert_name}', because it does not exist or you do not have permission.",
                severity=16,
            )
        certificate_id, auth = int(cert["certificate_id"]), "CERTIFICATE"
    encryption = ENCRYPTION.search(mirroring)
    level = encryption.group(1).upper() if encryption else "REQUIRED"
    algorithm = "NONE" if level == "DISABLED" else ((encryption.group(2) if encryption else None) or "RC4").upper()
    endpoint_id = 65536 + 256 + next(_ids)
    common = {
        "name": name,
        "endpoint_id": endpoint_id,
        "principal_id": 1,
        "protocol": 2,
        "protocol_desc": "TCP",
        "type": 4,
        "type_desc": "DATABASE_MIRRORING",
        "state": ENDPOINT_STATES[state],
        "state_desc": state,
        "is_admin_endpoint": False,
    }
    own, catalog = instance.own_id, instance.catalog
    catalog.insert_owned(own, "sys.endpoints", common)
    catalog.insert_owned(
        own,
        "sys.tcp_endpoints",
        {**common, "port": port, "is_dynamic_port": False, "ip_address": ip.group(2) if ip and ip.group(2) else None},
    )
    catalog.insert_owned(
        own,
        "sys.database_mirroring_endpoints",
        {
            **common,
            "role": ENDPOINT_ROLES[role],
            "role_desc": role,
            "is_encryption_enabled": level != "DISABLED",
            "connection_auth": CONNECTION_AUTH.get(auth, 4),
            "connection_auth_desc": auth,
            "certificate_id": certificate_id,
            "encryption_algorithm": ALGORITHMS.get(algorithm, 2),
            "encryption_algorithm_desc": algorithm,
        },
    )
    if state == "STARTED":
        instance.listen_for_endpoint(name, port)
    return [RowCount(None)]


def _drop_endpoint(instance: SimulatedInstance, name: str) -> list[Outcome]:
    found = [owned for n, owned in _mirroring_endpoints(instance) if n.lower() == name.lower()]
    if not found:
        raise SqlError(
            15151,
            f"Cannot drop the endpoint '{name}', because it does not exist or you do not have permission.",
            severity=16,
        )
    if not found[0]:
        raise errors.read_only_database("master")
    for table in ("sys.database_mirroring_endpoints", "sys.tcp_endpoints", "sys.endpoints"):
        instance.catalog.delete_owned(instance.own_id, table, ("name", name))
    instance.stop_endpoint_listener(name)
    return [RowCount(None)]


def _drop_certificate(session: EngineSession, name: str) -> list[Outcome]:
    instance = session.instance
    cert = _certificate(instance, session.database, name)
    if cert is None:
        raise SqlError(
            15151,
            f"Cannot drop the certificate '{name}', because it does not exist or you do not have permission.",
            severity=16,
        )
    if not cert["owned"]:
        raise errors.read_only_database(session.database)
    users = instance.catalog.owned(
        instance.own_id, "sys.database_mirroring_endpoints", ("certificate_id", cert["certificate_id"])
    )
    if users:
        raise SqlError(
            15352,
            "The certificate cannot be dropped because one or more entities are either signed or encrypted using it. "
            "To continue, correct the issue and retry.",
            severity=16,
        )
    instance.catalog.delete_owned(instance.own_id, "sys.certificates", ("certificate_id", cert["certificate_id"]))
    return [RowCount(None)]
