"""Network prerequisites, asked from the SQL Server host where the link's traffic starts (spec NET-01, NET-02,
NET-04 and ARM-07), and the managed instance's FQDN and subnet that they use, checked against Resource Manager."""

from __future__ import annotations

import ipaddress

from linkgate.azure_rules import ipv4_prefixes
from linkgate.catalog import Severity, prereq
from linkgate.conditions import Condition
from linkgate.environment import Environment
from linkgate.firewall.flows import Flow
from linkgate.probes.azure import AzureView
from linkgate.probes.net import azure_endpoints, diagnose, overlaps
from linkgate.views import ManagedInstanceView, SqlHostView

MI_ENDPOINT_PORT = 5022
HADR_PORTS = range(11000, 12000)
NETWORKING = "https://learn.microsoft.com/azure/azure-sql/managed-instance/managed-instance-link-preparation#configure-network-connectivity"
AZURE = Condition(
    "the environment declares its Azure resources (azure:)", lambda ctx: ctx.environment.azure is not None
)


@prereq(
    "net-mi-fqdn-in-subnet",
    severity=Severity.REQUIRED,
    spec="NET-01",
    docs=NETWORKING,
    remediation="Make {mi_fqdn} resolve on {server}'s host to the managed instance's private address in {mi_subnet} "
    "(private DNS zone or conditional forwarder to Azure DNS; no stale hosts-file entry)",
)
def test_net_mi_fqdn_in_subnet(sql_host: SqlHostView, environment: Environment) -> None:
    """The managed instance's FQDN resolves, on the SQL Server host, to an address inside the managed instance subnet.

    The link only works over the VNet-local endpoint; public and private endpoints cannot carry it.
    """
    mi = environment.managed_instance
    resolved = sql_host.resolve(mi.fqdn)
    assert resolved.addresses, f"{mi.fqdn} does not resolve on {sql_host.name}"
    outside = resolved.outside(mi.subnet)
    assert not outside, f"{mi.fqdn} resolves to {', '.join(map(str, outside))}, outside {mi.subnet}"


@prereq(
    "net-mi-fqdn-matches-arm",
    severity=Severity.REQUIRED,
    spec="NET-01, ARM-01",
    applies=AZURE,
    docs=NETWORKING,
    remediation="Set managed_instance.fqdn in the environment file to the fullyQualifiedDomainName Resource Manager "
    "reports for {mi_name} (az sql mi show -g <resource group> -n <instance> --query fullyQualifiedDomainName)",
)
def test_net_mi_fqdn_matches_arm(azure: AzureView, environment: Environment) -> None:
    """The managed instance FQDN the environment file declares is the one Resource Manager reports for it.

    The resolution and TCP checks ask about the declared name; the link uses the instance's own (spec NET-01).
    """
    declared, reported = environment.managed_instance.fqdn, azure.instance.fqdn
    assert reported, f"Resource Manager reports no fullyQualifiedDomainName for {azure.instance.name}"
    assert declared.lower() == reported.lower(), f"the environment declares {declared}; Resource Manager: {reported}"


@prereq(
    "net-mi-subnet-matches-arm",
    severity=Severity.REQUIRED,
    spec="NET-01, ARM-05",
    applies=AZURE,
    docs=NETWORKING,
    remediation="Set managed_instance.subnet in the environment file to the address prefix of {mi_name}'s subnet in "
    "Resource Manager (az network vnet subnet show --ids <subnetId> --query addressPrefix)",
)
def test_net_mi_subnet_matches_arm(azure: AzureView, environment: Environment) -> None:
    """The managed instance subnet the environment file declares is the prefix of its subnet in Resource Manager.

    The host firewall and resolution checks judge the declared subnet; a narrower one passes rules that miss part
    of the real subnet, a wider one accepts addresses outside it.
    """
    declared, reported = environment.managed_instance.subnet, ipv4_prefixes(azure.mi_subnet)
    assert declared in {ipaddress.ip_network(p, strict=False) for p in reported}, (
        f"the environment declares {declared}, Resource Manager reports {', '.join(reported) or 'no IPv4 prefix'} "
        f"for {azure.mi_subnet.name}"
    )


