"""Every azure-*.yaml scenario, read through the real ARM client, fails exactly its ARM prerequisites.

The ARM-only checks run as the gate runs them: the product's own check functions from tests/azure, given
an `AzureView` over facts `read_azure` fetched from the lab endpoint. The three checks that also need SQL
facts (update policy, tier vs In-Memory OLTP, TDE protector) are decided by the same rules with the SQL
side taken from the scenario's declared instances; the e2e self-tests cover them through the drivers.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from linkgate import azure_rules
from linkgate.docs import load_catalog
from linkgate.environment import Direction
from linkgate.lab.scenario import SCENARIO_DIR, Scenario, load_scenario
from linkgate.probes.azure import AzureView, LinkPeer
from linkgate.probes.facts import EvidenceRecorder, FactUnavailable
from selftests.lab.test_arm_endpoint import HEALTHY_AZURE, StartArm, read, start_arm

__all__ = ["start_arm"]  # the fixture, imported to be used here

load_catalog(Path(__file__).resolve().parents[2] / "tests")
checks: Any = sys.modules["linkgate_gate_azure_test_azure"]
"""tests/azure/test_azure.py, under the name the catalogue loader gives it (one module, one registration)."""

AZURE_SCENARIOS = sorted(p.stem for p in SCENARIO_DIR.glob("azure-*.yaml"))
PEER = LinkPeer("sql01", ipaddress.IPv4Address("198.18.1.10"), 5022)


def load(name: str, monkeypatch: pytest.MonkeyPatch) -> Scenario:
    monkeypatch.setenv("LINKGATE_LAB_PASSWORD", "Lg!selftest")
    overlays = [] if name == "healthy" else [SCENARIO_DIR / f"{name}.yaml"]
    return load_scenario(HEALTHY_AZURE, overlays)


def failing(scenario: Scenario, view: Callable[[], AzureView]) -> dict[str, str]:
    """The ARM prerequisites that fail in `scenario`, each with its failure message."""
    azure_only: dict[str, Callable[[], None]] = {
        "azure-mi-provisioned": lambda: checks.test_azure_mi_provisioned(view()),
        "azure-no-failover-group": lambda: checks.test_azure_no_failover_group(view()),
        "azure-nsg-inbound-5022": lambda: checks.test_azure_nsg_inbound_5022(PEER, view()),
        "azure-nsg-inbound-hadr-ports": lambda: checks.test_azure_nsg_inbound_hadr_ports(PEER, view()),
        "azure-nsg-outbound-5022": lambda: checks.test_azure_nsg_outbound_5022(PEER, view()),
        "azure-vm-nsg": lambda: checks.test_azure_vm_nsg(PEER, view()),
        "azure-subnets-disjoint": lambda: checks.test_azure_subnets_disjoint(PEER, view()),
        "azure-permissions": lambda: checks.test_azure_permissions(view()),
    }
    found = {}
    for prereq_id, check in azure_only.items():
        try:
            check()
        except AssertionError as e:
            found[prereq_id] = str(e)
    found.update(_with_sql_side(scenario, view()))
    return found


def _with_sql_side(scenario: Scenario, azure: AzureView) -> dict[str, str]:
    sql, mi = scenario.instances["sql01"], scenario.instances["mi01"]
    direction = Direction(scenario.environment.get("direction", "SQL_TO_MI"))
    major = int((sql.version or "16").split(".")[0])
    decisions = {
        "azure-update-policy": azure_rules.update_policy(
            azure.instance.database_format, direction, major, mi.update_type
        )
    }
    if any(db.xtp_containers or db.memory_optimized_tables for db in sql.databases.values()):
        decisions["azure-tier-inmemory"] = azure_rules.tier_hosts_in_memory_oltp(
            azure.instance.sku_tier, azure.instance.is_general_purpose_v2
        )
    if direction is Direction.MI_TO_SQL and any(db.tde and db.tde.state >= 2 for db in mi.databases.values()):
        decisions["azure-tde-protector"] = azure_rules.protector_is_customer_managed(
            azure.encryption_protector.server_key_type
        )
    return {k: d.explain() for k, d in decisions.items() if not d}


@pytest.mark.parametrize("name", ["healthy", *AZURE_SCENARIOS])
def test_scenario_fails_exactly_its_arm_prerequisites(
    name: str, start_arm: StartArm, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = load(name, monkeypatch)
    facts = read(start_arm(scenario.azure))
    found = failing(scenario, lambda: AzureView(facts, EvidenceRecorder()))
    expected = {p for p in scenario.expect if p.startswith("azure-")}
    assert set(found) == expected, found
    if name != "healthy":
        assert expected, f"{name} expects no ARM prerequisite to fail"


DECIDING = {
    "azure-nsg-no-hadr-inbound": (
        "azure-nsg-inbound-hadr-ports",
        "subnet NSG nsg-mi inbound rule DenyAllInBound (priority 65500, default)",
    ),
    "azure-nsg-deny-before-allow": (
        "azure-nsg-inbound-5022",
        "subnet NSG nsg-mi inbound rule deny-onprem-mirroring (priority 900)",
    ),
    "azure-nsg-outbound-5022-denied": (
        "azure-nsg-outbound-5022",
        "subnet NSG nsg-mi outbound rule deny-all-out (priority 4000)",
    ),
    "azure-vm-nic-denies-5022": ("azure-vm-nsg", "NIC NSG nsg-sql01-nic inbound rule deny-mi-in (priority 500)"),
}


@pytest.mark.parametrize("name", sorted(DECIDING))
def test_nsg_failures_cite_the_deciding_rule_and_the_fix(
    name: str, start_arm: StartArm, monkeypatch: pytest.MonkeyPatch
) -> None:
    prereq_id, where = DECIDING[name]
    scenario = load(name, monkeypatch)
    facts = read(start_arm(scenario.azure))
    message = failing(scenario, lambda: AzureView(facts, EvidenceRecorder()))[prereq_id]
    assert "denied: " in message
    assert where in message
    nsg = where.split(" ")[2]
    assert f"to open it: az network nsg rule create -g rg-milink --nsg-name {nsg}" in message
    priority = int(where.rsplit("priority ", 1)[1].split(",")[0].rstrip(")"))
    fix_priority = int(message.split("--priority ", 1)[1].split()[0])
    assert fix_priority < priority, "the opening rule goes before the deciding one"


def test_the_checks_record_the_arm_evidence_they_used(start_arm: StartArm, monkeypatch: pytest.MonkeyPatch) -> None:
    facts = read(start_arm(load("azure-nsg-deny-before-allow", monkeypatch).azure))
    recorder = EvidenceRecorder()
    with pytest.raises(AssertionError):
        checks.test_azure_nsg_inbound_5022(PEER, AzureView(facts, recorder))
    commands = [e.command.split("?")[0].rsplit("/", 2)[-2:] for e in recorder.items]
    assert commands == [["subnets", "snet-mi"], ["virtualNetworks", "vnet-mi"], ["networkSecurityGroups", "nsg-mi"]]


def test_a_missing_instance_errors_every_check_that_needs_it(
    start_arm: StartArm, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = start_arm(load("healthy", monkeypatch).azure)
    facts = read(lab, instance_name="mi02")
    with pytest.raises(AssertionError, match="no such managed instance"):
        checks.test_azure_mi_provisioned(AzureView(facts, EvidenceRecorder()))
    with pytest.raises(FactUnavailable, match="404 ResourceNotFound"):
        checks.test_azure_nsg_inbound_5022(PEER, AzureView(facts, EvidenceRecorder()))


def test_every_arm_prerequisite_has_a_failing_scenario() -> None:
    declared = {name.removeprefix("test_").replace("_", "-") for name in dir(checks) if name.startswith("test_azure_")}
    expected: set[str] = set()
    for path in Path(SCENARIO_DIR).glob("*.yaml"):  # an azure- scenario, or one breaking T-SQL and ARM alike
        text = path.read_text(encoding="utf-8")
        line = next((line for line in text.splitlines() if line.startswith("expect:")), None)
        if line is None:
            continue
        expected |= {p.strip() for p in line.split("[", 1)[1].rstrip("]").split(",")}
    assert declared <= expected, declared - expected
