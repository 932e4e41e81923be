"""Capture real `ufw status verbose` and firewalld `--list-all` listings of the lab's SQL Server host firewalls.

The lab writes its host rules with nftables or iptables; a real host may use ufw or firewalld instead. This
script says the same rules (of healthy and of each host-* scenario with a firewall of its own) in ufw's and
firewalld's own commands, runs the real tools, and keeps what they print, so the evaluators are tested on
real output. The commands given are kept beside each listing (`<scenario>.ufw`, `<scenario>.firewalld`).

The host is never touched: each capture runs in a new mount and network namespace (`unshare -m -n`) where
/etc/ufw, /etc/default/ufw, /lib/ufw and /etc/firewalld are private copies bind-mounted over the originals,
ufw's sysctl file is an empty one, and whatever ufw loads goes into the namespace's own, empty, netfilter.
firewalld is configured offline (`firewall-offline-cmd`), without its daemon. No packet is sent.

Needs root and the ufw and firewalld packages (CI needs neither: it reads the stored listings). Run from the
repository root:

    python selftests/unit/data/firewall/capture_ufw_firewalld.py
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from linkgate.lab.hosts import Action, Chain, Firewall, FirewallBackend, Rule, load_hosts
from linkgate.lab.scenario import list_scenarios, load_scenario

OUT = Path(__file__).resolve().parent
PRIVATE = ("/etc/ufw", "/etc/default/ufw", "/lib/ufw", "/etc/firewalld")
UFW_ACTION = {Action.ACCEPT: "allow", Action.DROP: "deny", Action.REJECT: "reject"}
FIREWALLD_ACTION = {Action.ACCEPT: "accept", Action.DROP: "drop", Action.REJECT: "reject"}


def firewalls() -> dict[str, Firewall]:
    """healthy and every host-* scenario whose SQL Server host firewall has rules unlike those before it."""
    chosen: dict[str, Firewall] = {}
    for name in sorted(list_scenarios(), key=lambda n: (n != "healthy", n)):
        if name != "healthy" and not name.startswith("host-"):
            continue
        hosts = load_scenario(name).hosts
        machine = load_hosts(dict(hosts)).machines.get("sql01") if hosts.get("machines") else None
        if machine is None or machine.firewall.backend is FirewallBackend.NONE:
            continue
        fw = machine.firewall
        if all((fw.rules, fw.input_policy, fw.output_policy) != (o.rules, o.input_policy, o.output_policy)
               for o in chosen.values()):  # fmt: skip
            chosen[name] = fw
    return chosen


def _ports(rule: Rule, sep: str) -> str:
    assert rule.dport is not None
    d = rule.dport
    return str(d.first) if d.first == d.last else f"{d.first}{sep}{d.last}"


def ufw_commands(fw: Firewall) -> list[str]:
    """The ufw commands that say `fw`. Loopback and established traffic need none: ufw's before.rules accept them."""
    out = [
        f"default {'allow' if fw.input_policy is Action.ACCEPT else 'deny'} incoming",
        f"default {'allow' if fw.output_policy is Action.ACCEPT else 'deny'} outgoing",
    ]
    for r in fw.rules:
        if r.iif == "lo" or r.established:
            continue
        inbound = r.chain is Chain.INPUT
        words = [UFW_ACTION[r.action], "in" if inbound else "out"]
        words += ["from", str(r.saddr) if r.saddr else "any", "to", str(r.daddr) if r.daddr else "any"]
        if r.dport is not None:
            words += ["port", _ports(r, ":")]
        if r.protocol:
            words += ["proto", r.protocol]
        if r.comment:
            words += ["comment", shlex.quote(r.comment)]
        out.append(" ".join(words))
    return out


