"""ufw: is this flow allowed by the rules `ufw status verbose` lists?

ufw evaluates its user rules in the listed order, first match wins, then the default policy of the
direction ("Default: deny (incoming), allow (outgoing), …"). Its before-rules only accept loopback,
ICMP, DHCP and established traffic, none of which is a new TCP connection to the link's ports.
In the table, "To" is always the destination and "From" the source, for IN and OUT rules alike.

    >>> evaluate_ufw(status_text, Flow.tcp("inbound", "198.18.2.0/24", "198.18.1.10", 5022))  # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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
from linkgate.firewall.flows import AddressRange, Anchor, Direction, Flow, PortRange, RuleRef, Verdict, evaluate_cells

PROFILES: Mapping[str, str] = {"OpenSSH": "22/tcp"}
"""Application profiles (/etc/ufw/applications.d) whose ports are known; others make a rule unresolvable."""

_ACTION = re.compile(r"(?:^|\s)(ALLOW|DENY|REJECT|LIMIT)(?:\s+(IN|OUT|FWD))?(?:\s|$)")
_PORTS = re.compile(r"^[\d,:]+(?:/\w+)?$")


@dataclass(frozen=True)
class Endpoint:
    """One side of a ufw rule: addresses, ports and protocol, as its column spells them."""

    addresses: AddressSet = ANY_ADDRESS
    ports: PortSet = ANY_PORT
    protocol: str | None = None
    version: int | None = None
    interface: str | None = None


def parse_endpoint(text: str, profiles: Mapping[str, str] = PROFILES) -> Endpoint:
    """'Anywhere', '198.18.2.0/24', '198.18.1.10 5022/tcp', '5022,11000:11999/tcp', 'OpenSSH', '… (v6)', '… on eth0'."""
    spelled, _, interface = text.strip().partition(" on ")
    v6 = spelled.endswith("(v6)")
    words = spelled.removesuffix("(v6)").split()
    addresses, version = ANY_ADDRESS, 6 if v6 else 4
    found = _address(words[0]) if words else None
    if found is not None:
        addresses, version = AddressSet((found,)), found.version
    if found is not None or words[:1] == ["Anywhere"]:
        words = words[1:]
    ports, protocol = ANY_PORT, None
    if len(words) == 1 and _PORTS.match(words[0]):
        spec, _, proto = words[0].partition("/")
        ports, protocol = PortSet(tuple(PortRange.parse(p) for p in spec.split(","))), proto or None
    elif words:
        app = " ".join(words)
        known = profiles.get(app)
        if known is None:
            ports = PortSet((), (f"application profile {app!r} (ports unknown)",))
        else:
            spec, _, proto = known.partition("/")
            ports, protocol = PortSet(tuple(PortRange.parse(p) for p in spec.split(","))), proto or None
    return Endpoint(addresses, ports, protocol, version, interface.strip() or None)


def _address(word: str) -> AddressRange | None:
    try:
        return AddressRange.parse(word)
    except ValueError:
        return None


@dataclass(frozen=True)
class UfwRule:
    """One line of the rules table, with its number (as `ufw status numbered` counts)."""

    number: int
    text: str
    action: str  # ALLOW, DENY, REJECT, LIMIT
    direction: Direction | None  # None: a routed (FWD) rule
    criteria: Criteria
    notes: tuple[str, ...] = ()


@dataclass
class UfwStatus:
    """What `ufw status verbose` says: active or not, default policies, the rules in order."""

    active: bool
    defaults: dict[Direction, str] = field(default_factory=dict)
    rules: list[UfwRule] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str, *, profiles: Mapping[str, str] | None = None) -> UfwStatus:
        """Read `ufw status verbose` (or plain `ufw status`, whose IN rules omit the direction)."""
        known = {**PROFILES, **(profiles or {})}
        lines = text.splitlines()
        status = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Status:")), None)
        if status is None:
            raise ValueError("ufw status: no 'Status:' line")
        result = cls(status == "active")
        for line in lines:
            if line.startswith("Default:"):
                for part in line.split(":", 1)[1].split(","):
                    policy, _, which = part.strip().partition(" ")
                    direction = {"(incoming)": Direction.INBOUND, "(outgoing)": Direction.OUTBOUND}.get(which)
                    if direction is not None:
                        result.defaults[direction] = policy
        table = [ln for ln in lines[_table_start(lines) :] if ln.strip()]
        for number, line in enumerate(table, 1):
            result.rules.append(_rule(number, line, known))
        return result

    def evaluate(self, flow: Flow) -> Verdict:
        if not self.active:
            return Verdict(flow, True, policy="ufw is inactive")
        rules = self._ordered(flow.direction)
        return evaluate_cells(flow, rules.cuts(), rules.decide)

    def _ordered(self, direction: Direction) -> OrderedRules:
        which = "incoming" if direction is Direction.INBOUND else "outgoing"
        default = self.defaults.get(direction, "deny" if direction is Direction.INBOUND else "allow")
        entries = [
            Entry(
                r.criteria,
                r.action in ("ALLOW", "LIMIT"),
                RuleRef(r.text, f"ufw rule [{r.number}]"),
                Anchor((), r.number),
                r.notes,
            )
            for r in self.rules
            if r.direction is direction
        ]
        return OrderedRules(entries, Fallback(default == "allow", f"ufw default {default} ({which})", Anchor(())))


def _table_start(lines: list[str]) -> int:
    for i, line in enumerate(lines):
        if line.startswith("--"):
            return i + 1
    return len(lines)


def _rule(number: int, line: str, profiles: Mapping[str, str]) -> UfwRule:
    text = " ".join(line.split())
    body = re.sub(r"\s+#.*$", "", text)
    found = _ACTION.search(body)
    if found is None:
        raise ValueError(f"ufw status: not a rule line: {line!r}")
    to, source = parse_endpoint(body[: found.start()], profiles), parse_endpoint(body[found.end() :], profiles)
    direction = {"IN": Direction.INBOUND, "OUT": Direction.OUTBOUND, None: Direction.INBOUND}.get(found.group(2))
    protocol = to.protocol or source.protocol
    unknown = (f"source port {body[found.end() :].strip()}",) if source.ports != ANY_PORT else ()
    criteria = Criteria(
        source.addresses,
        to.addresses,
        to.ports,
        frozenset({protocol}) if protocol else None,
        unknown=unknown,
        version=6 if 6 in (to.version, source.version) else 4,
    )
    notes = tuple(f"interface match 'on {e.interface}' treated as matching" for e in (to, source) if e.interface)
    if found.group(1) == "LIMIT":
        notes += (f"LIMIT treated as not reached: {text}",)
    return UfwRule(number, text, found.group(1), direction, criteria, notes)


def evaluate_ufw(status: str, flow: Flow) -> Verdict:
    """Shortcut: parse `ufw status verbose` and evaluate one flow."""
    return UfwStatus.parse(status).evaluate(flow)
