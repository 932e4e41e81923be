"""Azure network security groups: is this flow allowed by the NSGs on its path (spec §6)?

Rules of the flow's direction are processed in priority order (lower first) and the first match
decides; the default rules (65000-65500) end every list, and are synthesised from the documented
table when the JSON lacks them. NSGs are stateful, so only the initiating direction is evaluated.
Inbound traffic meets the subnet's NSG and then the NIC's, outbound the NIC's and then the subnet's:
both must allow.

Address prefixes: CIDR, host, '*', and the tags 'VirtualNetwork' (resolved from the prefixes the
caller gives: VNet address space, peerings, gateway-connected on-premises ranges), 'Internet' (what
is outside those), 'AzureLoadBalancer' (168.63.129.16, never an on-premises source). Any other tag and
application security groups cannot be resolved here: INDETERMINATE when they could decide.
Azure Virtual Network Manager admin rules, UDRs and appliances are outside the NSG API.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from linkgate.firewall._ordered import AddressSet, Criteria, Entry, Fallback, OrderedRules, PortSet
from linkgate.firewall.flows import (
    AddressRange,
    Anchor,
    Cuts,
    Direction,
    Flow,
    PortRange,
    RuleRef,
    Verdict,
    evaluate_cells,
)

AZURE_LOAD_BALANCER = AddressRange.parse("168.63.129.16")
"""The AzureLoadBalancer tag: Azure's host address, the source of load-balancer health probes."""

NOT_EVALUATED = "Azure Virtual Network Manager security admin rules, UDRs and appliances are not evaluated"

_EPHEMERAL = PortRange(1024, 65535)


@dataclass(frozen=True)
class SecurityRule:
    """One security rule, in ARM's terms; list fields already merged from the singular/plural pair."""

    name: str
    priority: int
    direction: Direction
    allow: bool
    protocol: str
    sources: tuple[str, ...]
    destinations: tuple[str, ...]
    source_ports: tuple[str, ...]
    destination_ports: tuple[str, ...]
    source_groups: tuple[str, ...] = ()
    destination_groups: tuple[str, ...] = ()
    default: bool = False

    @classmethod
    def from_arm(cls, raw: Mapping[str, Any], *, default: bool = False) -> SecurityRule:
        p = raw.get("properties", raw)

        def merged(singular: str) -> tuple[str, ...]:
            plural = p.get(singular + "es") or p.get(singular + "s") or []
            single = p.get(singular)
            return tuple(str(v) for v in plural) if plural else ((str(single),) if single is not None else ())

        def groups(key: str) -> tuple[str, ...]:
            return tuple(str(g.get("id", "")).rsplit("/", 1)[-1] for g in p.get(key) or [])

        return cls(
            str(raw.get("name", "")),
            int(p["priority"]),
            Direction.INBOUND if str(p["direction"]).lower() == "inbound" else Direction.OUTBOUND,
            str(p["access"]).lower() == "allow",
            str(p.get("protocol", "*")),
            merged("sourceAddressPrefix"),
            merged("destinationAddressPrefix"),
            merged("sourcePortRange"),
            merged("destinationPortRange"),
            groups("sourceApplicationSecurityGroups"),
            groups("destinationApplicationSecurityGroups"),
            default,
        )

    @property
    def text(self) -> str:
        def side(addresses: Sequence[str], asgs: Sequence[str], ports: Sequence[str]) -> str:
            return f"{','.join([*addresses, *(f'asg:{g}' for g in asgs)]) or '-'} port {','.join(ports) or '-'}"

        return (
            f"{'Allow' if self.allow else 'Deny'} {self.protocol} "
            f"from {side(self.sources, self.source_groups, self.source_ports)} "
            f"to {side(self.destinations, self.destination_groups, self.destination_ports)}"
        )


def _rule(name: str, priority: int, direction: str, allow: bool, source: str, destination: str) -> SecurityRule:
    return SecurityRule(
        name, priority, Direction(direction), allow, "*", (source,), (destination,), ("*",), ("*",), default=True
    )


DEFAULT_RULES = (
    _rule("AllowVnetInBound", 65000, "inbound", True, "VirtualNetwork", "VirtualNetwork"),
    _rule("AllowAzureLoadBalancerInBound", 65001, "inbound", True, "AzureLoadBalancer", "*"),
    _rule("DenyAllInBound", 65500, "inbound", False, "*", "*"),
    _rule("AllowVnetOutBound", 65000, "outbound", True, "VirtualNetwork", "VirtualNetwork"),
    _rule("AllowInternetOutBound", 65001, "outbound", True, "*", "Internet"),
    _rule("DenyAllOutBound", 65500, "outbound", False, "*", "*"),
)
"""The documented default rules (spec §6), used when a listing lacks defaultSecurityRules."""


class AddressBook:
    """Resolves NSG address prefixes and tags to ranges, from what the caller knows of the network."""

    def __init__(self, virtual_network: Sequence[str] | None) -> None:
        self.virtual_network = (
            tuple(AddressRange.parse(p) for p in virtual_network) if virtual_network is not None else None
        )

    def resolve(self, prefixes: Sequence[str], groups: Sequence[str]) -> AddressSet:
        ranges: list[AddressRange] = []
        unresolved = [f"application security group {g}" for g in groups]
        for prefix in prefixes:
            tag = prefix.strip()
            if tag in ("*", "Any", "any"):
                return AddressSet()
            if tag.lower() == "virtualnetwork" and self.virtual_network is not None:
                ranges += self.virtual_network
            elif tag.lower() == "internet" and self.virtual_network is not None:
                ranges += self._outside_virtual_network()
            elif tag.lower() == "azureloadbalancer":
                ranges.append(AZURE_LOAD_BALANCER)
            else:
                try:
                    ranges.append(AddressRange.parse(tag))
                except ValueError:
                    unresolved.append(f"service tag {tag}" if tag[:1].isalpha() else f"prefix {tag}")
        return AddressSet(tuple(ranges), tuple(unresolved))

    def _outside_virtual_network(self) -> list[AddressRange]:
        """The gaps between the VirtualNetwork ranges, per IP version."""
        outside: list[AddressRange] = []
        for version in (4, 6):
            everything = AddressRange.everything(version)
            make = type(everything.first)
            cursor = int(everything.first)
            for r in sorted(
                (r for r in self.virtual_network or () if r.version == version), key=lambda r: int(r.first)
            ):
                if int(r.first) > cursor:
                    outside.append(AddressRange(make(cursor), make(int(r.first) - 1)))
                cursor = max(cursor, int(r.last) + 1)
            if cursor <= int(everything.last):
                outside.append(AddressRange(make(cursor), everything.last))
        return outside


