"""The netfilter model both listings parse into (nftables JSON, iptables-save) and the walk over it.

A rule is a conjunction of matches and one action. A match answers True, False or None (it cannot be
known from a listing: an ipset's members, a socket owner, an `xt` blob); the walk then follows both
branches and only calls the flow INDETERMINATE when they end differently. Every base chain a packet
meets on its hooks must accept it (accept ends one base chain only; drop ends everything).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from linkgate.firewall.flows import (
    AddressRange,
    Anchor,
    Cuts,
    Direction,
    Flow,
    PortRange,
    RuleRef,
    Verdict,
    covers,
    covers_ports,
    evaluate_cells,
)

LOOPBACK = (AddressRange.parse("127.0.0.0/8"), AddressRange.parse("::1"))
EPHEMERAL = PortRange(1024, 65535)
"""Every operating system's ephemeral source ports fall in here (Linux 32768-60999, Windows 49152-65535)."""

MAX_DEPTH = 16
MAX_STEPS = 20_000


class Match:
    """One condition of a rule; subclasses say how it reads a cell."""

    def note(self) -> str | None:
        """Said in the verdict whenever this match is relied upon (an assumption the evaluator made)."""
        return None

    def test(self, cell: Flow) -> bool | None:
        raise NotImplementedError

    def add_cuts(self, cuts: Cuts) -> None:
        """Register the boundaries at which this match changes its answer."""


@dataclass(frozen=True)
class AddressMatch(Match):
    """ip/ip6 saddr/daddr, -s/-d, iprange. `version` None: any family (iptables' own table decides)."""

    which: str  # "source" or "destination"
    ranges: tuple[AddressRange, ...]
    negate: bool = False
    version: int | None = None

    def test(self, cell: Flow) -> bool | None:
        if self.version is not None and cell.version != self.version:
            return False  # an `ip saddr` match never matches an IPv6 packet, negated or not
        hit = covers(self.ranges, cell.source if self.which == "source" else cell.destination)
        return hit if hit is None or not self.negate else not hit

    def add_cuts(self, cuts: Cuts) -> None:
        cuts.add_addresses(self.which, self.ranges)


@dataclass(frozen=True)
class PortMatch(Match):
    """Destination port (single, range, set, multiport)."""

    ranges: tuple[PortRange, ...]
    negate: bool = False

    def test(self, cell: Flow) -> bool | None:
        hit = covers_ports(self.ranges, cell.ports)
        return hit if hit is None or not self.negate else not hit

    def add_cuts(self, cuts: Cuts) -> None:
        cuts.add_ports(self.ranges)


@dataclass(frozen=True)
class SourcePortMatch(Match):
    """Source port: a new connection's is ephemeral, so only a match over all of 1024-65535 is knowable."""

    ranges: tuple[PortRange, ...]
    negate: bool = False

    def test(self, cell: Flow) -> bool | None:
        hit = covers_ports(self.ranges, EPHEMERAL)
        if hit is None:
            return None
        return hit != self.negate


@dataclass(frozen=True)
class ProtocolMatch(Match):
    """meta l4proto, ip protocol, -p: compared with the flow's protocol name."""

    protocols: frozenset[str]
    negate: bool = False

    def test(self, cell: Flow) -> bool | None:
        hit = bool({cell.protocol, "all"} & self.protocols)
        return hit != self.negate


@dataclass(frozen=True)
class FamilyMatch(Match):
    """meta nfproto ipv4/ipv6, and the family implied by `ip …` / `ip6 …` payload matches."""

    version: int
    negate: bool = False

    def test(self, cell: Flow) -> bool | None:
        return (cell.version == self.version) != self.negate


@dataclass(frozen=True)
class StateMatch(Match):
    """ct state / -m state / -m conntrack: the first packet of a connection is in state `new`."""

    states: frozenset[str]
    negate: bool = False

    def test(self, cell: Flow) -> bool | None:
        return ("new" in self.states) != self.negate


@dataclass(frozen=True)
class InterfaceMatch(Match):
    """iifname/oifname, -i/-o: the listing does not say which interface a flow uses.

    Loopback is knowable (only loopback addresses use it); any other name is treated as matching,
    and the verdict says so.
    """

    names: tuple[str, ...]
    negate: bool = False
    spelled: str = ""

    def test(self, cell: Flow) -> bool | None:
        if all(n == "lo" for n in self.names):
            on_lo = any(r.covers(cell.source) and r.covers(cell.destination) for r in LOOPBACK)
            return on_lo != self.negate
        return True

    def note(self) -> str | None:
        if all(n == "lo" for n in self.names):
            return None
        return f"interface match '{self.spelled}' treated as matching (the listing cannot tell the interface)"


@dataclass(frozen=True)
class AssumedMatch(Match):
    """A rate limit: assumed not yet reached by a new connection's first packet, and said so."""

    spelled: str
    value: bool = True

    def test(self, cell: Flow) -> bool | None:
        return self.value

    def note(self) -> str | None:
        matching = "matching" if self.value else "not matching"
        return f"'{self.spelled}' treated as {matching} the first packet of a new connection"