@prereq(
    "net-tcp-mi-5022",
    severity=Severity.REQUIRED,
    spec="NET-02",
    docs=NETWORKING,
    remediation="Allow TCP from {server} to {mi_subnet} port 5022 on every hop: the host firewall, network "
    "appliances, and the managed instance subnet's NSG (inbound from {sql_ip})",
)
def test_net_tcp_mi_5022(sql_host: SqlHostView, environment: Environment) -> None:
    """SQL Server's host connects over TCP to the managed instance's FQDN on port 5022.

    This is the connection the link's mirroring endpoint opens; the article's Agent job tests the same.
    """
    mi = environment.managed_instance
    connect = sql_host.connect(mi.fqdn, MI_ENDPOINT_PORT)
    flow = Flow.tcp("outbound", sql_host.address, str(mi.subnet), MI_ENDPOINT_PORT)
    assert connect.connected, diagnose(connect, sql_host.firewall_if_readable(flow))


@prereq(
    "net-tcp-mi-hadr-port",
    severity=Severity.REQUIRED,
    spec="NET-02, MI-03",
    docs=NETWORKING,
    remediation="Allow TCP from {server} to {mi_subnet} ports 11000-11999 on every hop: the host firewall, network "
    "appliances, and the managed instance subnet's NSG (inbound from {sql_ip})",
)
def test_net_tcp_mi_hadr_port(sql_host: SqlHostView, mi: ManagedInstanceView, environment: Environment) -> None:
    """SQL Server's host connects over TCP to the managed instance node's HADR port that the fabric reports.

    The link's data flows to that node:port; it is read again on every run because failovers move it.
    """
    fabric = mi.fabric
    assert fabric.node, f"{mi.name}'s fabric DMVs name no node for the primary replica"
    assert fabric.hadr_port, f"{mi.name}'s fabric DMVs name no HADR port"
    assert fabric.hadr_port in HADR_PORTS, f"the HADR port {fabric.hadr_port} is outside 11000-11999"
    connect = sql_host.connect(fabric.node, fabric.hadr_port)
    flow = Flow.tcp("outbound", sql_host.address, str(environment.managed_instance.subnet), fabric.hadr_port)
    assert connect.connected, diagnose(connect, sql_host.firewall_if_readable(flow))


@prereq(
    "net-subnets-disjoint",
    severity=Severity.REQUIRED,
    spec="ARM-07",
    docs=NETWORKING,
    remediation="Re-address {server}'s network or the managed instance subnet {mi_subnet} so that the ranges do not "
    "overlap",
)
def test_net_subnets_disjoint(sql_host: SqlHostView, environment: Environment) -> None:
    """The SQL Server host's networks and the managed instance subnet do not overlap.

    Overlapping ranges make one side route the other's addresses to itself.
    """
    server = environment.sql_servers[sql_host.name]
    collisions = overlaps(environment.managed_instance.subnet, sql_host.networks.networks, server.address_seen_by_mi)
    assert not collisions, "; ".join(collisions)


@prereq(
    "net-azure-endpoints",
    severity=Severity.RECOMMENDED,
    spec="NET-04",
    remediation="Allow {server}'s host to resolve and reach TCP 443 of the cloud's Entra, Resource Manager and "
    "management endpoints (proxy or firewall allowlist)",
)
def test_net_azure_endpoints(sql_host: SqlHostView, environment: Environment) -> None:
    """The Azure endpoints of the declared cloud resolve and accept TCP 443 from the SQL Server host.

    The link wizard in SSMS and the scripts sign in to Microsoft Entra and call Resource Manager from there.
    """
    failures = []
    for endpoint in azure_endpoints(environment.cloud.value):
        resolved = sql_host.resolve(endpoint.host)
        if not resolved.addresses:
            failures.append(f"{endpoint.host} ({endpoint.purpose}) does not resolve")
            continue
        connect = sql_host.connect(endpoint.host, endpoint.port)
        if not connect.connected:
            failures.append(f"{endpoint.host}:{endpoint.port} ({endpoint.purpose}) {connect.outcome}")
    assert not failures, "; ".join(failures)