def _ports(values: Sequence[str]) -> PortSet:
    """'*', 'N', 'A-B', and comma lists of those (the portal's "80, 10000-10005" spelling)."""
    items = [item.strip() for v in values for item in v.split(",") if item.strip()]
    if "*" in items:
        return PortSet()
    return PortSet(tuple(PortRange.parse(i) for i in items))


@dataclass(frozen=True)
class Nsg:
    """A network security group as ARM returns it (GET …/networkSecurityGroups/{name})."""

    name: str
    id: str
    rules: tuple[SecurityRule, ...]
    notes: tuple[str, ...] = ()

    @classmethod
    def from_arm(cls, doc: str | Mapping[str, Any]) -> Nsg:
        raw = json.loads(doc) if isinstance(doc, str) else doc
        props = raw.get("properties", {})
        custom = [SecurityRule.from_arm(r) for r in props.get("securityRules") or []]
        defaults = [SecurityRule.from_arm(r, default=True) for r in props.get("defaultSecurityRules") or []]
        notes = () if defaults else ("the listing has no defaultSecurityRules: the documented defaults are used",)
        return cls(str(raw.get("name", "")), str(raw.get("id", "")), (*custom, *(defaults or DEFAULT_RULES)), notes)

    @property
    def resource_group(self) -> str:
        parts = self.id.split("/")
        lowered = [p.lower() for p in parts]
        return parts[lowered.index("resourcegroups") + 1] if "resourcegroups" in lowered else ""

    def ordered(self, direction: Direction, book: AddressBook, role: str) -> OrderedRules:
        """This NSG's rules of one direction, by priority, as entries; `role` is "subnet" or "NIC"."""
        entries = []
        for r in sorted((r for r in self.rules if r.direction is direction), key=lambda r: r.priority):
            source_ports = _ports(r.source_ports)
            unknown = () if source_ports.test(_EPHEMERAL) else (f"source port {','.join(r.source_ports)}",)
            protocol = r.protocol.lower()
            criteria = Criteria(
                book.resolve(r.sources, r.source_groups),
                book.resolve(r.destinations, r.destination_groups),
                _ports(r.destination_ports),
                None if protocol in ("*", "any") else frozenset({protocol}),
                unknown=unknown,
            )
            where = f"{role} NSG {self.name} {direction.value} rule {r.name} (priority {r.priority}" + (
                ", default)" if r.default else ")"
            )
            entries.append(
                Entry(criteria, r.allow, RuleRef(r.text, where), Anchor((self.name, direction.value), r.priority))
            )
        fallback = Fallback(False, f"{role} NSG {self.name}: no rule matched (the default rules are missing)")
        return OrderedRules(entries, fallback, self.notes)


def evaluate_path(
    flow: Flow,
    *,
    subnet: Nsg | None = None,
    nic: Nsg | None = None,
    virtual_network: Sequence[str] | None = None,
) -> Verdict:
    """The verdict of the NSGs on the flow's path: inbound subnet then NIC, outbound NIC then subnet.

    `virtual_network` lists the prefixes the VirtualNetwork tag stands for (VNet address space,
    peered VNets, gateway-connected on-premises ranges); None leaves the tag unresolved.
    """
    book = AddressBook(virtual_network)
    path = [("subnet", subnet), ("NIC", nic)]
    if flow.direction is Direction.OUTBOUND:
        path.reverse()
    stages = [nsg.ordered(flow.direction, book, role) for role, nsg in path if nsg is not None]
    if not stages:
        return Verdict(flow, True, policy="no NSG is associated with the subnet or the NIC", notes=(NOT_EVALUATED,))
    cuts = Cuts()
    for stage in stages:
        stage.cuts(cuts)

    def decide(cell: Flow) -> Verdict:
        verdicts = [stage.decide(cell) for stage in stages]
        deciding = next((v for v in verdicts if v.allowed is False), None) or next(
            (v for v in verdicts if v.allowed is None), verdicts[-1]
        )
        others = tuple(f"also allowed by {v.reason}" for v in verdicts if v is not deciding and v.allowed)
        return Verdict(
            cell,
            deciding.allowed,
            deciding.decided_by,
            deciding.policy,
            deciding.anchor,
            (*deciding.notes, *(others if deciding.allowed else ()), NOT_EVALUATED),
        )

    return evaluate_cells(flow, cuts, decide)


def free_priority(nsg: Nsg, direction: Direction, below: int) -> int:
    """The highest priority number not used in `direction` that is lower than `below` (and 100-4096)."""
    used = {r.priority for r in nsg.rules if r.direction is direction}
    for candidate in range(min(below - 1, 4096), 99, -1):
        if candidate not in used:
            return candidate
    raise ValueError(f"NSG {nsg.name}: no free {direction.value} priority below {below}")
