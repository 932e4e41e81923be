"""Facts about the machine that runs SQL Server, read over a testinfra host (ssh on Linux, WinRM on Windows).

Every fact keeps the commands that produced it and what they printed, as Evidence. Linux facts come
from the files and tools an operator would use (`systemctl`, /var/opt/mssql/mssql.conf, `df`/`lsblk`,
`ip`, and the firewall's own listing); deciding whether a flow passes the firewall is left to
`linkgate.firewall`. Windows facts come from one PowerShell script each, run as `powershell.exe
-EncodedCommand` (testinfra's WinRM backend speaks cmd.exe) and answering in JSON, parsed here.
"""

from __future__ import annotations

import configparser
import datetime as dt
import enum
import functools
import ipaddress
import json
import os
import re
import shlex
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import paramiko
import testinfra
import testinfra.host
from testinfra.backend.paramiko import ParamikoBackend

from linkgate.environment import HostOS, HostSpec, SqlServer
from linkgate.evidence import Evidence
from linkgate.firewall.firewalld import evaluate_firewalld
from linkgate.firewall.flows import Flow, Verdict
from linkgate.firewall.netfilter import evaluate_iptables, evaluate_nft
from linkgate.firewall.remediation import firewalld_command, iptables_command, nft_command, ufw_command
from linkgate.firewall.ufw import evaluate_ufw
from linkgate.firewall.windows import FIREWALL_SCRIPT, encoded_command
from linkgate.probes.facts import Fact, TargetUnreachable

T = TypeVar("T")
MSSQL_CONF = "/var/opt/mssql/mssql.conf"
MSSQL_DATA = "/var/opt/mssql/data"
TRACEFLAG_KEY = re.compile(r"^traceflag\d*$")
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


class CommandFailed(Exception):
    """A command ran but did not give an answer the probe can read; the message says what it printed."""

    def __init__(self, message: str, evidence: Evidence) -> None:
        super().__init__(message)
        self.evidence = evidence


@dataclass(frozen=True)
class Ran:
    """One command on a host and everything it returned."""

    command: str
    rc: int
    stdout: str
    stderr: str
    seconds: float

    def evidence(self, target: str, ok: bool | None = None) -> Evidence:
        text = self.stdout.rstrip() or "(no output)"
        if self.stderr.strip():
            text += f"\nstderr: {self.stderr.strip()}"
        return Evidence(
            target, "host", self.command, f"exit {self.rc}\n{text}", self.rc == 0 if ok is None else ok, self.seconds
        )


