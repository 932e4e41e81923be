"""The mirroring endpoint's listener on the SQL Server host: the static evidence that the managed instance can
open the link's connections to SQL Server (spec NET-03), read with `ss` on Linux and Get-NetTCPConnection on
Windows. The firewall checks say whether the port is open; this one says whether anything answers there.
"""

from __future__ import annotations

from linkgate.catalog import Severity, prereq
from linkgate.conditions import fact_holds
from linkgate.views import SqlHostView

HAS_ENDPOINT = fact_holds("a database mirroring endpoint already exists", "sql.endpoints", bool)
NETWORKING = "https://learn.microsoft.com/azure/azure-sql/managed-instance/managed-instance-link-preparation#configure-network-connectivity"


@prereq(
    "host-endpoint-listener",
    severity=Severity.REQUIRED,
    spec="NET-03, SQL-16",
    applies=HAS_ENDPOINT,
    docs=NETWORKING,
    remediation="On the host of {server}: start the mirroring endpoint on TCP {endpoint_port} (ALTER ENDPOINT "
    "[<endpoint>] STATE = STARTED AS TCP (LISTENER_PORT = {endpoint_port}, LISTENER_IP = ALL)), then see who "
    "holds the port (sudo ss -ltnp 'sport = :{endpoint_port}' or Get-NetTCPConnection -LocalPort {endpoint_port} "
    "-State Listen) and SQL Server's error log for a bind error",
)
def test_host_endpoint_listener(sql_host: SqlHostView) -> None:
    """Something listens on the SQL Server host's endpoint port, on an address other than loopback.

    The managed instance opens the link's connections to that port; with no listener (a stopped endpoint, one
    that could not bind) they are refused whatever the firewalls and NSGs allow.
    """
    found = sql_host.listeners(sql_host.endpoint_port)
    assert found.listening, f"nothing listens on TCP {found.port} on the host of {sql_host.name}"
    assert not found.loopback_only, f"TCP {found.port} listens on {', '.join(found.addresses)} only: loopback"