def firewalld_commands(fw: Firewall) -> list[str]:
    """The firewall-offline-cmd options that say `fw`'s inbound rules in the public zone (firewalld zones do not
    filter outbound traffic; its default zone already allows ssh)."""
    out = ["--zone=public --add-interface=eth0"]
    for r in fw.rules:
        if r.chain is not Chain.INPUT or r.iif == "lo" or r.established or r.dport is None:
            continue
        port = _ports(r, "-")
        if r.saddr is None and r.action is Action.ACCEPT:
            out.append(f"--zone=public --add-port={port}/{r.protocol}")
            continue
        source = f' source address="{r.saddr}"' if r.saddr else ""
        rich = f'rule family="ipv4"{source} port port="{port}" protocol="{r.protocol}" {FIREWALLD_ACTION[r.action]}'
        out.append(f"--zone=public --add-rich-rule={shlex.quote(rich)}")
    return out


def inside(tmp: Path, tool: str, commands: list[str]) -> str:
    """Run in the private namespace: bind private copies over the tool's files, configure, list."""
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(tmp)], check=True)
    for original in PRIVATE:
        copy = tmp / original.strip("/").replace("/", "_")
        (shutil.copytree if Path(original).is_dir() else shutil.copy2)(original, copy)
        subprocess.run(["mount", "--bind", str(copy), original], check=True)
    (tmp / "empty-sysctl.conf").write_text("")
    default = Path("/etc/default/ufw")
    sysctl = f"IPT_SYSCTL={tmp}/empty-sysctl.conf"  # ufw applies none of its sysctl settings
    default.write_text(default.read_text().replace("IPT_SYSCTL=/etc/ufw/sysctl.conf", sysctl))

    def run(argv: list[str]) -> str:
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout

    if tool == "ufw":
        for command in commands:
            run(["ufw", *shlex.split(command)])
        run(["ufw", "--force", "enable"])
        return run(["ufw", "status", "verbose"])
    for command in commands:
        run(["firewall-offline-cmd", *shlex.split(command)])
    return (
        run(["firewall-offline-cmd", "--get-default-zone"])
        + "\n"
        + run(["firewall-offline-cmd", "--zone=public", "--list-all"])
    )


def capture(tool: str, scenario: str, commands: list[str]) -> list[Path]:
    with tempfile.TemporaryDirectory(prefix="lgcap-") as tmp:  # a tmpfs is mounted on it in the namespace only
        argv = ["unshare", "-m", "-n", sys.executable, __file__, "--inside", tmp, tool, *commands]
        listing = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    directory = OUT / tool
    given = directory / f"{scenario}.{tool}"
    given.write_text("".join(f"{c}\n" for c in commands), encoding="utf-8")
    if tool == "ufw":
        out = directory / f"captured-{scenario}.txt"
        out.write_text(listing, encoding="utf-8")
        return [given, out]
    default_zone, _, list_all = listing.partition("\n\n")
    zone = directory / f"captured-{scenario}.default-zone.txt"
    zone.write_text(default_zone + "\n", encoding="utf-8")
    out = directory / f"captured-{scenario}.list-all.txt"
    out.write_text(list_all, encoding="utf-8")
    return [given, zone, out]


def main() -> int:
    if len(sys.argv) > 3 and sys.argv[1] == "--inside":
        sys.stdout.write(inside(Path(sys.argv[2]), sys.argv[3], sys.argv[4:]))
        return 0
    if os.geteuid() != 0:
        print("run as root: namespaces and bind mounts", file=sys.stderr)
        return 2
    os.environ.setdefault("LINKGATE_LAB_PASSWORD", "capture-only")  # scenarios name it; nothing logs in here
    seen: set[tuple[str, ...]] = set()
    for scenario, fw in firewalls().items():
        for tool, commands in (("ufw", ufw_commands(fw)), ("firewalld", firewalld_commands(fw))):
            if (tool, *commands) in seen:
                continue  # firewalld ignores outbound rules: those scenarios read as an earlier one
            seen.add((tool, *commands))
            for path in capture(tool, scenario, commands):
                print(path.relative_to(OUT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