class KnownHostsParamikoBackend(ParamikoBackend):  # type: ignore[misc]  # testinfra has no type hints
    """testinfra's paramiko backend, with the host key checked against a known_hosts file: a key that is
    missing or different refuses the connection (paramiko's RejectPolicy), as OpenSSH's
    StrictHostKeyChecking=yes does. testinfra's own backend warns and connects to any key."""

    def __init__(self, hostspec: str, known_hosts: str, **kwargs: Any) -> None:
        super().__init__(hostspec, **kwargs)
        self.known_hosts = known_hosts  # absolute: the environment loader resolved it

    @functools.cached_property
    def client(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.load_host_keys(self.known_hosts)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        cfg: dict[str, Any] = {
            "hostname": self.host.name,
            "port": int(self.host.port) if self.host.port else 22,
            "username": self.host.user,
            "timeout": self.timeout,
            "password": self.host.password,
        }
        if self.ssh_config:
            config = paramiko.SSHConfig.from_path(self.ssh_config)
            self._load_ssh_config(client, cfg, config, str(Path(self.ssh_config).parent))
        if self.ssh_identity_file:
            cfg["key_filename"] = self.ssh_identity_file
        client.connect(**cfg)
        return client


def open_host(spec: HostSpec, target: str, *, timeout: float) -> Any:
    """A testinfra host for an environment's `host:` entry; nothing connects until the first command.

    Secrets (password_env) go into testinfra's host spec in memory only: its paramiko and WinRM backends
    read passwords from nowhere else. A declared known_hosts is checked strictly: by OpenSSH (`ssh`), or for
    `paramiko` by KnownHostsParamikoBackend (testinfra's own accepts any host key with a warning).
    """
    kwargs: dict[str, Any] = {}
    password = os.environ.get(spec.password_env) if spec.password_env else None
    if spec.password_env and password is None:
        raise TargetUnreachable(target, f"environment variable {spec.password_env} (the host password) is not set")
    if spec.backend == "local" or password is None:
        hostspec = spec.testinfra_spec()
    else:
        user = urllib.parse.quote(spec.user or "", safe="")
        port = f":{spec.port}" if spec.port else ""
        hostspec = f"{spec.backend}://{user}:{urllib.parse.quote(password, safe='')}@{spec.address}{port}"
    if spec.backend in ("ssh", "paramiko"):
        kwargs["timeout"] = max(1, int(timeout))
        if spec.identity_file:
            kwargs["ssh_identity_file"] = spec.identity_file
        if spec.ssh_config:
            kwargs["ssh_config"] = spec.ssh_config
    if spec.backend == "ssh" and spec.known_hosts:
        kwargs["ssh_extra_args"] = f"-o UserKnownHostsFile={shlex.quote(spec.known_hosts)} -o StrictHostKeyChecking=yes"
    if spec.backend == "paramiko" and spec.known_hosts:
        backend = KnownHostsParamikoBackend(hostspec.split("://", 1)[1], spec.known_hosts, **kwargs)
        return testinfra.host.Host(backend)
    if spec.backend == "winrm":
        kwargs["no_ssl"] = spec.winrm_http
        kwargs["operation_timeout_sec"] = max(1, int(timeout))
        kwargs["read_timeout_sec"] = max(2, int(timeout) + 1)
    return testinfra.get_host(hostspec, **kwargs)


class Shell:
    """Runs commands on one testinfra host (`testinfra.host.Host`), with sudo when asked, timing each."""

    def __init__(self, host: Any, target: str, *, sudo: bool = False) -> None:
        self.host = host
        self.target = target
        self.sudo = sudo

    def run(self, command: str, *, privileged: bool = False) -> Ran:
        """Run `command` (already quoted); a transport failure (ssh, WinRM) raises TargetUnreachable."""
        full = f"sudo -n {command}" if privileged and self.sudo else command
        started = time.monotonic()
        try:
            result = self.host.run(full)
        except Exception as e:  # paramiko, OpenSSH, pywinrm each raise their own types
            raise TargetUnreachable(self.target, f"{type(e).__name__}: {e}") from e
        return Ran(full, int(result.rc), str(result.stdout), str(result.stderr), time.monotonic() - started)

    def fact(self, what: str, read: Callable[[Shell], tuple[T, tuple[Evidence, ...]]]) -> Fact[T]:
        """A fact read with `read`, or the reason it could not be read (TargetUnreachable propagates)."""
        try:
            value, evidence = read(self)
        except CommandFailed as e:
            return Fact(what, self.target, (e.evidence,), None, str(e))
        return Fact(what, self.target, evidence, value)


# --- Linux: the mssql-server unit ----------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceState:
    """What `systemctl is-active` and `is-enabled` say about one unit."""

    name: str
    active: str  # active, inactive, failed, activating…
    enabled: str  # enabled, disabled, masked, static… or "not-found"

    @property
    def running(self) -> bool:
        return self.active == "active"

    @property
    def is_enabled(self) -> bool:
        """Starts at boot: enabled (also enabled-runtime and alias, which systemd starts the same way)."""
        return self.enabled in ("enabled", "enabled-runtime", "alias")


def read_service(shell: Shell, name: str = "mssql-server") -> tuple[ServiceState, tuple[Evidence, ...]]:
    active = shell.run(f"systemctl is-active {shlex.quote(name)}")
    enabled = shell.run(f"systemctl is-enabled {shlex.quote(name)}")
    evidence = (active.evidence(shell.target, active.rc in (0, 3)), enabled.evidence(shell.target))
    if active.rc == 127 or enabled.rc == 127:
        raise CommandFailed(
            "systemctl is not installed: this host does not run systemd, so the service state of "
            f"{name} cannot be read",
            evidence[0],
        )
    state = enabled.stdout.strip() or ("not-found" if "No such file" in enabled.stderr else "unknown")
    return ServiceState(name, active.stdout.strip() or "unknown", state), evidence


# --- Linux: mssql.conf -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MssqlConf:
    """/var/opt/mssql/mssql.conf, parsed. Absent keys mean SQL Server's defaults (HADR and the Agent off)."""

    path: str
    present: bool
    sections: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    modified: int | None = None  # mtime, seconds since the epoch: newer than SQL Server's start = restart pending

    def value(self, section: str, key: str) -> str | None:
        return self.sections.get(section, {}).get(key)

    @property
    def hadr_enabled(self) -> bool:
        """`[hadr] hadrenabled = 1`."""
        return (self.value("hadr", "hadrenabled") or "").strip() == "1"

    @property
    def trace_flags(self) -> frozenset[int]:
        """Every `[traceflag] traceflagN = flag` (keys `traceflag`, `traceflag0`, `traceflag1`, …)."""
        flags = set()
        for key, value in self.sections.get("traceflag", {}).items():
            if TRACEFLAG_KEY.match(key) and value.strip().isdigit():
                flags.add(int(value.strip()))
        return frozenset(flags)

    @property
    def agent_enabled(self) -> bool:
        """`[sqlagent] enabled = true`; absent means disabled (the documented default)."""
        return (self.value("sqlagent", "enabled") or "").strip().lower() in TRUE_WORDS

    def differences(
        self, *, hadr_enabled: bool | None, trace_flags: frozenset[int], agent_running: bool | None
    ) -> tuple[str, ...]:
        """Where this file and what SQL Server runs disagree (None: SQL Server did not say), both sides named.

        SQL Server on Linux reads the file only at startup: after a restart each of these takes the file's side.
        """
        out = []
        if hadr_enabled is not None and self.hadr_enabled != hadr_enabled:
            out.append(
                f"hadr.hadrenabled is {self.value('hadr', 'hadrenabled') or 'not set'} but "
                f"SQL Server runs with IsHadrEnabled = {int(hadr_enabled)}"
            )
        if self.trace_flags != trace_flags:
            out.append(f"[traceflag] lists {_flags(self.trace_flags)} but SQL Server runs {_flags(trace_flags)}")
        if agent_running is not None and self.agent_enabled != agent_running:
            out.append(
                f"sqlagent.enabled is {self.value('sqlagent', 'enabled') or 'not set'} but "
                f"SQL Server Agent is {'running' if agent_running else 'not running'}"
            )
        return tuple(out)


def _flags(flags: frozenset[int]) -> str:
    return "trace flags " + " ".join(map(str, sorted(flags))) if flags else "no trace flags"


def parse_mssql_conf(text: str, path: str = MSSQL_CONF, modified: int | None = None) -> MssqlConf:
    """Parse mssql.conf text; a syntax error raises ValueError naming the line."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text, source=path)
    except configparser.Error as e:
        raise ValueError(f"{path} is not valid INI: {' '.join(str(e).split())}") from None
    sections = {s.lower(): {k.lower(): v for k, v in parser.items(s)} for s in parser.sections()}
    return MssqlConf(path, True, sections, modified)


def read_local_epoch(shell: Shell, when: dt.datetime) -> tuple[int, tuple[Evidence, ...]]:
    """`when`, a time without zone as SQL Server reports it (sqlserver_start_time: the host's local time on Linux),
    in seconds since the epoch, to compare with a file's mtime. The host converts it (`date -d`), so its own time
    zone, with the daylight saving in force on that date, applies; a TZ set for mssql-server alone is not seen.
    The fraction of a second is dropped: a file written in the same second as the start is not later."""
    ran = shell.run(f"date -d {shlex.quote(when.strftime('%Y-%m-%d %H:%M:%S'))} +%s")
    evidence = (ran.evidence(shell.target),)
    answer = ran.stdout.strip()
    if ran.rc != 0 or not answer.lstrip("-").isdigit():
        raise CommandFailed(f"date cannot read {when:%Y-%m-%d %H:%M:%S}: {ran.stderr.strip() or answer}", evidence[0])
    return int(answer), evidence


def read_mssql_conf(shell: Shell, path: str = MSSQL_CONF) -> tuple[MssqlConf, tuple[Evidence, ...]]:
    stat = shell.run(f"stat -c %Y -- {shlex.quote(path)}")
    if stat.rc != 0 and "No such file" in stat.stderr:
        return MssqlConf(path, False), (stat.evidence(shell.target, ok=True),)
    content = shell.run(f"cat -- {shlex.quote(path)}", privileged=True)
    evidence = (stat.evidence(shell.target), content.evidence(shell.target))
    if stat.rc != 0 or content.rc != 0:
        raise CommandFailed(f"cannot read {path}: {(content.stderr or stat.stderr).strip()}", evidence[-1])
    try:
        return parse_mssql_conf(content.stdout, path, int(stat.stdout.strip())), evidence
    except ValueError as e:
        raise CommandFailed(str(e), evidence[-1]) from None


# --- Linux: the log volume's sector size --------------------------------------------------------------


@dataclass(frozen=True)
class SectorSize:
    """The sector sizes of the block device under a path (None when it is not on a block device)."""

    path: str
    source: str  # what df names: /dev/sda1, /dev/mapper/vg-log, or overlay, tmpfs…
    physical: int | None
    logical: int | None


def read_sector_size(shell: Shell, path: str = MSSQL_DATA) -> tuple[SectorSize, tuple[Evidence, ...]]:
    """Physical and logical sector size of the device holding `path` (df, then lsblk).

    testinfra's `block_device().sector_size` is the logical size; trace flag 1800 is about the physical one.
    """
    df = shell.run(f"df --output=source -- {shlex.quote(path)}")
    lines = df.stdout.split("\n")
    if df.rc != 0 or len(lines) < 2:
        raise CommandFailed(f"df cannot tell which device holds {path}: {df.stderr.strip()}", df.evidence(shell.target))
    source = lines[1].strip()
    if not source.startswith("/dev/"):
        return SectorSize(path, source, None, None), (df.evidence(shell.target),)
    lsblk = shell.run(f"lsblk -bdno PHY-SEC,LOG-SEC -- {shlex.quote(source)}")
    evidence = (df.evidence(shell.target), lsblk.evidence(shell.target))
    sizes = lsblk.stdout.split()
    if lsblk.rc != 0 or len(sizes) != 2 or not all(s.isdigit() for s in sizes):
        raise CommandFailed(f"lsblk cannot read the sector sizes of {source}: {lsblk.stderr.strip()}", evidence[-1])
    return SectorSize(path, source, int(sizes[0]), int(sizes[1])), evidence


# --- Linux: addresses -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalNetworks:
    """The host's global IPv4 addresses with their prefixes (`ip -4 addr`): the networks it sits in."""

    interfaces: tuple[ipaddress.IPv4Interface, ...]

    @property
    def networks(self) -> tuple[ipaddress.IPv4Network, ...]:
        return tuple(dict.fromkeys(i.network for i in self.interfaces))


def read_networks(shell: Shell) -> tuple[LocalNetworks, tuple[Evidence, ...]]:
    ran = shell.run("ip -j -4 address show scope global")
    evidence = ran.evidence(shell.target)
    try:
        links = json.loads(ran.stdout) if ran.rc == 0 else None
    except json.JSONDecodeError:
        links = None
    if not isinstance(links, list):
        raise CommandFailed(f"ip cannot list the addresses: {ran.stderr.strip() or 'not JSON'}", evidence)
    found = [
        ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}")
        for link in links
        for a in link.get("addr_info", [])
        if a.get("family") == "inet"
    ]
    return LocalNetworks(tuple(found)), (evidence,)


# --- Linux: the host firewall --------------------------------------------------------------------


class FirewallKind(enum.Enum):
    """Which tool manages the host firewall, detected in the spec's order."""

    FIREWALLD = "firewalld"
    UFW = "ufw"
    NFTABLES = "nftables"
    IPTABLES = "iptables"
    NONE = "none"


XTABLES = {"filter", "nat", "mangle", "raw", "security"}
XTABLES_CHAINS = {"INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"}


@dataclass(frozen=True)
class FirewallListing:
    """The active firewall and its rules as the host listed them, evaluated by `linkgate.firewall`.

    firewalld and ufw are judged by their own evaluators (their listings say what the operator manages);
    otherwise `kernel` names the netfilter listing the flows are evaluated on: `nft -j list ruleset`, or
    `iptables-save` when every nftables table is one iptables-nft manages (its `xt` matches are opaque
    in nft's JSON). `listings` keeps every command's output, for evidence.
    """

    kind: FirewallKind
    listings: Mapping[str, str]
    kernel: str | None = None  # "nft", "iptables", or None: netfilter has no rules
    nft_json: str | None = None
    iptables_save: str | None = None
    firewalld_zones: str | None = None  # firewall-cmd --get-active-zones
    firewalld_list_all: str | None = None  # firewall-cmd --zone=Z --list-all, for each active zone
    ufw_status: str | None = None  # ufw status verbose

    def evaluate(self, flow: Flow) -> Verdict:
        """The effective decision of the host firewall for `flow`."""
        if self.kind is FirewallKind.FIREWALLD and self.firewalld_zones is not None:
            return evaluate_firewalld(self.firewalld_zones, self.firewalld_list_all or "", flow)
        if self.kind is FirewallKind.UFW and self.ufw_status is not None:
            return evaluate_ufw(self.ufw_status, flow)
        if self.kernel == "nft" and self.nft_json is not None:
            return evaluate_nft(self.nft_json, flow)
        if self.kernel == "iptables" and self.iptables_save is not None:
            return evaluate_iptables(self.iptables_save, flow)
        return Verdict(flow, True, policy="no host firewall: netfilter has no rules")

    def remedy(self, verdict: Verdict) -> str:
        """The command that opens the denied flow, in the active firewall's own syntax ("" when none applies)."""
        commands: dict[FirewallKind, Callable[[Verdict], str]] = {
            FirewallKind.FIREWALLD: firewalld_command,
            FirewallKind.UFW: ufw_command,
            FirewallKind.NFTABLES: nft_command,
            FirewallKind.IPTABLES: iptables_command,
        }
        command = commands.get(self.kind)
        if command is None or verdict.allowed is True:
            return ""
        try:
            return command(verdict)
        except ValueError:  # e.g. firewalld has no outbound filtering to open
            return ""


def _only_xtables(nft: Mapping[str, Any]) -> bool:
    """True when every nft table is one iptables-nft manages (ip/ip6 filter… with upper-case base chains)."""
    items = nft.get("nftables", [])
    tables = [i["table"] for i in items if isinstance(i, dict) and "table" in i]
    chains = [i["chain"] for i in items if isinstance(i, dict) and "chain" in i]
    return all(t.get("family") in ("ip", "ip6") and t.get("name") in XTABLES for t in tables) and all(
        c.get("name") in XTABLES_CHAINS for c in chains
    )


def read_firewall(shell: Shell) -> tuple[FirewallListing, tuple[Evidence, ...]]:
    """Detect the active firewall (firewalld, ufw, nftables, iptables: the spec's order) and list its rules.

    firewalld is asked directly (`firewall-cmd --state`), which works with or without systemd.
    """
    ran: list[Ran] = []

    def run(command: str) -> Ran:
        ran.append(shell.run(command, privileged=True))
        return ran[-1]

    kind = FirewallKind.NONE
    zones = listed = ufw_status = None
    firewalld = run("firewall-cmd --state")
    if firewalld.rc == 0 and firewalld.stdout.strip() == "running":
        kind = FirewallKind.FIREWALLD
        zones = run("firewall-cmd --get-active-zones").stdout
        names = [z.strip() for z in zones.splitlines() if z.strip() and not z[0].isspace()]
        listed = "".join(run(f"firewall-cmd --zone={shlex.quote(z)} --list-all").stdout for z in names)
    else:
        ufw = run("ufw status verbose")
        if ufw.rc == 0 and ufw.stdout.startswith("Status: active"):
            kind, ufw_status = FirewallKind.UFW, ufw.stdout
    nft = run("nft -j list ruleset")
    nft_data: dict[str, Any] = {}
    if nft.rc == 0:
        try:
            nft_data = json.loads(nft.stdout)
        except json.JSONDecodeError:
            raise CommandFailed("nft -j list ruleset did not print JSON", nft.evidence(shell.target)) from None
    has_nft_tables = any("table" in i for i in nft_data.get("nftables", []) if isinstance(i, dict))
    ipt = run("iptables-save")
    if ipt.rc not in (0, 127) and nft.rc != 0:
        raise CommandFailed(
            f"neither nft nor iptables-save can list the rules: {ipt.stderr.strip()}", ipt.evidence(shell.target)
        )
    has_ipt = ipt.rc == 0 and "\n*" in f"\n{ipt.stdout}"
    kernel = (
        "nft" if has_nft_tables and not (has_ipt and _only_xtables(nft_data)) else ("iptables" if has_ipt else None)
    )
    if kind is FirewallKind.NONE and kernel is not None:
        kind = FirewallKind.NFTABLES if kernel == "nft" else FirewallKind.IPTABLES
    listing = FirewallListing(
        kind,
        {r.command: r.stdout for r in ran},
        kernel,
        nft.stdout if has_nft_tables else None,
        ipt.stdout if has_ipt else None,
        zones,
        listed,
        ufw_status,
    )
    return listing, tuple(r.evidence(shell.target, r.rc in (0, 1, 127, 252)) for r in ran)


# --- Linux: everything at once ----------------------------------------------------------------------


@dataclass(frozen=True)
class LinuxHostFacts:
    target: str
    service: Fact[ServiceState]
    mssql_conf: Fact[MssqlConf]
    sector_size: Fact[SectorSize]
    networks: Fact[LocalNetworks]
    firewall: Fact[FirewallListing]


def read_linux_host(host: Any, target: str, *, sudo: bool = False, log_path: str = MSSQL_DATA) -> LinuxHostFacts:
    """Every Linux host fact the gate uses; TargetUnreachable when the host cannot be reached at all."""
    shell = Shell(host, target, sudo=sudo)
    return LinuxHostFacts(
        target=target,
        service=shell.fact("the mssql-server service", read_service),
        mssql_conf=shell.fact("mssql.conf", read_mssql_conf),
        sector_size=shell.fact("the log volume's sector size", lambda s: read_sector_size(s, log_path)),
        networks=shell.fact("the host's addresses", read_networks),
        firewall=shell.fact("the host firewall", read_firewall),
    )


# --- Windows: PowerShell scripts answering in JSON -----------------------------------------------


def _ps_string(value: str) -> str:
    """A PowerShell single-quoted string literal ('' escapes a quote)."""
    return "'" + value.replace("'", "''") + "'"


def instance_services(instance: str) -> tuple[str, str]:
    """The engine and Agent service names: MSSQLSERVER/SQLSERVERAGENT or MSSQL$X/SQLAgent$X."""
    if instance.upper() == "MSSQLSERVER":
        return "MSSQLSERVER", "SQLSERVERAGENT"
    return f"MSSQL${instance}", f"SQLAgent${instance}"


def services_script(instance: str) -> str:
    names = ", ".join(_ps_string(n) for n in instance_services(instance))
    return (
        "$ErrorActionPreference = 'Stop'\n"
        f"@(Get-Service -Name {names} -ErrorAction SilentlyContinue | Select-Object Name, "
        "@{n='Status';e={[string]$_.Status}}, @{n='StartType';e={[string]$_.StartType}}) "
        "| ConvertTo-Json -Depth 3 -Compress"
    )


def startup_script(instance: str) -> str:
    return (
        "$ErrorActionPreference = 'Stop'\n"
        f"$inst = {_ps_string(instance)}\n"
        "$id = (Get-ItemProperty 'HKLM:\\SOFTWARE\\Microsoft\\Microsoft SQL Server\\Instance Names\\SQL').$inst\n"
        '$root = "HKLM:\\SOFTWARE\\Microsoft\\Microsoft SQL Server\\$id\\MSSQLServer"\n'
        '$p = Get-ItemProperty "$root\\Parameters"\n'
        "$sqlargs = @($p.PSObject.Properties | Where-Object Name -like 'SQLArg*' | "
        "ForEach-Object { @{name=$_.Name; value=[string]$_.Value} })\n"
        '$hadr = (Get-ItemProperty "$root\\HADR" -ErrorAction SilentlyContinue).HADR_Enabled\n'
        "@{instance_id=$id; sqlargs=$sqlargs; hadr_enabled=$hadr} | ConvertTo-Json -Depth 4 -Compress"
    )


OS_SCRIPT = (
    "$ErrorActionPreference = 'Stop'\n"
    "Get-CimInstance Win32_OperatingSystem | Select-Object Caption, Version, ProductType, BuildNumber "
    "| ConvertTo-Json -Compress"
)


NETWORKS_SCRIPT = (
    "$ErrorActionPreference = 'Stop'\n"
    "@(Get-NetIPAddress -AddressFamily IPv4 | Where-Object { $_.PrefixOrigin -ne 'WellKnown' } | "
    "Select-Object InterfaceAlias, IPAddress, PrefixLength) | ConvertTo-Json -Compress"
)
"""The host's IPv4 addresses with prefixes, loopback (PrefixOrigin WellKnown) left out."""


def sector_script(path: str) -> str:
    """fsutil's sector information for the volume holding `path`, as JSON fields."""
    return (
        "$ErrorActionPreference = 'Stop'\n"
        f"$drive = (Split-Path -Qualifier {_ps_string(path)})\n"
        "$out = & fsutil fsinfo sectorinfo $drive\n"
        "$fields = @{}\n"
        "foreach ($line in $out) { if ($line -match '^\\s*(\\w+)\\s*:\\s*(\\d+)') "
        "{ $fields[$Matches[1]] = [long]$Matches[2] } }\n"
        "@{drive=$drive; exit_code=$LASTEXITCODE; fields=$fields} | ConvertTo-Json -Depth 3 -Compress"
    )


CLUSTER_SCRIPT = (
    "$ErrorActionPreference = 'Stop'\n"
    "$feature = $null; $nodes = @(); $err = $null\n"
    "if (Get-Command Get-WindowsFeature -ErrorAction SilentlyContinue) "
    "{ $feature = [bool](Get-WindowsFeature -Name Failover-Clustering).Installed }\n"
    "$module = [bool](Get-Command Get-ClusterNode -ErrorAction SilentlyContinue)\n"
    "if ($feature -and $module) { try { $nodes = @(Get-ClusterNode | Select-Object Name, "
    "@{n='State';e={[string]$_.State}}) } catch { $err = $_.Exception.Message } }\n"
    "@{computer=$env:COMPUTERNAME; feature_installed=$feature; cluster_module=$module; nodes=$nodes; "
    "cluster_error=$err} | ConvertTo-Json -Depth 4 -Compress"
)
"""Spec HOST-W-06 in one call: `(Get-WindowsFeature -Name Failover-Clustering).Installed`, then `Get-ClusterNode`
(only when the feature and its PowerShell module are there; its error, e.g. no cluster, is kept as text), and the
computer's name to find the local node among the cluster's."""


@dataclass(frozen=True)
class WindowsService:
    name: str
    status: str  # Running, Stopped, …
    start_type: str  # Automatic, Manual, Disabled

    @property
    def running(self) -> bool:
        return self.status == "Running"


@dataclass(frozen=True)
class WindowsServices:
    """The instance's engine and Agent services as Get-Service found them (None: not installed)."""

    engine: WindowsService | None
    agent: WindowsService | None
    names: tuple[str, str] = ("MSSQLSERVER", "SQLSERVERAGENT")  # the service names looked for, engine and Agent


@dataclass(frozen=True)
class StartupParams:
    instance_id: str
    arguments: tuple[str, ...]
    hadr_enabled: int | None

    @property
    def trace_flags(self) -> frozenset[int]:
        return frozenset(int(m.group(1)) for a in self.arguments if (m := re.fullmatch(r"\s*-[tT](\d+)\s*", a)))

    @property
    def hadr_key(self) -> str:
        """Where HADR_Enabled lives, as the evidence and the failure name it."""
        return f"HKLM:\\SOFTWARE\\Microsoft\\Microsoft SQL Server\\{self.instance_id}\\MSSQLServer\\HADR"


@dataclass(frozen=True)
class WindowsOs:
    caption: str
    version: tuple[int, ...]
    product_type: int | None  # 1 workstation, 2 domain controller, 3 server

    @property
    def is_server(self) -> bool:
        return "Windows Server" in self.caption

    @property
    def at_least_2012(self) -> bool:
        return self.version[:2] >= (6, 2)


def ps_json(text: str) -> Any:
    """A PowerShell script's JSON answer (a byte-order mark tolerated); anything else is a ValueError that says so."""
    try:
        return json.loads(text.lstrip("\ufeff"))
    except json.JSONDecodeError as e:
        raise ValueError(f"PowerShell did not answer in JSON ({e.msg} at character {e.pos})") from None


def ps_list(value: Any) -> list[Any]:
    """ConvertTo-Json writes a one-element array as the element itself, and none as nothing; Windows PowerShell 5.1
    writes an array held in a property as {"value": [...], "Count": n} when it is wrapped in a PSObject."""
    if value is None or value == "":
        return []
    if isinstance(value, dict) and set(value) == {"value", "Count"} and isinstance(value["value"], list):
        return list(value["value"])
    return value if isinstance(value, list) else [value]


def parse_services(text: str, instance: str) -> WindowsServices:
    engine_name, agent_name = instance_services(instance)
    found = {
        str(s["Name"]).upper(): WindowsService(
            str(s["Name"]), str(s.get("Status") or ""), str(s.get("StartType") or "")
        )
        for s in ps_list(ps_json(text) if text.strip() else None)
    }
    return WindowsServices(found.get(engine_name.upper()), found.get(agent_name.upper()), (engine_name, agent_name))


def parse_startup(text: str) -> StartupParams:
    data = ps_json(text)
    args = sorted(ps_list(data.get("sqlargs")), key=lambda a: int(re.sub(r"\D", "", str(a.get("name"))) or 0))
    hadr = data.get("hadr_enabled")
    return StartupParams(
        str(data.get("instance_id") or ""),
        tuple(str(a.get("value") or "") for a in args),
        int(hadr) if hadr is not None else None,
    )


def parse_os(text: str) -> WindowsOs:
    data = ps_json(text)
    version = tuple(int(p) for p in str(data.get("Version") or "0").split(".") if p.isdigit())
    product_type = data.get("ProductType")
    return WindowsOs(str(data.get("Caption") or ""), version, int(product_type) if product_type is not None else None)


def parse_networks(text: str) -> LocalNetworks:
    found = [ipaddress.IPv4Interface(f"{a['IPAddress']}/{a['PrefixLength']}") for a in ps_list(ps_json(text))]
    return LocalNetworks(tuple(i for i in found if not i.ip.is_link_local))


def parse_sector(text: str, path: str) -> SectorSize:
    data = ps_json(text)
    fields = data.get("fields") or {}
    physical = fields.get("PhysicalBytesPerSectorForPerformance") or fields.get("PhysicalBytesPerSectorForAtomicity")
    logical = fields.get("LogicalBytesPerSector")
    return SectorSize(
        path, str(data.get("drive") or ""), int(physical) if physical else None, int(logical) if logical else None
    )


@dataclass(frozen=True)
class ClusterNode:
    name: str
    state: str  # Up, Down, Paused, Joining


@dataclass(frozen=True)
class FailoverCluster:
    """The Failover-Clustering feature and the cluster nodes this Windows host sees (spec HOST-W-06)."""

    computer: str
    feature_installed: bool | None  # None: no Get-WindowsFeature (not a Windows Server edition)
    nodes: tuple[ClusterNode, ...]
    error: str | None  # what Get-ClusterNode said when it failed (typically: no cluster on this node)

    @property
    def local_node(self) -> ClusterNode | None:
        """This host among the cluster's nodes (node names are computer names, compared case-insensitively)."""
        return next((n for n in self.nodes if n.name.upper() == self.computer.upper()), None)


def parse_cluster(text: str) -> FailoverCluster:
    """CLUSTER_SCRIPT's answer. A host with the feature but without its PowerShell module cannot say whether its
    node is up: that is an unreadable fact (ValueError), not a failed prerequisite."""
    data = ps_json(text)
    installed = data.get("feature_installed")
    if installed and not data.get("cluster_module"):
        raise ValueError(
            "Failover-Clustering is installed without its PowerShell module (RSAT-Clustering-PowerShell), so "
            "Get-ClusterNode cannot list the nodes: Install-WindowsFeature RSAT-Clustering-PowerShell"
        )
    nodes = tuple(ClusterNode(str(n.get("Name") or ""), str(n.get("State") or "")) for n in ps_list(data.get("nodes")))
    error = data.get("cluster_error")
    return FailoverCluster(
        str(data.get("computer") or ""),
        None if installed is None else bool(installed),
        nodes,
        " ".join(str(error).split()) if error else None,
    )


class Deferred(Generic[T]):
    """A fact read on first use, once, whichever thread asks first: for facts only some checks need (the
    2016-only cluster), so that other hosts pay no round trip for them."""

    def __init__(self, read: Callable[[], Fact[T]]) -> None:
        self._read = read
        self._lock = threading.Lock()
        self._fact: Fact[T] | None = None

    def __call__(self) -> Fact[T]:
        with self._lock:
            if self._fact is None:
                self._fact = self._read()
            return self._fact


@dataclass(frozen=True)
class WindowsHostFacts:
    target: str
    services: Fact[WindowsServices]
    startup: Fact[StartupParams]
    os: Fact[WindowsOs]
    sector_size: Fact[SectorSize]
    networks: Fact[LocalNetworks]
    firewall: Fact[str]  # the JSON of linkgate.firewall.windows.FIREWALL_SCRIPT, for evaluate_windows
    cluster: Deferred[FailoverCluster]  # read when a check first asks (SQL Server 2016 only)


def run_powershell(shell: Shell, script: str, parse: Callable[[str], T]) -> tuple[T, tuple[Evidence, ...]]:
    """Run one PowerShell script (encoded, through cmd.exe) and parse its JSON; the script is the evidence."""
    ran = shell.run(encoded_command(script))
    evidence = Evidence(
        shell.target,
        "host",
        f"powershell.exe -EncodedCommand …\n{script}",
        f"exit {ran.rc}\n{ran.stdout.strip() or ran.stderr.strip() or '(no output)'}",
        ran.rc == 0,
        ran.seconds,
    )
    if ran.rc != 0:
        raise CommandFailed(f"PowerShell failed (exit {ran.rc}): {ran.stderr.strip()[:500]}", evidence)
    try:
        return parse(ran.stdout), (evidence,)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CommandFailed(str(e), evidence) from None


def read_windows_host(
    host: Any, target: str, *, instance: str = "MSSQLSERVER", log_path: str = "C:\\"
) -> WindowsHostFacts:
    """Every Windows host fact the gate uses, one PowerShell call each; the evidence shows the decoded script.

    The failover cluster (SQL Server 2016 only) is read when a check first asks for it.
    """
    shell = Shell(host, target)
    return WindowsHostFacts(
        target=target,
        services=shell.fact(
            "the SQL Server services",
            lambda s: run_powershell(s, services_script(instance), lambda t: parse_services(t, instance)),
        ),
        startup=shell.fact(
            "the startup parameters", lambda s: run_powershell(s, startup_script(instance), parse_startup)
        ),
        os=shell.fact("the operating system", lambda s: run_powershell(s, OS_SCRIPT, parse_os)),
        sector_size=shell.fact(
            "the log volume's sector size",
            lambda s: run_powershell(s, sector_script(log_path), lambda t: parse_sector(t, log_path)),
        ),
        networks=shell.fact("the host's addresses", lambda s: run_powershell(s, NETWORKS_SCRIPT, parse_networks)),
        firewall=shell.fact(
            "Windows Firewall", lambda s: run_powershell(s, FIREWALL_SCRIPT, lambda t: (ps_json(t), t)[1])
        ),
        cluster=Deferred(
            lambda: shell.fact("the failover cluster", lambda s: run_powershell(s, CLUSTER_SCRIPT, parse_cluster))
        ),
    )


# --- the SSMS client (spec CLIENT-01) -----------------------------------------------------------------

SSMS_SCRIPT = (
    "$ErrorActionPreference = 'Stop'\n"
    "$keys = 'HKLM:\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\*', "
    "'HKLM:\\SOFTWARE\\Wow6432Node\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\*'\n"
    "$msi = @(Get-ItemProperty -Path $keys -ErrorAction SilentlyContinue | "
    "Where-Object { $_.DisplayName -like 'Microsoft SQL Server Management Studio*' } | "
    "ForEach-Object { [pscustomobject]@{ name=[string]$_.DisplayName; version=[string]$_.DisplayVersion } })\n"
    "$vswhere = Join-Path ${env:ProgramFiles(x86)} 'Microsoft Visual Studio\\Installer\\vswhere.exe'\n"
    "$vs = @(); $hasVswhere = Test-Path -LiteralPath $vswhere\n"
    "if ($hasVswhere) { $vs = @(& $vswhere -products Microsoft.VisualStudio.Product.SSMS "
    "-property installationVersion | ForEach-Object { [string]$_ }) }\n"
    "@{computer=$env:COMPUTERNAME; uninstall=$msi; vswhere_present=$hasVswhere; vswhere=$vs} "
    "| ConvertTo-Json -Depth 4 -Compress"
)
"""Spec CLIENT-01 in one call: SSMS up to 20 from the Uninstall registry keys (64-bit and Wow6432Node,
DisplayVersion), SSMS 21 and later from the Visual Studio installer's vswhere (installationVersion)."""

SSMS_MINIMUM = (19, 0)


@dataclass(frozen=True)
class SsmsInstall:
    """One SSMS. Its release number comes from the Uninstall entry's DisplayName ("… - 18.12.1") when it has one:
    up to 18.x the DisplayVersion is a build number of another series (18.12.1 is 15.0.18420.0), from 19 on the
    two agree (19.0.2 is 19.0.20209.0); vswhere's installationVersion is the release's own."""

    source: str  # "uninstall" (SSMS ≤ 20) or "vswhere" (SSMS 21+)
    name: str
    version: tuple[int, ...]
    build: str = ""

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))


