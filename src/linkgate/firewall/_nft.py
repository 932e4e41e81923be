"""`nft -j list ruleset` → the chain model, with each rule rendered back into nft syntax for evidence.

The JSON schema is libnftables-json(5). Expressions we can read become matches; anything else (fib,
socket, concatenations, `xt` blobs left by iptables-nft) becomes an UnknownMatch, never a guess.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from linkgate.firewall._chains import (
    Action,
    AddressMatch,
    AssumedMatch,
    Chain,
    ConstantMatch,
    FamilyMatch,
    InterfaceMatch,
    Kind,
    Match,
    PortMatch,
    ProtocolMatch,
    Rule,
    Ruleset,
    SourcePortMatch,
    StateMatch,
    UnknownMatch,
)
from linkgate.firewall.flows import AddressRange, PortRange, RuleRef

_FAMILY_VERSION = {"ip": 4, "ip6": 6, "inet": None}
_PORT_PROTOCOLS = {"tcp", "udp", "sctp", "dccp", "udplite", "th"}
_VERDICTS = {
    "accept": Kind.ACCEPT,
    "drop": Kind.DROP,
    "reject": Kind.DROP,
    "return": Kind.RETURN,
    "continue": Kind.CONTINUE,
    "jump": Kind.JUMP,
    "goto": Kind.GOTO,
}
_NON_TERMINAL = {"counter", "log", "mangle", "notrack", "dup", "set", "map", "ct helper"}
_PROTO_NUMBERS = {"6": "tcp", "17": "udp", "1": "icmp", "58": "ipv6-icmp", "132": "sctp"}

Sets = Mapping[tuple[str, str, str], list[Any]]


def render(value: Any) -> str:
    """A JSON expression or statement spelled the way `nft list ruleset` prints it (close enough to read)."""
    if isinstance(value, list):
        return ", ".join(render(v) for v in value)
    if not isinstance(value, dict):
        return str(value).lower() if isinstance(value, bool) else str(value)
    [(key, body)] = value.items() if len(value) == 1 else [("", value)]
    if key == "match":
        op = "" if body["op"] in ("==", "in") else f"{body['op']} "
        return f"{render(body['left'])} {op}{render(body['right'])}"
    if key == "payload":
        return f"{body['protocol']} {body['field']}"
    if key in ("meta", "ct"):
        return (
            body["key"]
            if key == "meta" and body["key"] in ("iifname", "oifname", "iif", "oif")
            else f"{key} {body['key']}"
        )
    if key == "fib":
        return f"fib {' . '.join(body.get('flags', []))} {body['result']}"
    if key == "prefix":
        return f"{body['addr']}/{body['len']}"
    if key == "range":
        return f"{render(body[0])}-{render(body[1])}"
    if key == "set" and isinstance(body, list):
        return "{ " + ", ".join(render(e) for e in body) + " }"
    if key == "elem":
        return render(body["val"])
    if key in ("accept", "drop", "return", "continue", "counter", "notrack") and not body:
        return key
    if key == "counter":
        return "counter"
    if key in ("jump", "goto"):
        return f"{key} {body['target']}"
    if key == "reject":
        how = " ".join(str(body[k]) for k in ("type", "expr") if body and k in body)
        return "reject" + (f" with {how}" if how else "")
    if key == "log":
        return "log" + (f' prefix "{body["prefix"]}"' if body and "prefix" in body else "")
    if key == "limit":
        unit = f" {body['rate_unit']}" if "rate_unit" in body else ""
        burst = f" burst {body['burst']} {body.get('burst_unit', 'packets')}" if body.get("burst") else ""
        return f"limit rate {'over ' if body.get('inv') else ''}{body['rate']}{unit}/{body['per']}{burst}"
    if key == "quota":
        return f"quota {'over ' if body.get('inv') else ''}{body['val']} {body.get('val_unit', 'bytes')}"
    if key == "vmap":
        entries = ", ".join(f"{render(k)} : {render(v)}" for k, v in _items(body["data"]))
        return f"{render(body['key'])} vmap {{ {entries} }}"
    return json.dumps(value, separators=(",", ":"))


def _items(data: Any) -> list[Any]:
    return data["set"] if isinstance(data, dict) and "set" in data else data if isinstance(data, list) else [data]


def _elements(right: Any, sets: Sets, scope: tuple[str, str]) -> list[Any] | None:
    """The elements a right-hand side stands for (a value, an anonymous set, a named set); None: unknown."""
    if isinstance(right, str) and right.startswith("@"):
        found = sets.get((*scope, right[1:]))
        return (
            None if found is None else [e["elem"]["val"] if isinstance(e, dict) and "elem" in e else e for e in found]
        )
    if isinstance(right, dict) and "set" in right:
        return list(right["set"])
    return list(right) if isinstance(right, list) else [right]


def _address(e: Any) -> AddressRange:
    if isinstance(e, dict) and "prefix" in e:
        return AddressRange.parse(f"{e['prefix']['addr']}/{e['prefix']['len']}")
    if isinstance(e, dict) and "range" in e:
        return AddressRange.parse(f"{e['range'][0]}-{e['range'][1]}")
    if isinstance(e, str):
        return AddressRange.parse(e)
    raise ValueError(f"not an address element: {e!r}")


def _port(e: Any) -> PortRange:
    if isinstance(e, dict) and "range" in e:
        return PortRange(int(e["range"][0]), int(e["range"][1]))
    if isinstance(e, int) or (isinstance(e, str) and e.isdigit()):
        return PortRange(int(e))
    raise ValueError(f"not a port element: {e!r}")


def _words(elements: list[Any]) -> frozenset[str]:
    return frozenset(_PROTO_NUMBERS.get(str(e), str(e)) for e in elements)


def _match(body: Mapping[str, Any], sets: Sets, scope: tuple[str, str]) -> list[Match]:
    """One `match` expression → the matches it amounts to (an implied protocol or family included)."""
    left, op, spelled = body["left"], body["op"], render({"match": body})
    negate = op == "!="
    if op not in ("==", "!=", "in"):
        return [UnknownMatch(spelled)]
    elements = _elements(body["right"], sets, scope)
    if elements is None:
        return [UnknownMatch(f"{spelled} (set not in the listing)")]
    try:
        return _typed_match(left, elements, negate, spelled)
    except (ValueError, KeyError, TypeError):
        return [UnknownMatch(spelled)]


def _typed_match(left: Any, elements: list[Any], negate: bool, spelled: str) -> list[Match]:
    if "payload" in left:
        proto, field = left["payload"]["protocol"], left["payload"]["field"]
        if proto in ("ip", "ip6") and field in ("saddr", "daddr"):
            version = 4 if proto == "ip" else 6
            which = "source" if field == "saddr" else "destination"
            return [AddressMatch(which, tuple(_address(e) for e in elements), negate, version)]
        if proto in ("ip", "ip6") and field in ("protocol", "nexthdr"):
            return [FamilyMatch(4 if proto == "ip" else 6), ProtocolMatch(_words(elements), negate)]
        if proto in _PORT_PROTOCOLS and field in ("dport", "sport"):
            implied = [] if proto == "th" else [ProtocolMatch(frozenset({proto}))]
            ports = tuple(_port(e) for e in elements)
            return [*implied, PortMatch(ports, negate) if field == "dport" else SourcePortMatch(ports, negate)]
        if proto == "tcp" and field == "flags":
            return [ProtocolMatch(frozenset({"tcp"})), ConstantMatch(("syn" in _words(elements)) != negate)]
    if "meta" in left:
        key = left["meta"]["key"]
        if key == "l4proto":
            return [ProtocolMatch(_words(elements), negate)]
        if key == "nfproto":
            versions = {"ipv4": 4, "ipv6": 6}
            return [FamilyMatch(versions[str(elements[0])], negate)] if len(elements) == 1 else [UnknownMatch(spelled)]
        if key in ("iifname", "oifname", "iif", "oif"):
            return [InterfaceMatch(tuple(str(e) for e in elements), negate, spelled)]
    if "ct" in left and left["ct"]["key"] == "state":
        return [StateMatch(_words(elements), negate)]
    if "ct" in left and left["ct"]["key"] == "status":  # no status bit (dnat, assured …) is set on a first packet
        return [AssumedMatch(spelled, negate)]
    return [UnknownMatch(spelled)]


def _vmap_rules(
    body: Mapping[str, Any],
    before: list[Match],
    sets: Sets,
    scope: tuple[str, str],
    make: Callable[[list[Match], Action], Rule],
) -> list[Rule]:
    """A verdict map: one rule per element, each = the preceding matches + key == element → its verdict."""
    rules: list[Rule] = []
    for key, verdict in _items(body["data"]):
        [(word, arg)] = verdict.items()
        kind = _VERDICTS.get(word, Kind.UNKNOWN)
        action = Action(kind, arg["target"] if kind in (Kind.JUMP, Kind.GOTO) else "")
        keyed = _match({"op": "==", "left": body["key"], "right": key}, sets, scope)
        rules.append(make([*before, *keyed], action))
    return rules


def _rule(raw: Mapping[str, Any], index: int, chain: Chain, sets: Sets) -> list[Rule]:
    scope = (raw["family"], raw["table"])
    exprs: list[Any] = raw.get("expr", [])
    text = " ".join(render(e) for e in exprs)
    ref = RuleRef(text, f"{chain.where} rule #{index} (handle {raw.get('handle')})")

    def make(matches: list[Match], action: Action) -> Rule:
        return Rule(tuple(matches), action, ref, index, raw.get("handle"))

    matches: list[Match] = []
    for expr in exprs:
        [(key, body)] = expr.items()
        if key == "match":
            matches += _match(body, sets, scope)
        elif key == "vmap":
            return _vmap_rules(body, matches, sets, scope, make)
        elif key in _VERDICTS:
            kind = _VERDICTS[key]
            return [make(matches, Action(kind, body["target"] if kind in (Kind.JUMP, Kind.GOTO) else ""))]
        elif key == "limit":  # a new connection's first packet is within any rate: `limit rate over` misses it
            matches.append(AssumedMatch(render(expr), not (body or {}).get("inv", False)))
        elif key == "xt" and body.get("type") == "target":
            return [make(matches, Action(Kind.UNKNOWN))]
        elif key not in _NON_TERMINAL:
            matches.append(
                UnknownMatch(
                    render(expr)
                    if key != "xt"
                    else f"xt {body.get('type')} {body.get('name')} "
                    "(an iptables-nft rule: evaluate iptables-save instead)"
                )
            )
    return [make(matches, Action(Kind.CONTINUE))]


def parse_nft_json(listing: str | Mapping[str, Any]) -> Ruleset:
    """Build the chain model from `nft -j list ruleset` output (text or already decoded)."""
    doc = json.loads(listing) if isinstance(listing, str) else listing
    items: list[Mapping[str, Any]] = doc["nftables"]
    sets: dict[tuple[str, str, str], list[Any]] = {}
    chains: dict[tuple[str, ...], Chain] = {}
    notes: list[str] = []
    for item in items:
        if "set" in item or "map" in item:
            s = item.get("set") or item["map"]
            sets[(s["family"], s["table"], s["name"])] = s.get("elem", [])
            if not isinstance(s.get("type"), str):
                sets.pop((s["family"], s["table"], s["name"]))  # concatenated keys: left unknown
        elif "chain" in item:
            c = item["chain"]
            family = c["family"]
            if family not in _FAMILY_VERSION:
                if c.get("hook"):
                    notes.append(f"{family} table {c['table']} chain {c['name']} (hook {c['hook']}) not evaluated")
                continue
            chain = Chain(
                c["name"],
                (family, c["table"], c["name"]),
                f"table {family} {c['table']} chain {c['name']}",
                hook=c.get("hook"),
                priority=int(c.get("prio", 0)),
                policy=c.get("policy", "accept"),
                version=_FAMILY_VERSION[family],
            )
            if chain.hook and c.get("type") == "nat":
                notes.append(f"{chain.where} is a nat chain: not evaluated as a filter")
                chain.hook = None
            chains[chain.scope] = chain
    for item in items:
        if "rule" in item:
            r = item["rule"]
            owner = chains.get((r["family"], r["table"], r["chain"]))
            if owner is not None:
                owner.rules += _rule(r, len({x.index for x in owner.rules}) + 1, owner, sets)
    return Ruleset(list(chains.values()), tuple(notes))
