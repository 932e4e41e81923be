"""The lab's machines for real: namespaces, routes, sshd reached by testinfra, firewall rules that really block,
clean removal, two labs side by side, and stale leftovers of a dead lab.

Every lab here takes its own address plan (`Plan.of(i)`), so modules and xdist workers never collide with
each other or with a demo lab.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import testinfra

from linkgate.lab import netns as nx
from linkgate.lab.hosts import LabConflict, LabHosts, cleanup_stale, default_state_root, load_hosts

pytestmark = [
    pytest.mark.lab,
    pytest.mark.needs_root,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
]

ROOT = Path(__file__).resolve().parents[2]
MI_FQDN = "mi01.a1b2c3d4e5f6.database.windows.net"
NODE = "db123.tr123456.west-us.worker.database.windows.net"
CONF = "[hadr]\nhadrenabled = 1\n\n[traceflag]\ntraceflag0 = 1800\ntraceflag1 = 9567\n\n[sqlagent]\nenabled = true\n"


WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
PLANS_PER_WORKER = 24


@dataclass(frozen=True)
class Plan:
    """A healthy lab in one /24 of its own: uplink .0/30, sql01 .20/28, mi01 .36 (+ node .37)/28, azure .52/28.

    `Plan.of(i)` gives test-local plan i (0 ≤ i < 24) a /24 no other xdist worker uses, in 198.18.100.0 and up,
    so self-tests never collide with each other or with a demo lab on 198.18.0-3.x.
    """

    net: str  # e.g. "198.18.101"

    @classmethod
    def of(cls, i: int) -> Plan:
        assert 0 <= i < PLANS_PER_WORKER
        k = 100 + WORKER * PLANS_PER_WORKER + i
        assert k < 512, "too many xdist workers for the lab's address plans"
        return cls(f"198.{18 + k // 256}.{k % 256}")

    @property
    def sql(self) -> str:
        return f"{self.net}.20"

    @property
    def mi(self) -> str:
        return f"{self.net}.36"

    @property
    def node(self) -> str:
        return f"{self.net}.37"

    @property
    def mi_subnet(self) -> str:
        return f"{self.net}.32/28"

    @property
    def azure(self) -> str:
        return f"{self.net}.52"

    def hosts(self, sql01: dict[str, Any] | None = None, mi01: dict[str, Any] | None = None) -> dict[str, Any]:
        """The raw hosts section, with some keys of sql01 / mi01 replaced."""
        sql = {
            "address": f"{self.sql}/28",
            "ssh": True,
            "listeners": [5022],
            "mssql_service": {"enabled": True, "port": 1433},
            "mssql_conf": CONF,
            "etc_hosts": {
                MI_FQDN: self.mi,
                NODE: self.node,
                "login.microsoftonline.com": self.azure,
                "management.core.windows.net": self.azure,
                "management.azure.com": self.azure,
            },
            "firewall": {
                "backend": "nftables",
                "input_policy": "drop",
                "output_policy": "accept",
                "rules": [
                    {"chain": "input", "action": "accept", "iif": "lo"},
                    {"chain": "input", "action": "accept", "established": True},
                    {"chain": "input", "action": "accept", "protocol": "tcp", "dport": 22, "comment": "ssh"},
                    {"chain": "input", "action": "accept", "protocol": "tcp", "dport": 1433, "comment": "sql"},
                    {
                        "chain": "input",
                        "action": "accept",
                        "protocol": "tcp",
                        "dport": 5022,
                        "saddr": self.mi_subnet,
                        "comment": "mi link",
                    },
                ],
            },
        }
        mi = {"address": f"{self.mi}/28", "extra_addresses": [self.node], "listeners": [5022, 11002]}
        return {
            "uplink": f"{self.net}.0/30",
            "machines": {
                "sql01": {**sql, **(sql01 or {})},
                "mi01": {**mi, **(mi01 or {})},
                "azure": {"address": f"{self.azure}/28", "listeners": [443]},
            },
        }

    def with_rule(self, rule: dict[str, Any], *, at: int | None = None, backend: str = "nftables") -> dict[str, Any]:
        """The hosts section with one more sql01 firewall rule (appended, or inserted at `at`), in `backend`."""
        raw = self.hosts()
        fw = raw["machines"]["sql01"]["firewall"]
        fw["backend"] = backend
        fw["rules"].insert(len(fw["rules"]) if at is None else at, rule)
        return raw


def ssh(lab: LabHosts, machine: str = "sql01") -> Any:
    """A testinfra host over paramiko, as the gate connects (the lab's host key is new to paramiko)."""
    warnings.filterwarnings("ignore", message="Unknown ssh-ed25519 host key")
    return testinfra.get_host(lab.testinfra_spec(machine), ssh_identity_file=str(lab.identity_file), timeout=5)


HEALTHY = Plan.of(0)


@pytest.fixture(scope="module")
def lab() -> Iterator[LabHosts]:
    with LabHosts(load_hosts(HEALTHY.hosts())) as hosts:
        yield hosts


def lab_routes() -> list[dict[str, Any]]:
    """Root-namespace routes into the lab range."""
    out = []
    for r in nx.routes():
        dst = r.get("dst", "")
        if dst != "default" and ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32").subnet_of(nx.LAB_RANGE):
            out.append(r)
    return out


def test_blackhole_first_and_lab_routes_only_through_the_lab_uplink(lab: LabHosts) -> None:
    assert nx.blackhole_installed()
    mine = [r for r in lab_routes() if r.get("dev") == lab.uplink_device]
    p = HEALTHY
    assert {r["dst"] for r in mine} == {f"{p.net}.0/30", p.sql, p.mi, p.node, p.azure}
    for r in lab_routes():  # nothing else routes lab addresses: the blackhole or some lab's uplink
        assert r.get("type") == "blackhole" or str(r.get("dev", "")).startswith("lg"), r
    assert nx.ip("route", "show", "table", "all", "default", netns=lab.netns("sql01")) == ""
    assert nx.run(["sysctl", "-n", "net.ipv4.ip_forward"], netns=lab.router).stdout.strip() == "1"


def test_testinfra_reaches_the_sql_host_over_ssh_and_sees_the_labs_files(lab: LabHosts) -> None:
    host = ssh(lab)
    assert host.check_output("hostname") == "sql01"
    assert host.file("/var/opt/mssql/mssql.conf").content_string == CONF
    assert f"{HEALTHY.mi}\t{MI_FQDN}" in host.file("/etc/hosts").content_string
    assert host.check_output("id -u") == "0"
    # OpenSSH with the lab's ssh_config: strict host key checking against the known_hosts the lab wrote
    scan = subprocess.run(
        ["ssh", "-F", str(lab.ssh_config), "-o", "BatchMode=yes", HEALTHY.sql, "hostname"],
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    assert (scan.returncode, scan.stdout.strip()) == (0, "sql01"), scan.stderr


def test_nothing_leaks_to_the_real_etc_or_var(lab: LabHosts) -> None:
    assert MI_FQDN not in Path("/etc/hosts").read_text()
    assert not Path("/var/opt/mssql").exists()
    for stand_in in ("systemctl", "df", "lsblk"):
        assert not Path("/usr/local/sbin", stand_in).exists()
    assert not Path("/etc/netns").joinpath(lab.netns("sql01")).exists()


def test_mssql_server_is_active_only_while_something_serves_sql_on_that_host(lab: LabHosts) -> None:
    host = ssh(lab)
    service = host.service("mssql-server")
    assert service.is_enabled
    assert not service.is_running
    with lab.listening_socket("sql01", 1433):
        assert host.run("systemctl is-active mssql-server").stdout.strip() == "active"
        assert service.is_running
    assert host.run("systemctl is-active mssql-server").rc == 3
    assert host.run("systemctl is-enabled nosuchunit").rc == 1


def test_firewall_really_blocks_inbound_5022_from_outside_the_mi_subnet(lab: LabHosts) -> None:
    assert nx.tcp_connects_from(lab.netns("mi01"), HEALTHY.sql, 5022, timeout=1.0)
    assert not nx.tcp_connects_from(lab.netns("azure"), HEALTHY.sql, 5022, timeout=0.5)  # dropped
    assert nx.tcp_connects_from(lab.netns("sql01"), HEALTHY.node, 11002, timeout=1.0)
    assert not nx.tcp_connects_from(lab.netns("sql01"), HEALTHY.node, 11003, timeout=1.0)  # no listener


@pytest.mark.parametrize(
    ("backend", "i", "spelled"),
    [("nftables", 1, "tcp dport 11000-11999 reject"), ("iptables", 2, "--dport 11000:11999 -j REJECT")],
)
def test_outbound_hadr_ports_rejected_really_fail(backend: str, i: int, spelled: str) -> None:
    p = Plan.of(i)
    reject = {"chain": "output", "action": "reject", "protocol": "tcp", "dport": "11000-11999", "daddr": p.mi_subnet}
    with LabHosts(load_hosts(p.with_rule(reject, backend=backend))) as hosts:
        sql = hosts.netns("sql01")
        assert not nx.tcp_connects_from(sql, p.node, 11002, timeout=1.0)
        assert nx.tcp_connects_from(sql, p.mi, 5022, timeout=1.0)
        listing = nx.run(["nft", "list", "ruleset"] if backend == "nftables" else ["iptables-save"], netns=sql).stdout
        assert spelled in listing


def test_stop_removes_everything_but_the_blackhole() -> None:
    hosts = LabHosts(load_hosts(Plan.of(3).hosts()))
    hosts.start()
    state = hosts.state
    ssh(hosts).check_output("true")  # an open ssh session must not keep anything alive
    sshd_pids = nx.namespace_pids(hosts.netns("sql01"))
    assert sshd_pids
    hosts.stop()
    assert not [ns for ns in nx.namespaces() if ns.startswith(f"lg-{hosts.lab_id}-")]
    assert hosts.uplink_device not in nx.links()
    assert not [r for r in lab_routes() if r.get("dev") == hosts.uplink_device]
    assert not state.exists()
    assert not [
        p
        for p in sshd_pids
        if Path(f"/proc/{p}").exists() and Path(f"/proc/{p}/stat").read_text().split(") ")[1][0] != "Z"
    ]
    assert nx.blackhole_installed()
    hosts.stop()  # idempotent


def test_two_labs_side_by_side_and_a_clash_refused_clearly(lab: LabHosts) -> None:
    p = Plan.of(4)
    with LabHosts(load_hosts(p.hosts())) as other:
        assert other.lab_id != lab.lab_id
        assert set(other.namespaces()).isdisjoint(lab.namespaces())
        assert ssh(other).check_output("hostname") == "sql01"
        assert ssh(lab).check_output("hostname") == "sql01"
        clash = LabHosts(load_hosts(p.hosts()))
        with pytest.raises(
            LabConflict,
            match=rf"already routes {re.escape(p.net)}\.\S+ via {other.uplink_device}, "
            "which this lab needs",
        ):
            clash.start()
        assert not [ns for ns in nx.namespaces() if ns.startswith(f"lg-{clash.lab_id}-")]
        assert not clash.state.exists()
    assert ssh(lab).check_output("hostname") == "sql01"


def test_cleanup_stale_removes_a_dead_labs_leftovers_and_spares_live_ones(lab: LabHosts) -> None:
    script = textwrap.dedent(f"""
        import json, os
        from linkgate.lab.hosts import LabHosts, load_hosts
        hosts = LabHosts(load_hosts(json.loads({json.dumps(Plan.of(5).hosts())!r})))
        hosts.start()
        print(hosts.lab_id, flush=True)
        os._exit(0)  # dies without stop(): namespaces, uplink, sshd and files stay behind
    """)
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stderr
    dead = done.stdout.strip()
    assert f"lg-{dead}-sql01" in nx.namespaces()
    assert (default_state_root() / dead).is_dir()
    removed = cleanup_stale()
    assert dead in removed
    assert lab.lab_id not in removed
    assert not [ns for ns in nx.namespaces() if ns.startswith(f"lg-{dead}-")]
    assert f"lg{dead}up" not in nx.links()
    assert not (default_state_root() / dead).exists()
    assert ssh(lab).check_output("hostname") == "sql01"


def test_a_relocated_lab_runs_beside_one_on_the_same_addresses(lab: LabHosts) -> None:
    with LabHosts(load_hosts(HEALTHY.hosts()), relocate=True) as moved:
        assert moved.offset != 0
        assert moved.offset % 2048 == 0
        sql, mi_subnet = moved.translate(HEALTHY.sql), moved.translate(HEALTHY.mi_subnet)
        assert str(moved.address("sql01")) == sql != HEALTHY.sql
        host = ssh(moved)
        assert host.check_output("hostname") == "sql01"
        assert f"{moved.translate(HEALTHY.mi)}\t{MI_FQDN}" in host.file("/etc/hosts").content_string
        assert f"ip saddr {mi_subnet} tcp dport 5022 accept" in host.check_output("nft list ruleset")
        assert nx.tcp_connects_from(moved.netns("mi01"), sql, 5022, timeout=1.0)
        assert not nx.tcp_connects_from(moved.netns("azure"), sql, 5022, timeout=0.5)
        assert ssh(lab).check_output("hostname") == "sql01"  # the original is untouched


def test_a_spec_spanning_two_blocks_cannot_move() -> None:
    raw = Plan.of(7).hosts()
    raw["machines"]["azure"]["address"] = "198.19.0.4/24"  # far from the rest (and from the top blocks, where
    # concurrent labs relocate first): no single block holds both
    spec = load_hosts(raw)
    with LabHosts(spec) as first:
        second = LabHosts(spec, relocate=True)
        with pytest.raises(LabConflict, match=r"the lab cannot move either: its addresses span more than one /21"):
            second.start()
        assert first.offset == 0


def test_a_relocatable_lab_leaves_its_home_block_to_fixed_address_labs() -> None:
    """Self-test labs relocate even when the scenario's block is free, so `pytest --env demo` never meets them."""
    spec = load_hosts(Plan.of(6).hosts())
    with LabHosts(spec, relocate=True) as moved:
        assert moved.offset != 0
        with LabHosts(spec) as fixed:  # the scenario's own addresses are still free
            assert fixed.offset == 0
            assert ssh(fixed).check_output("hostname") == "sql01"
        assert ssh(moved).check_output("hostname") == "sql01"
