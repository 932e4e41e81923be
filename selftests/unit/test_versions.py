"""The version supportability table (spec §1.2): every rule at and around its threshold."""

from __future__ import annotations

import pytest

from linkgate.versions import (
    host_os_supportability,
    is_evaluation,
    mi_primary_supportability,
    parse_build,
    supportability,
    windows_from_version_string,
    windows_host_supportability,
)


@pytest.mark.parametrize(
    ("build", "supported"),
    [
        ("13.0.7000.253", True),  # 2016 SP3 + Azure Connect pack
        ("13.0.7016.1", True),  # GDR for the Azure Connect pack
        ("13.0.6490.1", False),  # SP3 GDR: not the Azure Connect line
        ("13.0.6300.2", False),  # SP3 alone
        ("14.0.3490.10", True),  # 2017 CU31 + Azure Connect pack
        ("14.0.3540.1", True),
        ("14.0.3456.2", False),  # CU31 without the pack
        ("14.0.2070.1", False),  # RTM GDR
        ("15.0.4312.2", True),  # 2019 CU20
        ("15.0.4298.1", False),  # 2019 CU19
        ("15.0.2110.4", False),  # 2019 RTM GDR
        ("16.0.1000.6", True),  # 2022 RTM
        ("16.0.4135.4", True),
        ("17.0.1000.7", True),  # 2025 RTM
        ("12.0.6024.0", False),  # 2014: no distributed AGs
    ],
)
def test_minimum_builds(build: str, supported: bool) -> None:
    assert supportability(parse_build(build)).supported is supported


def test_reason_names_the_update_to_install() -> None:
    reason = supportability(parse_build("15.0.4298.1")).reason
    assert "below the minimum CU20 15.0.4312.2" in reason
    assert "KB5024276" in reason


@pytest.mark.parametrize(
    ("build", "database_format", "supported"),
    [
        ("16.0.4095.4", None, True),
        ("16.0.4095.4", "SQLServer2022", True),
        ("16.0.4095.4", "sqlserver2022", True),  # ARM and the docs spell it differently: compare case-insensitively
        ("16.0.4095.4", "AlwaysUpToDate", False),
        ("16.0.4085.2", "SQLServer2022", False),  # CU9
        ("16.0.1000.6", None, False),  # RTM: SQL Server as primary only
        ("17.0.1000.7", "SqlServer2025", True),
        ("17.0.1000.7", "SQLServer2022", False),
        ("15.0.4312.2", None, False),  # 2019: never from the managed instance
    ],
)
def test_mi_as_primary(build: str, database_format: str | None, supported: bool) -> None:
    assert mi_primary_supportability(parse_build(build), database_format).supported is supported


@pytest.mark.parametrize("text", ["16.0.4135", "16.0.x.4", "", "v16.0.1.1"])
def test_parse_build_rejects_non_builds(text: str) -> None:
    with pytest.raises(ValueError, match="not a SQL Server build number"):
        parse_build(text)


@pytest.mark.parametrize(
    ("version_string", "expected"),
    [
        (
            "Microsoft SQL Server 2016 (SP3) (KB5003279) - 13.0.6300.2 (X64) \n\tAug  7 2021 01:20:37 \n\t"
            "Copyright (c) Microsoft Corporation\n\tEnterprise Edition (64-bit) on Windows Server 2016 Datacenter "
            "10.0 <X64> (Build 14393: ) (Hypervisor)\n",
            ("Windows Server 2016 Datacenter", "10.0"),
        ),
        (
            "Microsoft SQL Server 2016 (SP3) - 13.0.7000.253 (X64) Standard Edition (64-bit) on Windows Server 2012 R2 "
            "Standard 6.3 <X64> (Build 9600: )",
            ("Windows Server 2012 R2 Standard", "6.3"),
        ),
        ("... Developer Edition (64-bit) on Windows 10 Pro 10.0 <X64> (Build 19045: )", ("Windows 10 Pro", "10.0")),
        ("... Enterprise Edition (64-bit) on Windows NT 6.3 <X64> (Build 9600: )", ("Windows NT", "6.3")),
        ("Microsoft SQL Server 2022 (RTM-CU14) ... Developer Edition (64-bit) on Linux (Ubuntu 22.04) <X64>", None),
    ],
)
def test_windows_is_read_from_the_version_string(version_string: str, expected: tuple[str, str] | None) -> None:
    assert windows_from_version_string(version_string) == expected


@pytest.mark.parametrize(
    ("product", "release", "supported"),
    [
        ("Windows Server 2012 Datacenter", "6.2", True),
        ("Windows Server 2012 R2 Standard", "6.3", True),
        ("Windows Server 2022 Datacenter", "10.0", True),
        ("Windows Server Datacenter", "10.0", True),  # semi-annual channel: no year, NT 10.0
        ("Windows Server 2008 R2 Enterprise", "6.1", False),
        ("Windows Server Standard", "6.1", False),  # no year, NT 6.1 (2008 R2)
        ("Windows Server Standard", "", False),  # neither a year nor a release: can't tell
        ("Windows 10 Pro", "10.0", False),
        ("Windows 11 Enterprise", "10.0", False),
        ("Windows NT", "6.3", False),  # the old @@VERSION form doesn't say it is a server
    ],
)
def test_windows_host_needs_windows_server_2012_or_later(product: str, release: str, supported: bool) -> None:
    verdict = windows_host_supportability(product, release)
    assert verdict.supported is supported, verdict.reason
    assert product in verdict.reason


@pytest.mark.parametrize(
    ("major", "platform", "product", "supported"),
    [
        (16, "Linux", "Ubuntu", True),
        (14, "Linux", "Red Hat Enterprise Linux", True),
        (13, "Linux", "Ubuntu", False),  # 2016 links only from Windows Server
        (13, "Windows", "Windows Server 2016 Datacenter", True),
        (16, "Windows", "Windows 10 Pro", False),
    ],
)
def test_host_os_per_version(major: int, platform: str, product: str, supported: bool) -> None:
    assert host_os_supportability(major, platform, product, "10.0").supported is supported


@pytest.mark.parametrize(
    ("edition", "evaluation"),
    [
        ("Enterprise Evaluation Edition (64-bit)", True),
        ("Enterprise Evaluation Edition: Core-based Licensing (64-bit)", True),
        ("Enterprise Edition (64-bit)", False),
        ("Enterprise Edition: Core-based Licensing (64-bit)", False),
        ("Developer Edition (64-bit)", False),
        ("Standard Edition (64-bit)", False),
    ],
)
def test_evaluation_edition_is_recognised(edition: str, evaluation: bool) -> None:
    assert is_evaluation(edition) is evaluation
