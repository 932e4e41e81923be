"""An instance's identity, derived once from its spec: version, edition, names, SERVERPROPERTY, @@ variables.

A scenario only states what matters to it (say `version: 15.0.4298.1`); everything SQL Server would
report alongside it (ProductMajorVersion, @@VERSION's text, EngineEdition from the edition...) follows
from that here, so the simulated answers stay consistent with each other.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from linkgate.lab.scenario import InstanceSpec

RELEASES = {12: "Azure SQL", 13: "2016", 14: "2017", 15: "2019", 16: "2022", 17: "2025"}
MI_VERSION = "12.0.2000.8"
DEFAULT_VERSION = "16.0.4135.4"
DEFAULT_START = dt.datetime(2025, 11, 3, 6, 12, 41, 117000)


@dataclass(frozen=True)
class Profile:
    """What an instance says about itself."""

    spec: InstanceSpec
    version: tuple[int, int, int, int]
    version_text: str
    product_level: str
    update_level: str | None
    update_reference: str | None
    edition: str
    engine_edition: int
    server_name: str
    machine_name: str
    instance_name: str | None
    service_id: str
    """MSSQLSERVER or the named instance: service and registry names use it."""
    start_time: dt.datetime

    @property
    def version_string(self) -> str:
        """@@VERSION."""
        return _version_string(self)

    @property
    def major(self) -> int:
        return self.version[0]

    @property
    def managed(self) -> bool:
        return self.spec.is_managed_instance

    @property
    def on_windows(self) -> bool:
        return not self.managed and self.spec.host.platform.lower() == "windows"

    @property
    def instance_id(self) -> str:
        """The registry instance id, e.g. MSSQL16.MSSQLSERVER."""
        return f"MSSQL{self.major}.{self.service_id}"

    @property
    def hadr_enabled(self) -> int:
        return 1 if self.spec.hadr.enabled else 0

    @property
    def hadr_manager_status(self) -> int:
        status = self.spec.hadr.manager_status
        return status if status is not None else self.hadr_enabled

    def server_properties(self) -> dict[str, Any]:
        """SERVERPROPERTY name (lower case) → value (str: nvarchar(128) base type, int: int); others are NULL."""
        s = self.spec
        text = {
            "productversion": self.version_text,
            "productlevel": self.product_level,
            "productupdatelevel": self.update_level,
            "productupdatereference": self.update_reference,
            "productmajorversion": str(self.version[0]),
            "productminorversion": str(self.version[1]),
            "productbuild": str(self.version[2]),
            "edition": self.edition,
            "collation": s.collation,
            "machinename": self.machine_name,
            "servername": self.server_name,
            "instancename": self.instance_name,
            "computernamephysicalnetbios": self.machine_name,
            "buildclrversion": "v4.0.30319",
            "licensetype": "DISABLED",
            "productupdatetype": (s.update_type or "CU") if self.managed else s.update_type,
            "filestreamsharename": self.service_id,
        }
        ints = {
            "engineedition": self.engine_edition,
            "ishadrenabled": self.hadr_enabled,
            "hadrmanagerstatus": self.hadr_manager_status,
            "isclustered": 0,
            "isfulltextinstalled": 0,
            "isintegratedsecurityonly": 0,
            "issingleuser": 0,
            "isxtpsupported": 1,
            "islocaldb": 0,
            "ispolybaseinstalled": 0,
            "isadvancedanalyticsinstalled": 0,
            "istempdbmetadatamemoryoptimized": 0,
            "filestreamconfiguredlevel": 0,
            "filestreameffectivelevel": 0,
            "processid": 4242,
            "sqlcharset": 1,
            "sqlsortorder": 52,
        }
        props: dict[str, Any] = {k: v for k, v in text.items() if v is not None}
        props.update(ints)
        if self.managed:
            props["isexternalauthenticationonly"] = 0
        return props


def profile(spec: InstanceSpec) -> Profile:
    """Derive the identity of `spec`, filling every field the scenario left out."""
    managed = spec.is_managed_instance
    version_text = spec.version or (MI_VERSION if managed else DEFAULT_VERSION)
    a, b, c, d = (int(p) for p in version_text.split("."))
    edition = spec.edition or ("SQL Azure" if managed else "Developer Edition (64-bit)")
    engine_edition = spec.engine_edition if spec.engine_edition is not None else _engine_edition(edition, managed)
    level = spec.product_level or ("RTM" if managed or a != 13 else "SP3")
    instance = None if managed else spec.instance_name
    server = spec.server_name or (spec.name + (f"\\{instance}" if instance else ""))
    machine = spec.machine_name or spec.name
    start = spec.start_time or DEFAULT_START
    return Profile(
        spec=spec,
        version=(a, b, c, d),
        version_text=version_text,
        product_level=level,
        update_level=spec.product_update_level,
        update_reference=spec.product_update_reference,
        edition=edition,
        engine_edition=engine_edition,
        server_name=server,
        machine_name=machine,
        instance_name=instance,
        service_id=instance or "MSSQLSERVER",
        start_time=start,
    )


def _engine_edition(edition: str, managed: bool) -> int:
    if managed:
        return 8
    lowered = edition.lower()
    if lowered.startswith("express"):
        return 4
    if lowered.startswith("standard"):
        return 2
    if lowered.startswith("web"):
        return 2
    return 3


def _version_string(p: Profile) -> str:
    """@@VERSION as SQL Server formats it (built date is fixed: the lab has no real build)."""
    if p.managed:
        return (
            f"Microsoft SQL Azure (RTM) - {p.version_text} \n\tOct  8 2025 11:27:43 \n\t"
            "Copyright (C) 2022 Microsoft Corporation\n"
        )
    release = RELEASES.get(p.major, str(p.major))
    level = p.product_level + (f"-{p.update_level}" if p.update_level else "")
    kb = f" ({p.update_reference})" if p.update_reference else ""
    host = p.spec.host
    if p.on_windows:
        on = f"on {host.distribution} {host.release} <X64> (Build 20348: ) (Hypervisor)"
    else:
        on = f"on {host.platform} ({host.distribution} {host.release}) <X64>"
    copyright_year = {13: "(c) Microsoft Corporation", 14: "(C) 2017 Microsoft Corporation"}.get(
        p.major, f"(C) {release} Microsoft Corporation" if release.isdigit() else "(C) Microsoft Corporation"
    )
    return (
        f"Microsoft SQL Server {release} ({level}){kb} - {p.version_text} (X64) \n\tJul 10 2024 14:09:09 \n\t"
        f"Copyright {copyright_year}\n\t{p.edition} {on}\n"
    )
