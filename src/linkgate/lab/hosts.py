"""The lab's machines: a Linux SQL Server host, the managed instance and the Azure endpoints, each in a netns.

`LabHosts(load_hosts(raw)).start()` builds, for the `hosts:` section of a scenario:

- a router namespace (the only place with IPv4 forwarding) linked to the root namespace by one veth
  pair (the "uplink"), and one namespace per machine behind it; the root namespace gets a /32 route per
  machine address through the uplink, more specific than the blackhole `198.18.0.0/15` installed first;
- per machine: its addresses, the listeners of its endpoints (accept, then close), real nftables or
  iptables rules, and — when `ssh: true` — an sshd in a private mount namespace, where /etc/hosts,
  /etc/resolv.conf, /var/opt/mssql (with mssql.conf), /root and the `systemctl`, `df` and `lsblk`
  stand-ins are the lab's files, so testinfra over ssh sees them exactly where it looks on a real host,
  and nothing touches the real /etc or /var;
- a client key (ed25519) for root, a known_hosts and an ssh_config in the lab's state directory.

There is no systemd here. The `systemctl` stand-in answers for `mssql-server` from what is real: the
unit is active when a process listens on the SQL port inside that machine's namespace (the lab's TDS
server serves there), and enabled as the scenario says (that is configuration, not a process). The `df` and
`lsblk` stand-ins report the scenario's `log_volume` for /var/opt/mssql (a folder on this machine's own disk
otherwise) and hand every other path and device to the real tools.

Every name carries the lab id (`lg-<id>-<machine>` namespaces, `lg<id>up` veth, the state directory
`/var/tmp/linkgate-labs/<id>`), so two labs never collide and one that would need an address another
already routes refuses to start (`LabConflict`). `stop()` removes everything but the blackhole, and
`cleanup_stale()` removes what a lab that died left behind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import fcntl
import ipaddress
import os
import re
import secrets
import selectors
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from linkgate.firewall.flows import PortRange
from linkgate.lab import netns as nx

MACHINE_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
LAB_ID = re.compile(r"^[0-9a-f]{6}$")
NETNS_OF_LAB = re.compile(r"^lg-([0-9a-f]{6})-")
UPLINK_OF_LAB = re.compile(r"^lg([0-9a-f]{6})up$")
READY_TIMEOUT = 5.0
E = TypeVar("E", bound=enum.Enum)
MSSQL_CONF_WRITTEN = dt.datetime(2025, 11, 3, 6, 5, 0)
"""When the lab's mssql.conf was last written, unless a scenario says (`mssql_conf_modified`): before the lab SQL
Server's start (2025-11-03 06:12:41, linkgate.lab.engine.profile.DEFAULT_START), as `mssql-conf set …` followed by
`systemctl restart mssql-server` leaves a real host. Both are local times of this machine (the lab hosts share it)."""


class HostsSpecError(ValueError):
    """A mistake in a scenario's `hosts:` section, naming the key path."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class LabConflict(Exception):
    """Another lab (or something else) already uses an address this lab needs in the root namespace."""


# --- the hosts section ---------------------------------------------------------------------------


class Chain(enum.Enum):
    INPUT = "input"
    OUTPUT = "output"


class Action(enum.Enum):
    ACCEPT = "accept"
    DROP = "drop"
    REJECT = "reject"


class FirewallBackend(enum.Enum):
    """Which tool writes the machine's rules: the same rules in either tool's own form."""

    NFTABLES = "nftables"
    IPTABLES = "iptables"
    NONE = "none"


@dataclass(frozen=True)
class Rule:
    """One filter rule; unset fields match anything. `established` matches ct state established,related."""

    chain: Chain
    action: Action
    protocol: str | None = None
    dport: PortRange | None = None
    saddr: ipaddress.IPv4Network | None = None
    daddr: ipaddress.IPv4Network | None = None
    iif: str | None = None
    established: bool = False
    comment: str | None = None


@dataclass(frozen=True)
class Firewall:
    backend: FirewallBackend = FirewallBackend.NONE
    input_policy: Action = Action.ACCEPT
    output_policy: Action = Action.ACCEPT
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class MssqlService:
    """What the `systemctl` stand-in reports for mssql-server: enabled (configuration) and the port it watches."""

    enabled: bool = True
    port: int = 1433


@dataclass(frozen=True)
class LogVolume:
    """The block device under /var/opt/mssql, as the machine's `df` and `lsblk` stand-ins report it (HOST-L-04).

    The lab's /var/opt/mssql is a folder on this machine's own disk (4096-byte sectors on one machine, an overlay
    that is no block device in a container), so the real tools would make trace flag 1800's checks depend on
    where the self-tests run. The default is a classic 512-byte-sector disk: there trace flag 1800 matters, as
    the article assumes; a scenario that wants the 4 KB exemption says so.
    """

    device: str = "/dev/sdb1"  # what df names; not under /dev (overlay, tmpfs): no block device, as in a container
    physical: int = 512
    logical: int = 512

    @property
    def block_device(self) -> bool:
        """Whether lsblk answers for it: a /dev path is a disk here; overlay or tmpfs is left to the real lsblk."""
        return self.device.startswith("/dev/")

    @property
    def name(self) -> str:
        """What lsblk's NAME column says: the device's file name (sdb1)."""
        return self.device.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Machine:
    """One lab machine. `address` carries its prefix: the machine's own view of its network."""

    name: str
    address: ipaddress.IPv4Interface
    extra_addresses: tuple[ipaddress.IPv4Address, ...] = ()
    ssh: bool = False
    listeners: tuple[int, ...] = ()
    etc_hosts: Mapping[str, ipaddress.IPv4Address] = field(default_factory=dict)
    mssql_conf: str | None = None
    mssql_conf_modified: dt.datetime = MSSQL_CONF_WRITTEN  # its mtime (local): after SQL's start = restart pending
    mssql_service: MssqlService | None = None
    firewall: Firewall = Firewall()
    gateway_address: ipaddress.IPv4Address | None = None
    log_volume: LogVolume = LogVolume()  # what `df`/`lsblk` say about /var/opt/mssql (machines with ssh only)

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        """The router's address on this machine's link: `gateway:`, else the first host of its network."""
        return self.gateway_address or next(self.address.network.hosts())

    @property
    def addresses(self) -> tuple[ipaddress.IPv4Address, ...]:
        return (self.address.ip, *self.extra_addresses)


