"""Network facts seen from the SQL Server host: what a name resolves to there, and whether TCP connects.

The link's traffic starts on the SQL Server host, so the questions are asked there (over testinfra),
never from the machine running the gate. Only the names and addresses the caller passes are contacted.
The pure helpers (`overlaps`, `azure_endpoints`, `diagnose`) need no host.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from linkgate.clouds import allowlist
from linkgate.evidence import Evidence
from linkgate.firewall.flows import Verdict
from linkgate.firewall.windows import encoded_command
from linkgate.probes.facts import Fact
from linkgate.probes.host import CommandFailed, Shell, ps_json, ps_list, run_powershell

T = TypeVar("T")

CONNECT_TIMEOUT = 3


@dataclass(frozen=True)
class Resolution:
    """The IPv4 addresses a name resolves to on the host (empty: it does not resolve)."""

    name: str
    addresses: tuple[ipaddress.IPv4Address, ...]

    def outside(self, network: ipaddress.IPv4Network) -> tuple[ipaddress.IPv4Address, ...]:
        """The addresses not in `network`."""
        return tuple(a for a in self.addresses if a not in network)


def read_resolution(shell: Shell, name: str) -> tuple[Resolution, tuple[Evidence, ...]]:
    """`getent ahostsv4 NAME`: the host's own resolver (nsswitch: /etc/hosts, then DNS), as SQL Server sees it."""
    ran = shell.run(f"getent ahostsv4 {shlex.quote(name)}")
    evidence = ran.evidence(shell.target, ok=ran.rc in (0, 2))
    if ran.rc == 2:  # getent: key not found
        return Resolution(name, ()), (evidence,)
    if ran.rc != 0:
        raise CommandFailed(f"getent cannot resolve {name}: {ran.stderr.strip() or f'exit {ran.rc}'}", evidence)
    found = [ipaddress.IPv4Address(line.split()[0]) for line in ran.stdout.splitlines() if line.strip()]
    return Resolution(name, tuple(dict.fromkeys(found))), (evidence,)


def read_resolution_windows(shell: Shell, name: str) -> tuple[Resolution, tuple[Evidence, ...]]:
    """The IPv4 addresses Windows' resolver gives for `name` (hosts file, DNS), from PowerShell as JSON."""
    script = (
        "$ErrorActionPreference = 'Stop'\n"
        f"try {{ $a = @([System.Net.Dns]::GetHostAddresses('{_checked_host(name)}') | "
        "Where-Object { $_.AddressFamily -eq 'InterNetwork' } | ForEach-Object { $_.IPAddressToString }) } "
        "catch { $a = @() }\nConvertTo-Json -InputObject $a -Compress"
    )
    ran = shell.run(encoded_command(script))
    evidence = Evidence(
        shell.target,
        "host",
        f"powershell.exe -EncodedCommand …\n{script}",
        f"exit {ran.rc}\n{ran.stdout.strip()}",
        ran.rc == 0,
        ran.seconds,
    )
    try:
        found = json.loads(ran.stdout) if ran.rc == 0 else None
    except json.JSONDecodeError:
        found = None
    if not isinstance(found, list):
        raise CommandFailed(f"PowerShell could not resolve {name}: {ran.stderr.strip()[:300]}", evidence)
    return Resolution(name, tuple(dict.fromkeys(ipaddress.IPv4Address(a) for a in found))), (evidence,)


@dataclass(frozen=True)
class TcpConnect:
    """A TCP connection attempt from the host: `outcome` is connected, refused, timed out, unreachable,
    unresolved or failed; `detail` is what the tool printed."""

    host: str
    port: int
    outcome: str
    detail: str

    @property
    def connected(self) -> bool:
        return self.outcome == "connected"


def _outcome(rc: int, stderr: str) -> str:
    if rc == 0:
        return "connected"
    if rc == 124:
        return "timed out"
    text = stderr.lower()
    for needle, outcome in (
        ("refused", "refused"),
        ("no route", "unreachable"),
        ("unreachable", "unreachable"),
        ("not known", "unresolved"),
        ("invalid", "unresolved"),
        ("timed out", "timed out"),
    ):
        if needle in text:
            return outcome
    return "failed"


def _checked_host(host: str) -> str:
    """A host name or address as it may appear in a command line: letters, digits, '.', '-', ':' only."""
    if not host or not re.fullmatch(r"[A-Za-z0-9.:-]+", host):
        raise ValueError(f"not a host name or address: {host!r}")
    return host


