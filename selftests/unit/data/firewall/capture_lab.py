"""Capture the SQL Server host's firewall listings of the lab's scenarios, as the lab loads them.

For every bundled scenario whose SQL Server host has a firewall unlike every scenario before it (healthy
first, then the host-* scenarios, then the others; by name), the machine's rules are loaded by the lab's
own `apply_firewall` (the real nft or iptables-restore) into a throwaway network namespace, then listed
with the tools the gate runs on a host: `nft -j list ruleset` and, for the iptables scenarios,
`iptables-save`. The rules given to the tool are kept beside the listings (`.nft` / `.rules`), so the
self-tests can tell a stale capture.

No interface is configured and no packet is sent. Run as root from the repository root:

    python selftests/unit/data/firewall/capture_lab.py
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from linkgate.lab import netns as nx
from linkgate.lab.hosts import FirewallBackend, Machine, apply_firewall, iptables_rules, load_hosts, nft_ruleset
from linkgate.lab.scenario import list_scenarios, load_scenario

OUT = Path(__file__).resolve().parent / "lab"
MACHINE = "sql01"


def sql_host(scenario: str) -> Machine | None:
    """The scenario's SQL Server host machine, as the lab builds it (addresses not relocated), if it has one."""
    hosts = load_scenario(scenario).hosts
    if not hosts.get("machines"):
        return None
    return load_hosts(dict(hosts)).machines.get(MACHINE)


def scenarios_to_capture() -> list[str]:
    """healthy, then every scenario whose SQL Server host firewall is one not seen yet (host-* ones first, so an
    active-* variant that only extends one is not the one kept)."""
    seen: set[object] = set()
    chosen = []
    names = sorted(list_scenarios(), key=lambda n: (n != "healthy", not n.startswith("host-"), n))
    for name in names:
        machine = sql_host(name)
        firewall = machine.firewall if machine else None
        if firewall is not None and firewall.backend is not FirewallBackend.NONE and firewall not in seen:
            seen.add(firewall)
            chosen.append(name)
    return chosen


def capture(scenario: str) -> list[Path]:
    machine = sql_host(scenario)
    assert machine is not None
    firewall = machine.firewall
    ns = f"lgcap-{secrets.token_hex(3)}"
    nx.run(["ip", "netns", "add", ns])
    written = []
    try:
        apply_firewall(firewall, ns)
        files = {OUT / f"{scenario}.json": nx.run(["nft", "-j", "list", "ruleset"], netns=ns).stdout}
        if firewall.backend is FirewallBackend.IPTABLES:
            files[OUT / f"{scenario}.rules"] = iptables_rules(firewall)
            files[OUT / f"{scenario}.save"] = nx.run(["iptables-save"], netns=ns).stdout
        else:
            files[OUT / f"{scenario}.nft"] = nft_ruleset(firewall)
        for path, text in files.items():
            path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
            written.append(path)
    finally:
        nx.run(["ip", "netns", "del", ns], check=False)
    return written


def main() -> int:
    if os.geteuid() != 0:
        print("capture_lab.py loads rules into a network namespace: run it as root", file=sys.stderr)
        return 1
    os.environ.setdefault("LINKGATE_LAB_PASSWORD", "Lg!capture")  # scenarios reference it; nothing logs in
    OUT.mkdir(exist_ok=True)
    for old in [*OUT.glob("*.json"), *OUT.glob("*.nft"), *OUT.glob("*.rules"), *OUT.glob("*.save")]:
        old.unlink()
    for scenario in scenarios_to_capture():
        for path in capture(scenario):
            print(path.relative_to(OUT.parent))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