@dataclass(frozen=True)
class SsmsInventory:
    """Every SQL Server Management Studio installed on the client machine, however it was installed."""

    computer: str
    installs: tuple[SsmsInstall, ...]

    @property
    def newest(self) -> SsmsInstall | None:
        return max(self.installs, key=lambda i: i.version, default=None)

    @property
    def supported(self) -> bool:
        """SSMS 19.0 or later is installed (the article: "Download SSMS version 19.0, or later")."""
        newest = self.newest
        return newest is not None and newest.version[:2] >= SSMS_MINIMUM


def _version(text: str) -> tuple[int, ...]:
    parts = re.findall(r"\d+", text.split()[0] if text.split() else "")
    if not parts:
        raise ValueError(f"not a version number: {text!r}")
    return tuple(int(p) for p in parts)


def parse_ssms(text: str) -> SsmsInventory:
    data = ps_json(text)
    installs = []
    for entry in ps_list(data.get("uninstall")):
        name, build = str(entry.get("name") or ""), str(entry.get("version") or "").strip()
        release = re.search(r"-\s*(\d+(?:\.\d+)+)\s*$", name)
        if release or build:  # an entry with neither tells no version
            installs.append(SsmsInstall("uninstall", name, _version(release.group(1) if release else build), build))
    installs += [
        SsmsInstall("vswhere", "SQL Server Management Studio", _version(str(v)), str(v).strip())
        for v in ps_list(data.get("vswhere"))
        if str(v).strip()
    ]
    return SsmsInventory(str(data.get("computer") or ""), tuple(installs))


