"""Windows Firewall evaluation on hand-made JSON in the shapes PowerShell emits (data/firewall/README.md)."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from linkgate.firewall.flows import Anchor, Flow
from linkgate.firewall.windows import (
    FIREWALL_SCRIPT,
    WindowsFirewall,
    encoded_command,
    evaluate_windows,
    firewall_command,
)

MI = "198.18.2.0/24"
SQL = "198.18.1.10"
IN_5022 = Flow.tcp("inbound", MI, SQL, 5022)
IN_REDIRECT = Flow.tcp("inbound", MI, SQL, "11000-11999")
OUT_5022 = Flow.tcp("outbound", SQL, MI, 5022)
OUT_REDIRECT = Flow.tcp("outbound", SQL, MI, "11000-11999")

Listing = Callable[[str], str]


def test_allow_rules_in_the_active_profile(listing: Listing) -> None:
    fw = WindowsFirewall.parse(listing("windows/allow.json"))
    assert fw.active_profiles == frozenset({"Domain"})  # DomainAuthenticated
    verdict = fw.evaluate(IN_5022)
    assert verdict.allowed is True
    assert verdict.decided_by is not None
    assert verdict.decided_by.where == "rule 'Allow TCP port 5022 inbound' ({6F9A2C1E-0B4D-4C55-9C1E-3D2B7A1F5E01})"
    assert "RemoteAddress=198.18.2.0/255.255.255.0" in verdict.decided_by.text
    assert fw.evaluate(IN_REDIRECT).allowed is True
    assert fw.evaluate(OUT_REDIRECT).policy == "Domain profile default outbound action Allow"  # NotConfigured
    assert fw.evaluate(Flow.tcp("inbound", "198.18.9.0/24", SQL, 5022)).policy == (
        "Domain profile default inbound action Block"
    )


def test_block_beats_allow_whatever_the_order(listing: Listing) -> None:
    verdict = evaluate_windows(listing("windows/block-over-allow.json"), IN_5022)
    assert verdict.allowed is False
    assert [(str(p.flow.source), p.allowed) for p in verdict.parts] == [
        ("198.18.2.0/25", True),
        ("198.18.2.128/25", False),
    ]
    assert verdict.decided_by is not None
    assert verdict.decided_by.where.startswith("rule 'Block legacy mirroring partners'")
    assert verdict.anchor == Anchor(("{B7D2E4F6-1A3C-4B5D-9E7F-2C4D6E8F0A1B}",))


def test_profiles_that_disagree_without_knowing_the_active_one(listing: Listing) -> None:
    text = listing("windows/profiles.json")
    unknown = WindowsFirewall.parse(text).evaluate(IN_5022)
    assert unknown.allowed is None
    assert "Domain profile: allowed by" in unknown.notes[1]
    assert "Private profile: allowed by the firewall is off in the Private profile" in unknown.notes
    assert WindowsFirewall.parse(text, active_profiles=["Domain"]).evaluate(IN_5022).allowed is True
    public = WindowsFirewall.parse(text, active_profiles=["Public"])
    assert public.evaluate(IN_5022).policy == "Public profile default inbound action Block"
    assert public.evaluate(OUT_5022).policy == "Public profile default outbound action Block"


def test_address_keywords(listing: Listing) -> None:
    fw = WindowsFirewall.parse(listing("windows/keywords.json"))
    local = fw.evaluate(IN_5022)
    assert local.allowed is None
    assert any("address keyword LocalSubnet" in n for n in local.notes)
    assert fw.evaluate(IN_5022, local_subnets=[MI]).allowed is True
    assert fw.evaluate(IN_5022, local_subnets=["198.18.1.0/24"]).allowed is False
    internet = fw.evaluate(IN_REDIRECT)  # a Block scoped to 'Internet' may or may not cover the subnet
    assert internet.allowed is None
    assert internet.decided_by is not None
    assert internet.decided_by.where.startswith("rule 'Block redirect ports from the Internet'")


def test_outbound_uses_remote_port_and_ranges(listing: Listing) -> None:
    fw = WindowsFirewall.parse(listing("windows/port-ranges.json"))
    assert fw.evaluate(OUT_5022).allowed is True
    verdict = fw.evaluate(OUT_REDIRECT)
    assert [(str(p.flow.ports), p.allowed) for p in verdict.parts] == [("11000-11499", True), ("11500-11999", None)]
    # the article's outbound example uses LocalPort: that is the ephemeral source port, which cannot be known
    assert any("source port 11500-11999" in n for n in verdict.notes)
    assert fw.evaluate(IN_5022).allowed is False


def test_scalars_and_value_count_wrappers(listing: Listing) -> None:
    fw = WindowsFirewall.parse(listing("windows/scalars.json"))
    assert [r.local_port for r in fw.rules] == [("5022", "11000-11999")]
    assert fw.evaluate(IN_REDIRECT).allowed is True


def test_program_scoped_rule_is_indeterminate(listing: Listing) -> None:
    verdict = evaluate_windows(listing("windows/program.json"), IN_5022)
    assert verdict.allowed is None
    assert any("Program C:\\Program Files\\Microsoft SQL Server" in n for n in verdict.notes)


def test_listing_without_program_filters_says_so() -> None:
    fw = WindowsFirewall.parse(
        {
            "profiles": [],
            "rules": [
                {
                    "Name": "a",
                    "Direction": "Inbound",
                    "Action": "Allow",
                    "Profile": "Any",
                    "Protocol": "TCP",
                    "LocalPort": "5022",
                }
            ],
        }
    )
    verdict = fw.evaluate(IN_5022)
    assert verdict.allowed is True
    assert any("no program/service filters" in n for n in verdict.notes)
    assert any("every profile assumed enabled" in n for n in verdict.notes)


def test_unknown_action_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown action 'Bypass'"):
        WindowsFirewall.parse({"rules": [{"Name": "x", "Direction": "Inbound", "Action": "Bypass"}]})


def test_command_decodes_to_the_script() -> None:
    command = firewall_command()
    prefix = "powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand "
    assert command.startswith(prefix)
    assert base64.b64decode(command.removeprefix(prefix)).decode("utf-16-le") == FIREWALL_SCRIPT
    assert len(command) < 8191  # cmd.exe's command-line limit
    assert "-PolicyStore ActiveStore" in FIREWALL_SCRIPT
    assert "ConvertTo-Json -Depth 5 -Compress" in FIREWALL_SCRIPT


def test_encoded_command_survives_quotes() -> None:
    script = 'Write-Output "it\'s" | ConvertTo-Json'
    encoded = encoded_command(script).rsplit(" ", 1)[1]
    assert base64.b64decode(encoded).decode("utf-16-le") == script
