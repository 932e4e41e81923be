"""netfilter evaluation on listings captured from the real nft and iptables (see data/firewall/capture.sh)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from linkgate.firewall.flows import Anchor, Flow
from linkgate.firewall.netfilter import evaluate_iptables, evaluate_nft, parse_iptables_save, parse_nft_json

from .conftest import DATA

MI = "198.18.2.0/24"
SQL = "198.18.1.10"
IN_5022 = Flow.tcp("inbound", MI, SQL, 5022)
IN_REDIRECT = Flow.tcp("inbound", MI, SQL, "11000-11999")
OUT_5022 = Flow.tcp("outbound", SQL, MI, 5022)
OUT_REDIRECT = Flow.tcp("outbound", SQL, MI, "11000-11999")

Listing = Callable[[str], str]


# nftables -------------------------------------------------------------------------------------------------------


def test_nft_healthy_allows_every_link_flow(listing: Listing) -> None:
    text = listing("nftables/healthy.json")
    for flow in (IN_5022, IN_REDIRECT):
        verdict = evaluate_nft(text, flow)
        assert verdict.allowed is True
        assert verdict.decided_by is not None
        assert verdict.decided_by.where == "table inet filter chain input rule #5 (handle 8)"
        assert verdict.decided_by.text == "ip saddr 198.18.2.0/24 tcp dport { 5022, 11000-11999 } counter accept"
    assert evaluate_nft(text, OUT_5022).policy == "table inet filter chain output policy accept"


def test_nft_drop_before_accept_decides(listing: Listing) -> None:
    verdict = evaluate_nft(listing("nftables/drop-before-accept.json"), IN_5022)
    assert verdict.allowed is False
    assert verdict.decided_by is not None
    assert verdict.decided_by.text == "ip saddr 198.18.2.0/24 tcp dport 5022 drop"
    assert verdict.anchor == Anchor(("inet", "filter", "input"), 2, 3)


def test_nft_policy_drop_when_no_rule_matches(listing: Listing) -> None:
    """`ct state established,related accept` is first, but a NEW connection's first packet is not established."""
    text = listing("nftables/policy-drop.json")
    verdict = evaluate_nft(text, IN_5022)
    assert (verdict.allowed, verdict.decided_by) == (False, None)
    assert verdict.policy == "table inet filter chain input policy drop"
    assert verdict.anchor == Anchor(("inet", "filter", "input"))
    assert evaluate_nft(text, OUT_5022).allowed is True
    assert evaluate_nft(text, OUT_REDIRECT).policy == "table inet filter chain output policy drop"


def test_nft_jump_into_user_chain_and_return_with_named_sets(listing: Listing) -> None:
    text = listing("nftables/jump-named-set.json")
    verdict = evaluate_nft(text, IN_5022)
    assert verdict.allowed is False
    assert [(str(p.flow.source), p.allowed) for p in verdict.parts] == [
        ("198.18.2.0/25", True),
        ("198.18.2.128/25", False),
    ]
    denied = verdict.parts[1].decided_by
    assert denied is not None
    assert denied.text == "ip saddr 198.18.2.128/25 tcp dport 5022 counter drop"
    assert "chain mi_guard rule #1" in denied.where
    assert "reached by table inet filter chain input rule #2 (handle 8)" in denied.where
    assert verdict.anchor == Anchor(("inet", "filter", "input"), 2, 8)  # before the jump, in the base chain
    allowed = evaluate_nft(text, IN_REDIRECT)  # the user chain returns; @link_ports holds 11000-11999
    assert allowed.allowed is True
    assert allowed.decided_by is not None
    assert allowed.decided_by.text == "ip saddr @mi_subnets tcp dport @link_ports accept"


