"""The version supportability table (spec §1.2): every rule at and around its threshold."""

from __future__ import annotations

import pytest

from linkgate.versions import mi_primary_supportability, parse_build, supportability


@pytest.mark.parametrize(
    ("build", "supported"),
    [
        ("13.0.7000.253", True),   # 2016 SP3 + Azure Connect pack
        ("13.0.7016.1", True),     # GDR for the Azure Connect pack
        ("13.0.6490.1", False),    # SP3 GDR: not the Azure Connect line
        ("13.0.6300.2", False),    # SP3 alone
        ("14.0.3490.10", True),    # 2017 CU31 + Azure Connect pack
        ("14.0.3540.1", True),
        ("14.0.3456.2", False),    # CU31 without the pack
        ("14.0.2070.1", False),    # RTM GDR
        ("15.0.4312.2", True),     # 2019 CU20
        ("15.0.4298.1", False),    # 2019 CU19
        ("15.0.2110.4", False),    # 2019 RTM GDR
        ("16.0.1000.6", True),     # 2022 RTM
        ("16.0.4135.4", True),
        ("17.0.1000.7", True),     # 2025 RTM
        ("12.0.6024.0", False),    # 2014: no distributed AGs
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
