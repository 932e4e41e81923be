"""First-match evaluation for firewalls that are ordered lists of rules (firewalld, ufw, Windows, NSG).

Each firewall module turns its listing into `Entry`s in decision order (priority order for an NSG,
block-before-allow for Windows, deny-before-allow phases for firewalld) plus a `Fallback`. A rule whose
criteria cannot be resolved (a service tag, a LocalSubnet keyword, an unknown service name) may or may
not match: if the decision is the same either way it does not matter, otherwise the cell is
INDETERMINATE and the verdict names the rule and what could not be resolved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from linkgate.firewall.flows import (
    AddressRange,
    Anchor,
    Cuts,
    Flow,
    PortRange,
    RuleRef,
    Verdict,
    covers,
    covers_ports,
)

EVERYWHERE = (AddressRange.everything(4), AddressRange.everything(6))


@dataclass(frozen=True)
class AddressSet:
    """Addresses a rule names: resolved ranges plus names it could not resolve (tags, keywords)."""

    ranges: tuple[AddressRange, ...] = EVERYWHERE
    unresolved: tuple[str, ...] = ()

    def test(self, cell: AddressRange) -> bool | None:
        hit = covers(self.ranges, cell)
        return None if hit is False and self.unresolved else hit


ANY_ADDRESS = AddressSet()


@dataclass(frozen=True)
class PortSet:
    """Destination ports a rule names: resolved ranges plus names it could not resolve."""

    ranges: tuple[PortRange, ...] = (PortRange(0, 65535),)
    unresolved: tuple[str, ...] = ()

    def test(self, cell: PortRange) -> bool | None:
        hit = covers_ports(self.ranges, cell)
        return None if hit is False and self.unresolved else hit


ANY_PORT = PortSet()


@dataclass(frozen=True)
class Criteria:
    """What a rule matches; `unknown` lists conditions that cannot be evaluated at all (program filters)."""

    sources: AddressSet = ANY_ADDRESS
    destinations: AddressSet = ANY_ADDRESS
    ports: PortSet = ANY_PORT
    protocols: frozenset[str] | None = None  # None: any protocol
    negate_source: bool = False
    negate_destination: bool = False
    unknown: tuple[str, ...] = ()
    version: int | None = None  # the IP version the rule is limited to (ufw "(v6)", family="ipv4")

    def test(self, cell: Flow) -> bool | None:
        if self.protocols is not None and cell.protocol not in self.protocols:
            return False
        if self.version is not None and cell.version != self.version:
            return False
        source = self.sources.test(cell.source)
        destination = self.destinations.test(cell.destination)
        results = [
            source if source is None or not self.negate_source else not source,
            destination if destination is None or not self.negate_destination else not destination,
            self.ports.test(cell.ports),
            None if self.unknown else True,
        ]
        if False in results:
            return False
        return None if None in results else True

    def unresolved(self) -> str:
        """What made `test` answer None, readably."""
        names = (*self.sources.unresolved, *self.destinations.unresolved, *self.ports.unresolved, *self.unknown)
        return ", ".join(names) or "a partial match"

    def add_cuts(self, cuts: Cuts) -> None:
        cuts.add_addresses("source", self.sources.ranges)
        cuts.add_addresses("destination", self.destinations.ranges)
        cuts.add_ports(self.ports.ranges)


@dataclass(frozen=True)
class Entry:
    """One rule in decision order."""

    criteria: Criteria
    allows: bool
    ref: RuleRef
    anchor: Anchor | None = None
    notes: tuple[str, ...] = ()  # said whenever the rule is relied upon (a limit treated as not hit …)


@dataclass(frozen=True)
class Fallback:
    """What decides when no entry matches: a default policy, a zone target, the NSG's last default rule."""

    allows: bool
    policy: str
    anchor: Anchor | None = None


@dataclass(frozen=True)
class OrderedRules:
    """Entries in decision order and the fallback; `decide` is the per-cell engine."""

    entries: Sequence[Entry]
    fallback: Fallback
    notes: tuple[str, ...] = field(default=())

    def cuts(self, cuts: Cuts | None = None) -> Cuts:
        cuts = cuts or Cuts()
        for e in self.entries:
            e.criteria.add_cuts(cuts)
        return cuts

    def decide(self, cell: Flow, start: int = 0) -> Verdict:
        for i in range(start, len(self.entries)):
            entry = self.entries[i]
            hit = entry.criteria.test(cell)
            if hit is True:
                return Verdict(cell, entry.allows, entry.ref, None, entry.anchor, self.notes + entry.notes)
            if hit is None:
                return self._fork(cell, i)
        fb = self.fallback
        return Verdict(cell, fb.allows, None, fb.policy, fb.anchor, self.notes)

    def _fork(self, cell: Flow, i: int) -> Verdict:
        entry = self.entries[i]
        rest = self.decide(cell, i + 1)
        said = f"{entry.ref.where} ({entry.ref.text}) cannot be evaluated: {entry.criteria.unresolved()}"
        if rest.allowed is entry.allows:
            return Verdict(
                cell,
                rest.allowed,
                rest.decided_by,
                rest.policy,
                rest.anchor,
                (*rest.notes, f"{said}; it does not change the decision"),
            )
        return Verdict(cell, None, entry.ref, None, entry.anchor, (*self.notes, said, *rest.notes))
