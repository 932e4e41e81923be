"""The Azure rules (spec ARM-02 … ARM-09, §1.3) on ARM response bodies kept as files (data/arm/README.md)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from linkgate.azure_rules import (
    REQUIRED_ACTIONS,
    DatabaseFormat,
    action_matches,
    address_overlaps,
    failback_possible,
    failover_groups_with,
    mi_subnet_flows,
    missing_actions,
    path_decision,
    protector_is_customer_managed,
    sql_vm_flows,
    tier_hosts_in_memory_oltp,
    update_policy,
    virtual_network_tag,
)
from linkgate.environment import Direction
from linkgate.firewall.nsg import Nsg
from linkgate.probes.azure import (
    EncryptionProtector,
    FailoverGroup,
    ManagedInstance,
    NetworkInterface,
    Permission,
    VirtualNetwork,
)

DATA = Path(__file__).resolve().parent / "data" / "arm"
SQL_IP = "198.18.1.10"
MI_SUBNET = "198.18.2.0/24"
MI_ID = (
    "/subscriptions/00000000-0000-4000-8000-000000000001/resourceGroups/rg-milink/providers/Microsoft.Sql"
    "/managedInstances/mi01"
)


def body(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def nsg_with(rules: dict[str, dict[str, Any] | None]) -> Nsg:
    """nsg-mi.json with some of its custom rules' properties replaced (None deletes the rule)."""
    raw = body("nsg-mi.json")
    kept = []
    for rule in raw["properties"]["securityRules"]:
        change = rules.get(rule["name"], {})
        if change is not None:
            rule["properties"].update(change)
            kept.append(rule)
    raw["properties"]["securityRules"] = kept
    return Nsg.from_arm(raw)


# --- parsing --------------------------------------------------------------------------------------------------


def test_the_managed_instance_body_gives_what_the_checks_read() -> None:
    mi = ManagedInstance.from_arm(body("managed-instance.json"))
    assert (mi.id, mi.location, mi.provisioning_state) == (MI_ID, "westeurope", "Succeeded")
    assert (mi.sku_name, mi.sku_tier, mi.database_format) == ("BC_Gen5", "BusinessCritical", "SQLServer2022")
    assert mi.subnet_id is not None
    assert mi.subnet_id.endswith("/virtualNetworks/vnet-mi/subnets/snet-mi")
    assert mi.fqdn == "mi01.a1b2c3d4e5f6.database.windows.net"


def test_nic_protector_and_failover_group_bodies() -> None:
    nic = NetworkInterface.from_arm(body("nic-sql01.json"))
    assert nic.private_ips == (SQL_IP,)
    assert nic.nsg_id is not None
    assert nic.nsg_id.endswith("/nsg-sql01-nic")
    assert EncryptionProtector.from_arm(body("encryption-protector.json")).server_key_type == "AzureKeyVault"
    (group,) = (FailoverGroup.from_arm(g) for g in body("instance-failover-groups.json")["value"])
    assert group.replication_role == "Secondary"
    assert group.pairs[0][1] == MI_ID


# --- ARM-02 ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "direction", "major", "ok", "text"),
    [
        ("SQLServer2022", Direction.MI_TO_SQL, 16, True, "matches SQL Server 2022"),
        ("SqlServer2025", Direction.MI_TO_SQL, 17, True, "matches SQL Server 2025"),
        ("SQLServer2025", Direction.MI_TO_SQL, 16, False, "SQL Server 2022 needs SQLServer2022"),
        ("AlwaysUpToDate", Direction.MI_TO_SQL, 16, False, "initial primary only"),
        ("SQLServer2022", Direction.MI_TO_SQL, 15, False, "SQL Server 2019 can't be a secondary"),
        ("SQLServer2022", Direction.SQL_TO_MI, 16, True, "failback is possible"),
        ("SQLServer2022", Direction.SQL_TO_MI, 17, False, "can't host databases from SQL Server 2025"),
        ("AlwaysUpToDate", Direction.SQL_TO_MI, 16, True, "accepts databases from SQL Server 2022"),
        ("SQLServer2025", Direction.SQL_TO_MI, 15, True, "accepts databases from SQL Server 2019"),
    ],
)  # fmt: skip
def test_update_policy_against_direction_and_version(
    policy: str, direction: Direction, major: int, ok: bool, text: str
) -> None:
    decision = update_policy(policy, direction, major)
    assert decision.ok is ok
    assert text in decision.reason


def test_a_newer_policy_is_one_way_and_says_so() -> None:
    decision = update_policy("AlwaysUpToDate", Direction.SQL_TO_MI, 16, "Continuous")
    assert decision
    assert "can't be replicated or failed back to SQL Server 2022" in decision.notes[0]


