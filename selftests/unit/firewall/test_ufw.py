"""ufw evaluation on hand-made `ufw status verbose` listings (labelled in data/firewall/README.md)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from linkgate.firewall.flows import Anchor, Flow
from linkgate.firewall.ufw import UfwStatus, evaluate_ufw, parse_endpoint

MI = "198.18.2.0/24"
SQL = "198.18.1.10"
IN_5022 = Flow.tcp("inbound", MI, SQL, 5022)
IN_REDIRECT = Flow.tcp("inbound", MI, SQL, "11000-11999")
OUT_REDIRECT = Flow.tcp("outbound", SQL, MI, "11000-11999")

Listing = Callable[[str], str]


def test_healthy(listing: Listing) -> None:
    status = UfwStatus.parse(listing("ufw/healthy.txt"))
    verdict = status.evaluate(IN_5022)
    assert verdict.allowed is True
    assert verdict.decided_by is not None
    assert verdict.decided_by.text == "5022/tcp ALLOW IN 198.18.2.0/24 # mi link"
    assert verdict.decided_by.where == "ufw rule [2]"
    assert status.evaluate(IN_REDIRECT).allowed is True
    assert status.evaluate(OUT_REDIRECT).policy == "ufw default allow (outgoing)"
    assert status.evaluate(Flow.tcp("inbound", "198.18.9.0/24", SQL, 5022)).policy == "ufw default deny (incoming)"


def test_deny_listed_first_wins(listing: Listing) -> None:
    verdict = evaluate_ufw(listing("ufw/deny-first.txt"), IN_5022)
    assert verdict.allowed is False
    assert [(str(p.flow.source), p.allowed) for p in verdict.parts] == [
        ("198.18.2.0/25", True),
        ("198.18.2.128/25", False),
    ]
    assert verdict.anchor == Anchor((), 2)


def test_outgoing_default_deny_with_a_partial_allow(listing: Listing) -> None:
    status = UfwStatus.parse(listing("ufw/outgoing-deny.txt"))
    verdict = status.evaluate(OUT_REDIRECT)
    assert verdict.allowed is False
    assert [str(p.flow.ports) for p in verdict.failing()] == ["11500-11999"]
    assert verdict.policy == "ufw default deny (outgoing)"
    assert status.evaluate(Flow.tcp("outbound", SQL, MI, 5022)).allowed is True


def test_interface_rule_and_unknown_application_profile(listing: Listing) -> None:
    status = UfwStatus.parse(listing("ufw/outgoing-deny.txt"))
    on_eth1 = status.evaluate(IN_5022)
    assert on_eth1.allowed is True
    assert "interface match 'on eth1' treated as matching" in on_eth1.notes
    web = status.evaluate(Flow.tcp("inbound", "198.18.9.0/24", SQL, 80))
    assert web.allowed is None  # 'Apache Full' may open port 80, the default rejects
    assert any("application profile 'Apache Full'" in n for n in web.notes)
    assert (
        UfwStatus.parse(listing("ufw/outgoing-deny.txt"), profiles={"Apache Full": "80,443/tcp"})
        .evaluate(Flow.tcp("inbound", "198.18.9.0/24", SQL, 80))
        .allowed
        is True
    )


def test_inactive_ufw_filters_nothing(listing: Listing) -> None:
    assert evaluate_ufw(listing("ufw/inactive.txt"), IN_5022).policy == "ufw is inactive"


def test_v6_rules_do_not_apply_to_ipv4(listing: Listing) -> None:
    status = UfwStatus.parse(listing("ufw/healthy.txt"))
    assert status.evaluate(Flow.tcp("inbound", "2001:db8::/64", "2001:db8::1", 22)).allowed is True
    assert status.evaluate(Flow.tcp("inbound", "2001:db8::/64", "2001:db8::1", 5022)).allowed is False


@pytest.mark.parametrize(
    ("text", "addresses", "version", "ports", "protocol"),
    [
        ("Anywhere", "0.0.0.0/0,::/0", 4, "0-65535", None),
        ("198.18.1.10 5022/tcp", "198.18.1.10", 4, "5022", "tcp"),
        ("5022,11000:11999/tcp", "0.0.0.0/0,::/0", 4, "5022,11000-11999", "tcp"),
        ("OpenSSH", "0.0.0.0/0,::/0", 4, "22", "tcp"),
        ("22 (v6)", "0.0.0.0/0,::/0", 6, "22", None),
    ],
)
def test_endpoints(text: str, addresses: str, version: int, ports: str, protocol: str | None) -> None:
    endpoint = parse_endpoint(text)
    assert ",".join(str(a) for a in endpoint.addresses.ranges) == addresses
    assert endpoint.version == version
    assert ",".join(str(p) for p in endpoint.ports.ranges) == ports
    assert endpoint.protocol == protocol


def test_status_without_status_line_is_an_error() -> None:
    with pytest.raises(ValueError, match="no 'Status:' line"):
        UfwStatus.parse("ERROR: You need to be root to run this script")