@dataclass(frozen=True)
class ConstantMatch(Match):
    """A condition known from the listing alone (tcp flags that a SYN does or does not carry)."""

    value: bool

    def test(self, cell: Flow) -> bool | None:
        return self.value


@dataclass(frozen=True)
class UnknownMatch(Match):
    """A condition the listing does not let us evaluate: the rule may or may not match."""

    spelled: str

    def test(self, cell: Flow) -> bool | None:
        return None


class Kind(enum.Enum):
    ACCEPT = "accept"
    DROP = "drop"
    JUMP = "jump"
    GOTO = "goto"
    RETURN = "return"
    CONTINUE = "continue"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Action:
    kind: Kind
    target: str = ""


@dataclass(frozen=True)
class Rule:
    """A rule (an nftables verdict map contributes one Rule per element, sharing index and text)."""

    matches: tuple[Match, ...]
    action: Action
    ref: RuleRef
    index: int
    handle: int | None = None

    def test(self, cell: Flow) -> bool | None:
        result: bool | None = True
        for m in self.matches:
            hit = m.test(cell)
            if hit is False:
                return False
            if hit is None:
                result = None
        return result


@dataclass
class Chain:
    """A chain; base chains have a hook, a priority and a policy, user chains none."""

    name: str
    scope: tuple[str, ...]  # what remediation inserts into: (family, table, chain) or (table, chain)
    where: str  # readable: "table inet filter chain input"
    rules: list[Rule] = field(default_factory=list)
    hook: str | None = None
    priority: int = 0
    policy: str = "accept"
    version: int | None = None  # the IP version this chain sees (None: both, as an inet table)


_HOOKS = {Direction.INBOUND: ("prerouting", "input"), Direction.OUTBOUND: ("output", "postrouting")}


@dataclass(frozen=True)
class _Outcome:
    """How a walk through one chain ended: 'accept', 'drop', 'fall' (end or return) or None (unknown)."""

    end: str | None
    rule: Rule | None = None
    entry: Rule | None = None  # the base-chain rule the walk went through to `rule`
    notes: tuple[str, ...] = ()


class _TooComplex(Exception):
    """A walk exceeded MAX_STEPS rule visits (forks over many unknown rules): the chain is not evaluated."""


@dataclass
class Ruleset:
    """All chains of a listing (a jump or goto resolves within its own table) and notes on what was skipped."""

    chains: list[Chain]
    notes: tuple[str, ...] = ()

    def chain(self, near: Chain, name: str) -> Chain:
        for c in self.chains:
            if c.scope[:-1] == near.scope[:-1] and c.name == name:
                return c
        raise ValueError(f"{near.where} jumps to a chain that the listing does not have: {name}")

    def base_chains(self, flow: Flow) -> list[Chain]:
        hooks = _HOOKS[flow.direction]
        chosen = [c for c in self.chains if c.hook in hooks and c.version in (None, flow.version)]
        return sorted(chosen, key=lambda c: (hooks.index(c.hook or ""), c.priority))

    def cuts(self) -> Cuts:
        cuts = Cuts()
        for c in self.chains:
            for r in c.rules:
                for m in r.matches:
                    m.add_cuts(cuts)
        return cuts

    def evaluate(self, flow: Flow) -> Verdict:
        return evaluate_cells(flow, self.cuts(), self._decide)

    def _decide(self, cell: Flow) -> Verdict:
        """Every base chain on the flow's hooks, in order; one definite drop denies."""
        results: list[tuple[Chain, _Outcome]] = []
        for chain in self.base_chains(cell):
            walk = _Walk(self, cell)
            try:
                outcome = walk.with_assumptions(walk.run(chain, 0, 0))
            except _TooComplex:
                outcome = _Outcome(None, notes=(f"{chain.where}: more than {MAX_STEPS} rule visits; not evaluated",))
            if outcome.end == "fall":  # the entry, if any, is a goto or return that skipped the rest of the chain
                outcome = _Outcome(chain.policy, None, outcome.entry, outcome.notes)
            results.append((chain, outcome))
        if not results:
            return Verdict(cell, True, policy="no base chain filters this direction", notes=self.notes)
        notes = self.notes + tuple(n for _, o in results for n in o.notes)
        for wanted in ("drop", None):
            hits = [(c, o) for c, o in results if o.end == wanted]
            if hits:
                return _verdict(cell, *hits[0], notes)
        *others, (chain, outcome) = results  # all accept: cite the last, say the others accept too
        notes += tuple(
            f"{c.where} accepts too, by " + (o.rule.ref.where if o.rule else f"policy {c.policy}") for c, o in others
        )
        return _verdict(cell, chain, outcome, notes)


