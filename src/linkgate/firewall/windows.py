"""Windows Firewall: is this flow allowed by the profiles and enabled rules of the active policy store?

Windows decides by precedence, not order: a matching Block rule beats any Allow rule, an Allow rule
beats the profile's default action, and only rules of the profile the network is in apply (inbound
default Block, outbound default Allow when "NotConfigured"). For an inbound flow the local side is
the destination (LocalPort is the port connected to); for an outbound flow it is the source and the
port connected to is RemotePort. A rule scoped to a program or service cannot be decided from here.

The listing comes from `firewall_command()` (spec HOST-W-03, run through cmd.exe by testinfra's winrm
backend), which prints one JSON document; `WindowsFirewall.parse` reads it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from linkgate.firewall._ordered import AddressSet, Criteria, Entry, Fallback, OrderedRules, PortSet
from linkgate.firewall.flows import (
    AddressRange,
    Anchor,
    Direction,
    Flow,
    PortRange,
    RuleRef,
    Verdict,
    evaluate_cells,
)

FIREWALL_SCRIPT = r"""$ErrorActionPreference = 'Stop'
$profiles = @(Get-NetFirewallProfile -PolicyStore ActiveStore | ForEach-Object {
  [pscustomobject]@{ Name=[string]$_.Name; Enabled=[string]$_.Enabled;
    DefaultInboundAction=[string]$_.DefaultInboundAction; DefaultOutboundAction=[string]$_.DefaultOutboundAction } })
$active = @(Get-NetConnectionProfile -ErrorAction SilentlyContinue | ForEach-Object { [string]$_.NetworkCategory })
$rules = @(Get-NetFirewallRule -PolicyStore ActiveStore -Enabled True | ForEach-Object {
  $pf = $_ | Get-NetFirewallPortFilter
  $af = $_ | Get-NetFirewallAddressFilter
  $app = $_ | Get-NetFirewallApplicationFilter
  $svc = $_ | Get-NetFirewallServiceFilter
  [pscustomobject]@{ Name=$_.Name; DisplayName=$_.DisplayName;
    Direction=[string]$_.Direction; Action=[string]$_.Action; Profile=[string]$_.Profile;
    Protocol=[string]$pf.Protocol; LocalPort=@($pf.LocalPort); RemotePort=@($pf.RemotePort);
    LocalAddress=@($af.LocalAddress); RemoteAddress=@($af.RemoteAddress);
    Program=[string]$app.Program; Service=[string]$svc.Service } })