def test_nft_goto_does_not_return(listing: Listing) -> None:
    verdict = evaluate_nft(listing("nftables/goto.json"), IN_5022)
    assert [(str(p.flow.source), p.allowed) for p in verdict.parts] == [
        ("198.18.2.0/25", True),
        ("198.18.2.128/25", False),  # the accept after the goto is never reached
    ]
    assert verdict.policy == (
        "table ip filter chain input policy drop (reached by table ip filter chain input rule #1 (handle 4): "
        "tcp dport 5022 goto mi_only)"
    )
    assert verdict.anchor == Anchor(("ip", "filter", "input"), 1, 4)  # an opening rule must come before the goto


def test_nft_port_range_partly_blocked(listing: Listing) -> None:
    verdict = evaluate_nft(listing("nftables/partial-range.json"), OUT_REDIRECT)
    assert verdict.allowed is False
    assert [(str(p.flow.ports), p.allowed) for p in verdict.parts] == [("11000-11499", True), ("11500-11999", False)]
    assert verdict.policy == "table ip filter chain OUTPUT policy drop"
    assert [str(p.flow.ports) for p in verdict.failing()] == ["11500-11999"]


def test_nft_every_base_chain_on_the_hook_must_accept(listing: Listing) -> None:
    text = listing("nftables/two-base-chains.json")
    verdict = evaluate_nft(text, IN_5022)
    assert verdict.allowed is False
    assert verdict.decided_by is not None
    assert verdict.decided_by.where.startswith("table ip guard chain input")
    assert "reject with tcp reset" in verdict.decided_by.text
    other = evaluate_nft(text, IN_REDIRECT)
    assert other.allowed is True
    assert any("table inet filter chain input accepts too" in n for n in other.notes)


def test_nft_verdict_maps(listing: Listing) -> None:
    text = listing("nftables/vmaps.json")
    assert evaluate_nft(text, IN_5022).allowed is True
    verdict = evaluate_nft(text, IN_REDIRECT)
    assert verdict.allowed is False
    assert verdict.decided_by is not None
    assert verdict.decided_by.text == "tcp dport vmap { 22 : accept, 5022 : accept, 11000-11999 : drop }"


def test_nft_unknown_match_is_indeterminate_only_where_it_decides(listing: Listing) -> None:
    text = listing("nftables/unknown-match.json")
    verdict = evaluate_nft(text, OUT_5022)
    assert verdict.allowed is None
    assert verdict.decided_by is not None
    assert verdict.decided_by.text.startswith("meta skuid 0")
    redirect = evaluate_nft(text, OUT_REDIRECT)
    assert redirect.allowed is True
    assert any("fib daddr type" in n and "does not change the decision" in n for n in redirect.notes)


def test_nft_rate_limits_are_assumed_not_reached_and_quotas_unknown(listing: Listing) -> None:
    text = listing("nftables/limits.json")
    verdict = evaluate_nft(text, IN_5022)
    assert verdict.allowed is True
    assert verdict.notes == (
        "'limit rate over 100/second burst 5 packets' treated as not matching the first packet of a new connection",
        "'limit rate 10/second burst 5 packets' treated as matching the first packet of a new connection",
    )
    quota = evaluate_nft(text, IN_REDIRECT)
    assert quota.allowed is None
    assert quota.decided_by is not None
    assert quota.decided_by.where == "table inet filter chain input rule #3 (handle 4)"


def test_nft_firewalld_shaped_tables(listing: Listing) -> None:
    """Zones as goto targets behind `ct status dnat accept`: a first packet is not port-forwarded."""
    text = listing("nftables/firewalld-shaped.json")
    opened = evaluate_nft(text, IN_5022)
    assert opened.allowed is True
    assert [p.decided_by.text for p in opened.parts if p.decided_by] == ["accept", "tcp dport 5022 accept"]
    closed = evaluate_nft(text, IN_REDIRECT)
    assert closed.allowed is False
    assert closed.decided_by is not None
    assert closed.decided_by.text == "reject with icmpx admin-prohibited"
    assert "chain filter_IN_public rule #7" in closed.decided_by.where
    assert "'ct status dnat' treated as not matching the first packet of a new connection" in closed.notes


