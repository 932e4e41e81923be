"""The `hosts:` section of a scenario: validation with the key path in every error, and the rules rendered in
nftables and iptables form (loaded into the kernel by selftests/lab/test_hosts.py)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from linkgate.lab.hosts import (
    Action,
    FirewallBackend,
    HostsSpecError,
    LogVolume,
    iptables_rules,
    load_hosts,
    nft_ruleset,
)
from selftests.lab.test_hosts import Plan

P = Plan("198.18.7")


def edited(path: str, value: Any) -> dict[str, Any]:
    """The plan with the value at a dotted path replaced (None deletes the key)."""
    raw = P.hosts()
    *parents, last = path.split(".")
    node: Any = raw
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is None:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return raw


def test_the_healthy_plan_loads_typed() -> None:
    spec = load_hosts(P.hosts())
    sql = spec.machines["sql01"]
    assert spec.uplink == ipaddress.IPv4Network("198.18.7.0/30")
    assert sql.address == ipaddress.IPv4Interface("198.18.7.20/28")
    assert sql.gateway == ipaddress.IPv4Address("198.18.7.17")
    assert sql.firewall.backend is FirewallBackend.NFTABLES
    assert sql.firewall.input_policy is Action.DROP
    assert sql.mssql_service is not None
    assert sql.mssql_service.port == 1433
    assert sql.log_volume == LogVolume("/dev/sdb1", 512, 512)
    assert spec.machines["mi01"].addresses == tuple(map(ipaddress.IPv4Address, ("198.18.7.36", "198.18.7.37")))


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("machines.sql01.address", "10.0.0.4/24", "hosts.machines.sql01.address: 10.0.0.0/24 is outside the lab range"),
        ("machines.sql01.address", "198.18.7.20", "hosts.machines.sql01.address: the prefix must leave room"),
        ("machines.sql01.address", None, "hosts.machines.sql01.address: required key is missing"),
        ("machines.sql01.adress", "x", "hosts.machines.sql01.adress: unknown key; allowed: address, etc_hosts"),
        (
            "machines.mi01.extra_addresses",
            ["198.18.7.20"],
            "hosts.machines.mi01: address 198.18.7.20 (mi01) collides with sql01",
        ),
        (
            "machines.sql01.gateway",
            "198.18.7.20",
            "sql01.gateway: 198.18.7.20 must be another address of 198.18.7.16/28",
        ),
        ("machines.sql01.gateway", "198.18.7.33", "sql01.gateway: 198.18.7.33 must be another address of"),
        ("machines.sql01.address", "198.18.7.2/24", "address 198.18.7.2 (sql01) collides with the uplink"),
        (
            "machines.sql01.address",
            "198.18.7.33/24",
            "address 198.18.7.1 (the gateway of sql01) collides with the uplink",
        ),
        ("uplink", "198.18.7.0/31", "hosts.uplink: needs at least a /30"),
        (
            "machines.sql01.listeners",
            [5022, 70000],
            "hosts.machines.sql01.listeners.[1]: expected a port from 1 to 65535",
        ),
        ("machines.sql01.ssh", "yes", "hosts.machines.sql01.ssh: expected true or false, got 'yes'"),
        (
            "machines.sql01.firewall.backend",
            "pf",
            "firewall.backend: expected one of nftables, iptables, none, got 'pf'",
        ),
        ("machines.sql01.firewall.input_policy", "reject", "a chain policy is accept or drop"),
        (
            "machines.sql01.firewall.rules.2",
            {"chain": "input", "action": "accept", "dport": 22},
            "rules.[2].dport: a port needs protocol: tcp or udp",
        ),
        (
            "machines.sql01.firewall.rules.2",
            {"chain": "input", "action": "accept", "protocol": "tcp", "dport": "1-x"},
            "rules.[2].dport: not a port or port range: '1-x'",
        ),
        (
            "machines.sql01.firewall.rules.2",
            {"chain": "input", "action": "accept", "comment": 'a"; drop'},
            "rules.[2].comment: expected up to 64 letters",
        ),
        (
            "machines.sql01.firewall.rules.2",
            {"chain": "forward", "action": "accept"},
            "rules.[2].chain: expected one of input, output, got 'forward'",
        ),
        (
            "machines.sql01.firewall.rules.2",
            {"chain": "input", "action": "accept", "iif": "lo; reboot"},
            "rules.[2].iif: expected an interface name",
        ),
        ("machines.sql01.mssql_conf", 1, "hosts.machines.sql01.mssql_conf: expected text"),
        (
            "machines.sql01.log_volume",
            {"device": "sdb1"},
            "sql01.log_volume.device: expected a device path such as /dev/sdb1, or overlay or tmpfs, got 'sdb1'",
        ),
        ("machines.sql01.log_volume", {"device": "/dev/sdb1; reboot"}, "log_volume.device: expected a device path"),
        ("machines.sql01.log_volume", {"device": "/dev/"}, "log_volume.device: expected a device path"),
        (
            "machines.sql01.log_volume",
            {"device": "overlay", "logical": 512},
            "log_volume.logical: overlay is no block device: it has no sector size to declare",
        ),
        ("machines.sql01.log_volume", {"physical": 4000}, "log_volume.physical: expected a sector size in bytes"),
        ("machines.sql01.log_volume", {"physical": True}, "log_volume.physical: expected a sector size in bytes"),
        (
            "machines.sql01.log_volume",
            {"physical": 512, "logical": 4096},
            "log_volume.logical: 4096 is larger than the physical sector size 512",
        ),
        ("machines.sql01.log_volume", {"sectors": 4096}, "log_volume.sectors: unknown key; allowed: device, logical"),
        ("machines.mi01.log_volume", {}, "hosts.machines.mi01.log_volume: needs ssh: true"),
    ],
)
def test_mistakes_name_the_key(path: str, value: Any, message: str) -> None:
    with pytest.raises(HostsSpecError) as caught:
        load_hosts(edited(path, value))
    assert message in str(caught.value)


def test_machine_names_fit_interface_and_namespace_names() -> None:
    raw = P.hosts()
    raw["machines"]["SQL_01"] = raw["machines"].pop("sql01")
    with pytest.raises(HostsSpecError, match=r"hosts\.machines\.SQL_01: a machine name is 1-12 lowercase"):
        load_hosts(raw)


def test_rules_render_in_both_tools_in_order() -> None:
    reject = {"chain": "output", "action": "reject", "protocol": "tcp", "dport": "11000-11999", "daddr": P.mi_subnet}
    fw = load_hosts(P.with_rule(reject)).machines["sql01"].firewall
    nft = nft_ruleset(fw)
    assert "type filter hook input priority filter; policy drop;" in nft
    mi_link = 'ip saddr 198.18.7.32/28 tcp dport 5022 accept comment "mi link"'
    assert nft.index('iifname "lo" accept') < nft.index(mi_link)
    assert "ip daddr 198.18.7.32/28 tcp dport 11000-11999 reject" in nft
    ipt = iptables_rules(fw).splitlines()
    assert ipt[:4] == ["*filter", ":INPUT DROP [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    assert "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT" in ipt
    assert '-A INPUT -s 198.18.7.32/28 -p tcp -m tcp --dport 5022 -m comment --comment "mi link" -j ACCEPT' in ipt
    assert "-A OUTPUT -d 198.18.7.32/28 -p tcp -m tcp --dport 11000:11999 -j REJECT" in ipt
    assert ipt[-1] == "COMMIT"


def test_a_declared_log_volume_loads_typed_and_moves_with_the_lab() -> None:
    declared = {"device": "/dev/nvme1n1p1", "physical": 4096, "logical": 4096}
    spec = load_hosts(edited("machines.sql01.log_volume", declared))
    assert spec.machines["sql01"].log_volume == LogVolume("/dev/nvme1n1p1", 4096, 4096)
    assert spec.machines["sql01"].log_volume.name == "nvme1n1p1"
    assert spec.shifted(2048).machines["sql01"].log_volume == spec.machines["sql01"].log_volume
    partial = load_hosts(edited("machines.sql01.log_volume", {"physical": 4096})).machines["sql01"].log_volume
    assert partial == LogVolume("/dev/sdb1", 4096, 512), "unset keys keep the default disk's"