@dataclass(frozen=True)
class ClientHostFacts:
    target: str
    ssms: Fact[SsmsInventory]


def read_client_host(host: Any, target: str) -> ClientHostFacts:
    """The facts of the machine that runs SSMS (a Windows client or server), one PowerShell call."""
    shell = Shell(host, target)
    ssms = shell.fact("the installed SSMS", lambda s: run_powershell(s, SSMS_SCRIPT, parse_ssms))
    return ClientHostFacts(target, ssms)


# --- the SQL Server host, whichever its OS ------------------------------------------------------------


@dataclass(frozen=True)
class SqlHost:
    """The machine under one SQL Server: its facts (Linux or Windows) and the shell to ask it more."""

    target: str
    os: HostOS
    shell: Shell
    linux: LinuxHostFacts | None
    windows: WindowsHostFacts | None


def read_sql_host(server: SqlServer, *, timeout: float, log_path: str | None = None) -> SqlHost:
    """Open the host the environment declares for `server` and read every host fact (TargetUnreachable if none).

    `log_path` is where the log file lives (default: SQL Server's default data directory on Linux, C:\\ on
    Windows); the sector size is read for the volume holding it.
    """
    if server.host is None:
        raise TargetUnreachable(
            server.name,
            "no host: is declared for it in the environment file; the host checks need ssh (Linux) or WinRM "
            "(Windows) access to the machine that runs SQL Server",
        )
    host = open_host(server.host, server.name, timeout=timeout)
    shell = Shell(host, server.name, sudo=server.host.user not in (None, "root") and server.host.backend != "winrm")
    if server.host_os is HostOS.WINDOWS:
        facts = read_windows_host(host, server.name, instance=server.instance, log_path=log_path or "C:\\")
        return SqlHost(server.name, server.host_os, shell, None, facts)
    linux = read_linux_host(host, server.name, sudo=shell.sudo, log_path=log_path or MSSQL_DATA)
    return SqlHost(server.name, server.host_os, shell, linux, None)
