"""linkgate.probes.host and .net over ssh against lab machines: the facts the gate reads, and that the firewall
verdicts agree with what the kernel really does to a connection."""

from __future__ import annotations

import ipaddress
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from linkgate.environment import HostSpec
from linkgate.firewall.flows import Flow
from linkgate.lab import netns as nx
from linkgate.lab.hosts import LabHosts, load_hosts
from linkgate.lab.runner import Lab
from linkgate.lab.scenario import load_scenario
from linkgate.probes.facts import TargetUnreachable
from linkgate.probes.host import (
    FirewallKind,
    SectorSize,
    Shell,
    open_host,
    read_firewall,
    read_linux_host,
    read_networks,
)
from linkgate.probes.net import diagnose, overlaps, read_resolution, read_tcp
from selftests.e2e.harness import run_pytest_gate
from selftests.lab.test_hosts import CONF, MI_FQDN, NODE, Plan, ssh

pytestmark = [
    pytest.mark.lab,
    pytest.mark.needs_root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

HEALTHY = Plan.of(10)
HOST_CHECKS = ("tests/host", "tests/network")


def inbound(p: Plan) -> Flow:
    return Flow.tcp("inbound", p.mi_subnet, p.sql, 5022)


def outbound(p: Plan, ports: str | int) -> Flow:
    return Flow.tcp("outbound", p.sql, p.mi_subnet, ports)


@pytest.fixture(scope="module")
def lab() -> Iterator[LabHosts]:
    with LabHosts(load_hosts(HEALTHY.hosts())) as hosts:
        yield hosts


@pytest.fixture(scope="module")
def shell(lab: LabHosts) -> Shell:
    return Shell(ssh(lab), "sql01")


def test_linux_facts_read_over_ssh(lab: LabHosts) -> None:
    facts = read_linux_host(ssh(lab), "sql01")
    service = facts.service.get()
    assert (service.running, service.is_enabled) == (False, True)  # nothing serves SQL in this lab
    conf = facts.mssql_conf.get()
    assert conf.present
    assert conf.hadr_enabled
    assert conf.agent_enabled
    assert conf.trace_flags == {1800, 9567}
    assert conf.modified is not None
    assert facts.networks.get().interfaces == (ipaddress.IPv4Interface(f"{HEALTHY.sql}/28"),)
    sector = facts.sector_size.get()
    assert sector == SectorSize("/var/opt/mssql/data", "/dev/sdb1", 512, 512)  # the lab's default log volume
    assert facts.firewall.get().kind is FirewallKind.NFTABLES
    commands = [e.command for e in facts.mssql_conf.evidence]
    assert commands == ["stat -c %Y -- /var/opt/mssql/mssql.conf", "cat -- /var/opt/mssql/mssql.conf"]
    assert CONF.strip() in facts.mssql_conf.evidence[1].result


def test_service_running_follows_the_sql_listener(lab: LabHosts, shell: Shell) -> None:
    with lab.listening_socket("sql01", 1433):
        facts = read_linux_host(shell.host, "sql01")
    assert facts.service.get().running
    assert facts.service.evidence[0].result.startswith("exit 0\nactive")


def test_missing_mssql_conf_means_defaults_not_an_error() -> None:
    with LabHosts(load_hosts(Plan.of(11).hosts(sql01={"mssql_conf": None}))) as hosts:
        conf = read_linux_host(ssh(hosts), "sql01").mssql_conf.get()
    assert not conf.present
    assert (conf.hadr_enabled, conf.agent_enabled, conf.trace_flags) == (False, False, frozenset())


def test_healthy_firewall_verdicts_and_real_connections_agree(lab: LabHosts, shell: Shell) -> None:
    listing, evidence = read_firewall(shell)
    assert listing.kernel == "nft"
    assert [e.command for e in evidence] == [
        "firewall-cmd --state",
        "ufw status verbose",
        "nft -j list ruleset",
        "iptables-save",
    ]
    verdict = listing.evaluate(inbound(HEALTHY))
    assert verdict.allowed is True
    assert f"ip saddr {HEALTHY.mi_subnet} tcp dport 5022 accept" in verdict.reason
    assert listing.evaluate(outbound(HEALTHY, 5022)).allowed
    assert listing.evaluate(outbound(HEALTHY, "11000-11999")).allowed
    from_azure = Flow.tcp("inbound", f"{HEALTHY.net}.48/28", HEALTHY.sql, 5022)
    assert listing.evaluate(from_azure).allowed is False
    assert nx.tcp_connects_from(lab.netns("mi01"), HEALTHY.sql, 5022, timeout=1.0)
    assert not nx.tcp_connects_from(lab.netns("azure"), HEALTHY.sql, 5022, timeout=0.5)


@pytest.mark.parametrize(
    ("backend", "kind", "i"), [("nftables", FirewallKind.NFTABLES, 12), ("iptables", FirewallKind.IPTABLES, 13)]
)
def test_drop_before_accept_denies_inbound_5022_and_the_remedy_opens_it(
    backend: str, kind: FirewallKind, i: int
) -> None:
    p = Plan.of(i)
    drop = {"chain": "input", "action": "drop", "protocol": "tcp", "dport": 5022}
    with LabHosts(load_hosts(p.with_rule(drop, at=2, backend=backend))) as hosts:
        shell = Shell(ssh(hosts), "sql01")
        listing, _ = read_firewall(shell)
        verdict = listing.evaluate(inbound(p))
        before = nx.tcp_connects_from(hosts.netns("mi01"), p.sql, 5022, timeout=0.5)
        fix = listing.remedy(verdict)
        applied = shell.run(fix)
        after = nx.tcp_connects_from(hosts.netns("mi01"), p.sql, 5022, timeout=1.0)
        reread, _ = read_firewall(shell)
    assert listing.kind is kind
    assert listing.kernel == ("nft" if backend == "nftables" else "iptables")
    assert verdict.allowed is False
    assert "drop" in verdict.reason.lower()
    assert not before
    assert fix.startswith(
        "nft insert rule inet filter input position" if backend == "nftables" else "iptables -I INPUT 3"
    )
    assert applied.rc == 0, applied.stderr
    assert after
    assert reread.evaluate(inbound(p)).allowed is True


def test_outbound_hadr_rejected_is_denied_and_really_fails() -> None:
    p = Plan.of(14)
    reject = {"chain": "output", "action": "reject", "protocol": "tcp", "dport": "11000-11999", "daddr": p.mi_subnet}
    with LabHosts(load_hosts(p.with_rule(reject))) as hosts:
        shell = Shell(ssh(hosts), "sql01")
        listing, _ = read_firewall(shell)
        verdict = listing.evaluate(outbound(p, "11000-11999"))
        connect, _ = read_tcp(shell, NODE, 11002)
    assert verdict.allowed is False
    assert connect.outcome == "refused"  # an ICMP port-unreachable from the host's own reject rule
    assert "the host firewall denies it" in diagnose(connect, verdict)


def test_open_rules_but_no_listener_points_at_the_path() -> None:
    p = Plan.of(15)
    with LabHosts(load_hosts(p.hosts(mi01={"listeners": [5022]}))) as hosts:
        shell = Shell(ssh(hosts), "sql01")
        listing, _ = read_firewall(shell)
        verdict = listing.evaluate(outbound(p, "11000-11999"))
        connect, evidence = read_tcp(shell, NODE, 11002)
    assert verdict.allowed is True
    assert not connect.connected
    assert diagnose(connect, verdict).endswith("something in the path is blocking")
    assert evidence[0].command == f"timeout 3 bash -c '</dev/tcp/{NODE}/11002'"


def test_names_resolve_from_the_hosts_own_etc_hosts(shell: Shell) -> None:
    mi, _ = read_resolution(shell, MI_FQDN)
    assert mi.addresses == (ipaddress.IPv4Address(HEALTHY.mi),)
    assert mi.outside(ipaddress.IPv4Network(HEALTHY.mi_subnet)) == ()
    assert mi.outside(ipaddress.IPv4Network(f"{HEALTHY.net}.48/28")) == (ipaddress.IPv4Address(HEALTHY.mi),)
    missing, evidence = read_resolution(shell, "nothing.invalid")
    assert missing.addresses == ()
    assert evidence[0].ok
    connect, _ = read_tcp(shell, MI_FQDN, 5022)
    assert connect.connected


def test_an_overlapping_prefix_is_reported_while_traffic_still_flows() -> None:
    p = Plan.of(16)
    broad = p.hosts(sql01={"address": f"{p.sql}/26", "gateway": f"{p.net}.17"})  # /26 covers the MI's /28
    with LabHosts(load_hosts(broad)) as hosts:
        shell = Shell(ssh(hosts), "sql01")
        networks, _ = read_networks(shell)
        connect, _ = read_tcp(shell, p.mi, 5022)
    assert connect.connected  # the lab routes the MI's addresses explicitly: only the check can tell
    found = overlaps(ipaddress.IPv4Network(p.mi_subnet), networks.networks, ipaddress.IPv4Address(p.sql))
    assert found == (f"{p.net}.0/26 overlaps the managed instance subnet {p.mi_subnet}",)


def test_a_declared_known_hosts_is_checked_strictly_over_paramiko(lab: LabHosts, tmp_path: Path) -> None:
    """testinfra's paramiko backend connects to any host key with a warning; a known_hosts the environment
    declares must refuse a key that is missing or different, as OpenSSH's StrictHostKeyChecking=yes does."""
    address = str(lab.address("sql01"))

    def open_with(known_hosts: Path) -> Shell:
        spec = HostSpec("paramiko", address, "root", None, str(lab.identity_file), None, None, str(known_hosts))
        return Shell(open_host(spec, "sql01", timeout=5), "sql01")

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Unknown ssh-ed25519 host key" warning: the key is known
        assert open_with(lab.known_hosts).run("echo ok").stdout.strip() == "ok"
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(TargetUnreachable, match="not found in known_hosts"):
        open_with(empty).run("echo ok")
    other_key = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    wrong = tmp_path / "wrong"
    wrong.write_text(f"{address} {other_key.decode()}\n")
    with pytest.raises(TargetUnreachable, match="BadHostKeyException"):
        open_with(wrong).run("echo ok")


def _logins(log: Path) -> int:
    """ssh connections that logged in, as sshd counts them (LogLevel INFO: one "Accepted publickey" line each)."""
    return sum("Accepted publickey for root" in line for line in log.read_text(errors="replace").splitlines())


@pytest.mark.parametrize(("workers", "most"), [("0", 1), ("2", 2)])
def test_the_gate_uses_one_ssh_connection_per_host_and_worker(tmp_path: Path, workers: str, most: int) -> None:
    """Every host and network check of one SQL Server host, run by the real gate, shares one ssh connection per
    worker process: facts are read once and the on-demand network questions reuse the same client."""
    with Lab(load_scenario("healthy"), ephemeral_ports=True) as lab:
        env = lab.write_environment(tmp_path / "lab.yaml")
        log = lab.hosts.sshd_log("sql01")
        before = _logins(log)
        proc = run_pytest_gate(env, tmp_path / "reports", *HOST_CHECKS, "-n", workers)
        logins = _logins(log) - before
    assert proc.returncode == 0, proc.stdout[-3000:]
    summary = json.loads((tmp_path / "reports" / "summary.json").read_text())
    on_host = {r["prerequisite"] for r in summary["records"] if r["target"] == "sql01" and r["outcome"] == "passed"}
    assert len(on_host) >= 10, on_host  # the host's facts and network questions were really asked over ssh
    assert 1 <= logins <= most, f"{logins} ssh logins to sql01 for {len(on_host)} host checks on {workers} worker(s)"
