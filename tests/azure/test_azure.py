"""Azure Resource Manager prerequisites (spec ARM-01 … ARM-09): the managed instance's resource, update policy,
tier, failover groups, the NSGs on the link's path, address ranges, the caller's permissions, the TDE protector.

They apply when the environment declares `azure:`; without it the report lists them as unchecked. Each flow
is decided by the NSG evaluator the way Azure decides it (priority order, default rules, service tags).
"""

from __future__ import annotations

from linkgate.azure_rules import (
    CONTRIBUTOR_ROLE,
    address_overlaps,
    failback_possible,
    failover_groups_with,
    ipv4_prefixes,
    mi_subnet_flows,
    missing_actions,
    path_decision,
    protector_is_customer_managed,
    sql_vm_flows,
    tier_hosts_in_memory_oltp,
    update_policy,
)
from linkgate.catalog import Severity, prereq
from linkgate.conditions import MI_TO_SQL, SQL_TO_MI, Condition, fact_holds
from linkgate.environment import Environment
from linkgate.fixtures import MiDatabase
from linkgate.probes.azure import AzureView, LinkPeer
from linkgate.views import DatabaseView, ManagedInstanceView, SqlServerView

AZURE = Condition(
    "the environment declares its Azure resources (azure:)", lambda ctx: ctx.environment.azure is not None
)
SQL_VM = Condition(
    "SQL Server runs on an Azure VM (azure.sql_vm_nic_id or azure.sql_vm_subnet_id)",
    lambda ctx: (
        ctx.environment.azure is not None
        and (ctx.environment.azure.sql_vm_nic_id or ctx.environment.azure.sql_vm_subnet_id) is not None
    ),
)
IN_MEMORY = fact_holds("the database uses In-Memory OLTP", "database.in_memory_oltp", bool)
MI_ENCRYPTED = fact_holds("the database on the managed instance is TDE-encrypted", "mi_database.encrypted", bool)
POLICY = "https://learn.microsoft.com/azure/azure-sql/managed-instance/update-policy"
NETWORKING = "https://learn.microsoft.com/azure/azure-sql/managed-instance/managed-instance-link-preparation#configure-network-connectivity"


@prereq(
    "azure-mi-provisioned",
    severity=Severity.REQUIRED,
    spec="ARM-01",
    applies=AZURE,
    remediation="Check azure.subscription_id, resource_group and instance_name for {mi_name} (az sql mi show -g "
    "<resource group> -n <instance>); wait for or repair a deployment that has not succeeded.",
)
def test_azure_mi_provisioned(azure: AzureView) -> None:
    """The managed instance exists in Resource Manager and its provisioning succeeded.

    The link is created on that resource; its subnet, FQDN and tier feed the other checks.
    """
    assert azure.instance_exists, "Resource Manager has no such managed instance (404)"
    mi = azure.instance
    assert (mi.provisioning_state or "").lower() == "succeeded", (
        f"{mi.name} is in provisioningState {mi.provisioning_state} (state {mi.state})"
    )


@prereq(
    "azure-update-policy",
    severity=Severity.REQUIRED,
    spec="ARM-02, MI-02, SQL-03",
    applies=AZURE,
    docs=POLICY,
    remediation="Use a managed instance whose update policy matches SQL Server {server}'s version (SQL Server 2022 "
    "update policy for SQL Server 2022; 2025 for 2025), or create the link from SQL Server; moving away from "
    "the SQL Server 2022 policy can't be undone.",
)
def test_azure_update_policy(
    sql_server: SqlServerView, mi: ManagedInstanceView, azure: AzureView, environment: Environment
) -> None:
    """The managed instance's update policy allows a link with this SQL Server in the declared direction.

    Only the policy of SQL Server's own version lets the managed instance be the initial primary or fail back;
    T-SQL can't tell the 2022 policy from 2025, Resource Manager's databaseFormat can.
    """
    decision = update_policy(
        azure.instance.database_format, environment.direction, sql_server.product.major, mi.product.update_type
    )
    assert decision, decision.explain()