[pscustomobject]@{ profiles=$profiles; active_profiles=$active; rules=$rules } | ConvertTo-Json -Depth 5 -Compress
"""
"""Spec HOST-W-03's script, plus each rule's program and service filter (a scoped rule is INDETERMINATE)
and the network categories in use (`active_profiles`), so that the profile that applies is known."""

PROFILES = ("Domain", "Private", "Public")
_PROFILE_BITS = {1: "Domain", 2: "Private", 4: "Public"}
_CATEGORIES = {"DomainAuthenticated": "Domain", "Private": "Private", "Public": "Public"}
_DEFAULTS = {Direction.INBOUND: "Block", Direction.OUTBOUND: "Allow"}
_EPHEMERAL = PortRange(1024, 65535)


CMD_EXE_LIMIT = 8191
"""The longest line cmd.exe (testinfra's WinRM shell) accepts."""


def encoded_command(script: str) -> str:
    """`powershell.exe … -EncodedCommand <base64 UTF-16LE>`: one cmd.exe line that runs the whole script.

    Encoding sidesteps cmd.exe quoting entirely; the line must stay under cmd.exe's 8191 characters.
    """
    encoded = base64.b64encode(script.encode("utf-16-le")).decode("ascii")
    line = f"powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand {encoded}"
    if len(line) > CMD_EXE_LIMIT:
        raise ValueError(f"the encoded PowerShell command is {len(line)} characters; cmd.exe takes {CMD_EXE_LIMIT}")
    return line


def firewall_command() -> str:
    """The command whose output `WindowsFirewall.parse` reads."""
    return encoded_command(FIREWALL_SCRIPT)


def _values(raw: Any) -> list[str]:
    """A JSON field that PowerShell may emit as a list, a scalar, null, or {"value": [...], "Count": n}."""
    if isinstance(raw, dict) and "value" in raw:
        raw = raw["value"]
    if raw is None or raw == "":
        return ["Any"]
    items = raw if isinstance(raw, list) else [raw]
    return [str(i).strip() for i in items if str(i).strip()] or ["Any"]


def _addresses(values: Sequence[str], known: Mapping[str, Sequence[AddressRange]]) -> AddressSet:
    """'Any', a host, CIDR, 'a/255.255.255.0', 'a-b', or a keyword (LocalSubnet, Internet, …)."""
    if any(v.lower() in ("any", "*") for v in values):
        return AddressSet()
    ranges: list[AddressRange] = []
    unresolved: list[str] = []
    for value in values:
        try:
            ranges.append(AddressRange.parse(value))
        except ValueError:
            resolved = known.get(value) or known.get(value.rstrip("46"))
            if resolved is None:
                unresolved.append(f"address keyword {value}")
            else:
                ranges += resolved
    return AddressSet(tuple(ranges), tuple(unresolved))


def _ports(values: Sequence[str]) -> PortSet:
    """'Any', 'N', 'A-B', or a keyword (RPC, RPCEPMap, IPHTTPSIn, PlayToDiscovery, …)."""
    if any(v.lower() == "any" for v in values):
        return PortSet()
    ranges: list[PortRange] = []
    unresolved: list[str] = []
    for value in values:
        try:
            ranges.append(PortRange.parse(value))
        except ValueError:
            unresolved.append(f"port keyword {value}")
    return PortSet(tuple(ranges), tuple(unresolved))


def _profiles_of(raw: Any) -> frozenset[str]:
    """'Any', 'Domain, Private', or the flag number when the script did not cast it."""
    text = str(raw if raw is not None else "Any")
    if text.isdigit():
        bits = int(text)
        return (
            frozenset(PROFILES)
            if bits in (0, 2147483647)
            else frozenset(name for bit, name in _PROFILE_BITS.items() if bits & bit)
        )
    names = {p.strip() for p in text.split(",")}
    return frozenset(PROFILES) if "Any" in names or "All" in names else frozenset(names)


@dataclass(frozen=True)
class FirewallRule:
    """One enabled rule with its filters, as the script lists it."""

    name: str
    display_name: str
    direction: Direction
    allow: bool
    profiles: frozenset[str]
    protocol: str
    local_port: tuple[str, ...]
    remote_port: tuple[str, ...]
    local_address: tuple[str, ...]
    remote_address: tuple[str, ...]
    program: str = "Any"
    service: str = "Any"

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> FirewallRule:
        direction = {
            "inbound": Direction.INBOUND,
            "1": Direction.INBOUND,
            "outbound": Direction.OUTBOUND,
            "2": Direction.OUTBOUND,
        }[str(raw["Direction"]).lower()]
        action = str(raw["Action"]).lower()
        if action not in ("allow", "block", "2", "4"):
            raise ValueError(f"Windows Firewall rule {raw.get('Name')!r}: unknown action {raw['Action']!r}")
        return cls(
            str(raw["Name"]),
            str(raw.get("DisplayName") or raw["Name"]),
            direction,
            action in ("allow", "2"),
            _profiles_of(raw.get("Profile")),
            str(raw.get("Protocol") or "Any"),
            tuple(_values(raw.get("LocalPort"))),
            tuple(_values(raw.get("RemotePort"))),
            tuple(_values(raw.get("LocalAddress"))),
            tuple(_values(raw.get("RemoteAddress"))),
            str(raw.get("Program") or "Any"),
            str(raw.get("Service") or "Any"),
        )

    @property
    def text(self) -> str:
        def show(values: Sequence[str]) -> str:
            return ",".join(values)

        return (
            f"{self.direction.value.capitalize()} {'Allow' if self.allow else 'Block'} {self.protocol} "
            f"LocalPort={show(self.local_port)} RemotePort={show(self.remote_port)} "
            f"LocalAddress={show(self.local_address)} RemoteAddress={show(self.remote_address)} "
            f"Profile={','.join(sorted(self.profiles))}"
            + (f" Program={self.program}" if self.program != "Any" else "")
            + (f" Service={self.service}" if self.service != "Any" else "")
        )

    def criteria(self, known: Mapping[str, Sequence[AddressRange]]) -> Criteria:
        """Criteria in flow terms: inbound local = destination, outbound local = source."""
        inbound = self.direction is Direction.INBOUND
        local, remote = _addresses(self.local_address, known), _addresses(self.remote_address, known)
        target_port = _ports(self.local_port if inbound else self.remote_port)
        source_port = _ports(self.remote_port if inbound else self.local_port)
        unknown = [
            f"{key} {value}" for key, value in (("Program", self.program), ("Service", self.service)) if value != "Any"
        ]
        if source_port.test(_EPHEMERAL) is not True:
            unknown.append(f"source port {','.join(self.remote_port if inbound else self.local_port)}")
        protocol = self.protocol.lower()
        protocols = None if protocol == "any" else frozenset({{"6": "tcp", "17": "udp"}.get(protocol, protocol)})
        return Criteria(
            sources=remote if inbound else local,
            destinations=local if inbound else remote,
            ports=target_port,
            protocols=protocols,
            unknown=tuple(unknown),
        )


@dataclass(frozen=True)
class Profile:
    name: str
    enabled: bool
    default_inbound: str
    default_outbound: str

    def default(self, direction: Direction) -> str:
        """The profile's default action; NotConfigured means Windows' own default."""
        value = self.default_inbound if direction is Direction.INBOUND else self.default_outbound
        return _DEFAULTS[direction] if value in ("NotConfigured", "", "0") else value


@dataclass
class WindowsFirewall:
    """Profiles, the profiles in use, and the enabled rules of the active store."""

    profiles: list[Profile]
    rules: list[FirewallRule]
    active_profiles: frozenset[str] | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str | Mapping[str, Any], *, active_profiles: Collection[str] | None = None) -> WindowsFirewall:
        """Read the script's JSON; `active_profiles` (Domain/Private/Public) overrides what it lists."""
        doc = json.loads(text) if isinstance(text, str) else text
        raw_profiles = doc.get("profiles") or []
        raw_profiles = raw_profiles if isinstance(raw_profiles, list) else [raw_profiles]
        profiles = [
            Profile(
                str(p["Name"]),
                str(p.get("Enabled", "True")) not in ("False", "0"),
                str(p.get("DefaultInboundAction", "NotConfigured")),
                str(p.get("DefaultOutboundAction", "NotConfigured")),
            )
            for p in raw_profiles
        ]
        notes = []
        if not profiles:
            profiles = [Profile(name, True, "NotConfigured", "NotConfigured") for name in PROFILES]
            notes.append("no profiles listed: every profile assumed enabled with Windows' default actions")
        raw_rules = doc.get("rules") or []
        rules = [FirewallRule.from_json(r) for r in (raw_rules if isinstance(raw_rules, list) else [raw_rules])]
        if rules and all("Program" not in r for r in (raw_rules if isinstance(raw_rules, list) else [raw_rules])):
            notes.append("the listing has no program/service filters: rules assumed to apply to every program")
        listed_active = doc.get("active_profiles")
        active = (
            active_profiles
            if active_profiles is not None
            else ([_CATEGORIES.get(c, c) for c in _values(listed_active)] if listed_active else None)
        )
        return cls(profiles, rules, frozenset(active) if active is not None else None, notes)

    def evaluate(self, flow: Flow, *, local_subnets: Sequence[str] = ()) -> Verdict:
        """The verdict for `flow`; `local_subnets` resolves the LocalSubnet keyword when known."""
        known = {"LocalSubnet": tuple(AddressRange.parse(s) for s in local_subnets)} if local_subnets else {}
        candidates = [p for p in self.profiles if self.active_profiles is None or p.name in self.active_profiles]
        if not candidates:
            return Verdict(flow, None, notes=(f"no listed profile is active ({sorted(self.active_profiles or [])})",))
        verdicts = [(p, self._evaluate_profile(flow, p, known)) for p in candidates]
        outcomes = {v.allowed for _, v in verdicts}
        if len(outcomes) == 1:
            return verdicts[0][1]
        said = tuple(f"{p.name} profile: {v.outcome} by {v.reason}" for p, v in verdicts)
        worst = next(v for _, v in verdicts if v.allowed is not True)
        return Verdict(
            flow,
            None,
            worst.decided_by,
            worst.policy,
            worst.anchor,
            (
                "the profiles disagree and which one the network is in is not known "
                "(the listing has no active_profiles)",
                *said,
            ),
        )

    def _evaluate_profile(self, flow: Flow, profile: Profile, known: Mapping[str, Sequence[AddressRange]]) -> Verdict:
        if not profile.enabled:
            return Verdict(flow, True, policy=f"the firewall is off in the {profile.name} profile")
        rules = [r for r in self.rules if r.direction is flow.direction and profile.name in r.profiles]
        entries = [
            Entry(r.criteria(known), r.allow, RuleRef(r.text, f"rule '{r.display_name}' ({r.name})"), Anchor((r.name,)))
            for r in sorted(rules, key=lambda r: r.allow)  # Block rules first: block beats allow
        ]
        default = profile.default(flow.direction)
        which = "inbound" if flow.direction is Direction.INBOUND else "outbound"
        fallback = Fallback(default == "Allow", f"{profile.name} profile default {which} action {default}", Anchor(()))
        ordered = OrderedRules(entries, fallback, tuple(self.notes))
        return evaluate_cells(flow, ordered.cuts(), ordered.decide)


def evaluate_windows(listing: str, flow: Flow) -> Verdict:
    """Shortcut: parse the script's JSON and evaluate one flow."""
    return WindowsFirewall.parse(listing).evaluate(flow)
