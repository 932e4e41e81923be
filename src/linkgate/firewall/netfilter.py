"""Linux netfilter: is this flow allowed by the rules `nft -j list ruleset` or `iptables-save` lists?

The decision is the kernel's, replayed on the listing: rules in order within a chain, jumps into user
chains and back on `return`, `goto`, verdict maps, named sets, chain policies, and every base chain on
the flow's hooks (prerouting+input inbound, output+postrouting outbound) by priority — all must accept.
Only the first packet of a NEW connection is evaluated: `ct state established,related accept` does not
let it in.

    >>> ruleset = parse_nft_json(listing)           # doctest: +SKIP
    >>> ruleset.evaluate(Flow.tcp("inbound", "198.18.2.0/24", "198.18.1.10", 5022))  # doctest: +SKIP
    Verdict(allowed=False, decided_by=RuleRef(text='ip saddr 198.18.2.0/24 tcp dport 5022 drop', …), …)
"""

from __future__ import annotations

from linkgate.firewall._chains import Ruleset
from linkgate.firewall._iptables import parse_iptables_save
from linkgate.firewall._nft import parse_nft_json
from linkgate.firewall.flows import Flow, Verdict

__all__ = ["Ruleset", "evaluate_iptables", "evaluate_nft", "parse_iptables_save", "parse_nft_json"]


def evaluate_nft(listing: str, flow: Flow) -> Verdict:
    """The verdict of the ruleset in `nft -j list ruleset` output for `flow`."""
    return parse_nft_json(listing).evaluate(flow)


def evaluate_iptables(listing: str, flow: Flow, *, version: int = 4) -> Verdict:
    """The verdict of the filter table in `iptables-save` / `iptables -S` output (ip6tables: version=6)."""
    if flow.version != version:
        return Verdict(
            flow,
            None,
            notes=(
                f"an IPv{version} listing says nothing about an IPv{flow.version} flow; "
                f"list {'ip6tables' if flow.version == 6 else 'iptables'} instead",
            ),
        )
    return parse_iptables_save(listing, version=version).evaluate(flow)