def test_nft_listing_of_iptables_nft_rules_is_indeterminate(listing: Listing) -> None:
    verdict = evaluate_nft(listing("nftables/iptables-nft.json"), IN_5022)
    assert verdict.allowed is None
    assert any("evaluate iptables-save instead" in n for n in verdict.notes)


def test_nft_interfaces(listing: Listing) -> None:
    text = listing("nftables/interface.json")
    verdict = evaluate_nft(text, IN_5022)
    assert verdict.allowed is True
    assert "interface match 'iifname eth0' treated as matching (the listing cannot tell the interface)" in verdict.notes
    assert evaluate_nft(text, Flow.tcp("inbound", "127.0.0.1", "127.0.0.1", 5022)).allowed is True  # iif lo
    assert evaluate_nft(text, Flow.tcp("inbound", "198.18.3.0/24", SQL, 5022)).allowed is False  # not lo


def test_nft_families(listing: Listing) -> None:
    """`ip saddr` never matches IPv6; an `ip` table does not see IPv6 at all."""
    v6 = Flow.tcp("inbound", "2001:db8:2::/64", "2001:db8:1::10", 5022)
    assert evaluate_nft(listing("nftables/healthy.json"), v6).policy == "table inet filter chain input policy drop"
    assert evaluate_nft(listing("nftables/partial-range.json"), v6).allowed is True


def test_nft_jump_to_missing_chain_is_an_error() -> None:
    doc = {
        "nftables": [
            {"chain": {"family": "inet", "table": "t", "name": "input", "hook": "input", "prio": 0, "policy": "drop"}},
            {
                "rule": {
                    "family": "inet",
                    "table": "t",
                    "chain": "input",
                    "handle": 2,
                    "expr": [{"jump": {"target": "x"}}],
                }
            },
        ]
    }
    with pytest.raises(ValueError, match="jumps to a chain that the listing does not have: x"):
        parse_nft_json(doc).evaluate(IN_5022)


# iptables -------------------------------------------------------------------------------------------------------

BOTH_FORMATS = pytest.mark.parametrize("suffix", ["save", "S"])  # iptables-save and iptables -S


@BOTH_FORMATS
def test_iptables_healthy(listing: Listing, suffix: str) -> None:
    text = listing(f"iptables/healthy.{suffix}")
    for flow in (IN_5022, IN_REDIRECT):
        verdict = evaluate_iptables(text, flow)
        assert verdict.allowed is True
        assert verdict.decided_by is not None
        assert verdict.decided_by.where == "filter INPUT rule #4"
        assert "--dports 5022,11000:11999" in verdict.decided_by.text
    assert evaluate_iptables(text, OUT_REDIRECT).policy == "filter OUTPUT policy accept"


@BOTH_FORMATS
def test_iptables_drop_before_accept(listing: Listing, suffix: str) -> None:
    verdict = evaluate_iptables(listing(f"iptables/drop-before-accept.{suffix}"), IN_5022)
    assert verdict.allowed is False
    assert verdict.decided_by is not None
    assert verdict.decided_by.text == "-A INPUT -s 198.18.2.0/24 -p tcp -m tcp --dport 5022 -j DROP"
    assert verdict.anchor == Anchor(("filter", "INPUT"), 2)


@BOTH_FORMATS
def test_iptables_policy_drop(listing: Listing, suffix: str) -> None:
    verdict = evaluate_iptables(listing(f"iptables/policy-drop.{suffix}"), IN_5022)
    assert (verdict.allowed, verdict.decided_by, verdict.policy) == (False, None, "filter INPUT policy drop")


@BOTH_FORMATS
def test_iptables_user_chain_return_and_negation(listing: Listing, suffix: str) -> None:
    text = listing(f"iptables/user-chain.{suffix}")
    verdict = evaluate_iptables(text, IN_5022)
    assert [(str(p.flow.source), p.allowed) for p in verdict.parts] == [
        ("198.18.2.0/25", True),  # MI_GUARD returns; the SYN-flags rule accepts
        ("198.18.2.128/25", False),
    ]
    rejected = verdict.parts[1].decided_by
    assert rejected is not None
    assert (
        rejected.where
        == "filter MI_GUARD rule #1 (reached by filter INPUT rule #2: -A INPUT -s 198.18.2.0/24 -p tcp -j MI_GUARD)"
    )
    assert evaluate_iptables(text, IN_REDIRECT).allowed is False  # ! -s 198.18.0.0/15 excludes the subnet
    assert evaluate_iptables(text, Flow.tcp("inbound", "10.1.2.0/24", SQL, "11000-11999")).allowed is True


