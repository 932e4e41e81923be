"""`iptables-save` (or `iptables -S`) text → the chain model; only the filter table decides here.

Each `-A` line is tokenised like a shell would and read option by option. Options we know become
matches; a match module we cannot see into (ipset, owner, addrtype, recent …) becomes an UnknownMatch.
"""

from __future__ import annotations

import shlex
from collections.abc import Collection, Iterator

from linkgate.firewall._chains import (
    Action,
    AddressMatch,
    AssumedMatch,
    Chain,
    ConstantMatch,
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

_BUILTIN_HOOKS = {"INPUT": "input", "OUTPUT": "output", "FORWARD": "forward"}
_TERMINAL = {"ACCEPT": Kind.ACCEPT, "DROP": Kind.DROP, "REJECT": Kind.DROP, "RETURN": Kind.RETURN}
_NON_TERMINAL = {
    "LOG",
    "NFLOG",
    "ULOG",
    "MARK",
    "CONNMARK",
    "CT",
    "TRACE",
    "AUDIT",
    "CLASSIFY",
    "DSCP",
    "TOS",
    "TCPMSS",
    "TEE",
    "SET",
    "CHECKSUM",
}
_TRANSPARENT_MODULES = {"tcp", "udp", "comment", "state", "conntrack", "multiport", "iprange", "limit"}
_VALUED = {
    *("-s", "--source", "--src-range", "-d", "--destination", "--dst-range", "-p", "--protocol"),
    *("--dport", "--destination-port", "--dports", "--destination-ports"),
    *("--sport", "--source-port", "--sports", "--source-ports"),
    *("--state", "--ctstate", "-i", "--in-interface", "-o", "--out-interface"),
}
"""Options whose value this parser reads; any other option is a module's, and not evaluated."""


def _ports(text: str) -> tuple[PortRange, ...]:
    return tuple(PortRange.parse(p) for p in text.split(","))


def _addresses(text: str) -> tuple[AddressRange, ...]:
    return tuple(AddressRange.parse(a) for a in text.split(","))


def _tcp_flags(mask: str, comparison: str) -> bool:
    """--tcp-flags MASK COMP against a SYN: the flags of MASK that are set must be exactly COMP."""

    def flags(text: str) -> set[str]:
        words = set(text.upper().split(","))
        return {"SYN", "ACK", "FIN", "RST", "URG", "PSH"} if "ALL" in words else words - {"NONE"}

    return ({"SYN"} & flags(mask)) == flags(comparison)


class _Tokens:
    """The words of one rule, with the `!` that may precede an option or its value."""

    def __init__(self, words: list[str]) -> None:
        self.words = words
        self.i = 0

    def __iter__(self) -> Iterator[tuple[str, bool]]:
        while self.i < len(self.words):
            negate = self.words[self.i] == "!"
            self.i += negate
            option = self.words[self.i]
            self.i += 1
            yield option, negate

    def value(self) -> tuple[str, bool]:
        """The option's argument; an old-style `-s ! x` negation is returned as True."""
        negate = self.words[self.i] == "!" if self.i < len(self.words) else False
        self.i += negate
        if self.i >= len(self.words):
            raise ValueError("an option lacks its value")
        word = self.words[self.i]
        self.i += 1
        return word, negate

    def rest_of_option(self) -> list[str]:
        """Arguments of an option we do not know: every word up to the next option."""
        taken: list[str] = []
        while self.i < len(self.words) and not self.words[self.i].startswith("-") and self.words[self.i] != "!":
            taken.append(self.words[self.i])
            self.i += 1
        return taken


def _rule_matches(words: list[str], chains: Collection[str]) -> tuple[list[Match], Action]:
    matches: list[Match] = []
    action = Action(Kind.CONTINUE)
    tokens = _Tokens(words)
    for option, negate in tokens:
        if option in ("-j", "--jump", "-g", "--goto"):
            target, _ = tokens.value()
            tokens.i = len(tokens.words)  # what follows -j are the target's own options
            if option in ("-g", "--goto"):
                action = Action(Kind.GOTO, target)
            elif target in _TERMINAL:
                action = Action(_TERMINAL[target])
            elif target in _NON_TERMINAL:
                action = Action(Kind.CONTINUE)
            elif target in chains:
                action = Action(Kind.JUMP, target)
            else:
                action = Action(Kind.UNKNOWN, target)  # NFQUEUE, SNAT …: targets of modules we do not model
            continue
        matches += _option(option, negate, tokens)
    return matches, action


def _option(option: str, negate: bool, tokens: _Tokens) -> list[Match]:
    if option in ("-m", "--match"):
        module, _ = tokens.value()
        return [] if module in _TRANSPARENT_MODULES else [UnknownMatch(f"-m {module}")]
    if option == "--syn":
        return [ConstantMatch(not negate)]
    if option == "--tcp-flags":
        mask, _ = tokens.value()
        comparison, _ = tokens.value()
        return [ConstantMatch(_tcp_flags(mask, comparison) != negate)]
    if option in ("--comment",):
        tokens.value()
        return []
    if option in ("--limit", "--limit-burst"):
        value, _ = tokens.value()
        return [AssumedMatch(f"{option} {value}")] if option == "--limit" else []
    if not option.startswith("-") or option in ("-f", "--fragment"):
        return [UnknownMatch(option)]
    if option not in _VALUED:  # a module's option: its arguments, if any, run up to the next option
        return [UnknownMatch(" ".join([option, *tokens.rest_of_option()]))]
    value, late_negate = tokens.value()
    negate = negate or late_negate
    if option in ("-s", "--source", "--src-range"):
        return [AddressMatch("source", _addresses(value), negate)]
    if option in ("-d", "--destination", "--dst-range"):
        return [AddressMatch("destination", _addresses(value), negate)]
    if option in ("-p", "--protocol"):
        names = {"6": "tcp", "17": "udp", "1": "icmp"}
        return [ProtocolMatch(frozenset({names.get(value, value.lower())}), negate)]
    if option in ("--dport", "--destination-port", "--dports", "--destination-ports"):
        return [PortMatch(_ports(value), negate)]
    if option in ("--sport", "--source-port", "--sports", "--source-ports"):
        return [SourcePortMatch(_ports(value), negate)]
    if option in ("--state", "--ctstate"):
        return [StateMatch(frozenset(value.lower().split(",")), negate)]
    return [InterfaceMatch((value.rstrip("+"),), negate, f"{'! ' if negate else ''}{option} {value}")]


def parse_iptables_save(text: str, *, version: int = 4) -> Ruleset:
    """Build the chain model of the filter table from `iptables-save` or `iptables -S` output.

    `version` is 4 for iptables, 6 for ip6tables: the rules apply only to flows of that IP version.
    """
    chains: dict[str, Chain] = {}
    notes: list[str] = []
    table = "filter"

    def chain(name: str) -> Chain:
        if name not in chains:
            hook = _BUILTIN_HOOKS.get(name)
            chains[name] = Chain(
                name, (table, name), f"{table} {name}", hook=hook if table == "filter" else None, version=version
            )
        return chains[name]

    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            table = line[1:]
            continue
        words = shlex.split(line)
        if table != "filter":
            if words[0] in ("-A", "--append") and any(w in ("DROP", "REJECT") for w in words):
                notes.append(f"the {table} table drops packets too (line {number}); only filter is evaluated")
            continue
        if line.startswith(":"):
            chain(words[0][1:]).policy = words[1].lower() if words[1] != "-" else "accept"
        elif words[0] in ("-P", "--policy"):
            chain(words[1]).policy = words[2].lower()
        elif words[0] in ("-N", "--new-chain"):
            chain(words[1])
        elif words[0] in ("-A", "--append"):
            target = chain(words[1])
            index = sum(1 for _ in target.rules) + 1
            try:
                matches, action = _rule_matches(words[2:], chains)
            except ValueError as e:
                raise ValueError(f"iptables listing line {number}: {e}: {line}") from None
            target.rules.append(Rule(tuple(matches), action, RuleRef(line, f"{table} {words[1]} rule #{index}"), index))
        else:
            raise ValueError(f"iptables listing line {number}: not an iptables-save or iptables -S line: {line}")
    return Ruleset(list(chains.values()), tuple(notes))