def read_tcp(
    shell: Shell, host: str, port: int, timeout: int = CONNECT_TIMEOUT
) -> tuple[TcpConnect, tuple[Evidence, ...]]:
    """Open (and close) a TCP connection from the host with bash's /dev/tcp, bounded by `timeout` seconds."""
    inner = f"</dev/tcp/{_checked_host(host)}/{int(port)}"
    ran = shell.run(f"timeout {int(timeout)} bash -c {shlex.quote(inner)}")
    if ran.rc == 127:
        raise CommandFailed("timeout or bash is missing on the host", ran.evidence(shell.target))
    lines = ran.stderr.strip().splitlines()
    detail = lines[-1].rsplit(": ", 1)[-1] if lines else ("" if ran.rc == 0 else f"exit {ran.rc}")
    return TcpConnect(host, port, _outcome(ran.rc, ran.stderr), detail), (ran.evidence(shell.target, ok=True),)


def read_tcp_windows(shell: Shell, host: str, port: int) -> tuple[TcpConnect, tuple[Evidence, ...]]:
    """`Test-NetConnection -InformationLevel Quiet`, the check the article's Agent job runs, on a Windows host."""
    script = (
        f"$r = Test-NetConnection -ComputerName '{_checked_host(host)}' -Port {int(port)} "
        "-InformationLevel Quiet -WarningAction SilentlyContinue\nif ($r) { 'True' } else { 'False' }"
    )
    ran = shell.run(encoded_command(script))
    evidence = Evidence(
        shell.target,
        "host",
        f"powershell.exe -EncodedCommand …\n{script}",
        f"exit {ran.rc}\n{ran.stdout.strip() or ran.stderr.strip()}",
        ran.rc == 0,
        ran.seconds,
    )
    answer = ran.stdout.strip()
    if ran.rc != 0 or answer not in ("True", "False"):
        raise CommandFailed(f"Test-NetConnection gave no answer: {ran.stderr.strip()[:300]}", evidence)
    return TcpConnect(host, port, "connected" if answer == "True" else "failed", answer), (evidence,)


LOOPBACK_LISTENERS = ("127.", "[::1]", "::1", "[::ffff:127.")


@dataclass(frozen=True)
class Listeners:
    """The sockets listening on one local TCP port of the host, by local address (0.0.0.0, [::], *,
    198.18.1.10, …). Empty: nothing listens there."""

    port: int
    addresses: tuple[str, ...]

    @property
    def listening(self) -> bool:
        return bool(self.addresses)

    @property
    def loopback_only(self) -> bool:
        """Every listener is bound to a loopback address: the port is open to the host itself only."""
        return self.listening and all(a.startswith(LOOPBACK_LISTENERS) for a in self.addresses)


def read_listeners(shell: Shell, port: int) -> tuple[Listeners, tuple[Evidence, ...]]:
    """`ss -Hltn 'sport = :PORT'`: the listening TCP sockets on `port` (iproute2; no root needed without -p).

    Each line reads `LISTEN 0 4096 0.0.0.0:5022 0.0.0.0:*`; the fourth column is the local address:port.
    """
    ran = shell.run(f"ss -Hltn {shlex.quote(f'sport = :{int(port)}')}")
    evidence = ran.evidence(shell.target, ok=ran.rc == 0)
    if ran.rc != 0:
        reason = "ss (iproute2) is not installed" if ran.rc == 127 else ran.stderr.strip() or f"exit {ran.rc}"
        raise CommandFailed(f"ss cannot list the listeners on TCP {port}: {reason}", evidence)
    found = []
    for line in ran.stdout.splitlines():
        columns = line.split()
        if len(columns) >= 4 and columns[3].rsplit(":", 1)[-1] == str(port):
            found.append(columns[3].rsplit(":", 1)[0])
    return Listeners(port, tuple(dict.fromkeys(found))), (evidence,)


def listeners_script(port: int) -> str:
    """Spec NET-03 on Windows: `Get-NetTCPConnection -LocalPort <port> -State Listen`, as a JSON array (none: [])."""
    return (
        "$ErrorActionPreference = 'Stop'\n"
        f"$l = @(Get-NetTCPConnection -LocalPort {int(port)} -State Listen -ErrorAction SilentlyContinue | "
        "Select-Object LocalAddress, LocalPort, OwningProcess)\n"
        "ConvertTo-Json -InputObject $l -Compress"
    )


