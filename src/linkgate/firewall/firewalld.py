"""firewalld: is this flow allowed by the active zones (`firewall-cmd --get-active-zones`, `--list-all`)?

firewalld classifies an incoming connection into one zone — the zone whose `sources` contain the
source address, else the zone of the interface it arrives on (the default zone for unbound
interfaces) — and decides in that zone in fixed phases (the nftables backend's `_pre/_log/_deny/_allow`
chains): rich rules with a negative priority in priority order, then rich rules that drop or reject,
then what is allowed (rich accept rules, services, ports, protocols), then rich rules with a positive
priority, then the zone's target (`default` rejects). Zones filter inbound traffic only.

    >>> fw = Firewalld.parse(active_zones_text, list_all_text)                       # doctest: +SKIP
    >>> fw.evaluate(Flow.tcp("inbound", "198.18.2.0/24", "198.18.1.10", 5022))      # doctest: +SKIP
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from linkgate.firewall._ordered import (
    ANY_ADDRESS,
    ANY_PORT,
    AddressSet,
    Criteria,
    Entry,
    Fallback,
    OrderedRules,
    PortSet,
)
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

SERVICES: Mapping[str, tuple[str, ...]] = {
    "ssh": ("22/tcp",),
    "mssql": ("1433/tcp",),
    "http": ("80/tcp",),
    "https": ("443/tcp",),
    "cockpit": ("9090/tcp",),
    "dhcpv6-client": ("546/udp",),
    "mdns": ("5353/udp",),
    "dns": ("53/tcp", "53/udp"),
    "ntp": ("123/udp",),
    "samba-client": ("137/udp", "138/udp"),
}
"""Ports of firewalld's own service definitions (/usr/lib/firewalld/services) that hosts commonly enable.

A service not listed here (or passed in `services=`) may hide any port: it makes the verdict
INDETERMINATE when it could decide, never a guess.
"""


@dataclass(frozen=True)
class RichRule:
    """One `rule …` line of a zone, read into criteria and an action."""

    text: str
    criteria: Criteria
    action: str  # "accept", "drop", "reject", or "" for rules that only log, audit or mark
    priority: int = 0
    notes: tuple[str, ...] = ()


@dataclass
class Zone:
    """One zone as `firewall-cmd --list-all` shows it."""

    name: str
    target: str = "default"
    interfaces: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)
    protocols: list[str] = field(default_factory=list)
    source_ports: list[str] = field(default_factory=list)
    rich_rules: list[RichRule] = field(default_factory=list)
    default: bool = False

    def source_ranges(self) -> tuple[AddressRange, ...]:
        """The zone's source bindings that are addresses."""
        return tuple(r for r in map(_address_or_none, self.sources) if r is not None)

    def unresolved_sources(self) -> list[str]:
        """Source bindings that are not addresses (ipset:NAME, MAC): they may claim any flow."""
        return [s for s in self.sources if _address_or_none(s) is None]


def _address_or_none(text: str) -> AddressRange | None:
    try:
        return AddressRange.parse(text)
    except ValueError:
        return None


def _port_spec(spec: str) -> tuple[PortRange, str]:
    port, _, protocol = spec.partition("/")
    return PortRange.parse(port), protocol or "tcp"


_ELEMENTS = {
    "source",
    "destination",
    "service",
    "port",
    "protocol",
    "icmp-block",
    "icmp-type",
    "masquerade",
    "forward-port",
    "source-port",
    "log",
    "audit",
    "nflog",
    "limit",
    "accept",
    "reject",
    "drop",
    "mark",
}
_ACTIONS = ("accept", "reject", "drop")


