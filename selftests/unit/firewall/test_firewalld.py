"""firewalld evaluation on hand-made `firewall-cmd` listings (labelled in data/firewall/README.md)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from linkgate.firewall.firewalld import Firewalld, evaluate_firewalld, parse_rich_rule
from linkgate.firewall.flows import Anchor, Flow

MI = "198.18.2.0/24"
SQL = "198.18.1.10"
IN_5022 = Flow.tcp("inbound", MI, SQL, 5022)
IN_REDIRECT = Flow.tcp("inbound", MI, SQL, "11000-11999")

Listing = Callable[[str], str]


def _public(listing: Listing, name: str, services: dict[str, list[str]] | None = None) -> Firewalld:
    """A host whose only active zone is public (on eth0), listed as in `name`."""
    return Firewalld.parse(
        listing("firewalld/public.active-zones.txt"), listing(f"firewalld/{name}.list-all.txt"), services=services
    )


def test_rich_rules_open_the_link(listing: Listing) -> None:
    fw = _public(listing, "rich-rule")
    for flow in (IN_5022, IN_REDIRECT):
        verdict = fw.evaluate(flow)
        assert verdict.allowed is True
        assert verdict.decided_by is not None
        assert verdict.decided_by.where == "zone public rich rule"
        assert f'port port="{flow.ports}"' in verdict.decided_by.text


def test_open_port_and_default_target(listing: Listing) -> None:
    fw = _public(listing, "port-open")
    opened = fw.evaluate(IN_5022)
    assert opened.decided_by is not None
    assert (opened.allowed, opened.decided_by.text) == (True, "port 5022/tcp")
    closed = fw.evaluate(IN_REDIRECT)
    assert (closed.allowed, closed.decided_by) == (False, None)
    assert closed.policy == "zone public target default (rejects what the zone does not allow)"
    assert closed.anchor == Anchor(("public",))


def test_reject_rich_rule_beats_an_open_port(listing: Listing) -> None:
    verdict = _public(listing, "reject-beats-port").evaluate(IN_5022)
    assert verdict.allowed is False
    assert [(str(p.flow.source), p.allowed) for p in verdict.parts] == [
        ("198.18.2.0/25", True),
        ("198.18.2.128/25", False),
    ]
    assert verdict.decided_by is not None
    assert 'reject type="tcp-reset"' in verdict.decided_by.text
    assert verdict.anchor == Anchor(("public",), 0)


def test_negative_priority_rich_rule_runs_before_the_deny_phase(listing: Listing) -> None:
    fw = _public(listing, "priorities")
    assert fw.evaluate(IN_5022).allowed is True
    dropped = fw.evaluate(IN_REDIRECT)  # the drop rich rule beats the open ports
    assert dropped.allowed is False
    assert dropped.decided_by is not None
    assert dropped.decided_by.text == 'rule family="ipv4" source address="198.18.2.0/24" drop'


def test_unknown_service_is_indeterminate_until_its_ports_are_given(listing: Listing) -> None:
    unknown = _public(listing, "custom-service").evaluate(IN_5022)
    assert unknown.allowed is None
    assert any("service mssql-mi-link (ports unknown)" in n for n in unknown.notes)
    known = _public(listing, "custom-service", services={"mssql-mi-link": ["5022/tcp", "11000-11999/tcp"]})
    assert known.evaluate(IN_REDIRECT).allowed is True


def test_source_zone_wins_then_the_interface_zone(listing: Listing) -> None:
    fw = Firewalld.parse(listing("firewalld/zones.active-zones.txt"), listing("firewalld/zones.list-all.txt"))
    assert fw.default_zone == "public"
    unknown_interface = fw.evaluate(IN_5022)
    assert unknown_interface.allowed is None  # internal (eth1) opens 5022, public (eth0) does not
    assert unknown_interface.parts[0].policy == "zone trusted target ACCEPT"  # 198.18.2.0/25 is bound to trusted
    assert fw.evaluate(IN_5022, interface="eth1").allowed is True
    on_eth0 = fw.evaluate(IN_5022, interface="eth0")
    assert on_eth0.allowed is False
    assert [str(p.flow.source) for p in on_eth0.failing()] == ["198.18.2.128/25"]
    assert fw.evaluate(Flow.tcp("inbound", "198.18.2.0/25", SQL, "11000-11999")).allowed is True


def test_outbound_is_not_filtered_by_zones(listing: Listing) -> None:
    verdict = evaluate_firewalld(
        listing("firewalld/public.active-zones.txt"),
        listing("firewalld/closed.list-all.txt"),
        Flow.tcp("outbound", SQL, MI, 5022),
    )
    assert verdict.allowed is True
    assert "not evaluated" in verdict.notes[0]


def test_active_zone_without_listing_is_an_error(listing: Listing) -> None:
    with pytest.raises(ValueError, match="active zones without a --list-all listing: internal, trusted"):
        Firewalld.parse(listing("firewalld/zones.active-zones.txt"), listing("firewalld/rich-rule.list-all.txt"))


@pytest.mark.parametrize(
    ("rule", "allowed"),
    [
        ('rule family="ipv4" source address="198.18.2.0/24" service name="ssh" accept', False),
        ('rule family="ipv4" source not address="10.0.0.0/8" port port="5022" protocol="tcp" accept', True),
        ('rule family="ipv6" port port="5022" protocol="tcp" accept', False),
        ('rule family="ipv4" source address="198.18.2.0/24" icmp-block name="echo-request"', False),
        ('rule family="ipv4" source address="198.18.2.0/24" protocol value="tcp" accept', True),
        ('rule family="ipv4" source ipset="mi" port port="5022" protocol="tcp" accept', None),
    ],
)
def test_rich_rule_criteria(rule: str, allowed: bool | None) -> None:
    """Whether each rule's criteria cover the MI subnet → SQL Server 5022 flow (None: cannot be known)."""
    assert parse_rich_rule(rule).criteria.test(IN_5022) is allowed


def test_rich_rule_rejects_unknown_words() -> None:
    with pytest.raises(ValueError, match="unexpected 'frobnicate'"):
        parse_rich_rule('rule family="ipv4" frobnicate accept')
