"""Which SQL Server builds can be linked, as data (spec §1): the version supportability table.

Builds are compared as 4-int tuples of SERVERPROPERTY('ProductVersion'). The table is the 2026 state of
the feature overview: 2016 and 2017 need their Azure Connect packs, 2019 needs CU20, 2022 any build for
SQL Server as initial primary but CU10 to create a link from the managed instance, 2025 RTM.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

Build = tuple[int, int, int, int]

SUPPORTED_EDITIONS = {2: "Standard", 3: "Enterprise, Developer or Evaluation"}
"""SERVERPROPERTY('EngineEdition') values the link supports: 4 (Express) and others are not."""


def is_evaluation(edition: str) -> bool:
    """SERVERPROPERTY('Edition') names an Enterprise Evaluation edition (engine edition 3, but it expires).

    'Enterprise Evaluation Edition (64-bit)' and its core-based variant both start so (spec SQL-02).
    """
    return edition.strip().lower().startswith("enterprise evaluation")


@dataclass(frozen=True)
class VersionRule:
    major: int
    release: str
    minimum: Build
    minimum_name: str
    update: str  # what to install, scoped to the version
    windows_only: bool = False
    mi_primary_minimum: Build | None = None  # creating a link from the managed instance


RULES: dict[int, VersionRule] = {
    r.major: r
    for r in (
        VersionRule(
            13,
            "SQL Server 2016",
            (13, 0, 7000, 253),
            "SP3 with the Azure Connect pack 13.0.7000.253",
            "KB5014242 (SQL Server 2016 SP3 Azure Connect feature pack)",
            windows_only=True,
        ),
        VersionRule(
            14,
            "SQL Server 2017",
            (14, 0, 3490, 10),
            "CU31 with the Azure Connect pack 14.0.3490.10",
            "KB5050533 (SQL Server 2017 Azure Connect feature pack)",
        ),
        VersionRule(
            15, "SQL Server 2019", (15, 0, 4312, 2), "CU20 15.0.4312.2", "KB5024276 (SQL Server 2019 CU20) or later"
        ),
        VersionRule(
            16,
            "SQL Server 2022",
            (16, 0, 1000, 6),
            "RTM 16.0.1000.6",
            "the latest SQL Server 2022 cumulative update",
            mi_primary_minimum=(16, 0, 4095, 4),
        ),
        VersionRule(
            17,
            "SQL Server 2025",
            (17, 0, 1000, 7),
            "RTM 17.0.1000.7",
            "the latest SQL Server 2025 cumulative update",
            mi_primary_minimum=(17, 0, 1000, 7),
        ),
    )
}


def parse_build(text: str) -> Build:
    """'16.0.4135.4' → (16, 0, 4135, 4); raises ValueError on anything else."""
    parts = text.strip().split(".")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a SQL Server build number: {text!r}")
    return (int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3]))


def format_build(build: Build) -> str:
    return ".".join(str(p) for p in build)


@dataclass(frozen=True)
class Supportability:
    supported: bool
    reason: str


def supportability(build: Build) -> Supportability:
    """Whether this build can be linked with SQL Server as the initial primary, and why."""
    rule = RULES.get(build[0])
    if rule is None:
        return Supportability(
            False,
            f"major version {build[0]} is not supported by the link "
            "(supported: SQL Server 2016 SP3 and later with the required updates)",
        )
    if build < rule.minimum:
        return Supportability(
            False,
            f"{rule.release} build {format_build(build)} is below the minimum "
            f"{rule.minimum_name}; install {rule.update}",
        )
    return Supportability(True, f"{rule.release} build {format_build(build)} meets the minimum {rule.minimum_name}")


def mi_primary_supportability(build: Build, database_format: str | None) -> Supportability:
    """Whether a link can be created with the managed instance as the initial primary (spec SQL-03).

    SQL Server 2022 from CU10 with the SQL Server 2022 update policy, or 2025 with the 2025 policy.
    `database_format` is ARM's databaseFormat when known (None: only the build is judged).
    """
    rule = RULES.get(build[0])
    if rule is None or rule.mi_primary_minimum is None:
        return Supportability(
            False,
            f"build {format_build(build)}: only SQL Server 2022 CU10 (16.0.4095.4) "
            "and later, or SQL Server 2025, can link with the managed instance as primary",
        )
    if build < rule.mi_primary_minimum:
        return Supportability(
            False,
            f"{rule.release} build {format_build(build)} is below "
            f"{format_build(rule.mi_primary_minimum)} (CU10), the minimum to create a link "
            "from the managed instance; install the latest cumulative update",
        )
    wanted = "SQLServer2022" if build[0] == 16 else "SQLServer2025"
    if database_format is not None and database_format.lower() != wanted.lower():
        return Supportability(
            False,
            f"{rule.release} needs the managed instance's {wanted} update policy, the instance has {database_format}",
        )
    return Supportability(True, f"{rule.release} build {format_build(build)} can link from the managed instance")


WINDOWS_SERVER_MINIMUM = (6, 2)
"""Windows Server 2012 is NT 6.2: the oldest Windows Server a link's SQL Server may run on (spec SQL-04)."""


