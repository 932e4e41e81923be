"""Flows, port and address ranges, and the Verdict every firewall evaluator returns.

A flow is what the link needs to pass: one direction, TCP, a source and a destination that may be
whole subnets, and a destination port or port range. "Allowed" means allowed for *all* of it, so the
evaluators split a flow into cells at every boundary any rule mentions (`split`), decide each cell
(inside a cell every rule either covers it entirely or not at all) and `combine` the per-cell answers:
one verdict when they agree, otherwise a verdict whose `parts` say which sub-range got which answer.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise, product

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_CELLS = 4096
"""More distinct sub-flows than this and the answer is INDETERMINATE rather than slow."""


class Direction(enum.Enum):
    """Which way the connection is opened, seen from the host (or subnet) whose firewall decides."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


@dataclass(frozen=True, order=True)
class PortRange:
    """Ports `first`..`last` inclusive; `PortRange(5022)` is the single port 5022."""

    first: int
    last: int = -1

    def __post_init__(self) -> None:
        if self.last == -1:
            object.__setattr__(self, "last", self.first)
        if not 0 <= self.first <= self.last <= 65535:
            raise ValueError(f"not a port range: {self.first}-{self.last}")

    @classmethod
    def parse(cls, text: str | int) -> PortRange:
        """'5022', '11000-11999' or '11000:11999' (iptables spelling) → PortRange."""
        if isinstance(text, int):
            return cls(text)
        spelled = text.strip().replace(":", "-")
        first, sep, last = spelled.partition("-")
        try:
            return cls(int(first), int(last) if sep else int(first))
        except ValueError:
            raise ValueError(f"not a port or port range: {text!r}") from None

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last

    def covers(self, other: PortRange) -> bool:
        """True when every port of `other` is in this range."""
        return self.first <= other.first and other.last <= self.last

    def overlaps(self, other: PortRange) -> bool:
        return self.first <= other.last and other.first <= self.last

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


ALL_PORTS = PortRange(0, 65535)