@dataclass(frozen=True)
class HostsSpec:
    uplink: ipaddress.IPv4Network
    machines: Mapping[str, Machine]

    def shifted(self, offset: int) -> HostsSpec:
        """The same lab `offset` addresses further (a multiple of BLOCK): every lab address moves, others stay."""
        if offset % BLOCK:
            raise ValueError(f"a lab moves by whole blocks of {BLOCK} addresses, not {offset}")
        return HostsSpec(
            _shift_net(self.uplink, offset), {n: _shift_machine(m, offset) for n, m in self.machines.items()}
        )

    def lab_addresses(self) -> list[ipaddress.IPv4Address]:
        """Every address of the lab range this spec uses (uplink, machines, gateways, names it maps)."""
        found = [self.uplink.network_address, self.uplink.broadcast_address]
        for m in self.machines.values():
            found += [*m.addresses, m.gateway, *m.etc_hosts.values()]
        return [a for a in found if a in nx.LAB_RANGE]


BLOCK = 2048
"""Labs move by /21 blocks: a scenario's addresses must fit in one, and 64 of them fit in 198.18.0.0/15."""


def _shift(address: ipaddress.IPv4Address, offset: int) -> ipaddress.IPv4Address:
    return address + offset if address in nx.LAB_RANGE else address


def _shift_net(network: ipaddress.IPv4Network, offset: int) -> ipaddress.IPv4Network:
    """A lab network moved by `offset`; networks wider than a block (or outside the lab) stay as they are."""
    if network.prefixlen < 21 or not network.subnet_of(nx.LAB_RANGE):
        return network
    return ipaddress.IPv4Network(f"{network.network_address + offset}/{network.prefixlen}")


def _shift_machine(m: Machine, offset: int) -> Machine:
    def rule(r: Rule) -> Rule:
        return replace(r, saddr=r.saddr and _shift_net(r.saddr, offset), daddr=r.daddr and _shift_net(r.daddr, offset))

    return replace(
        m,
        address=ipaddress.IPv4Interface(f"{_shift(m.address.ip, offset)}/{m.address.network.prefixlen}"),
        extra_addresses=tuple(_shift(a, offset) for a in m.extra_addresses),
        etc_hosts={n: _shift(a, offset) for n, a in m.etc_hosts.items()},
        firewall=replace(m.firewall, rules=tuple(rule(r) for r in m.firewall.rules)),
        gateway_address=m.gateway_address and _shift(m.gateway_address, offset),
    )


def load_hosts(raw: Any, key: str = "hosts") -> HostsSpec:
    """Validate the raw `hosts:` mapping of a scenario into a HostsSpec; HostsSpecError names the bad key."""
    top = _mapping(raw, key, {"uplink", "machines"})
    uplink = _network(top.get("uplink", "198.18.0.0/30"), f"{key}.uplink")
    if uplink.prefixlen > 30:
        raise HostsSpecError(f"{key}.uplink", "needs at least a /30 (two addresses)")
    raw_machines = _mapping(top.get("machines"), f"{key}.machines", None)
    if not raw_machines:
        raise HostsSpecError(f"{key}.machines", "expected at least one machine")
    machines = {name: _machine(name, value, f"{key}.machines.{name}") for name, value in raw_machines.items()}
    seen: dict[ipaddress.IPv4Address, str] = {}
    for m in machines.values():
        mine = [(a, m.name) for a in m.addresses] + [(m.gateway, f"the gateway of {m.name}")]
        for a, owner in mine:
            clash = "the uplink" if a in uplink else seen.get(a)
            if clash:
                raise HostsSpecError(f"{key}.machines.{m.name}", f"address {a} ({owner}) collides with {clash}")
            seen[a] = owner
    return HostsSpec(uplink, machines)


MACHINE_KEYS = {
    "address",
    "gateway",
    "extra_addresses",
    "ssh",
    "listeners",
    "etc_hosts",
    "mssql_conf",
    "mssql_conf_modified",
    "mssql_service",
    "firewall",
    "log_volume",
}


def _machine(name: str, value: Any, key: str) -> Machine:
    if not isinstance(name, str) or not MACHINE_NAME.match(name):
        raise HostsSpecError(key, "a machine name is 1-12 lowercase letters and digits, starting with a letter")
    spec = _mapping(value, key, MACHINE_KEYS, required={"address"})
    try:
        address = ipaddress.IPv4Interface(str(spec["address"]))
    except ValueError as e:
        raise HostsSpecError(
            f"{key}.address", f"expected an IPv4 address with prefix, e.g. 198.18.1.10/24 ({e})"
        ) from None
    _in_lab(address.network, f"{key}.address")
    if address.network.prefixlen > 30:
        raise HostsSpecError(f"{key}.address", "the prefix must leave room for the router (at most /30)")
    extras = tuple(_address(a, f"{key}.extra_addresses.[{i}]") for i, a in enumerate(spec.get("extra_addresses", [])))
    gateway = _address(spec["gateway"], f"{key}.gateway") if "gateway" in spec else None
    if gateway is not None and (gateway not in address.network or gateway == address.ip):
        raise HostsSpecError(f"{key}.gateway", f"{gateway} must be another address of {address.network}")
    service = spec.get("mssql_service")
    ssh = _bool(spec.get("ssh", False), f"{key}.ssh")
    if "log_volume" in spec and not ssh:
        raise HostsSpecError(f"{key}.log_volume", "needs ssh: true (the df and lsblk stand-ins answer over ssh)")
    return Machine(
        name=name,
        address=address,
        extra_addresses=extras,
        ssh=ssh,
        listeners=tuple(_port(p, f"{key}.listeners.[{i}]") for i, p in enumerate(spec.get("listeners", []))),
        etc_hosts={
            str(n): _address(a, f"{key}.etc_hosts.{n}", lab_only=False)
            for n, a in _mapping(spec.get("etc_hosts"), f"{key}.etc_hosts", None).items()
        },
        mssql_conf=_text(spec.get("mssql_conf"), f"{key}.mssql_conf"),
        mssql_conf_modified=_local_time(
            spec.get("mssql_conf_modified", MSSQL_CONF_WRITTEN), f"{key}.mssql_conf_modified"
        ),
        mssql_service=_service(service, f"{key}.mssql_service") if service is not None else None,
        firewall=_firewall(spec.get("firewall"), f"{key}.firewall"),
        gateway_address=gateway,
        log_volume=_log_volume(spec.get("log_volume"), f"{key}.log_volume"),
    )