@prereq(
    "azure-update-policy-failback",
    severity=Severity.RECOMMENDED,
    spec="ARM-02, MI-02",
    applies=AZURE & SQL_TO_MI,
    docs=POLICY,
    remediation="Accept that a link to {mi_name} is one-way (disaster recovery can't fail back to SQL Server), or "
    "link to a managed instance created with the SQL Server 2022 or 2025 update policy (Always-up-to-date can't be "
    "reverted).",
)
def test_azure_update_policy_failback(azure: AzureView) -> None:
    """The managed instance's update policy, as Resource Manager knows it, lets data flow back to SQL Server.

    The ARM side of mi-update-policy-failback: databaseFormat AlwaysUpToDate accepts a link from SQL Server,
    but after a failover to the instance the link can't replicate or fail back; the policy can't be reverted.
    """
    decision = failback_possible(azure.instance.database_format)
    assert decision, decision.explain()


@prereq(
    "azure-tier-inmemory",
    severity=Severity.REQUIRED,
    spec="ARM-03, SQL-15",
    applies=AZURE & IN_MEMORY,
    remediation="Move {mi_name} to the Business Critical tier (az sql mi update --tier BusinessCritical …), or "
    "remove In-Memory OLTP objects from {database} before linking it.",
)
def test_azure_tier_inmemory(database: DatabaseView, azure: AzureView) -> None:
    """A database that uses In-Memory OLTP links to a Business Critical managed instance.

    Only the Business Critical tier supports memory-optimized filegroups.
    """
    mi = azure.instance
    decision = tier_hosts_in_memory_oltp(mi.sku_tier, mi.is_general_purpose_v2)
    assert decision, f"{database.name} uses In-Memory OLTP, but {decision.reason}"


@prereq(
    "azure-no-failover-group",
    severity=Severity.REQUIRED,
    spec="ARM-04",
    applies=AZURE,
    remediation="Remove {mi_name} from its instance failover group (az sql instance-failover-group delete …), or "
    "link a managed instance that is in none.",
)
def test_azure_no_failover_group(azure: AzureView) -> None:
    """The managed instance is not in an instance failover group.

    A link can't be established on a managed instance that is part of a failover group.
    """
    groups = failover_groups_with(azure.instance.id, azure.failover_groups)
    assert not groups, "; ".join(groups)


@prereq(
    "azure-nsg-inbound-5022",
    severity=Severity.REQUIRED,
    spec="ARM-05",
    applies=AZURE,
    docs=NETWORKING,
    remediation="Allow inbound TCP 5022 from {sql_ip} to {mi_subnet} in the NSG of {mi_name}'s subnet, at a "
    "priority before the deciding deny (the failure shows the az command).",
)
def test_azure_nsg_inbound_5022(azure_peer: LinkPeer, azure: AzureView) -> None:
    """The managed instance subnet's NSG admits SQL Server's connections to port 5022.

    SQL Server's mirroring endpoint connects to the managed instance's endpoint on TCP 5022.
    """
    subnet = azure.mi_subnet
    flows = [mi_subnet_flows(str(azure_peer.address), p)["inbound-5022"] for p in ipv4_prefixes(subnet)]
    decision = path_decision(flows, azure.mi_vnet, subnet_nsg=azure.mi_nsg)
    assert decision, decision.explain()


@prereq(
    "azure-nsg-inbound-hadr-ports",
    severity=Severity.REQUIRED,
    spec="ARM-05",
    applies=AZURE,
    docs=NETWORKING,
    remediation="Allow inbound TCP 11000-11999 from {sql_ip} to {mi_subnet} in the NSG of {mi_name}'s subnet, at a "
    "priority before the deciding deny (the failure shows the az command).",
)
def test_azure_nsg_inbound_hadr_ports(azure_peer: LinkPeer, azure: AzureView) -> None:
    """The managed instance subnet's NSG admits SQL Server's connections to every port of 11000-11999.

    The link's data goes to the instance node's HADR port in that range, which moves on failover.
    """
    subnet = azure.mi_subnet
    flows = [mi_subnet_flows(str(azure_peer.address), p)["inbound-hadr"] for p in ipv4_prefixes(subnet)]
    decision = path_decision(flows, azure.mi_vnet, subnet_nsg=azure.mi_nsg)
    assert decision, decision.explain()