def parse_rich_rule(text: str, services: Mapping[str, Sequence[str]] = SERVICES) -> RichRule:
    """`rule family="ipv4" source address="198.18.2.0/24" port port="5022" protocol="tcp" accept` → RichRule.

    Elements that do not concern a new inbound TCP connection (icmp-block, masquerade) never match it;
    those that could but cannot be resolved (ipset, mac, forward-port, source-port) leave it unknown.
    """
    words = shlex.split(text)
    if not words or words[0] != "rule":
        raise ValueError(f"not a firewalld rich rule: {text!r}")
    attrs: dict[str, dict[str, str]] = {"rule": {}}
    negated: set[str] = set()
    element = "rule"
    for word in words[1:]:
        key, eq, value = word.partition("=")
        if eq:
            attrs.setdefault(element, {})[key] = value
        elif word == "not":
            negated.add(element)
        elif word in _ELEMENTS:
            element = f"limit of {element}" if word == "limit" else word
            attrs.setdefault(element, {})
        else:
            raise ValueError(f"firewalld rich rule: unexpected {word!r} in {text!r}")
    addresses: dict[str, AddressSet] = {}
    unknown: list[str] = []
    for side in ("source", "destination"):
        spec = attrs.get(side, {})
        if "address" in spec:
            addresses[side] = AddressSet((AddressRange.parse(spec["address"]),))
        unknown += [f"{side} {k}={v}" for k, v in spec.items() if k in ("ipset", "mac")]
    ports, protocols = ANY_PORT, None
    if "port" in attrs:
        ports = PortSet((PortRange.parse(attrs["port"]["port"]),))
        protocols = frozenset({attrs["port"].get("protocol", "tcp")})
    elif "service" in attrs:
        ports, protocols = _service(attrs["service"]["name"], services)
    elif "protocol" in attrs:
        protocols = frozenset({attrs["protocol"]["value"]})
    elif attrs.keys() & {"icmp-block", "icmp-type"}:
        protocols = frozenset({"icmp"})
    unknown += [
        f"{e} {' '.join(f'{k}={v}' for k, v in attrs[e].items())}".strip()
        for e in ("forward-port", "source-port")
        if e in attrs
    ]
    action = next((a for a in _ACTIONS if a in attrs), "")
    if "masquerade" in attrs:
        action = ""  # masquerading concerns forwarded traffic, not connections to this host
    family = {"ipv4": 4, "ipv6": 6}.get(attrs["rule"].get("family", ""))
    criteria = Criteria(
        addresses.get("source", ANY_ADDRESS),
        addresses.get("destination", ANY_ADDRESS),
        ports,
        protocols,
        "source" in negated,
        "destination" in negated,
        tuple(unknown),
        family,
    )
    limit = attrs.get(f"limit of {action}")
    notes = (f"rich rule limit {limit.get('value')} treated as not reached: {text}",) if limit else ()
    return RichRule(text, criteria, action, int(attrs["rule"].get("priority", "0")), notes)


def _service(name: str, services: Mapping[str, Sequence[str]]) -> tuple[PortSet, frozenset[str] | None]:
    specs = services.get(name)
    if specs is None:
        return PortSet((), (f"service {name} (ports unknown)",)), None
    parsed = [_port_spec(s) for s in specs]
    tcp = tuple(p for p, proto in parsed if proto == "tcp")
    return PortSet(tcp), frozenset({"tcp"}) if tcp else frozenset({proto for _, proto in parsed})


def parse_list_all(text: str, services: Mapping[str, Sequence[str]] = SERVICES) -> list[Zone]:
    """Zones from `firewall-cmd [--zone=Z] --list-all` (or `--list-all-zones`); several may be concatenated."""
    zones: list[Zone] = []
    key = ""
    for raw in text.splitlines():
        if not raw.strip():
            continue
        if not raw[0].isspace():
            name, _, marks = raw.strip().partition(" ")
            zones.append(Zone(name, default="default" in marks))
            key = ""
            continue
        if not zones:
            raise ValueError(f"firewall-cmd --list-all: a setting before any zone name: {raw!r}")
        zone = zones[-1]
        line = raw.strip()
        if key == "rich rules" and line.startswith("rule"):
            zone.rich_rules.append(parse_rich_rule(line, services))
            continue
        key, _, value = line.partition(":")
        words = value.split()
        if key == "target":
            zone.target = value.strip()
        elif key in ("interfaces", "sources", "services", "ports", "protocols", "source-ports"):
            setattr(zone, key.replace("-", "_"), words)
        elif key == "rich rules" and value.strip():
            zone.rich_rules.append(parse_rich_rule(value.strip(), services))
    return zones


def parse_active_zones(text: str) -> dict[str, dict[str, list[str]]]:
    """`firewall-cmd --get-active-zones` → {zone: {"interfaces": [...], "sources": [...]}}."""
    zones: dict[str, dict[str, list[str]]] = {}
    current = ""
    for raw in text.splitlines():
        if not raw.strip():
            continue
        if not raw[0].isspace():
            current = raw.split()[0]
            zones[current] = {"interfaces": [], "sources": []}
        elif current:
            key, _, value = raw.strip().partition(":")
            zones[current].setdefault(key, []).extend(value.split())
    return zones