def _verdict(cell: Flow, chain: Chain, o: _Outcome, notes: Sequence[str]) -> Verdict:
    allowed = {"accept": True, "drop": False, None: None}[o.end]
    entry = o.entry or o.rule
    anchor = Anchor(chain.scope, entry.index, entry.handle) if entry else Anchor(chain.scope)
    if o.rule is None and allowed is None:
        return Verdict(cell, None, None, None, anchor, tuple(notes))
    if o.rule is None:
        via = f" (reached by {o.entry.ref.where}: {o.entry.ref.text})" if o.entry else ""
        return Verdict(cell, allowed, None, f"{chain.where} policy {chain.policy}{via}", anchor, tuple(notes))
    ref = o.rule.ref
    if o.entry is not None and o.entry is not o.rule:
        ref = RuleRef(ref.text, f"{ref.where} (reached by {o.entry.ref.where}: {o.entry.ref.text})")
    return Verdict(cell, allowed, ref, None, anchor, tuple(dict.fromkeys(notes)))


class _Walk:
    """One cell's walk through the chains, following both branches of any match that cannot be known."""

    def __init__(self, ruleset: Ruleset, cell: Flow) -> None:
        self.ruleset = ruleset
        self.cell = cell
        self.steps = 0
        self.assumed: list[str] = []  # assumptions that made a rule miss (`limit rate over` …)

    def with_assumptions(self, outcome: _Outcome) -> _Outcome:
        """The outcome, with the notes of assumptions that made rules miss on the way."""
        return _Outcome(outcome.end, outcome.rule, outcome.entry, (*self.assumed, *outcome.notes))

    def run(self, chain: Chain, start: int, depth: int) -> _Outcome:
        if depth > MAX_DEPTH:
            return _Outcome(None, notes=(f"{chain.where}: jumps nested deeper than {MAX_DEPTH}",))
        for i in range(start, len(chain.rules)):
            self.steps += 1
            if self.steps > MAX_STEPS:
                raise _TooComplex
            rule = chain.rules[i]
            hit = rule.test(self.cell)
            if hit is False:
                missed = [m for m in rule.matches if m.test(self.cell) is False]
                if len(missed) == 1 and (said := missed[0].note()) is not None:
                    self.assumed.append(said)
                continue
            notes = tuple(n for m in rule.matches if (n := m.note()) is not None)
            if hit is None:
                return self._fork(chain, i, depth, notes)
            taken = self._act(chain, i, depth)
            if taken is not None:
                return _Outcome(taken.end, taken.rule, taken.entry, notes + taken.notes)
            if notes:  # a continuing rule (log, counter, a jump that returned) still relied on an assumption
                rest = self.run(chain, i + 1, depth)
                return _Outcome(rest.end, rest.rule, rest.entry, notes + rest.notes)
        return _Outcome("fall")

    def _act(self, chain: Chain, i: int, depth: int) -> _Outcome | None:
        """The outcome of rule i's action when it matches; None: go on with the next rule."""
        rule = chain.rules[i]
        kind = rule.action.kind
        if kind in (Kind.ACCEPT, Kind.DROP):
            return _Outcome(kind.value, rule, rule if depth == 0 else None)
        if kind is Kind.RETURN:
            return _Outcome("fall", None, rule if depth == 0 else None)
        if kind is Kind.UNKNOWN:
            return _Outcome(
                None,
                rule,
                rule if depth == 0 else None,
                (f"{rule.ref.where}: action '{rule.ref.text}' cannot be evaluated",),
            )
        if kind in (Kind.JUMP, Kind.GOTO):
            inner = self.run(self.ruleset.chain(chain, rule.action.target), 0, depth + 1)
            entry = rule if depth == 0 else inner.entry
            if inner.end == "fall" and kind is Kind.JUMP:
                return None if not inner.notes else self._continued(chain, i, depth, inner.notes)
            return _Outcome(inner.end, inner.rule, entry, inner.notes)
        return None  # CONTINUE: counter, log, mark …

    def _continued(self, chain: Chain, i: int, depth: int, notes: tuple[str, ...]) -> _Outcome:
        rest = self.run(chain, i + 1, depth)
        return _Outcome(rest.end, rest.rule, rest.entry, notes + rest.notes)

    def _fork(self, chain: Chain, i: int, depth: int, notes: tuple[str, ...]) -> _Outcome:
        """Rule i may or may not match: if both branches end alike, the rule does not matter."""
        rule = chain.rules[i]
        unknown = "; ".join(m.spelled for m in rule.matches if isinstance(m, UnknownMatch))
        if_match = self._act(chain, i, depth) or self.run(chain, i + 1, depth)
        if_not = self.run(chain, i + 1, depth)
        said = f"{rule.ref.where} ({rule.ref.text}) cannot be evaluated: {unknown or 'partial match'}"
        if if_match.end == if_not.end and if_match.end is not None:
            return _Outcome(
                if_not.end,
                if_not.rule,
                if_not.entry,
                (*notes, f"{said}; it does not change the decision", *if_not.notes),
            )
        entry = rule if depth == 0 else None
        return _Outcome(None, rule, entry, (*notes, said, *if_match.notes, *if_not.notes))
