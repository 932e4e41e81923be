"""The SQL Server host's own firewall, evaluated for the link's exact flows (spec HOST-L-03, HOST-W-03).

The active firewall (firewalld, ufw, nftables or iptables on Linux; Windows Firewall) is listed once and
each flow is decided by `linkgate.firewall` the way that firewall decides it — never by looking for "5022".
"""

from __future__ import annotations

from linkgate.catalog import Severity, prereq
from linkgate.environment import Environment
from linkgate.firewall.flows import Flow
from linkgate.views import SqlHostView

MI_ENDPOINT_PORT = 5022
HADR_PORTS = "11000-11999"
REMEDIATION = (
    "Open the flow in {server}'s host firewall; the failure shows the command for the firewall in use, e.g. "
    'firewalld: sudo firewall-cmd --permanent --zone=public --add-rich-rule=\'rule family="ipv4" source '
    'address="{mi_subnet}" port port="{endpoint_port}" protocol="tcp" accept\' && sudo firewall-cmd --reload; '
    "Windows: New-NetFirewallRule -DisplayName 'MI link' -Direction Inbound -Protocol TCP -LocalPort {endpoint_port} "
    "-RemoteAddress {mi_subnet} -Action Allow"
)


def _decide(sql_host: SqlHostView, flow: Flow) -> str:
    """'' when the flow passes, else the explanation and the command that opens it."""
    verdict = sql_host.firewall(flow)
    if verdict.allowed is True:
        return ""
    fix = sql_host.firewall_fix(verdict) if verdict.allowed is False else ""
    return verdict.explain() + (f"\nto open it: {fix}" if fix else "")


@prereq("host-firewall-inbound-5022", severity=Severity.REQUIRED, spec="HOST-L-03, HOST-W-03", remediation=REMEDIATION)
def test_host_firewall_inbound_5022(sql_host: SqlHostView, environment: Environment) -> None:
    """The SQL Server host's firewall accepts the mirroring endpoint's port from the managed instance subnet.

    The managed instance connects to SQL Server's database mirroring endpoint (TCP 5022 by default).
    """
    subnet = str(environment.managed_instance.subnet)
    denied = _decide(sql_host, Flow.tcp("inbound", subnet, sql_host.address, sql_host.endpoint_port))
    assert not denied, denied


@prereq("host-firewall-outbound-5022", severity=Severity.REQUIRED, spec="HOST-L-03, HOST-W-03", remediation=REMEDIATION)
def test_host_firewall_outbound_5022(sql_host: SqlHostView, environment: Environment) -> None:
    """The SQL Server host's firewall lets SQL Server connect out to the managed instance subnet on TCP 5022.

    SQL Server connects to the managed instance's mirroring endpoint.
    """
    subnet = str(environment.managed_instance.subnet)
    denied = _decide(sql_host, Flow.tcp("outbound", sql_host.address, subnet, MI_ENDPOINT_PORT))
    assert not denied, denied


@prereq(
    "host-firewall-outbound-hadr-ports",
    severity=Severity.REQUIRED,
    spec="HOST-L-03, HOST-W-03",
    remediation=REMEDIATION,
)
def test_host_firewall_outbound_hadr_ports(sql_host: SqlHostView, environment: Environment) -> None:
    """The SQL Server host's firewall lets SQL Server connect out to the managed instance subnet on TCP 11000-11999.

    The managed instance's nodes listen for the link on a HADR port in that range, and it moves with failovers.
    """
    subnet = str(environment.managed_instance.subnet)
    denied = _decide(sql_host, Flow.tcp("outbound", sql_host.address, subnet, HADR_PORTS))
    assert not denied, denied
