"""The article's two-way connectivity tests, which create objects on the targets (spec NET-03).

They run only with --active-probes (or `active_probes: true`): each probe records what it creates in a
ledger first and removes it afterwards, also on failure, timeout or interrupt (linkgate.probes.active).
"""

from __future__ import annotations

from linkgate.catalog import Severity, prereq
from linkgate.conditions import ACTIVE_PROBES
from linkgate.views import ActiveProbesView, SqlServerView

NETWORKING = "https://learn.microsoft.com/azure/azure-sql/managed-instance/managed-instance-link-preparation#test-bidirectional-network-connectivity"


@prereq(
    "net-mi-reaches-sql-5022",
    severity=Severity.REQUIRED,
    applies=ACTIVE_PROBES,
    spec="NET-03",
    docs=NETWORKING,
    remediation="Allow TCP from {mi_subnet} to {sql_ip} port {endpoint_port} on every hop: the managed instance "
    "subnet's NSG (outbound), network appliances, and {server}'s host firewall (inbound); keep SQL Server running",
)
def test_net_mi_reaches_sql_5022(active: ActiveProbesView, sql_server: SqlServerView) -> None:
    """The managed instance connects over TCP to SQL Server's database mirroring endpoint port.

    The link's traffic flows both ways; only an Agent job on the managed instance (the article's NetHelper) proves
    this direction, against SQL Server's endpoint or a temporary test endpoint.
    """
    probe = active.mi_to_sql
    assert probe.connected, f"{sql_server.name}: {probe.explanation()}"


@prereq(
    "net-sql-reaches-mi-active",
    severity=Severity.REQUIRED,
    applies=ACTIVE_PROBES,
    spec="NET-03, NET-02",
    docs=NETWORKING,
    remediation="Allow TCP from {server} ({sql_ip}) to {mi_subnet} ports 5022 and 11000-11999 on every hop: "
    "{server}'s host firewall (outbound), network appliances, and the managed instance subnet's NSG (inbound)",
)
def test_net_sql_reaches_mi_active(active: ActiveProbesView, sql_server: SqlServerView) -> None:
    """SQL Server connects over TCP to the managed instance on 5022 and to its current node's HADR port.

    The article tests this with an Agent job on SQL Server (TestMILinkConnection); on Linux, where Agent has no
    PowerShell, the gate tests it from the host instead and the evidence says so.
    """
    probe = active.sql_to_mi
    assert probe.connected, f"{sql_server.name}: {probe.explanation()}"