def test_update_policy_must_agree_with_tsql_and_be_known() -> None:
    assert not update_policy("SQLServer2022", Direction.SQL_TO_MI, 16, "Continuous")
    assert update_policy("SQLServer2025", Direction.SQL_TO_MI, 16, "CU"), "T-SQL says CU for 2022 and 2025 alike"
    assert update_policy(None, Direction.SQL_TO_MI, 16).ok is None
    assert update_policy("SQLServer2030", Direction.SQL_TO_MI, 16).ok is None
    assert DatabaseFormat.parse("alwaysuptodate").product_update_type == "Continuous"


@pytest.mark.parametrize(
    ("policy", "ok"),
    [("AlwaysUpToDate", False), ("alwaysuptodate", False), ("SQLServer2022", True), ("SqlServer2025", True)],
)
def test_failback_is_impossible_only_from_always_up_to_date(policy: str, ok: bool) -> None:
    decision = failback_possible(policy)
    assert decision.ok is ok
    if not ok:
        assert "can't be replicated, or failed back, to SQL Server" in decision.reason


def test_failback_is_undecided_without_a_known_policy() -> None:
    assert failback_possible(None).ok is None
    assert failback_possible("SQLServer2030").ok is None


# --- ARM-03, 04, 07, 09 ----------------------------------------------------------------------------------------


def test_in_memory_oltp_needs_business_critical() -> None:
    assert tier_hosts_in_memory_oltp("BusinessCritical", False)
    gp = tier_hosts_in_memory_oltp("GeneralPurpose", True)
    assert not gp
    assert "GeneralPurpose (Next-gen General Purpose)" in gp.reason
    assert not tier_hosts_in_memory_oltp(None, False)


def test_failover_group_membership_is_by_resource_id_either_side() -> None:
    groups = [FailoverGroup.from_arm(g) for g in body("instance-failover-groups.json")["value"]]
    (found,) = failover_groups_with(MI_ID.upper(), groups)
    assert found.startswith("fg-milink (Secondary) pairs ")
    assert found.endswith("/managedInstances/mi01")
    assert failover_groups_with(MI_ID + "-other", groups) == []


def test_overlaps_name_ranges_and_the_address() -> None:
    assert address_overlaps([MI_SUBNET], ["198.18.1.0/24"], ipaddress.IPv4Address(SQL_IP)) == []
    assert address_overlaps([MI_SUBNET], ["198.18.0.0/22", "fd00::/64"], ipaddress.IPv4Address("198.18.2.9")) == [
        "SQL Server's range 198.18.0.0/22 overlaps the managed instance subnet 198.18.2.0/24",
        "SQL Server's address 198.18.2.9 is inside the managed instance subnet 198.18.2.0/24",
    ]


def test_tde_protector_must_be_customer_managed() -> None:
    assert protector_is_customer_managed("AzureKeyVault")
    assert not protector_is_customer_managed("ServiceManaged")
    assert not protector_is_customer_managed(None)


# --- ARM-08 ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "action", "matches"),
    [
        ("*", "Microsoft.Sql/managedInstances/write", True),
        ("Microsoft.Sql/managedInstances/*", "microsoft.sql/MANAGEDINSTANCES/hybridLink/write", True),
        ("*/read", "Microsoft.Sql/managedInstances/databases/restoreDetails/read", True),
        ("*/read", "Microsoft.Sql/managedInstances/databases/readBackups/action", False),
        ("Microsoft.Sql/*/write", "Microsoft.Sql/managedInstances/hybridLink/write", True),
        ("Microsoft.Sql/servers/*", "Microsoft.Sql/managedInstances/read", False),
        ("Microsoft.Sql/managedInstances/read", "Microsoft.Sql/managedInstances/read/more", False),
    ],
)
def test_rbac_wildcards(pattern: str, action: str, matches: bool) -> None:
    assert action_matches(pattern, action) is matches


def test_the_contributor_role_grants_every_required_action() -> None:
    permissions = [Permission.from_arm(p) for p in body("permissions-contributor.json")["value"]]
    assert missing_actions(permissions) == []


def test_not_actions_subtract_within_their_own_assignment_only() -> None:
    narrowed = Permission(("Microsoft.Sql/managedInstances/*",), ("Microsoft.Sql/managedInstances/hybridLink/*",))
    assert missing_actions([narrowed]) == [a for a in REQUIRED_ACTIONS if "/hybridLink/" in a]
    other_role = Permission(("Microsoft.Sql/managedInstances/hybridLink/*",), ())
    assert missing_actions([narrowed, other_role]) == [], "another role assignment grants what one excludes"
    assert len(missing_actions([Permission(("*/read",), ())])) == 13


# --- ARM-05/06: flows through the NSGs, on the stored bodies -------------------------------------------------------