@prereq(
    "azure-nsg-outbound-5022",
    severity=Severity.REQUIRED,
    spec="ARM-05",
    applies=AZURE,
    docs=NETWORKING,
    remediation="Allow outbound TCP 5022 from {mi_subnet} to {sql_ip} in the NSG of {mi_name}'s subnet, at a "
    "priority before the deciding deny (the failure shows the az command).",
)
def test_azure_nsg_outbound_5022(azure_peer: LinkPeer, azure: AzureView) -> None:
    """The managed instance subnet's NSG lets the managed instance connect to SQL Server's port 5022.

    The managed instance connects back to SQL Server's mirroring endpoint.
    """
    subnet = azure.mi_subnet
    flows = [mi_subnet_flows(str(azure_peer.address), p)["outbound-5022"] for p in ipv4_prefixes(subnet)]
    decision = path_decision(flows, azure.mi_vnet, subnet_nsg=azure.mi_nsg)
    assert decision, decision.explain()


@prereq(
    "azure-vm-nsg",
    severity=Severity.REQUIRED,
    spec="ARM-06",
    applies=AZURE & SQL_VM,
    docs=NETWORKING,
    remediation="In the NSGs of {server}'s NIC and subnet allow inbound TCP {endpoint_port} from {mi_subnet}, and "
    "outbound TCP 5022 and 11000-11999 to {mi_subnet} (the failure shows the az command).",
)
def test_azure_vm_nsg(azure_peer: LinkPeer, azure: AzureView) -> None:
    """The NSGs of the SQL Server VM's NIC and subnet pass the link's traffic both ways.

    Inbound traffic meets the subnet's NSG and then the NIC's, outbound the reverse; both must allow.
    """
    vm = azure.sql_vm
    assert vm is not None, "the SQL Server VM's network is not declared"
    assert vm.vnet is not None, "the SQL Server VM's subnet could not be determined (no subnet on its NIC)"
    flows = [
        flow
        for prefix in ipv4_prefixes(azure.mi_subnet)
        for flow in sql_vm_flows(str(azure_peer.address), prefix, azure_peer.endpoint_port).values()
    ]
    decision = path_decision(flows, vm.vnet, subnet_nsg=vm.subnet_nsg, nic_nsg=vm.nic_nsg)
    assert decision, decision.explain()


@prereq(
    "azure-subnets-disjoint",
    severity=Severity.REQUIRED,
    spec="ARM-07",
    applies=AZURE,
    docs=NETWORKING,
    remediation="Re-address the managed instance subnet {mi_subnet} or {server}'s network so that they do not overlap.",
)
def test_azure_subnets_disjoint(azure_peer: LinkPeer, azure: AzureView) -> None:
    """The managed instance's subnet and SQL Server's address ranges, as Resource Manager knows them, don't overlap.

    Overlapping ranges make each side route the other's addresses to itself.
    """
    vm = azure.sql_vm
    sql_prefixes = vm.subnet.prefixes if vm is not None and vm.subnet is not None else ()
    overlaps = address_overlaps(azure.mi_subnet.prefixes, sql_prefixes, azure_peer.address)
    assert not overlaps, "; ".join(overlaps)


@prereq(
    "azure-permissions",
    severity=Severity.RECOMMENDED,
    spec="ARM-08",
    applies=AZURE,
    remediation=f"Assign the role {CONTRIBUTOR_ROLE} on {{mi_name}} to the identity that will create the link "
    "(az role assignment create --role 'SQL Managed Instance Contributor' --assignee <id> --scope <instance id>).",
)
def test_azure_permissions(azure: AzureView) -> None:
    """The signed-in identity holds every permission needed to create the link on the managed instance.

    Creating a link writes the instance, its databases, distributed availability groups and certificates.
    """
    missing = missing_actions(azure.permissions)
    assert not missing, f"{len(missing)} required actions are not granted: {', '.join(missing)}"


@prereq(
    "azure-tde-protector",
    severity=Severity.REQUIRED,
    spec="ARM-09, MI-04",
    applies=AZURE & MI_TO_SQL & MI_ENCRYPTED,
    remediation="Set {mi_name}'s TDE protector to a customer-managed key in Azure Key Vault that SQL Server can "
    "also reach (az sql mi tde-key set --server-key-type AzureKeyVault --kid <key id> …).",
)
def test_azure_tde_protector(mi_database: MiDatabase, azure: AzureView) -> None:
    """An encrypted database linked from the managed instance is protected by a customer-managed key.

    Service-managed TDE keys can't be shared with SQL Server, so such databases can't be linked to it.
    """
    decision = protector_is_customer_managed(azure.encryption_protector.server_key_type)
    assert decision, f"{mi_database.name} is encrypted and {decision.reason}"
