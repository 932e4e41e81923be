"""NSG evaluation (spec §6) on hand-made ARM JSON of networkSecurityGroups GET (data/firewall/README.md)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from linkgate.firewall.flows import Anchor, Direction, Flow
from linkgate.firewall.nsg import DEFAULT_RULES, NOT_EVALUATED, Nsg, SecurityRule, evaluate_path, free_priority

MI = "198.18.2.0/24"
SQL = "198.19.10.4"  # on premises, outside the MI's virtual network
MI_VNET = ["198.18.0.0/16"]
IN_5022 = Flow.tcp("inbound", SQL, MI, 5022)
IN_REDIRECT = Flow.tcp("inbound", SQL, MI, "11000-11999")
OUT_5022 = Flow.tcp("outbound", MI, SQL, 5022)

Listing = Callable[[str], Nsg]


@pytest.fixture
def nsg(listing: Callable[[str], str]) -> Listing:
    return lambda name: Nsg.from_arm(listing(f"nsg/{name}.json"))


def test_healthy_mi_subnet(nsg: Listing) -> None:
    subnet = nsg("mi-subnet-healthy")
    for flow in (IN_5022, IN_REDIRECT):
        verdict = evaluate_path(flow, subnet=subnet, virtual_network=MI_VNET)
        assert verdict.allowed is True
        assert verdict.decided_by is not None
        assert verdict.decided_by.where == "subnet NSG nsg-mi inbound rule allow_linked_server_inbound (priority 1000)"
        assert NOT_EVALUATED in verdict.notes
    out = evaluate_path(OUT_5022, subnet=subnet, virtual_network=MI_VNET)
    assert out.decided_by is not None
    assert out.decided_by.text == "Allow Tcp from 198.18.2.0/24 port * to 198.19.10.4 port 5022"


def test_deny_at_a_lower_number_wins(nsg: Listing) -> None:
    subnet = nsg("mi-subnet-deny-first")
    verdict = evaluate_path(IN_5022, subnet=subnet, virtual_network=MI_VNET)
    assert verdict.allowed is False
    assert verdict.decided_by is not None
    assert verdict.decided_by.where == "subnet NSG nsg-mi inbound rule deny_onprem_mirroring (priority 900)"
    assert verdict.anchor == Anchor(("nsg-mi", "inbound"), 900)
    assert evaluate_path(IN_REDIRECT, subnet=subnet, virtual_network=MI_VNET).allowed is True


def test_default_internet_outbound_allows_what_no_rule_mentions(nsg: Listing) -> None:
    verdict = evaluate_path(OUT_5022, subnet=nsg("mi-subnet-deny-first"), virtual_network=MI_VNET)
    assert verdict.allowed is True
    assert verdict.decided_by is not None
    assert "AllowInternetOutBound (priority 65001, default)" in verdict.decided_by.where


def test_lists_ranges_protocols_and_documented_defaults(nsg: Listing) -> None:
    subnet = nsg("mi-subnet-lists")
    assert "the documented defaults are used" in subnet.notes[0]
    assert evaluate_path(IN_5022, subnet=subnet, virtual_network=MI_VNET).allowed is True  # 198.19.10.0/25 in a list
    verdict = evaluate_path(IN_REDIRECT, subnet=subnet, virtual_network=MI_VNET)
    assert [(str(p.flow.ports), p.allowed) for p in verdict.parts] == [("11000-11499", True), ("11500-11999", False)]
    assert verdict.decided_by is not None
    assert "DenyAllInBound (priority 65500, default)" in verdict.decided_by.where
    # a Deny pinned to source port 1433 might match, but DenyAllInBound denies anyway
    assert any("source port 1433; it does not change the decision" in n for n in verdict.notes)
    other = Flow.tcp("inbound", "198.19.10.200", MI, 5022)  # not in 198.19.10.0/25; the Udp rule does not match
    assert evaluate_path(other, subnet=subnet, virtual_network=MI_VNET).allowed is False


def test_virtual_network_tag_and_unresolvable_service_tag(nsg: Listing) -> None:
    subnet = nsg("mi-subnet-tags")
    assert evaluate_path(IN_5022, subnet=subnet, virtual_network=MI_VNET).allowed is False  # on-prem ∉ VirtualNetwork
    connected = [*MI_VNET, "198.19.10.0/24"]  # the on-premises range reached through the VNet gateway
    assert evaluate_path(IN_5022, subnet=subnet, virtual_network=connected).allowed is True
    redirect = evaluate_path(IN_REDIRECT, subnet=subnet, virtual_network=connected)
    assert redirect.allowed is None  # Sql.WestEurope might hold the source
    assert redirect.decided_by is not None
    assert "deny_sql_tag" in redirect.decided_by.where
    assert any("service tag Sql.WestEurope" in n for n in redirect.notes)
    unknown_vnet = evaluate_path(IN_5022, subnet=subnet, virtual_network=None)
    assert unknown_vnet.allowed is None


def test_azure_load_balancer_never_matches_on_premises() -> None:
    only_defaults = Nsg("nsg-empty", "", DEFAULT_RULES)
    verdict = evaluate_path(IN_5022, subnet=only_defaults, virtual_network=MI_VNET)
    assert verdict.decided_by is not None
    assert "DenyAllInBound" in verdict.decided_by.where
    probe = evaluate_path(Flow.tcp("inbound", "168.63.129.16", MI, 5022), subnet=only_defaults, virtual_network=MI_VNET)
    assert probe.decided_by is not None
    assert "AllowAzureLoadBalancerInBound" in probe.decided_by.where


def test_inbound_meets_the_subnet_then_the_nic(nsg: Listing) -> None:
    subnet, nic = nsg("vm-subnet"), nsg("vm-nic")
    peered = ["198.19.0.0/16", *MI_VNET]
    verdict = evaluate_path(Flow.tcp("inbound", MI, SQL, 5022), subnet=subnet, nic=nic, virtual_network=peered)
    assert verdict.allowed is False  # the subnet allows, the NIC denies
    assert verdict.decided_by is not None
    assert verdict.decided_by.where == "NIC NSG nsg-sqlvm-nic inbound rule deny_mirroring_in (priority 4000)"
    alone = evaluate_path(Flow.tcp("inbound", MI, SQL, 5022), subnet=subnet, virtual_network=peered)
    assert alone.allowed is True


def test_outbound_meets_the_nic_then_the_subnet(nsg: Listing) -> None:
    subnet, nic = nsg("vm-subnet"), nsg("vm-nic")
    peered = ["198.19.0.0/16", *MI_VNET]
    verdict = evaluate_path(
        Flow.tcp("outbound", SQL, MI, "11000-11999"), subnet=subnet, nic=nic, virtual_network=peered
    )
    assert verdict.allowed is False  # the NIC allows, the subnet denies
    assert verdict.decided_by is not None
    assert verdict.decided_by.where.startswith("subnet NSG nsg-sqlvm-subnet outbound rule deny_mi_redirect_out")
    allowed = evaluate_path(Flow.tcp("outbound", SQL, MI, 5022), subnet=subnet, nic=nic, virtual_network=peered)
    assert allowed.allowed is True
    assert any(n.startswith("also allowed by NIC NSG nsg-sqlvm-nic outbound rule allow_mi_out") for n in allowed.notes)


def test_no_nsg_on_the_path_filters_nothing() -> None:
    verdict = evaluate_path(IN_5022)
    assert verdict.policy == "no NSG is associated with the subnet or the NIC"


def test_singular_fields_and_comma_lists() -> None:
    rule = SecurityRule.from_arm(
        {
            "name": "r",
            "properties": {
                "priority": 200,
                "direction": "Inbound",
                "access": "Allow",
                "protocol": "Tcp",
                "sourceAddressPrefix": SQL,
                "destinationAddressPrefix": "*",
                "sourcePortRange": "*",
                "destinationPortRange": "5022, 11000-11999",
            },
        }
    )
    verdict = evaluate_path(IN_REDIRECT, subnet=Nsg("n", "", (rule, *DEFAULT_RULES)), virtual_network=MI_VNET)
    assert verdict.allowed is True


def test_application_security_groups_cannot_be_resolved() -> None:
    rule = SecurityRule.from_arm(
        {
            "name": "deny-asg",
            "properties": {
                "priority": 300,
                "direction": "Inbound",
                "access": "Deny",
                "protocol": "*",
                "sourcePortRange": "*",
                "destinationPortRange": "*",
                "destinationAddressPrefix": "*",
                "sourceAddressPrefixes": [],
                "sourceApplicationSecurityGroups": [
                    {
                        "id": "/subscriptions/s/resourceGroups/rg/providers/"
                        "Microsoft.Network/applicationSecurityGroups/asg-legacy"
                    }
                ],
            },
        }
    )
    allow = SecurityRule("allow", 400, Direction.INBOUND, True, "Tcp", (SQL,), (MI,), ("*",), ("5022",))
    verdict = evaluate_path(IN_5022, subnet=Nsg("n", "", (rule, allow, *DEFAULT_RULES)), virtual_network=MI_VNET)
    assert verdict.allowed is None
    assert any("application security group asg-legacy" in n for n in verdict.notes)


def test_free_priority_is_below_the_deny(nsg: Listing) -> None:
    subnet = nsg("mi-subnet-deny-first")
    assert free_priority(subnet, Direction.INBOUND, 900) == 899
    assert free_priority(subnet, Direction.INBOUND, 65500) == 4096
    crowded = Nsg(
        "n",
        "",
        tuple(
            SecurityRule(f"r{p}", p, Direction.INBOUND, False, "*", ("*",), ("*",), ("*",), ("*",))
            for p in range(100, 200)
        ),
    )
    with pytest.raises(ValueError, match="no free inbound priority below 200"):
        free_priority(crowded, Direction.INBOUND, 200)


def test_resource_group_from_the_id(nsg: Listing) -> None:
    assert nsg("vm-nic").resource_group == "rg-milink"