def test_the_healthy_mi_nsg_passes_every_link_flow_by_its_own_rules() -> None:
    vnet = VirtualNetwork.from_arm(body("vnet-mi.json"))
    for name, flow in mi_subnet_flows(SQL_IP, MI_SUBNET).items():
        decision = path_decision([flow], vnet, subnet_nsg=Nsg.from_arm(body("nsg-mi.json")))
        rule = "allow-milink-out" if name.startswith("outbound") else "allow-milink-in"
        assert decision, decision.explain()
        assert f"rule {rule} (priority 1000)" in decision.reason
        assert "VirtualNetwork of vnet-mi = 198.18.2.0/24" in decision.notes


def test_without_an_inbound_rule_the_default_deny_decides() -> None:
    nsg = nsg_with({"allow-milink-in": {"destinationPortRange": "5022", "destinationPortRanges": []}})
    vnet = VirtualNetwork.from_arm(body("vnet-mi.json"))
    flows = mi_subnet_flows(SQL_IP, MI_SUBNET)
    assert path_decision([flows["inbound-5022"]], vnet, subnet_nsg=nsg)
    decision = path_decision([flows["inbound-hadr"]], vnet, subnet_nsg=nsg)
    assert decision.ok is False
    assert "inbound rule DenyAllInBound (priority 65500, default)" in decision.reason
    assert "--priority 4096 --direction Inbound" in decision.reason


def test_a_deny_only_on_part_of_the_hadr_range_fails_the_range_and_names_the_part() -> None:
    raw = body("nsg-mi.json")
    deny = json.loads(json.dumps(raw["properties"]["securityRules"][-1]))
    deny["name"] = "deny-some-hadr"
    deny["properties"].update(priority=900, direction="Inbound", access="Deny", protocol="Tcp",
                              destinationPortRange="11500-11599", sourceAddressPrefix="*")  # fmt: skip
    raw["properties"]["securityRules"].append(deny)
    decision = path_decision([mi_subnet_flows(SQL_IP, MI_SUBNET)["inbound-hadr"]],
                             VirtualNetwork.from_arm(body("vnet-mi.json")), subnet_nsg=Nsg.from_arm(raw))  # fmt: skip
    assert decision.ok is False
    assert "port 11500-11599: denied by subnet NSG nsg-mi inbound rule deny-some-hadr (priority 900)" in decision.reason


def test_outbound_is_decided_by_the_custom_deny_when_the_allow_is_gone() -> None:
    decision = path_decision([mi_subnet_flows(SQL_IP, MI_SUBNET)["outbound-5022"]],
                             VirtualNetwork.from_arm(body("vnet-mi.json")),
                             subnet_nsg=nsg_with({"allow-milink-out": None}))  # fmt: skip
    assert decision.ok is False
    assert "outbound rule deny-all-out (priority 4000)" in decision.reason


def test_a_peered_vnet_makes_the_default_vnet_rule_allow_and_a_gateway_makes_it_indeterminate() -> None:
    nsg = nsg_with({"allow-milink-in": None})
    flow = mi_subnet_flows(SQL_IP, MI_SUBNET)["inbound-hadr"]
    peered = VirtualNetwork.from_arm(body("vnet-mi-peered.json"))
    assert virtual_network_tag(peered)[0] == ["198.18.2.0/24", "198.18.1.0/24"], "the disconnected peering is left out"
    decision = path_decision([flow], peered, subnet_nsg=nsg)
    assert decision
    assert "AllowVnetInBound (priority 65000, default)" in decision.reason
    gateway = VirtualNetwork.from_arm(body("vnet-mi-gateway.json"))
    decision = path_decision([flow], gateway, subnet_nsg=nsg)
    assert decision.ok is None, "never a pass when VirtualNetwork can't be resolved"
    assert any("GatewaySubnet" in n for n in decision.notes)
    assert path_decision([flow], gateway, subnet_nsg=Nsg.from_arm(body("nsg-mi.json"))), "an explicit allow decides"


def test_the_vm_path_needs_both_nsgs() -> None:
    vnet = VirtualNetwork.from_arm(body("vnet-mi.json"))
    unrelated = Nsg.from_arm(body("nsg-mi.json"))  # admits nothing from the managed instance subnet to the VM
    flows = sql_vm_flows(SQL_IP, MI_SUBNET).values()
    decision = path_decision(flows, vnet, subnet_nsg=None, nic_nsg=None)
    assert decision
    assert "no NSG is associated" in decision.reason
    denied = path_decision(flows, vnet, subnet_nsg=unrelated, nic_nsg=None)
    assert denied.ok is False
    assert "inbound tcp 198.18.2.0/24 → 198.18.1.10 port 5022" in denied.reason