@dataclass(frozen=True)
class AddressRange:
    """Addresses `first`..`last` inclusive, of one IP version: a host, a network or an arbitrary range."""

    first: IPAddress
    last: IPAddress

    def __post_init__(self) -> None:
        if self.first.version != self.last.version or int(self.first) > int(self.last):
            raise ValueError(f"not an address range: {self.first}-{self.last}")

    @classmethod
    def parse(cls, text: str) -> AddressRange:
        """A host ('198.18.2.5'), a network ('198.18.2.0/24', '198.18.2.0/255.255.255.0') or 'a-b'.

        Host bits in a network are ignored, as firewalls do ('198.18.2.7/24' is the /24).
        """
        spelled = text.strip()
        try:
            if "-" in spelled:
                first, last = spelled.split("-", 1)
                return cls(ipaddress.ip_address(first.strip()), ipaddress.ip_address(last.strip()))
            return cls.of_network(ipaddress.ip_network(spelled, strict=False))
        except ValueError:
            raise ValueError(f"not an address, network or address range: {text!r}") from None

    @classmethod
    def of_network(cls, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> AddressRange:
        return cls(network.network_address, network.broadcast_address)

    @classmethod
    def everything(cls, version: int) -> AddressRange:
        """0.0.0.0/0 or ::/0."""
        return cls.parse("0.0.0.0/0" if version == 4 else "::/0")

    @property
    def version(self) -> int:
        return self.first.version

    def covers(self, other: AddressRange) -> bool:
        """True when every address of `other` is in this range (never across IP versions)."""
        return (
            self.version == other.version and int(self.first) <= int(other.first) and int(other.last) <= int(self.last)
        )

    def overlaps(self, other: AddressRange) -> bool:
        return (
            self.version == other.version and int(self.first) <= int(other.last) and int(other.first) <= int(self.last)
        )

    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """The smallest list of CIDR networks that make up this range."""
        return list(ipaddress.summarize_address_range(self.first, self.last))

    def __str__(self) -> str:
        if self.first == self.last:
            return str(self.first)
        nets = self.networks()
        return str(nets[0]) if len(nets) == 1 else f"{self.first}-{self.last}"


@dataclass(frozen=True)
class Flow:
    """A connection the link needs: `direction` is seen from the firewall's host or subnet.

    Inbound: `source` is the remote peer, `destination` this host/subnet; outbound the other way round.
    Only the first packet of a NEW connection is evaluated (replies ride on connection tracking).
    """

    direction: Direction
    source: AddressRange
    destination: AddressRange
    ports: PortRange
    protocol: str = "tcp"

    def __post_init__(self) -> None:
        if self.source.version != self.destination.version:
            raise ValueError(f"source {self.source} and destination {self.destination} differ in IP version")

    @classmethod
    def tcp(cls, direction: Direction | str, source: str, destination: str, ports: str | int) -> Flow:
        """`Flow.tcp("inbound", "198.18.2.0/24", "198.18.1.10", "11000-11999")`."""
        return cls(
            Direction(direction), AddressRange.parse(source), AddressRange.parse(destination), PortRange.parse(ports)
        )

    @property
    def version(self) -> int:
        return self.source.version

    @property
    def remote(self) -> AddressRange:
        """The peer's side: the source of an inbound flow, the destination of an outbound one."""
        return self.source if self.direction is Direction.INBOUND else self.destination

    @property
    def local(self) -> AddressRange:
        """This host's (or subnet's) side."""
        return self.destination if self.direction is Direction.INBOUND else self.source

    def __str__(self) -> str:
        return f"{self.direction.value} {self.protocol} {self.source} → {self.destination} port {self.ports}"


@dataclass(frozen=True)
class Anchor:
    """Where a rule that opens the flow must go for it to take effect.

    `scope` names the container in the firewall's own terms: nftables (family, table, chain), iptables
    (table, chain), firewalld (zone,), ufw (), Windows (rule Name,) or () for the profile default, an
    NSG (name, direction). `index` is the 1-based position of the deciding rule in that container (ufw's
    rule number), or its priority for an NSG and a firewalld rich rule; `handle` is the nftables rule
    handle. Both None: nothing decided but the policy, so appending is enough.
    """

    scope: tuple[str, ...]
    index: int | None = None
    handle: int | None = None


@dataclass(frozen=True)
class RuleRef:
    """A rule as evidence: its text as the firewall prints it and where it sits, readably."""

    text: str
    where: str

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


@dataclass(frozen=True)
class Verdict:
    """The effective decision of a firewall for a flow, with the evidence for it.

    - `allowed`: True, False, or None = INDETERMINATE (something that decides could not be evaluated;
      never treat it as a pass).
    - `decided_by`: the rule whose action decided; None when no rule matched and `policy` decided.
    - `policy`: the fallback that decided, e.g. "table inet filter chain input policy drop".
    - `anchor`: where an opening rule must be inserted (see Anchor); None when not applicable.
    - `notes`: assumptions made on the way (interface matches treated as matching, …).
    - `parts`: when the answer differs within the flow, one verdict per sub-flow (sources, destinations,
      port sub-ranges); the top level then says False (or None) and cites the first denied part.
    """

    flow: Flow
    allowed: bool | None
    decided_by: RuleRef | None = None
    policy: str | None = None
    anchor: Anchor | None = None
    notes: tuple[str, ...] = ()
    parts: tuple[Verdict, ...] = field(default=(), compare=False)

    @property
    def indeterminate(self) -> bool:
        return self.allowed is None

    @property
    def outcome(self) -> str:
        return {True: "allowed", False: "denied", None: "indeterminate"}[self.allowed]

    @property
    def reason(self) -> str:
        """The deciding rule or policy, readably."""
        if self.decided_by is not None:
            return str(self.decided_by)
        return self.policy or "no rule and no policy decided"

    def failing(self) -> tuple[Verdict, ...]:
        """The leaf verdicts that are not allowed (self when it has no parts)."""
        leaves = self.parts or (self,)
        return tuple(v for v in leaves if v.allowed is not True)

    def explain(self) -> str:
        """Multi-line explanation: the decision, each differing part, and the notes."""
        lines = [str(self)]
        lines += [
            f"  {part.flow.source} → {part.flow.destination} port {part.flow.ports}: {part.outcome} by {part.reason}"
            for part in self.parts
        ]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return f"{self.outcome}: {self.flow} — {self.reason}"


Decide = Callable[[Flow], Verdict]


@dataclass
class Cuts:
    """Boundaries at which some rule's match changes: every cell between two cuts is decided as one."""

    sources: set[int] = field(default_factory=set)
    destinations: set[int] = field(default_factory=set)
    ports: set[int] = field(default_factory=set)

    def add_ports(self, ranges: Iterable[PortRange]) -> None:
        for r in ranges:
            self.ports.update((r.first, r.last + 1))

    def add_addresses(self, which: str, ranges: Iterable[AddressRange]) -> None:
        """`which` is 'source' or 'destination'."""
        target = self.sources if which == "source" else self.destinations
        for r in ranges:
            target.update((int(r.first), int(r.last) + 1))


def _split_ints(first: int, last: int, cuts: set[int]) -> list[tuple[int, int]]:
    points = sorted(c for c in cuts if first < c <= last)
    bounds = [first, *points, last + 1]
    return [(lo, hi - 1) for lo, hi in pairwise(bounds)]


def _split_addresses(r: AddressRange, cuts: set[int]) -> list[AddressRange]:
    make = ipaddress.IPv4Address if r.version == 4 else ipaddress.IPv6Address
    return [AddressRange(make(lo), make(hi)) for lo, hi in _split_ints(int(r.first), int(r.last), cuts)]


def split(flow: Flow, cuts: Cuts) -> list[Flow] | None:
    """The cells of `flow` between cuts, in (source, destination, port) order; None if more than MAX_CELLS."""
    sources = _split_addresses(flow.source, cuts.sources)
    destinations = _split_addresses(flow.destination, cuts.destinations)
    ports = [PortRange(lo, hi) for lo, hi in _split_ints(flow.ports.first, flow.ports.last, cuts.ports)]
    if len(sources) * len(destinations) * len(ports) > MAX_CELLS:
        return None
    return [replace(flow, source=s, destination=d, ports=p) for s, d, p in product(sources, destinations, ports)]


def _same_answer(a: Verdict, b: Verdict) -> bool:
    return (a.allowed, a.decided_by, a.policy, a.anchor) == (b.allowed, b.decided_by, b.policy, b.anchor)


def _adjacent(a: Flow, b: Flow) -> Flow | None:
    """The union of two cells when it is again a cell (they differ in one adjacent dimension only)."""
    if a.source == b.source and a.destination == b.destination and a.ports.last + 1 == b.ports.first:
        return replace(a, ports=PortRange(a.ports.first, b.ports.last))
    if a.source == b.source and a.ports == b.ports and int(a.destination.last) + 1 == int(b.destination.first):
        return replace(a, destination=AddressRange(a.destination.first, b.destination.last))
    if a.destination == b.destination and a.ports == b.ports and int(a.source.last) + 1 == int(b.source.first):
        return replace(a, source=AddressRange(a.source.first, b.source.last))
    return None


_MERGE_ORDERS: tuple[Callable[[Flow], tuple[int, ...]], ...] = (
    lambda f: (int(f.source.first), int(f.destination.first), f.ports.first),  # merges port neighbours
    lambda f: (int(f.source.first), f.ports.first, int(f.destination.first)),  # destination neighbours
    lambda f: (int(f.destination.first), f.ports.first, int(f.source.first)),  # source neighbours
)


def _merge(verdicts: Sequence[Verdict]) -> list[Verdict]:
    """Merge neighbouring cells that got the same answer: ports first, then destinations, then sources."""
    merged: list[Verdict] = list(verdicts)
    for order in _MERGE_ORDERS:
        out: list[Verdict] = []
        for v in sorted(merged, key=lambda v: order(v.flow)):
            union = _adjacent(out[-1].flow, v.flow) if out and _same_answer(out[-1], v) else None
            if union is not None:
                out[-1] = replace(out[-1], flow=union, notes=_dedupe((*out[-1].notes, *v.notes)))
            else:
                out.append(v)
        merged = out
    return sorted(merged, key=lambda v: _MERGE_ORDERS[0](v.flow))


def _dedupe(notes: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(notes))


def combine(flow: Flow, cells: Sequence[Verdict]) -> Verdict:
    """One verdict for `flow` from the verdicts of its cells.

    All cells agree → that answer for the whole flow. Otherwise the flow is denied if any cell is
    denied (else indeterminate), citing the first such part, with every differing part in `parts`.
    """
    notes = _dedupe(n for c in cells for n in c.notes)
    parts = _merge(cells)
    if len(parts) == 1:
        return replace(parts[0], flow=flow, notes=notes)
    allowed: bool | None = (
        False if any(c.allowed is False for c in parts) else (None if any(c.allowed is None for c in parts) else True)
    )
    if allowed is True:  # different rules allowed different parts: the flow is allowed, say by what
        return Verdict(flow, True, parts[0].decided_by, parts[0].policy, parts[0].anchor, notes, tuple(parts))
    first = next(p for p in parts if p.allowed is allowed)
    summary = f"{first.outcome} for {first.flow.source} → {first.flow.destination} port {first.flow.ports}"
    shared = [n for n in notes if all(n in p.notes for p in parts)]
    return Verdict(
        flow,
        allowed,
        first.decided_by,
        first.policy,
        first.anchor,
        _dedupe((summary, *first.notes, *shared)),
        tuple(parts),
    )


def evaluate_cells(flow: Flow, cuts: Cuts, decide: Decide) -> Verdict:
    """Split `flow` at `cuts`, decide each cell, and combine: the engine shared by every evaluator."""
    cells = split(flow, cuts)
    if cells is None:
        return Verdict(
            flow,
            None,
            notes=(
                f"the rules split this flow into more than {MAX_CELLS} distinct "
                "sub-flows; narrow the flow to evaluate it",
            ),
        )
    return combine(flow, [decide(cell) for cell in cells])


def covers(ranges: Iterable[AddressRange], cell: AddressRange) -> bool | None:
    """Whether the union of `ranges` covers the cell: True, False, or None when only partly (a cut missing)."""
    hit = [r for r in ranges if r.overlaps(cell)]
    if not hit:
        return False
    if any(r.covers(cell) for r in hit):
        return True
    return None


def covers_ports(ranges: Iterable[PortRange], cell: PortRange) -> bool | None:
    """Same as `covers`, for ports."""
    hit = [r for r in ranges if r.overlaps(cell)]
    if not hit:
        return False
    if any(r.covers(cell) for r in hit):
        return True
    return None