@dataclass
class Firewalld:
    """The active zones of a host and the zone used for unbound interfaces."""

    zones: list[Zone]
    default_zone: str | None = None
    services: Mapping[str, Sequence[str]] = field(default_factory=lambda: dict(SERVICES))

    @classmethod
    def parse(
        cls,
        active_zones: str,
        list_all: str,
        *,
        default_zone: str | None = None,
        services: Mapping[str, Sequence[str]] | None = None,
    ) -> Firewalld:
        """From `--get-active-zones` and the `--zone=Z --list-all` outputs of those zones (concatenated).

        `default_zone` is `firewall-cmd --get-default-zone`; a `(default…)` mark in the listings also says it.
        `services` adds or overrides service ports (`firewall-cmd --info-service=NAME`: "5022/tcp …").
        """
        active = parse_active_zones(active_zones)
        known = {**SERVICES, **(services or {})}
        listed = {z.name: z for z in parse_list_all(list_all, known)}
        missing = sorted(set(active) - set(listed))
        if missing:
            raise ValueError(f"firewalld: active zones without a --list-all listing: {', '.join(missing)}")
        zones = [listed[name] for name in active]
        default = default_zone or next((z.name for z in listed.values() if z.default), None)
        if default and default not in active and default in listed:
            zones.append(listed[default])  # the default zone catches unbound interfaces even when listed inactive
        return cls(zones, default, known)

    def evaluate(self, flow: Flow, *, interface: str | None = None) -> Verdict:
        """The verdict for `flow`; `interface` (the one the flow arrives on) narrows the zone when known."""
        if flow.direction is Direction.OUTBOUND:
            return Verdict(
                flow,
                True,
                policy="firewalld zones do not filter outbound traffic",
                notes=("firewalld policies and direct rules are not in --list-all: not evaluated",),
            )
        cuts = Cuts()
        for zone in self.zones:
            cuts.add_addresses("source", zone.source_ranges())
            self._rules(zone).cuts(cuts)
        return evaluate_cells(flow, cuts, lambda cell: self._decide(cell, interface))

    def _decide(self, cell: Flow, interface: str | None) -> Verdict:
        by_source = [z for z in self.zones if any(r.covers(cell.source) for r in z.source_ranges())]
        if by_source:
            return self._rules(by_source[0]).decide(cell)
        maybe = [z for z in self.zones if z.unresolved_sources()]  # an ipset binding may or may not hold it
        candidates = maybe + self._interface_zones(interface)
        if not candidates:
            return Verdict(
                cell,
                None,
                notes=(
                    "no zone applies: no source binding matches, no interface zone, and the default zone is unknown",
                ),
            )
        verdicts = [self._rules(z).decide(cell) for z in candidates]
        if len({v.allowed for v in verdicts}) == 1:
            return verdicts[0]
        said = tuple(f"zone {z.name}: {v.outcome} by {v.reason}" for z, v in zip(candidates, verdicts, strict=True))
        return Verdict(
            cell,
            None,
            policy="the zone is unknown: "
            + ", ".join(f"{z.name} {v.outcome}" for z, v in zip(candidates, verdicts, strict=True)),
            notes=("the zones the flow may arrive in disagree and the interface is unknown (pass interface=…)", *said),
        )

    def _interface_zones(self, interface: str | None) -> list[Zone]:
        if interface is not None:
            bound = [z for z in self.zones if interface in z.interfaces]
            return bound or [z for z in self.zones if z.name == self.default_zone]
        bound = [z for z in self.zones if z.interfaces]
        default = [z for z in self.zones if z.name == self.default_zone and z not in bound]
        return bound + default

    def _rules(self, zone: Zone) -> OrderedRules:
        """The zone's decision phases as one ordered list."""
        scope = Anchor((zone.name,))
        rich = [
            (
                r,
                Entry(
                    r.criteria,
                    r.action == "accept",
                    RuleRef(r.text, f"zone {zone.name} rich rule"),
                    Anchor((zone.name,), r.priority),
                    r.notes,
                ),
            )
            for r in zone.rich_rules
            if r.action
        ]
        early = [e for r, e in sorted(rich, key=lambda x: x[0].priority) if r.priority < 0]
        late = [e for r, e in sorted(rich, key=lambda x: x[0].priority) if r.priority > 0]
        deny = [e for r, e in rich if r.priority == 0 and not e.allows]
        allow = [e for r, e in rich if r.priority == 0 and e.allows] + self._allowed(zone, scope)
        notes = (
            (f"zone {zone.name} source-ports {' '.join(zone.source_ports)} not evaluated",) if zone.source_ports else ()
        )
        target = zone.target.strip("%").upper()
        fallback = Fallback(
            target == "ACCEPT",
            f"zone {zone.name} target {zone.target}"
            + (" (rejects what the zone does not allow)" if target == "DEFAULT" else ""),
            scope,
        )
        return OrderedRules([*early, *deny, *allow, *late], fallback, notes)

    def _allowed(self, zone: Zone, scope: Anchor) -> list[Entry]:
        entries = []
        for name in zone.services:
            ports, protocols = _service(name, self.services)
            entries.append(
                Entry(
                    Criteria(ports=ports, protocols=protocols),
                    True,
                    RuleRef(f"service {name}", f"zone {zone.name} services"),
                    scope,
                )
            )
        for spec in zone.ports:
            port, protocol = _port_spec(spec)
            entries.append(
                Entry(
                    Criteria(ports=PortSet((port,)), protocols=frozenset({protocol})),
                    True,
                    RuleRef(f"port {spec}", f"zone {zone.name} ports"),
                    scope,
                )
            )
        entries += [
            Entry(
                Criteria(protocols=frozenset({p})), True, RuleRef(f"protocol {p}", f"zone {zone.name} protocols"), scope
            )
            for p in zone.protocols
        ]
        return entries


def evaluate_firewalld(
    active_zones: str, list_all: str, flow: Flow, *, default_zone: str | None = None, interface: str | None = None
) -> Verdict:
    """Shortcut: parse both listings and evaluate one flow."""
    return Firewalld.parse(active_zones, list_all, default_zone=default_zone).evaluate(flow, interface=interface)
