"""The netfilter evaluators on the SQL Server host firewalls of the lab's scenarios, captured from the real nft and
iptables (data/firewall/capture_lab.py): each of the gate's three host-firewall flows is allowed exactly when the
scenario does not expect its prerequisite to fail, and the captures are those of the scenarios as they are now."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from linkgate.firewall.flows import Flow
from linkgate.firewall.netfilter import evaluate_iptables, evaluate_nft
from linkgate.lab.hosts import FirewallBackend, Machine, iptables_rules, load_hosts, nft_ruleset
from linkgate.lab.scenario import list_scenarios, load_scenario

from .conftest import DATA

LAB = DATA / "lab"
CAPTURED = sorted(p.stem for p in LAB.glob("*.json"))
PREREQ_OF_FLOW = {
    "inbound 5022": "host-firewall-inbound-5022",
    "outbound 5022": "host-firewall-outbound-5022",
    "outbound 11000-11999": "host-firewall-outbound-hadr-ports",
}


@pytest.fixture(autouse=True)
def _lab_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINKGATE_LAB_PASSWORD", "Lg!selftest")  # scenarios name it; nothing logs in here


@dataclass(frozen=True)
class HostFirewall:
    scenario: str
    expect: frozenset[str]
    machine: Machine
    mi_subnet: str

    @property
    def source(self) -> tuple[str, str]:
        """What the lab hands the tool: ("nft", script) or ("rules", iptables-restore file)."""
        fw = self.machine.firewall
        return ("rules", iptables_rules(fw)) if fw.backend is FirewallBackend.IPTABLES else ("nft", nft_ruleset(fw))

    def flows(self) -> dict[str, Flow]:
        """The flows tests/host/test_firewall.py checks, between this host and the managed instance subnet."""
        sql = str(self.machine.address.ip)
        return {
            "inbound 5022": Flow.tcp("inbound", self.mi_subnet, sql, 5022),
            "outbound 5022": Flow.tcp("outbound", sql, self.mi_subnet, 5022),
            "outbound 11000-11999": Flow.tcp("outbound", sql, self.mi_subnet, "11000-11999"),
        }


def host_firewall(name: str) -> HostFirewall | None:
    scenario = load_scenario(name)
    if not scenario.hosts.get("machines"):
        return None
    machines = load_hosts(dict(scenario.hosts)).machines
    sql01 = machines.get("sql01")
    if sql01 is None or sql01.firewall.backend is FirewallBackend.NONE:
        return None
    subnet = str(machines["mi01"].address.network)
    return HostFirewall(name, frozenset(scenario.expect), sql01, subnet)


def every_host_firewall() -> Iterator[HostFirewall]:
    for name in list_scenarios():
        found = host_firewall(name)
        if found is not None:
            yield found


def verdicts(capture: str, flows: dict[str, Flow]) -> dict[str, bool | None]:
    """Each flow's verdict from the captured listing the gate would read: iptables-save when the lab wrote the
    rules with iptables, else the nft JSON."""
    save = LAB / f"{capture}.save"
    if save.exists():
        text = save.read_text(encoding="utf-8")
        return {what: evaluate_iptables(text, flow).allowed for what, flow in flows.items()}
    text = (LAB / f"{capture}.json").read_text(encoding="utf-8")
    return {what: evaluate_nft(text, flow).allowed for what, flow in flows.items()}


def test_the_captures_cover_the_host_firewall_scenarios() -> None:
    assert {"healthy", "host-drop-before-accept", "host-inbound-5022-dropped", "host-iptables",
            "host-iptables-inbound-5022-dropped", "host-outbound-5022-rejected",
            "host-outbound-hadr-rejected"} <= set(CAPTURED)  # fmt: skip


@pytest.mark.parametrize("capture", CAPTURED)
def test_capture_is_of_the_scenario_as_it_is_now(capture: str) -> None:
    host = host_firewall(capture)
    assert host is not None, f"{capture} no longer gives sql01 a firewall"
    kind, text = host.source
    stored = (LAB / f"{capture}.{kind}").read_text(encoding="utf-8")
    assert stored == text, f"{capture} changed its firewall: run selftests/unit/data/firewall/capture_lab.py as root"


@pytest.mark.parametrize("capture", CAPTURED)
def test_captured_listing_decides_each_flow_as_the_scenario_expects(capture: str) -> None:
    host = host_firewall(capture)
    assert host is not None
    expected = {what: PREREQ_OF_FLOW[what] not in host.expect for what in PREREQ_OF_FLOW}
    assert verdicts(capture, host.flows()) == expected


@pytest.mark.parametrize("host", list(every_host_firewall()), ids=lambda h: h.scenario)
def test_every_scenario_with_a_host_firewall_is_decided_by_a_capture(host: HostFirewall) -> None:
    """Scenarios that only extend one (the active-* variants) share its capture; their expectations must agree."""
    kind, text = host.source
    same = [c for c in CAPTURED if (p := LAB / f"{c}.{kind}").exists() and p.read_text(encoding="utf-8") == text]
    assert same, f"no capture has the firewall of {host.scenario}: run capture_lab.py as root"
    expected = {what: PREREQ_OF_FLOW[what] not in host.expect for what in PREREQ_OF_FLOW}
    assert verdicts(same[0], host.flows()) == expected


def test_the_lab_addresses_are_the_reserved_benchmark_range() -> None:
    for capture in CAPTURED:
        host = host_firewall(capture)
        assert host is not None
        for address in (host.machine.address.ip, ipaddress.IPv4Network(host.mi_subnet).network_address):
            assert address in ipaddress.IPv4Network("198.18.0.0/15")


def test_a_capture_is_real_tool_output() -> None:
    save = (LAB / "host-iptables.save").read_text(encoding="utf-8")
    assert save.startswith("# Generated by iptables-save v")
    assert '"nftables"' in (LAB / "healthy.json").read_text(encoding="utf-8")