@BOTH_FORMATS
def test_iptables_owner_match_and_partial_output(listing: Listing, suffix: str) -> None:
    text = listing(f"iptables/output-restricted.{suffix}")
    unknown = evaluate_iptables(text, OUT_5022)
    assert unknown.allowed is None
    assert any("-m owner" in n for n in unknown.notes)
    partial = evaluate_iptables(text, OUT_REDIRECT)
    assert partial.allowed is False
    assert [str(p.flow.ports) for p in partial.failing()] == ["11500-11999"]
    assert "'--limit 10/sec' treated as matching the first packet of a new connection" in partial.notes


@BOTH_FORMATS
def test_iptables_modules_with_hidden_state_are_indeterminate(listing: Listing, suffix: str) -> None:
    """`--rcheck` takes no value: the parser must not swallow `-j DROP` and turn the rule into a no-op."""
    text = listing(f"iptables/modules.{suffix}")
    verdict = evaluate_iptables(text, IN_5022)
    assert verdict.allowed is None
    assert verdict.decided_by is not None
    assert verdict.decided_by.where == "filter INPUT rule #1"
    assert any("-m recent" in n and "--rcheck" in n for n in verdict.notes)
    redirect = evaluate_iptables(text, Flow.tcp("inbound", "198.18.9.0/24", SQL, "11000-11999"))
    assert redirect.allowed is None  # addrtype LOCAL accepts, else the next rule drops
    assert redirect.decided_by is not None
    assert redirect.decided_by.where == "filter INPUT rule #2"


def test_iptables_says_nothing_about_ipv6(listing: Listing) -> None:
    verdict = evaluate_iptables(
        listing("iptables/healthy.save"), Flow.tcp("inbound", "2001:db8::/64", "2001:db8::1", 5022)
    )
    assert verdict.allowed is None
    assert "list ip6tables instead" in verdict.notes[0]


def test_iptables_rejects_lines_it_does_not_know() -> None:
    with pytest.raises(ValueError, match="line 2"):
        parse_iptables_save("*filter\nthis is not iptables\nCOMMIT\n")


# the stored listings are what the kernel lists today --------------------------------------------------------------

FLOWS = [IN_5022, IN_REDIRECT, OUT_5022, OUT_REDIRECT]


@pytest.mark.needs_root
@pytest.mark.parametrize("rules", sorted(p.name for p in (DATA / "nftables").glob("*.nft")))
def test_nft_live_listing_decides_as_the_stored_one(netns: Callable[..., str], rules: str) -> None:
    netns("nft", "-f", str(DATA / "nftables" / rules))
    live = parse_nft_json(netns("nft", "-j", "list", "ruleset"))
    stored = parse_nft_json((DATA / "nftables" / rules).with_suffix(".json").read_text())
    for flow in FLOWS:
        assert live.evaluate(flow) == stored.evaluate(flow)


@pytest.mark.needs_root
@pytest.mark.parametrize("rules", sorted(p.name for p in (DATA / "iptables").glob("*.rules")))
def test_iptables_live_listing_decides_as_the_stored_one(netns: Callable[..., str], rules: str) -> None:
    netns("iptables-restore", stdin=Path(DATA / "iptables" / rules).read_text())
    for fmt, argv in (("save", ["iptables-save"]), ("S", ["iptables", "-S"])):
        live = parse_iptables_save(netns(*argv))
        stored = parse_iptables_save((DATA / "iptables" / rules).with_suffix(f".{fmt}").read_text())
        for flow in FLOWS:
            assert live.evaluate(flow) == stored.evaluate(flow)