def windows_from_version_string(version_string: str) -> tuple[str, str] | None:
    """The OS @@VERSION names on Windows, as (product, release); None when it names none.

    SQL Server 2016 has no sys.dm_os_host_info; its @@VERSION ends, e.g., "Enterprise Edition (64-bit) on
    Windows Server 2016 Datacenter 10.0 <X64> (Build 14393: ) (Hypervisor)" → ("Windows Server 2016
    Datacenter", "10.0"). Older builds may say only "on Windows NT 6.3 <X64>" → ("Windows NT", "6.3").
    """
    m = re.search(r"\bon (Windows\b[^<\n]*?)\s+(\d+\.\d+)\s*<", version_string)
    return (m.group(1).strip(), m.group(2)) if m else None


def _release(text: str) -> tuple[int, int] | None:
    m = re.match(r"\s*(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def windows_host_supportability(product: str, release: str) -> Supportability:
    """Whether a Windows host can run a linked SQL Server: Windows Server 2012 or later, never a client SKU.

    The year in the product name decides ("Windows Server 2008 R2" fails, "Windows Server 2016" passes);
    a name without a year (semi-annual channel "Windows Server Datacenter") is judged by the NT release,
    which must be at least 6.2.
    """
    shown = f"{product} {release}".strip()
    if "windows server" not in product.lower():
        return Supportability(
            False, f"{shown} is not Windows Server: Windows 10 and 11 clients can't host a link (Windows Server 2012+)"
        )
    year = re.search(r"windows server (\d{4})\b", product, flags=re.IGNORECASE)
    if year is not None:
        ok = int(year.group(1)) >= 2012
    else:
        nt = _release(release)
        if nt is None:
            return Supportability(False, f"{shown}: can't tell the Windows Server version (no year, no NT release)")
        ok = nt >= WINDOWS_SERVER_MINIMUM
    reason = "is Windows Server 2012 or later" if ok else "is older than Windows Server 2012, the oldest supported"
    return Supportability(ok, f"{shown} {reason}")


def host_os_supportability(major: int, platform: str, product: str, release: str) -> Supportability:
    """Whether SQL Server `major` may link from this host OS (spec SQL-04, §1.1).

    Linux is allowed from 2017 (2016 is Windows Server only); Windows must be Windows Server 2012 or later.
    """
    rule = RULES.get(major)
    if platform.strip().lower() == "linux":
        if rule is not None and rule.windows_only:
            return Supportability(False, f"{rule.release} links only from Windows Server, not {product} {release}")
        return Supportability(True, f"{product} {release} (Linux) can host a link")
    return windows_host_supportability(product, release)