DEVICE = re.compile(r"^/dev/[A-Za-z0-9][A-Za-z0-9_.:/-]{0,62}$")
NOT_BLOCK_DEVICES = ("overlay", "tmpfs")
"""What df names for a filesystem on no block device: a container's root, a RAM disk."""


def _log_volume(value: Any, key: str) -> LogVolume:
    """A source the stand-ins can print verbatim, and sector sizes a disk can have (logical ≤ physical); a source
    that is no block device (overlay, tmpfs) has no sectors to declare."""
    spec = _mapping(value, key, {"device", "physical", "logical"})
    default = LogVolume()
    device = spec.get("device", default.device)
    if device not in NOT_BLOCK_DEVICES and (
        not isinstance(device, str) or not DEVICE.match(device) or device.endswith("/")
    ):
        others = " or ".join(NOT_BLOCK_DEVICES)
        raise HostsSpecError(f"{key}.device", f"expected a device path such as /dev/sdb1, or {others}, got {device!r}")
    if not device.startswith("/dev/"):
        for k in sorted({"physical", "logical"} & spec.keys()):
            raise HostsSpecError(f"{key}.{k}", f"{device} is no block device: it has no sector size to declare")
    physical = _sector(spec.get("physical", default.physical), f"{key}.physical")
    logical = _sector(spec.get("logical", default.logical), f"{key}.logical")
    if logical > physical:
        raise HostsSpecError(f"{key}.logical", f"{logical} is larger than the physical sector size {physical}")
    return LogVolume(device, physical, logical)


