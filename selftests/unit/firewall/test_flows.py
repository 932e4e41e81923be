"""Flows, ranges, and the split/combine engine every evaluator shares."""

from __future__ import annotations

import pytest

from linkgate.firewall.flows import (
    MAX_CELLS,
    AddressRange,
    Cuts,
    Direction,
    Flow,
    PortRange,
    RuleRef,
    Verdict,
    combine,
    evaluate_cells,
    split,
)


@pytest.mark.parametrize(
    ("text", "first", "last"), [("5022", 5022, 5022), ("11000-11999", 11000, 11999), ("11000:11999", 11000, 11999)]
)
def test_port_range_parse(text: str, first: int, last: int) -> None:
    assert PortRange.parse(text) == PortRange(first, last)


@pytest.mark.parametrize("text", ["", "x", "70000", "10-5", "1-2-3"])
def test_port_range_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        PortRange.parse(text)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("198.18.2.0/24", "198.18.2.0/24"),
        ("198.18.2.7/24", "198.18.2.0/24"),  # host bits ignored, as firewalls do
        ("198.18.2.0/255.255.255.0", "198.18.2.0/24"),  # Windows' mask form
        ("198.18.2.5", "198.18.2.5"),
        ("198.18.2.0-198.18.2.127", "198.18.2.0/25"),
        ("198.18.2.1-198.18.2.9", "198.18.2.1-198.18.2.9"),
        ("2001:db8::/64", "2001:db8::/64"),
    ],
)
def test_address_range_parse_and_show(text: str, shown: str) -> None:
    assert str(AddressRange.parse(text)) == shown


def test_address_range_rejects_mixed_versions_and_words() -> None:
    with pytest.raises(ValueError):
        AddressRange.parse("198.18.2.1-2001:db8::1")
    with pytest.raises(ValueError):
        AddressRange.parse("LocalSubnet")


def test_covers_never_crosses_versions() -> None:
    assert not AddressRange.parse("::/0").covers(AddressRange.parse("198.18.2.0/24"))
    assert AddressRange.parse("0.0.0.0/0").covers(AddressRange.parse("198.18.2.0/24"))


def test_flow_sides() -> None:
    flow = Flow.tcp("outbound", "198.18.1.10", "198.18.2.0/24", "11000-11999")
    assert flow.direction is Direction.OUTBOUND
    assert (str(flow.local), str(flow.remote)) == ("198.18.1.10", "198.18.2.0/24")
    assert str(flow) == "outbound tcp 198.18.1.10 → 198.18.2.0/24 port 11000-11999"


def test_flow_rejects_mixed_versions() -> None:
    with pytest.raises(ValueError, match="IP version"):
        Flow.tcp("inbound", "2001:db8::1", "198.18.1.10", 5022)


def test_split_at_cuts_only_inside_the_flow() -> None:
    cuts = Cuts()
    cuts.add_ports([PortRange(11500, 12500), PortRange(1, 2)])
    cuts.add_addresses("source", [AddressRange.parse("198.18.2.128/25")])
    cells = split(Flow.tcp("inbound", "198.18.2.0/24", "198.18.1.10", "11000-11999"), cuts)
    assert cells is not None
    assert [(str(c.source), str(c.ports)) for c in cells] == [
        ("198.18.2.0/25", "11000-11499"),
        ("198.18.2.0/25", "11500-11999"),
        ("198.18.2.128/25", "11000-11499"),
        ("198.18.2.128/25", "11500-11999"),
    ]


def _by_port(denied_from: int) -> Verdict:
    """A decision that denies ports from `denied_from` on, with a rule for each side."""
    flow = Flow.tcp("inbound", "198.18.2.0/24", "198.18.1.10", "11000-11999")
    cuts = Cuts()
    cuts.add_ports(PortRange(p) for p in range(11000, 12000, 100))  # ten cells that must merge back into two

    def decide(cell: Flow) -> Verdict:
        denied = cell.ports.first >= denied_from
        rule = RuleRef("drop" if denied else "accept", "rule #2" if denied else "rule #1")
        return Verdict(cell, not denied, rule)

    return evaluate_cells(flow, cuts, decide)


def test_combine_merges_equal_neighbours_and_cites_the_denied_part() -> None:
    verdict = _by_port(11500)
    assert verdict.allowed is False
    assert verdict.decided_by == RuleRef("drop", "rule #2")
    assert [(str(p.flow.ports), p.allowed) for p in verdict.parts] == [("11000-11499", True), ("11500-11999", False)]
    assert "denied for 198.18.2.0/24 → 198.18.1.10 port 11500-11999" in verdict.notes
    assert [str(p.flow.ports) for p in verdict.failing()] == ["11500-11999"]


def test_combine_of_agreeing_cells_is_one_verdict_for_the_whole_flow() -> None:
    verdict = _by_port(20000)
    assert verdict.allowed is True
    assert verdict.parts == ()
    assert str(verdict.flow.ports) == "11000-11999"


def test_indeterminate_part_without_denied_part_makes_the_flow_indeterminate() -> None:
    flow = Flow.tcp("inbound", "198.18.2.0/24", "198.18.1.10", "5022-5023")
    cells = [
        Verdict(Flow.tcp("inbound", "198.18.2.0/24", "198.18.1.10", 5022), True, policy="accept"),
        Verdict(Flow.tcp("inbound", "198.18.2.0/24", "198.18.1.10", 5023), None),
    ]
    assert combine(flow, cells).allowed is None


def test_too_many_cells_is_indeterminate_not_slow() -> None:
    cuts = Cuts()
    cuts.add_ports(PortRange(p) for p in range(0, 2 * MAX_CELLS, 2))
    verdict = evaluate_cells(
        Flow.tcp("inbound", "198.18.2.0/24", "198.18.1.10", "0-65535"), cuts, lambda cell: Verdict(cell, True)
    )
    assert verdict.allowed is None
    assert "narrow the flow" in verdict.notes[0]