def parse_listeners(text: str, port: int) -> Listeners:
    """The answer of listeners_script (an array; one object where PowerShell unwraps a single element)."""
    found = []
    for row in ps_list(ps_json(text or "[]")):
        if not isinstance(row, dict) or int(row.get("LocalPort", port)) != port:
            raise ValueError(f"not a listener on TCP {port}: {row!r}")
        address = str(row.get("LocalAddress") or "")
        found.append(f"[{address}]" if ":" in address else address)
    return Listeners(port, tuple(dict.fromkeys(found)))


def read_listeners_windows(shell: Shell, port: int) -> tuple[Listeners, tuple[Evidence, ...]]:
    return run_powershell(shell, listeners_script(port), lambda text: parse_listeners(text, port))


class HostNetwork:
    """Network questions asked on one host, each answered once and kept (thread-safe), as Facts.

    Which names and ports to ask about depends on other facts (the MI's FQDN, its fabric node and HADR
    port), so the questions are asked on demand rather than all up front.
    """

    def __init__(self, shell: Shell, *, windows: bool = False) -> None:
        self.shell = shell
        self.windows = windows
        self._lock = threading.Lock()
        self._answers: dict[tuple[str, str, int], Any] = {}  # Fact[Resolution], [TcpConnect] or [Listeners], by key

    def _ask(
        self, key: tuple[str, str, int], what: str, read: Callable[[Shell], tuple[T, tuple[Evidence, ...]]]
    ) -> Fact[T]:
        with self._lock:
            known: Fact[T] | None = self._answers.get(key)
        if known is None:
            answer = self.shell.fact(what, read)
            with self._lock:
                known = self._answers.setdefault(key, answer)
        return known

    def resolve(self, name: str) -> Fact[Resolution]:
        """What `name` resolves to on this host."""
        read = read_resolution_windows if self.windows else read_resolution
        return self._ask(("resolve", name, 0), f"what {name} resolves to", lambda s: read(s, name))

    def listeners(self, port: int) -> Fact[Listeners]:
        """What listens on local TCP `port` of this host (the mirroring endpoint's port)."""
        read = read_listeners_windows if self.windows else read_listeners
        return self._ask(("listen", "", port), f"the listeners on TCP {port}", lambda s: read(s, port))

    def connect(self, host: str, port: int) -> Fact[TcpConnect]:
        """Whether TCP to host:port connects from this host."""
        if self.windows:
            return self._ask(("tcp", host, port), f"TCP to {host}:{port}", lambda s: read_tcp_windows(s, host, port))
        return self._ask(("tcp", host, port), f"TCP to {host}:{port}", lambda s: read_tcp(s, host, port))


def diagnose(connect: TcpConnect, firewall: Verdict | None) -> str:
    """Why a connection failed, in one sentence, using the host firewall's verdict when there is one.

    The rules allow it but the connection fails: something in the path (an NSG, a network appliance, the
    peer's listener) is blocking, and the host's own firewall is not the place to look.
    """
    what = f"TCP {connect.host}:{connect.port} {connect.outcome}"
    if connect.detail and connect.outcome not in connect.detail.lower():
        what += f" ({connect.detail})"
    if firewall is None:
        return what
    if firewall.allowed is True:
        return f"{what}, although the host firewall allows it ({firewall.reason}): something in the path is blocking"
    if firewall.allowed is False:
        return f"{what}: the host firewall denies it ({firewall.reason})"
    return f"{what}; the host firewall's verdict is indeterminate ({'; '.join(firewall.notes) or firewall.reason})"


def overlaps(
    mi_subnet: ipaddress.IPv4Network,
    sql_networks: tuple[ipaddress.IPv4Network, ...],
    sql_address: ipaddress.IPv4Address | None,
) -> tuple[str, ...]:
    """Every way the SQL Server side's address space collides with the managed instance's subnet (spec ARM-07)."""
    found = [f"{n} overlaps the managed instance subnet {mi_subnet}" for n in sql_networks if n.overlaps(mi_subnet)]
    if sql_address is not None and sql_address in mi_subnet:
        found.append(f"SQL Server's address {sql_address} is inside the managed instance subnet {mi_subnet}")
    return tuple(found)


@dataclass(frozen=True)
class AzureEndpoint:
    purpose: str
    host: str
    port: int = 443


def azure_endpoints(cloud: str) -> tuple[AzureEndpoint, ...]:
    """The hosts of the article's allowlist in `cloud` (linkgate.clouds), one per host, as the tooling reaches them."""
    purposes: dict[tuple[str, int], list[str]] = {}
    for entry in allowlist(cloud):
        purposes.setdefault((entry.host, entry.port), []).append(entry.item)
    return tuple(AzureEndpoint(" and ".join(items), host, port) for (host, port), items in purposes.items())