def _sector(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in SECTOR_SIZES:
        sizes = ", ".join(map(str, SECTOR_SIZES))
        raise HostsSpecError(key, f"expected a sector size in bytes, one of {sizes}, got {value!r}")
    return value


SECTOR_SIZES = tuple(512 << k for k in range(8))  # 512 … 65536: powers of two, as lsblk reports them


def _service(value: Any, key: str) -> MssqlService:
    spec = _mapping(value, key, {"enabled", "port"})
    return MssqlService(
        _bool(spec.get("enabled", True), f"{key}.enabled"), _port(spec.get("port", 1433), f"{key}.port")
    )


def _firewall(value: Any, key: str) -> Firewall:
    spec = _mapping(value, key, {"backend", "input_policy", "output_policy", "rules"})
    rules = spec.get("rules", [])
    if not isinstance(rules, list):
        raise HostsSpecError(f"{key}.rules", "expected a list of rules")
    policies = {}
    for chain in ("input_policy", "output_policy"):
        policies[chain] = _choice(spec.get(chain, "accept"), f"{key}.{chain}", Action)
        if policies[chain] is Action.REJECT:
            raise HostsSpecError(f"{key}.{chain}", "a chain policy is accept or drop (reject is a rule's action)")
    return Firewall(
        backend=_choice(spec.get("backend", "none"), f"{key}.backend", FirewallBackend),
        input_policy=policies["input_policy"],
        output_policy=policies["output_policy"],
        rules=tuple(_rule(r, f"{key}.rules.[{i}]") for i, r in enumerate(rules)),
    )


def _rule(value: Any, key: str) -> Rule:
    allowed = {"chain", "action", "protocol", "dport", "saddr", "daddr", "iif", "established", "comment"}
    spec = _mapping(value, key, allowed, required={"chain", "action"})
    protocol = spec.get("protocol")
    if protocol not in (None, "tcp", "udp"):
        raise HostsSpecError(f"{key}.protocol", f"expected tcp or udp, got {protocol!r}")
    dport = None
    if "dport" in spec:
        if protocol is None:
            raise HostsSpecError(f"{key}.dport", "a port needs protocol: tcp or udp")
        try:
            dport = PortRange.parse(spec["dport"])
        except ValueError as e:
            raise HostsSpecError(f"{key}.dport", str(e)) from None
    iif = spec.get("iif")
    if iif is not None and (not isinstance(iif, str) or not re.fullmatch(r"[a-z0-9]{1,15}", iif)):
        raise HostsSpecError(f"{key}.iif", f"expected an interface name such as lo, got {iif!r}")
    return Rule(
        chain=_choice(spec["chain"], f"{key}.chain", Chain),
        action=_choice(spec["action"], f"{key}.action", Action),
        protocol=protocol,
        dport=dport,
        saddr=_network(spec["saddr"], f"{key}.saddr") if "saddr" in spec else None,
        daddr=_network(spec["daddr"], f"{key}.daddr") if "daddr" in spec else None,
        iif=iif,
        established=_bool(spec.get("established", False), f"{key}.established"),
        comment=_comment(spec.get("comment"), f"{key}.comment"),
    )


def _mapping(
    value: Any, key: str, allowed: set[str] | None, required: set[str] | frozenset[str] = frozenset()
) -> dict[str, Any]:
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise HostsSpecError(key, f"expected a mapping, got {type(value).__name__}")
    for k in value:
        if allowed is not None and k not in allowed:
            raise HostsSpecError(f"{key}.{k}", f"unknown key; allowed: {', '.join(sorted(allowed))}")
    for k in sorted(required - value.keys()):
        raise HostsSpecError(f"{key}.{k}", "required key is missing")
    return dict(value)


def _network(value: Any, key: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.IPv4Network(str(value))
    except ValueError as e:
        raise HostsSpecError(key, f"expected an IPv4 network such as 198.18.2.0/24 ({e})") from None
    return network


def _in_lab(network: ipaddress.IPv4Network, key: str) -> None:
    if not network.subnet_of(nx.LAB_RANGE):
        raise HostsSpecError(key, f"{network} is outside the lab range {nx.LAB_RANGE}")


def _address(value: Any, key: str, *, lab_only: bool = True) -> ipaddress.IPv4Address:
    try:
        address = ipaddress.IPv4Address(str(value))
    except ValueError:
        raise HostsSpecError(key, f"expected an IPv4 address, got {value!r}") from None
    if lab_only:
        _in_lab(ipaddress.IPv4Network(address), key)
    return address


def _port(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise HostsSpecError(key, f"expected a port from 1 to 65535, got {value!r}")
    return value


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise HostsSpecError(key, f"expected true or false, got {value!r}")
    return value


def _text(value: Any, key: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise HostsSpecError(key, "expected text (a YAML block scalar)")
    return value


def _local_time(value: Any, key: str) -> dt.datetime:
    if not isinstance(value, dt.datetime) or value.tzinfo is not None:
        raise HostsSpecError(key, f"expected a local date and time (no zone), e.g. 2025-11-03 07:00:00, got {value!r}")
    return value


def _comment(value: Any, key: str) -> str | None:
    if value is not None and (not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9 _.:/-]{1,64}", value)):
        raise HostsSpecError(key, "expected up to 64 letters, digits, spaces or _ . : / -")
    return value


def _choice(value: Any, key: str, kind: type[E]) -> E:
    for member in kind:
        if value == member.value:
            return member
    raise HostsSpecError(key, f"expected one of {', '.join(str(m.value) for m in kind)}, got {value!r}")


# --- firewall rules in each tool's own form ---------------------------------------------------------


def nft_ruleset(fw: Firewall) -> str:
    """The rules as an `nft -f` script: one `inet filter` table with input and output base chains."""
    lines = ["table inet filter {"]
    for chain, policy in ((Chain.INPUT, fw.input_policy), (Chain.OUTPUT, fw.output_policy)):
        lines += [
            f"  chain {chain.value} {{",
            f"    type filter hook {chain.value} priority filter; policy {policy.value};",
        ]
        lines += [f"    {_nft_rule(r)}" for r in fw.rules if r.chain is chain]
        lines.append("  }")
    return "\n".join([*lines, "}", ""])


def _nft_rule(r: Rule) -> str:
    parts = [f'iifname "{r.iif}"'] if r.iif else []
    parts += ["ct state established,related"] if r.established else []
    parts += [f"ip saddr {r.saddr}"] if r.saddr else []
    parts += [f"ip daddr {r.daddr}"] if r.daddr else []
    if r.protocol:
        parts.append(f"{r.protocol} dport {r.dport}" if r.dport else f"meta l4proto {r.protocol}")
    parts.append(r.action.value)
    parts += [f'comment "{r.comment}"'] if r.comment else []
    return " ".join(parts)


def iptables_rules(fw: Firewall) -> str:
    """The rules as an `iptables-restore` file for the filter table."""
    lines = [
        "*filter",
        f":INPUT {fw.input_policy.value.upper()} [0:0]",
        ":FORWARD ACCEPT [0:0]",
        f":OUTPUT {fw.output_policy.value.upper()} [0:0]",
    ]
    lines += [_iptables_rule(r) for r in fw.rules]
    return "\n".join([*lines, "COMMIT", ""])


def _iptables_rule(r: Rule) -> str:
    parts = ["-A", r.chain.value.upper()]
    parts += ["-i", r.iif] if r.iif else []
    parts += ["-s", str(r.saddr)] if r.saddr else []
    parts += ["-d", str(r.daddr)] if r.daddr else []
    parts += ["-p", r.protocol] if r.protocol else []
    parts += ["-m", r.protocol or "tcp", "--dport", str(r.dport).replace("-", ":")] if r.dport else []
    parts += ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"] if r.established else []
    parts += ["-m", "comment", "--comment", f'"{r.comment}"'] if r.comment else []  # restore reads "…"
    parts += ["-j", r.action.value.upper()]
    return " ".join(parts)


def apply_firewall(fw: Firewall, netns: str) -> None:
    """Load the rules into a machine's namespace with the real tool (nft or iptables-restore)."""
    if fw.backend is FirewallBackend.NFTABLES:
        nx.run(["nft", "-f", "-"], netns=netns, input_text=nft_ruleset(fw))
    elif fw.backend is FirewallBackend.IPTABLES:
        nx.run(["iptables-restore"], netns=netns, input_text=iptables_rules(fw))


# --- files a machine sees through ssh ---------------------------------------------------------------

SYSTEMCTL = """#!/bin/sh
# linkgate lab: a stand-in for systemctl on {machine}. There is no systemd in the lab. mssql-server is
# active when a process listens on TCP {port} inside this machine (the lab's SQL simulator serves there);
# whether it is enabled is the scenario's configuration: {enabled}.
verb=$1
unit=${{2%.service}}
case "$verb" in
  is-active)
    if [ "$unit" = mssql-server ] && ss -Hltn "sport = :{port}" | grep -q LISTEN; then echo active; exit 0; fi
    echo inactive; exit 3 ;;
  is-enabled)
    if [ "$unit" != mssql-server ]; then
      echo "Failed to get unit file state for $unit.service: No such file or directory" >&2; exit 1
    fi
    echo {enabled}; [ {enabled} = enabled ] ;;
  list-unit-files)
    echo "UNIT FILE            STATE   PRESET"; echo "mssql-server.service {enabled} enabled" ;;
  *)
    echo "systemctl $verb: not available in the linkgate lab (is-active, is-enabled, list-unit-files are)" >&2
    exit 1 ;;
esac
"""

DF = r"""#!/bin/sh
# linkgate lab: a stand-in for df on {machine}. The lab's /var/opt/mssql is a folder on this machine's own disk,
# so the real df would name that disk; the scenario's log volume is {device}. For a path under /var/opt/mssql
# the source column names {device}; every other path, column and option is the real df's ({real}).
marks= ours= skip= operands= col=1
for a in "$@"; do
  if [ -n "$skip" ]; then skip=; continue; fi
  if [ -z "$operands" ]; then
    case "$a" in
      --) operands=1; continue ;;
      -B | -t | -x | -[!-]*[Btx] | --block-size | --type | --exclude-type) skip=1; continue ;;
      --output=*)
        col=0 i=0 fields=${{a#--output=}}
        while [ -n "$fields" ]; do
          i=$((i + 1)); f=${{fields%%,*}}
          [ "$f" = source ] && col=$i
          [ "$f" = "$fields" ] && fields= || fields=${{fields#*,}}
        done
        continue ;;
      -?*) continue ;;
    esac
  fi
  [ -e "$a" ] || continue  # the real df prints no row for it, only its error
  case "$(realpath -- "$a")" in
    /var/opt/mssql | /var/opt/mssql/*) marks="$marks 1" ours=1 ;;
    *) marks="$marks 0" ;;
  esac
done
[ -n "$ours" ] && [ "$col" -gt 0 ] || exec {real} "$@"
out=$({real} "$@")
rc=$?
[ -z "$out" ] || printf '%s\n' "$out" | awk -v marks="$marks" -v col="$col" -v dev='{device}' '
  BEGIN {{ split(marks, mine, " ") }}
  NR > 1 && mine[NR - 1] == 1 {{
    rest = $0; at = 0
    for (i = 1; i <= col && match(rest, /[^ ]+/); i++) {{
      if (i < col) {{ at += RSTART + RLENGTH - 1; rest = substr(rest, RSTART + RLENGTH) }}
    }}
    if (i > col) {{
      start = at + RSTART; width = RLENGTH
      tail = substr($0, start + width)
      for (extra = length(dev) - width; extra > 0 && substr(tail, 2, 1) == " "; extra--) tail = substr(tail, 2)
      $0 = substr($0, 1, start - 1) sprintf("%-" width "s", dev) tail
      sub(/ +$/, "")
    }}
  }}
  {{ print }}'
exit $rc
"""

LSBLK = r"""#!/bin/sh
# linkgate lab: a stand-in for lsblk on {machine}. The scenario's log volume {device} (df names it for
# /var/opt/mssql) exists only here: physical sectors of {physical} bytes, logical of {logical}. Asked about it
# alone, this answers the columns NAME, KNAME, PATH, PHY-SEC and LOG-SEC (options -b -d -n -r -P -o); asked about
# anything else, the real lsblk ({real}) answers.
case " $* " in *" {device} "*) ;; *) exec {real} "$@" ;; esac
args=$({getopt} -n lsblk -o bdnrPo: -l bytes,nodeps,noheadings,raw,pairs,output: -- "$@") || exit 1
eval set -- "$args"
mode=table heads=1 cols=
while [ "$1" != -- ]; do
  case "$1" in
    -n | --noheadings) heads= ;;
    -r | --raw) mode=raw ;;
    -P | --pairs) mode=pairs ;;
    -o | --output) cols="$cols${{cols:+,}}$2"; shift ;;
  esac
  shift
done
shift
for a in "$@"; do
  if [ "$a" != {device} ]; then
    echo "lsblk: the linkgate lab answers for {device} on its own; ask about $a separately" >&2; exit 1
  fi
done
if [ -z "$cols" ]; then
  echo "lsblk: name the columns with -o: the linkgate lab knows NAME, KNAME, PATH, PHY-SEC, LOG-SEC of {device}" >&2
  exit 1
fi
printf '%s\n' "$cols" | awk -v mode="$mode" -v heads="$heads" -v rows=$# '
  BEGIN {{
    FS = ","; known = "NAME, KNAME, PATH, PHY-SEC, LOG-SEC"
    v["NAME"] = v["KNAME"] = "{name}"; v["PATH"] = "{device}"; v["PHY-SEC"] = {physical}; v["LOG-SEC"] = {logical}
  }}
  {{
    for (i = 1; i <= NF; i++) {{
      c[i] = toupper($i)
      if (!(c[i] in v)) {{
        print "lsblk: column " $i " is not modelled by the linkgate lab (" known " are)" > "/dev/stderr"
        exit 1
      }}
      w[i] = length(c[i]) > length(v[c[i]]) ? length(c[i]) : length(v[c[i]])
      right[i] = c[i] ~ /-SEC$/
    }}
    if (heads && mode != "pairs") print line(0)
    for (r = 0; r < rows; r++) print line(1)
  }}
  function line(values,    i, s, x) {{
    s = ""
    for (i = 1; i <= NF; i++) {{
      x = values ? v[c[i]] : c[i]
      if (mode == "pairs") x = c[i] "=\"" x "\""
      else if (mode == "table" && i < NF) x = sprintf(right[i] ? "%" w[i] "s" : "%-" w[i] "s", x)
      else if (mode == "table") x = sprintf(right[i] ? "%" w[i] "s" : "%s", x)
      s = s (i > 1 ? " " : "") x
    }}
    return s
  }}'
"""

MOUNT_SCRIPT = """set -e
hostname {machine}
mount --bind {d}/hosts /etc/hosts
mount --bind {d}/resolv.conf /etc/resolv.conf
mount -t tmpfs -o mode=0755,size=1m linkgate-opt /var/opt
mkdir /var/opt/mssql
mount --bind {d}/mssql /var/opt/mssql
mount --bind {d}/sbin /usr/local/sbin
mount --bind {d}/root /root
mount -t tmpfs -o mode=0755,size=1m linkgate-run /run
mkdir -m 0755 /run/sshd
exec /usr/sbin/sshd -D -e -f {d}/sshd_config
"""

SSHD_CONFIG = """ListenAddress {address}:22
HostKey {d}/ssh_host_ed25519_key
AuthorizedKeysFile {state}/authorized_keys
PidFile none
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
MaxStartups 64
MaxSessions 64
Subsystem sftp internal-sftp
"""


REAL_TOOLS_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
"""Where the stand-ins find the real tools: the system's directories, never /usr/local/sbin (the stand-ins')."""


def _write_volume_tools(sbin: Path, m: Machine) -> None:
    """The `df` and `lsblk` stand-ins of a machine: its log volume as the scenario says, the real tools otherwise."""
    real = {tool: shutil.which(tool, path=REAL_TOOLS_PATH) for tool in ("df", "lsblk", "getopt")}
    missing = sorted(tool for tool, path in real.items() if path is None)
    if missing:
        raise RuntimeError(f"the lab's df and lsblk stand-ins need {', '.join(missing)} in {REAL_TOOLS_PATH}")
    v = m.log_volume
    fields = {"machine": m.name, "device": v.device, "name": v.name, "physical": v.physical, "logical": v.logical}
    _write(sbin / "df", DF.format(real=real["df"], **fields), 0o755)
    if v.block_device:
        _write(sbin / "lsblk", LSBLK.format(real=real["lsblk"], getopt=real["getopt"], **fields), 0o755)


def _keypair() -> tuple[bytes, str]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode()


def _write(path: Path, text: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode() if isinstance(text, str) else text
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    path.chmod(mode)


# --- the lab's machines, running ---------------------------------------------------------------------


class LabHosts:
    """The machines of one lab, started with `start()` (or `with`), removed with `stop()`.

    >>> with LabHosts(load_hosts(scenario["hosts"])) as hosts:           # doctest: +SKIP
    ...     host = testinfra.get_host(hosts.testinfra_spec("sql01"), ssh_identity_file=str(hosts.identity_file))
    ...     host.file("/var/opt/mssql/mssql.conf").content_string
    """

    def __init__(
        self, spec: HostsSpec, *, lab_id: str | None = None, state_root: Path | None = None, relocate: bool = False
    ) -> None:
        """`relocate`: when the scenario's addresses are taken (another lab runs it), move to a free block;
        `translate()` then maps the scenario's addresses to the ones in use (for the environment file)."""
        self.spec = spec
        self.offset = 0
        self._scenario_spec = spec
        self._relocate = relocate
        self._state_root = state_root or default_state_root()
        self.lab_id = lab_id or secrets.token_hex(3)
        if not LAB_ID.match(self.lab_id):
            raise ValueError(f"a lab id is 6 lowercase hex digits, got {self.lab_id!r}")
        self.state = self._state_root / self.lab_id
        self._sshd: dict[str, subprocess.Popen[bytes]] = {}
        self._listeners: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # names and addresses

    @property
    def router(self) -> str:
        return f"lg-{self.lab_id}-rt"

    @property
    def uplink_device(self) -> str:
        """The lab's only interface in the root namespace."""
        return f"lg{self.lab_id}up"

    @property
    def gate_address(self) -> ipaddress.IPv4Address:
        """The root namespace's address on the uplink: the source the machines see the gate connect from."""
        return self.spec.uplink.network_address + 1

    @property
    def _router_uplink_address(self) -> ipaddress.IPv4Address:
        return self.spec.uplink.network_address + 2

    def netns(self, machine: str) -> str:
        """The network namespace of one machine."""
        self._machine(machine)
        return f"lg-{self.lab_id}-{machine}"

    def namespaces(self) -> list[str]:
        return [self.router, *(self.netns(m) for m in self.spec.machines)]

    def address(self, machine: str) -> ipaddress.IPv4Address:
        return self._machine(machine).address.ip

    @property
    def identity_file(self) -> Path:
        """root's private key (OpenSSH ed25519) for every machine with `ssh: true`."""
        return self.state / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        """An ssh_config naming the key and known_hosts, for testinfra's ssh backend (`ssh -F`)."""
        return self.state / "ssh_config"

    def sshd_log(self, machine: str) -> Path:
        """What the machine's sshd writes (-e: its log on stderr, at LogLevel INFO): one "Accepted publickey for
        root" line per ssh connection that logged in, which is how the self-tests count the gate's connections."""
        if not self._machine(machine).ssh:
            raise ValueError(f"machine {machine} has no sshd (ssh: false)")
        return self.state / machine / "sshd.log"

    def testinfra_spec(self, machine: str) -> str:
        """`paramiko://root@ADDRESS`: pass `ssh_identity_file=str(self.identity_file)` with it."""
        if not self._machine(machine).ssh:
            raise ValueError(f"machine {machine} has no sshd (ssh: false)")
        return f"paramiko://root@{self.address(machine)}"

    def listening_socket(self, machine: str, port: int) -> socket.socket:
        """A TCP socket listening on the machine's address and `port`, inside its namespace (for the SQL simulator)."""
        return nx.listening_socket_in(self.netns(machine), str(self.address(machine)), port)

    def _machine(self, name: str) -> Machine:
        try:
            return self.spec.machines[name]
        except KeyError:
            raise KeyError(f"no machine {name!r} in this lab; machines: {', '.join(self.spec.machines)}") from None

    # lifecycle

    def __enter__(self) -> LabHosts:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Build the network, files, firewalls, listeners and sshd; on any failure, remove what was built."""
        nx.require_root()
        nx.ensure_blackhole()
        self._state_root.mkdir(parents=True, exist_ok=True)
        with _exclusive(self._state_root / ".addresses.lock"):  # choosing addresses and routing them is one step
            self._choose_addresses()
            # The state directory appears with its owner file in it (a rename), so a concurrent cleanup_stale()
            # never takes a starting lab for a dead one.
            staging = self.state.with_name(f".starting-{self.lab_id}")
            staging.mkdir(mode=0o700)
            _write(staging / "owner", f"{os.getpid()} {_stat(os.getpid())[3]}\n")
            staging.rename(self.state)
            try:
                self._build_network()
            except BaseException:
                self.stop()
                raise
        try:
            self._write_ssh_files()
            for m in self.spec.machines.values():
                apply_firewall(m.firewall, self.netns(m.name))
                self._listen(m)
                if m.ssh:
                    self._start_sshd(m)
            self._thread = threading.Thread(target=self._accept_loop, name=f"lab-{self.lab_id}-listeners", daemon=True)
            self._thread.start()
            for m in self.spec.machines.values():
                if m.ssh:
                    self._wait_listening(m, 22)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Remove everything this lab created except the blackhole route; safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        for sock in self._listeners:
            sock.close()
        self._listeners.clear()
        teardown(self.lab_id, self.state)  # ends sshd and its sessions: every process in the lab's namespaces
        for proc in self._sshd.values():
            proc.wait(timeout=3)  # reap
        self._sshd.clear()

    def translate(self, address: str) -> str:
        """A scenario address or network (e.g. the MI subnet) as this lab uses it after relocation."""
        if "/" in address:
            return str(_shift_net(ipaddress.IPv4Network(address), self.offset))
        return str(_shift(ipaddress.IPv4Address(address), self.offset))

    def _choose_addresses(self) -> None:
        """Keep the scenario's addresses, or with `relocate` take the first free other block; LabConflict when
        none is free.

        A relocatable lab (the self-tests' labs) never takes the scenario's own block, even when free: that block
        belongs to the fixed-address labs (`pytest --env demo`, `serve` without --ephemeral-ports), which would
        otherwise fail to start whenever a self-test lab happened to run at the same moment.
        """
        routes = nx.routes()
        clash = _clash(self._scenario_spec, routes)
        if clash is None and not self._relocate:
            return
        if not self._relocate:
            raise LabConflict(clash or "")
        clash = clash or "the scenario's own block is left to fixed-address labs"
        offsets = _offsets(self._scenario_spec)
        for offset in offsets:
            candidate = self._scenario_spec.shifted(offset)
            if _clash(candidate, routes) is None:
                self.spec, self.offset = candidate, offset
                return
        why = "every other block of 198.18.0.0/15 is taken" if offsets else "its addresses span more than one /21"
        raise LabConflict(f"{clash}; the lab cannot move either: {why}")

    def _build_network(self) -> None:
        up = self.spec.uplink.prefixlen
        nx.add_namespace(self.router)
        nx.enable_forwarding(self.router)
        nx.add_veth(self.uplink_device, None, "uplink", self.router)
        nx.add_address(self.uplink_device, ipaddress.IPv4Interface(f"{self.gate_address}/{up}"), None)
        nx.add_address("uplink", ipaddress.IPv4Interface(f"{self._router_uplink_address}/{up}"), self.router)
        for m in self.spec.machines.values():
            ns, link = self.netns(m.name), f"m-{m.name}"
            nx.add_namespace(ns)
            nx.add_veth(link, self.router, "eth0", ns)
            nx.add_address(link, ipaddress.IPv4Interface(f"{m.gateway}/{m.address.network.prefixlen}"), self.router)
            nx.add_address("eth0", m.address, ns)
            for extra in m.extra_addresses:
                nx.add_address("eth0", ipaddress.IPv4Interface(extra), ns)
                nx.add_route(ipaddress.IPv4Network(extra), m.address.ip, link, self.router)
            nx.add_route(self.spec.uplink, m.gateway, "eth0", ns)
            for a in m.addresses:
                nx.add_route(ipaddress.IPv4Network(a), self._router_uplink_address, self.uplink_device, None)
        for m in self.spec.machines.values():  # each machine reaches every other one through the router
            for other in self.spec.machines.values():
                for a in other.addresses if other is not m else ():
                    nx.add_route(ipaddress.IPv4Network(a), m.gateway, "eth0", self.netns(m.name))

    def _write_ssh_files(self) -> None:
        client_private, client_public = _keypair()
        _write(self.identity_file, client_private, 0o600)
        _write(self.state / "authorized_keys", client_public + "\n", 0o600)
        known, config = [], []
        for m in self.spec.machines.values():
            if not m.ssh:
                continue
            d = self.state / m.name
            host_private, host_public = _keypair()
            _write(d / "ssh_host_ed25519_key", host_private, 0o600)
            known.append(f"{m.address.ip} {host_public}")
            config.append(
                f"Host {m.address.ip}\n  User root\n  IdentityFile {self.identity_file}\n"
                f"  IdentitiesOnly yes\n  UserKnownHostsFile {self.known_hosts}\n"
                "  StrictHostKeyChecking yes\n"
            )
            entries = {"localhost": ipaddress.IPv4Address("127.0.0.1"), m.name: m.address.ip, **m.etc_hosts}
            _write(d / "hosts", "".join(f"{a}\t{n}\n" for n, a in entries.items()))
            _write(
                d / "resolv.conf",
                "# linkgate lab: no DNS server; names come from /etc/hosts\n"
                "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
            )
            (d / "mssql" / "data").mkdir(parents=True)
            if m.mssql_conf is not None:
                _write(d / "mssql" / "mssql.conf", m.mssql_conf)
                modified = time.mktime(m.mssql_conf_modified.timetuple())  # local time, as `date -d` reads it there
                os.utime(d / "mssql" / "mssql.conf", (modified, modified))
            (d / "sbin").mkdir()
            (d / "root").mkdir(mode=0o700)
            if m.mssql_service is not None:
                enabled = "enabled" if m.mssql_service.enabled else "disabled"
                _write(
                    d / "sbin" / "systemctl",
                    SYSTEMCTL.format(machine=m.name, port=m.mssql_service.port, enabled=enabled),
                    0o755,
                )
            _write_volume_tools(d / "sbin", m)
            _write(d / "sshd_config", SSHD_CONFIG.format(address=m.address.ip, d=d, state=self.state))
        _write(self.known_hosts, "".join(f"{line}\n" for line in known))
        _write(self.ssh_config, "\n".join(config))

    def _listen(self, m: Machine) -> None:
        for port in m.listeners:
            sock = nx.listening_socket_in(self.netns(m.name), "0.0.0.0", port)
            sock.setblocking(False)
            self._listeners.append(sock)

    def _accept_loop(self) -> None:
        """Accept and close every connection to an endpoint listener: the port is open, nothing more."""
        with selectors.DefaultSelector() as sel:
            for sock in self._listeners:
                sel.register(sock, selectors.EVENT_READ)
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.2):
                    with contextlib.suppress(OSError):
                        conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                        conn.close()

    def _start_sshd(self, m: Machine) -> None:
        d = self.state / m.name
        script = MOUNT_SCRIPT.format(machine=m.name, d=d)
        log = (d / "sshd.log").open("wb")
        with log:
            self._sshd[m.name] = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    self.netns(m.name),
                    "unshare",
                    "--mount",
                    "--uts",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    script,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _wait_listening(self, m: Machine, port: int) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        proc = self._sshd[m.name]
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            out = nx.run(["ss", "-Hltn", f"sport = :{port}"], netns=self.netns(m.name)).stdout
            if "LISTEN" in out:
                return
            time.sleep(0.02)
        log = self.sshd_log(m.name).read_text(errors="replace").strip()
        raise RuntimeError(f"sshd on lab machine {m.name} did not start listening on port {port}: {log[-500:]}")


# --- removal ----------------------------------------------------------------------------------------


def _clash(spec: HostsSpec, routes: list[dict[str, Any]]) -> str | None:
    """Why the root namespace cannot route this spec's addresses (another lab routes one), or None."""
    wanted = [ipaddress.IPv4Network(a) for m in spec.machines.values() for a in m.addresses] + [spec.uplink]
    for route in routes:
        dst = route.get("dst", "")
        if route.get("type") == "blackhole" or dst == "default":
            continue
        network = ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False)
        for w in wanted:
            if w.overlaps(network):
                return (
                    f"the root namespace already routes {network} via {route.get('dev', '?')}, which this lab needs "
                    f"for {w}; stop that lab, run cleanup_stale(), or give this lab other addresses"
                )
    return None


def _offsets(spec: HostsSpec) -> list[int]:
    """The moves that keep the spec inside the lab range, highest block first (none if it spans two blocks).

    From the top down, because scenarios and self-tests place their fixed addresses from the bottom up.
    """
    addresses = spec.lab_addresses()
    start = int(nx.LAB_RANGE.network_address)
    blocks = {(int(a) - start) // BLOCK for a in addresses}
    if len(blocks) != 1:
        return []
    home = blocks.pop()
    return [(k - home) * BLOCK for k in reversed(range(nx.LAB_RANGE.num_addresses // BLOCK)) if k != home]


@contextlib.contextmanager
def _exclusive(path: Path, timeout: float = 30.0) -> Iterator[None]:
    """An exclusive lock on `path` between processes (flock), waited for at most `timeout` seconds."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another lab held {path} for more than {timeout:.0f} s") from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # releases the lock


def default_state_root() -> Path:
    """Where labs keep keys and files: outside /run, which a lab machine's sshd masks with its own tmpfs."""
    return Path("/var/tmp/linkgate-labs")


def teardown(lab_id: str, state: Path) -> None:
    """Remove one lab: its processes (only those inside its namespaces), namespaces, uplink and files."""
    own = [ns for ns in nx.namespaces() if ns.startswith(f"lg-{lab_id}-")]
    _end_processes({pid for ns in own for pid in nx.namespace_pids(ns)} - {os.getpid()})
    # The uplink first: deleting a veth end removes its peer at once, while a deleted namespace's
    # interfaces go away later, in the kernel's own time. Another cleanup may be removing the same lab.
    nx.ip("link", "delete", f"lg{lab_id}up", check=False)
    for ns in own:
        nx.ip("netns", "delete", ns, check=False)
    shutil.rmtree(state, ignore_errors=True)


def _end_processes(pids: set[int]) -> None:
    """SIGTERM (then SIGKILL) the processes, children before parents.

    A parent still alive reaps its children (sshd its sessions); killed the other way round, orphans go
    to PID 1, which in a minimal container may never reap them.
    """
    parent = {pid: _stat(pid)[2] for pid in pids}

    def depth(pid: int) -> int:
        d = 0
        while (pid := parent.get(pid, 0)) in pids and d < len(pids):
            d += 1
        return d

    for level in sorted({depth(p) for p in pids}, reverse=True):
        batch = {p for p in pids if depth(p) == level}
        for signal_number in (15, 9):
            for pid in batch:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal_number)
            deadline = time.monotonic() + 2
            while (batch := {p for p in batch if _running(p)}) and time.monotonic() < deadline:
                time.sleep(0.01)
            if not batch:
                break


def _stat(pid: int) -> tuple[str, str, int, str]:
    """(comm, state, ppid, start time in clock ticks) from /proc/PID/stat; ("", "", 0, "") when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "", "", 0, ""
    comm, rest = text[text.index("(") + 1 :].rsplit(")", 1)
    fields = rest.split()
    return comm, fields[0], int(fields[1]), fields[19]


def _running(pid: int) -> bool:
    """True while the process exists and is not a zombie (a zombie has exited; its parent reaps it)."""
    return _stat(pid)[1] not in ("", "Z")


def _owner_alive(state: Path) -> bool:
    try:
        pid_text, started = (state / "owner").read_text().split()
    except (OSError, ValueError):
        return False
    return _stat(int(pid_text))[3] == started


def cleanup_stale(state_root: Path | None = None) -> list[str]:
    """Remove every lab whose owning process is gone; return their ids. Live labs are left alone."""
    nx.require_root()
    root = state_root or default_state_root()
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive(root / ".addresses.lock"):  # never while a lab is between its state directory and its routes
        ids = {m.group(1) for ns in nx.namespaces() if (m := NETNS_OF_LAB.match(ns))}
        ids |= {m.group(1) for link in nx.links() if (m := UPLINK_OF_LAB.match(link))}
        ids |= {p.name.removeprefix(".starting-") for p in root.iterdir()}
        stale = sorted(i for i in ids if LAB_ID.match(i) and not _owner_alive(root / i))
        for lab_id in stale:
            teardown(lab_id, root / lab_id)
            shutil.rmtree(root / f".starting-{lab_id}", ignore_errors=True)
    return stale
