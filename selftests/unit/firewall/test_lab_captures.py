"""The netfilter evaluators on the SQL Server host firewalls of the lab's scenarios, captured from the real nft and
iptables (data/firewall/capture_lab.py): each of the gate's three host-firewall flows is allowed exactly when the
scenario does not expect its prerequisite to fail, and the captures are those of the scenarios as they are now.
The same holds for the scenarios' rules said in ufw and firewalld and listed by the real tools
(data/firewall/capture_ufw_firewalld.py)."""

from __future__ import annotations

import importlib.util
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from linkgate.firewall.firewalld import Firewalld
from linkgate.firewall.flows import Flow
from linkgate.firewall.netfilter import evaluate_iptables, evaluate_nft
from linkgate.firewall.ufw import UfwStatus
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


# --- the same scenarios' rules said with ufw and firewalld, captured from the real tools ------------------------


def _capture_script() -> Any:
    """data/firewall/capture_ufw_firewalld.py, which says a lab firewall in ufw's and firewalld's commands."""
    path = DATA / "capture_ufw_firewalld.py"
    spec = importlib.util.spec_from_file_location("capture_ufw_firewalld", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


UFW_CAPTURED = sorted(p.stem.removeprefix("captured-") for p in (DATA / "ufw").glob("captured-*.txt"))
FIREWALLD_CAPTURED = sorted(
    p.name.removeprefix("captured-").removesuffix(".list-all.txt")
    for p in (DATA / "firewalld").glob("captured-*.list-all.txt")
)


def expected_verdicts(host: HostFirewall) -> dict[str, bool]:
    return {what: PREREQ_OF_FLOW[what] not in host.expect for what in PREREQ_OF_FLOW}


def test_ufw_and_firewalld_captures_cover_healthy_and_the_inbound_and_outbound_failures() -> None:
    assert {"healthy", "host-drop-before-accept", "host-inbound-5022-dropped", "host-outbound-5022-rejected",
            "host-outbound-hadr-rejected"} <= set(UFW_CAPTURED)  # fmt: skip
    # firewalld zones filter inbound only: the outbound scenarios say the same as healthy there.
    assert {"healthy", "host-drop-before-accept", "host-inbound-5022-dropped"} <= set(FIREWALLD_CAPTURED)


@pytest.mark.parametrize("capture", UFW_CAPTURED)
def test_captured_ufw_status_decides_each_flow_as_the_scenario_expects(capture: str) -> None:
    host = host_firewall(capture)
    assert host is not None
    status = UfwStatus.parse((DATA / "ufw" / f"captured-{capture}.txt").read_text(encoding="utf-8"))
    assert {what: status.evaluate(flow).allowed for what, flow in host.flows().items()} == expected_verdicts(host)


@pytest.mark.parametrize("capture", FIREWALLD_CAPTURED)
def test_captured_firewalld_zone_decides_each_flow_as_the_scenario_expects(capture: str) -> None:
    host = host_firewall(capture)
    assert host is not None
    zone = (DATA / "firewalld" / f"captured-{capture}.default-zone.txt").read_text(encoding="utf-8").strip()
    listed = (DATA / "firewalld" / f"captured-{capture}.list-all.txt").read_text(encoding="utf-8")
    firewalld = Firewalld.parse("", listed, default_zone=zone)
    assert {what: firewalld.evaluate(flow).allowed for what, flow in host.flows().items()} == expected_verdicts(host)


def test_captured_deny_before_allow_is_decided_by_the_deny() -> None:
    host = host_firewall("host-drop-before-accept")
    assert host is not None
    flow = host.flows()["inbound 5022"]
    ufw = UfwStatus.parse((DATA / "ufw" / "captured-host-drop-before-accept.txt").read_text(encoding="utf-8"))
    decided = ufw.evaluate(flow).decided_by
    assert decided is not None
    assert decided.text == "5022/tcp DENY IN Anywhere # legacy hardening"
    listed = (DATA / "firewalld" / "captured-host-drop-before-accept.list-all.txt").read_text(encoding="utf-8")
    verdict = Firewalld.parse("", listed, default_zone="public").evaluate(flow)
    assert verdict.allowed is False  # firewalld runs a zone's deny rich rules before its accept ones
    assert verdict.decided_by is not None
    assert "drop" in verdict.decided_by.text


@pytest.mark.parametrize("host", [h for h in every_host_firewall() if h.scenario.startswith("host-") or
                                  h.scenario == "healthy"], ids=lambda h: h.scenario)  # fmt: skip
def test_ufw_and_firewalld_captures_are_of_the_scenarios_as_they_are_now(host: HostFirewall) -> None:
    """Each host scenario's rules, said in ufw's and firewalld's commands now, are those of a stored capture
    (scenarios that say the same share one): a scenario changed since the capture fails here, not silently."""
    script = _capture_script()
    for tool, commands, captured in (("ufw", script.ufw_commands(host.machine.firewall), UFW_CAPTURED),
                                     ("firewalld", script.firewalld_commands(host.machine.firewall),
                                      FIREWALLD_CAPTURED)):  # fmt: skip
        given = "".join(f"{c}\n" for c in commands)
        same = [c for c in captured if (DATA / tool / f"{c}.{tool}").read_text(encoding="utf-8") == given]
        assert same, f"no {tool} capture says {host.scenario}: run capture_ufw_firewalld.py as root"


def test_ufw_and_firewalld_captures_are_real_tool_output() -> None:
    for capture in UFW_CAPTURED:
        text = (DATA / "ufw" / f"captured-{capture}.txt").read_text(encoding="utf-8")
        assert text.startswith("Status: active\nLogging: on (low)\nDefault: deny (incoming), allow (outgoing)")
    for capture in FIREWALLD_CAPTURED:
        text = (DATA / "firewalld" / f"captured-{capture}.list-all.txt").read_text(encoding="utf-8")
        assert text.startswith("public (active)\n  target: default\n")
