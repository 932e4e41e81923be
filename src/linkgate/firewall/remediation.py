"""The command that opens a flow a firewall does not allow, in that firewall's own syntax.

Each function takes the Verdict an evaluator returned and writes the command(s) that would make the
flow pass: the opening rule goes *before* the rule that decided against it (nft `insert … position
<handle>`, `iptables -I <chain> <n>`, `ufw insert <n>`, an NSG priority below the deny, a firewalld
rich rule with a priority ahead of the deny phase), or is appended when only a policy decided. Windows
block rules beat every allow rule, so they are named for disabling first. Several commands are
separated by newlines. Nothing here runs anything.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence

from linkgate.firewall.flows import AddressRange, Anchor, Direction, Flow, Verdict
from linkgate.firewall.nsg import Nsg, free_priority


def _failing(verdict: Verdict) -> tuple[Verdict, ...]:
    failing = verdict.failing()
    if not failing:
        raise ValueError(f"nothing to open: {verdict}")
    return failing


def _earliest(anchors: Iterable[Anchor | None]) -> dict[tuple[str, ...], Anchor]:
    """Per scope, the anchor of the earliest deciding rule (an anchor without index only if none has one)."""
    chosen: dict[tuple[str, ...], Anchor] = {}
    for anchor in anchors:
        if anchor is None:
            continue
        known = chosen.get(anchor.scope)
        if known is None or (anchor.index is not None and (known.index is None or anchor.index < known.index)):
            chosen[anchor.scope] = anchor
    return chosen


def _is_any(r: AddressRange) -> bool:
    return r == AddressRange.everything(r.version)


def _cidrs(r: AddressRange) -> list[str]:
    """The range as CIDR networks, hosts without /32 — for firewalls that take no arbitrary ranges."""
    return [str(n.network_address) if n.num_addresses == 1 else str(n) for n in r.networks()]


def _ports(flow: Flow, separator: str = "-") -> str:
    return str(flow.ports).replace("-", separator)


def nft_command(verdict: Verdict) -> str:
    """`nft insert rule <family> <table> <chain> position <handle> ip saddr … tcp dport … accept`, per chain."""
    flow = verdict.flow
    ip = "ip" if flow.version == 4 else "ip6"
    parts = [
        f"{ip} {field} {r}" for field, r in (("saddr", flow.source), ("daddr", flow.destination)) if not _is_any(r)
    ]
    match = " ".join([*parts, f"{flow.protocol} dport {flow.ports} accept"])
    commands = []
    for scope, anchor in _earliest(v.anchor for v in _failing(verdict)).items():
        where = " ".join(shlex.quote(s) for s in scope)
        if anchor.handle is not None:
            commands.append(f"nft insert rule {where} position {anchor.handle} {match}")
        else:
            commands.append(f"nft add rule {where} {match}")
    return "\n".join(commands)


def iptables_command(verdict: Verdict) -> str:
    """`iptables -I <chain> <n> -s … -d … -p tcp --dport … -j ACCEPT` (ip6tables for IPv6), per chain."""
    flow = verdict.flow
    tool = "iptables" if flow.version == 4 else "ip6tables"
    parts = []
    for flag, side, r in (("-s", "src", flow.source), ("-d", "dst", flow.destination)):
        if _is_any(r):
            continue
        cidrs = _cidrs(r)
        parts.append(f"{flag} {cidrs[0]}" if len(cidrs) == 1 else f"-m iprange --{side}-range {r.first}-{r.last}")
    parts.append(f"-p {flow.protocol} -m {flow.protocol} --dport {_ports(flow, ':')} -j ACCEPT")
    match = " ".join(parts)
    commands = []
    for scope, anchor in _earliest(v.anchor for v in _failing(verdict)).items():
        table, chain = scope
        table_flag = "" if table == "filter" else f"-t {table} "
        where = f"-I {chain} {anchor.index}" if anchor.index is not None else f"-A {chain}"
        commands.append(f"{tool} {table_flag}{where} {match}")
    return "\n".join(commands)


def firewalld_command(verdict: Verdict) -> str:
    """`firewall-cmd --permanent --zone=<z> --add-rich-rule='rule …' && firewall-cmd --reload`.

    When a rich rule with priority p denied the flow, the accept rule gets priority min(p, 0) - 1 so
    that it runs before it; otherwise it goes in with the default priority (allow phase).
    """
    flow = verdict.flow
    if flow.direction is Direction.OUTBOUND:
        raise ValueError("firewalld zones do not filter outbound traffic: there is nothing to open")
    family = "ipv4" if flow.version == 4 else "ipv6"
    commands = []
    for scope, anchor in list(_earliest(v.anchor for v in _failing(verdict)).items()) or [((), Anchor(()))]:
        zone = f" --zone={shlex.quote(scope[0])}" if scope else ""
        priority = f' priority="{min(anchor.index, 0) - 1}"' if anchor.index is not None else ""
        for source in [None] if _is_any(flow.source) else _cidrs(flow.source):
            rule = f'rule{priority} family="{family}"' + (f' source address="{source}"' if source else "")
            rule += f' port port="{flow.ports}" protocol="{flow.protocol}" accept'
            commands.append(f"firewall-cmd --permanent{zone} --add-rich-rule={shlex.quote(rule)}")
    return " && ".join(commands) + " && firewall-cmd --reload"


def ufw_command(verdict: Verdict) -> str:
    """`ufw insert <n> allow [out] from <src> to <dst> port <ports> proto tcp` (`ufw allow …` when appended)."""
    flow = verdict.flow
    anchors = [a for a in _earliest(v.anchor for v in _failing(verdict)).values() if a.index is not None]
    verb = f"ufw insert {min(a.index for a in anchors if a.index is not None)} allow" if anchors else "ufw allow"
    out = " out" if flow.direction is Direction.OUTBOUND else ""
    commands = []
    for source in ["any"] if _is_any(flow.source) else _cidrs(flow.source):
        for destination in ["any"] if _is_any(flow.destination) else _cidrs(flow.destination):
            commands.append(
                f"{verb}{out} from {source} to {destination} port {_ports(flow, ':')} proto {flow.protocol}"
            )
    return "\n".join(commands)


def windows_command(verdict: Verdict, *, display_name: str | None = None) -> str:
    """`New-NetFirewallRule … -Action Allow` (LocalPort inbound, RemotePort outbound), after disabling the
    Block rules that decided against the flow (block beats allow: an allow rule alone cannot open it)."""
    flow = verdict.flow
    inbound = flow.direction is Direction.INBOUND
    commands = [
        f"Disable-NetFirewallRule -Name {_ps_quote(v.anchor.scope[0])}"
        for v in _failing(verdict)
        if v.allowed is False and v.decided_by is not None and v.anchor is not None and v.anchor.scope
    ]
    name = display_name or f"linkgate MI link {flow.protocol.upper()} {flow.ports} {flow.direction.value}"
    remote = flow.source if inbound else flow.destination
    rule = (
        f"New-NetFirewallRule -DisplayName {_ps_quote(name)} -Direction {'Inbound' if inbound else 'Outbound'} "
        f"-Action Allow -Profile Any -Protocol {flow.protocol.upper()} "
        f"-{'LocalPort' if inbound else 'RemotePort'} {flow.ports}"
    )
    if not _is_any(remote):
        rule += f" -RemoteAddress {remote}"
    return "\n".join([*dict.fromkeys(commands), rule])


def _ps_quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def nsg_command(verdict: Verdict, nsgs: Sequence[Nsg], *, rule_name: str | None = None) -> str:
    """`az network nsg rule create … --priority <p> --access Allow …` in each NSG that denied the flow,
    with the highest free priority below the deciding deny (so the new rule is processed before it)."""
    flow = verdict.flow
    by_name = {n.name: n for n in nsgs}
    direction = "Inbound" if flow.direction is Direction.INBOUND else "Outbound"
    name = rule_name or f"allow-milink-{flow.direction.value}-{_ports(flow)}"
    commands = []
    for scope, anchor in _earliest(v.anchor for v in _failing(verdict)).items():
        nsg = by_name.get(scope[0])
        if nsg is None:
            raise ValueError(f"the verdict was decided in NSG {scope[0]}, which was not passed")
        priority = free_priority(nsg, flow.direction, anchor.index if anchor.index is not None else 4097)
        commands.append(
            " ".join(
                [
                    f"az network nsg rule create -g {shlex.quote(nsg.resource_group)}",
                    f"--nsg-name {shlex.quote(nsg.name)} -n {shlex.quote(name)} --priority {priority}",
                    f"--direction {direction} --access Allow --protocol {flow.protocol.capitalize()}",
                    f"--source-address-prefixes {' '.join(_prefixes(flow.source))} --source-port-ranges '*'",
                    f"--destination-address-prefixes {' '.join(_prefixes(flow.destination))}",
                    f"--destination-port-ranges {flow.ports}",
                ]
            )
        )
    return "\n".join(commands)


def _prefixes(r: AddressRange) -> list[str]:
    return ["'*'"] if _is_any(r) else _cidrs(r)
