"""What the Azure facts of a managed instance mean for the link (spec ARM-02 … ARM-09, §1.3): pure decisions.

Every function takes typed facts read from Resource Manager (`linkgate.probes.azure`) and returns a
`Decision` whose reason is the sentence a failed check prints. Nothing here does I/O, so each rule is
unit-tested on its own; the network flows are decided by the NSG evaluator of `linkgate.firewall.nsg`.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from linkgate.environment import Direction as LinkDirection
from linkgate.firewall.flows import Flow, Verdict
from linkgate.firewall.nsg import Nsg, evaluate_path
from linkgate.firewall.remediation import nsg_command

if TYPE_CHECKING:
    from linkgate.probes.azure import FailoverGroup, Permission, Subnet, VirtualNetwork

MI_ENDPOINT_PORT = 5022
HADR_PORTS = "11000-11999"


@dataclass(frozen=True)
class Decision:
    """A rule's answer: `ok` True, False, or None when the facts cannot decide (never read as a pass)."""

    ok: bool | None
    reason: str
    notes: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.ok is True

    def explain(self) -> str:
        return "\n".join([self.reason, *(f"note: {n}" for n in self.notes)])


# --- ARM-02: update policy (databaseFormat) against the direction and SQL Server's version ------------------


class DatabaseFormat(enum.Enum):
    """`properties.databaseFormat`: the managed instance's update policy, as Resource Manager names it."""

    ALWAYS_UP_TO_DATE = "AlwaysUpToDate"
    SQL_SERVER_2022 = "SQLServer2022"
    SQL_SERVER_2025 = "SQLServer2025"

    @classmethod
    def parse(cls, text: str) -> DatabaseFormat:
        """Case-insensitive: the SDK spells `SQLServer2025`, the portal and CLI docs `SqlServer2025`."""
        for member in cls:
            if member.value.lower() == text.strip().lower():
                return member
        raise ValueError(f"unknown databaseFormat {text!r}")

    @property
    def sql_major(self) -> int | None:
        """The SQL Server major version whose database format the instance keeps (None: always the newest)."""
        return {"SQLServer2022": 16, "SQLServer2025": 17}.get(self.value)

    @property
    def product_update_type(self) -> str:
        """What SERVERPROPERTY('ProductUpdateType') answers on such an instance (spec MI-02)."""
        return "Continuous" if self is DatabaseFormat.ALWAYS_UP_TO_DATE else "CU"


_YEAR = {13: "2016", 14: "2017", 15: "2019", 16: "2022", 17: "2025"}


def _policy(database_format: str | None) -> DatabaseFormat | Decision:
    """The update policy Resource Manager reports, or the undecided Decision saying why it can't be read."""
    if not database_format:
        return Decision(None, "Resource Manager returned no databaseFormat for the managed instance")
    try:
        return DatabaseFormat.parse(database_format)
    except ValueError as e:
        return Decision(None, str(e))


def update_policy(
    database_format: str | None, direction: LinkDirection, sql_major: int, product_update_type: str | None = None
) -> Decision:
    """Whether the instance's update policy allows the link with a SQL Server of `sql_major` in `direction`.

    MI_TO_SQL needs the policy of SQL Server's own version (2022 ↔ SQLServer2022, 2025 ↔ SQLServer2025).
    SQL_TO_MI works into any policy at least as new as SQL Server; a newer one makes the link one-way
    (no failback), which is a note, not a failure. `product_update_type`, when given, must agree (MI-02).
    """
    policy = _policy(database_format)
    if isinstance(policy, Decision):
        return policy
    year = _YEAR.get(sql_major, f"major version {sql_major}")
    if product_update_type is not None and product_update_type.strip().lower() != policy.product_update_type.lower():
        return Decision(
            False,
            f"Resource Manager says databaseFormat {policy.value} but the instance answers ProductUpdateType "
            f"{product_update_type!r} over T-SQL (expected {policy.product_update_type}): the environment's "
            "azure: and managed_instance: may name different instances",
        )
    matching = policy.sql_major == sql_major
    if direction is LinkDirection.MI_TO_SQL:
        if matching:
            return Decision(True, f"databaseFormat {policy.value} matches SQL Server {year}")
        wanted = {16: "SQLServer2022", 17: "SQLServer2025"}.get(sql_major)
        return Decision(
            False,
            f"databaseFormat {policy.value}: the managed instance can be the initial primary only for a SQL Server "
            f"of its own policy's version"
            + (f" (SQL Server {year} needs {wanted})" if wanted else f"; SQL Server {year} can't be a secondary"),
        )
    if policy.sql_major is not None and sql_major > policy.sql_major:
        return Decision(
            False,
            f"databaseFormat {policy.value} can't host databases from SQL Server {year}, whose format is newer",
        )
    if matching:
        return Decision(True, f"databaseFormat {policy.value} matches SQL Server {year}: failback is possible")
    return Decision(
        True,
        f"databaseFormat {policy.value} accepts databases from SQL Server {year}",
        (
            f"one-way: after a failover to the managed instance, data can't be replicated or failed back to SQL Server "
            f"{year}",
        ),
    )


def failback_possible(database_format: str | None) -> Decision:
    """Whether data can flow back to SQL Server after a failover to the instance (ARM-02, RECOMMENDED).

    An Always-up-to-date instance accepts a link from SQL Server (SQL_TO_MI), but its database format is
    newer than any SQL Server's, so after a failover to it the link can't replicate or fail back. This is
    the ARM side of what `ProductUpdateType = Continuous` tells over T-SQL (MI-02); the 2022 and 2025
    policies, which T-SQL can't tell apart, are judged against the version by `update_policy`.
    """
    policy = _policy(database_format)
    if isinstance(policy, Decision):
        return policy
    if policy is DatabaseFormat.ALWAYS_UP_TO_DATE:
        return Decision(
            False,
            f"databaseFormat {policy.value}: after a failover to the managed instance, data can't be replicated, "
            "or failed back, to SQL Server (the policy can't be reverted)",
        )
    return Decision(True, f"databaseFormat {policy.value} keeps a SQL Server database format: failback is possible")


# --- ARM-03: tier against In-Memory OLTP ---------------------------------------------------------------------


def tier_hosts_in_memory_oltp(sku_tier: str | None, is_general_purpose_v2: bool) -> Decision:
    """In-Memory OLTP needs Business Critical; Next-gen General Purpose is treated as General Purpose (unverified)."""
    tier = sku_tier or "(no sku.tier)"
    if tier.lower() == "businesscritical":
        return Decision(True, "the managed instance is Business Critical, which supports In-Memory OLTP")
    variant = " (Next-gen General Purpose)" if is_general_purpose_v2 else ""
    return Decision(
        False,
        f"the managed instance's tier is {tier}{variant}: only Business Critical supports "
        "In-Memory OLTP (memory-optimized filegroups)",
    )


# --- ARM-04: failover groups -------------------------------------------------------------------------------


def failover_groups_with(instance_id: str, groups: Iterable[FailoverGroup]) -> list[str]:
    """The instance failover groups that pair this instance (resource ids compared case-insensitively)."""
    wanted = instance_id.lower()
    return [
        f"{g.name} ({g.replication_role or 'role unknown'}) pairs {primary} with {partner}"
        for g in groups
        for primary, partner in g.pairs
        if wanted in (primary.lower(), partner.lower())
    ]


# --- ARM-05/06: the link's flows through NSGs ------------------------------------------------------------


def mi_subnet_flows(sql_ip: str, mi_prefix: str) -> dict[str, Flow]:
    """The flows the managed instance subnet's NSG must allow, seen from that subnet."""
    return {
        "inbound-5022": Flow.tcp("inbound", sql_ip, mi_prefix, MI_ENDPOINT_PORT),
        "inbound-hadr": Flow.tcp("inbound", sql_ip, mi_prefix, HADR_PORTS),
        "outbound-5022": Flow.tcp("outbound", mi_prefix, sql_ip, MI_ENDPOINT_PORT),
    }


def sql_vm_flows(sql_ip: str, mi_prefix: str, endpoint_port: int = MI_ENDPOINT_PORT) -> dict[str, Flow]:
    """The flows the SQL Server VM's NIC and subnet NSGs must allow, seen from the VM."""
    return {
        "inbound-5022": Flow.tcp("inbound", mi_prefix, sql_ip, endpoint_port),
        "outbound-5022": Flow.tcp("outbound", sql_ip, mi_prefix, MI_ENDPOINT_PORT),
        "outbound-hadr": Flow.tcp("outbound", sql_ip, mi_prefix, HADR_PORTS),
    }


def nsg_decision(verdict: Verdict, nsgs: Sequence[Nsg]) -> Decision:
    """The NSG evaluator's verdict as a decision: the deciding rule (name, priority, direction) and the fix."""
    if verdict.allowed is True:
        return Decision(True, str(verdict), verdict.notes)
    text = verdict.explain()
    if verdict.allowed is False and nsgs:
        text += "\nto open it: " + nsg_command(verdict, nsgs)
    return Decision(verdict.allowed, text)


def path_decision(
    flows: Iterable[Flow], vnet: VirtualNetwork, *, subnet_nsg: Nsg | None, nic_nsg: Nsg | None = None
) -> Decision:
    """Whether every flow passes the NSGs on its path (subnet, then NIC inbound; the reverse outbound).

    The first flow that is not allowed decides, citing its deciding rule; `vnet` resolves VirtualNetwork.
    """
    tag, how = virtual_network_tag(vnet)
    nsgs = [n for n in (subnet_nsg, nic_nsg) if n is not None]
    allowed = []
    for flow in flows:
        decision = nsg_decision(evaluate_path(flow, subnet=subnet_nsg, nic=nic_nsg, virtual_network=tag), nsgs)
        if decision.ok is not True:
            return Decision(decision.ok, decision.reason, (*decision.notes, how))
        allowed.append(decision.reason)
    return Decision(True, "\n".join(allowed), (how,))


def ipv4_prefixes(subnet: Subnet) -> list[str]:
    """The subnet's IPv4 prefixes: the link runs over IPv4 (the managed instance's subnet is IPv4)."""
    return [p for p in subnet.prefixes if ipaddress.ip_network(p, strict=False).version == 4]


def virtual_network_tag(vnet: VirtualNetwork) -> tuple[list[str] | None, str]:
    """The prefixes the NSG tag VirtualNetwork stands for in `vnet`, or None when they can't all be known.

    Known: the VNet's address space and its connected peerings' address spaces. A gateway (a subnet named
    GatewaySubnet, or a peering that uses the remote VNet's gateway) adds on-premises and BGP-learned
    prefixes that Resource Manager doesn't list, so the tag is left unresolved: a rule on it that could
    decide makes the verdict indeterminate. The second value says which case applied.
    """
    if "gatewaysubnet" in (s.lower() for s in vnet.subnet_names):
        return None, f"{vnet.name} has a GatewaySubnet: VirtualNetwork includes on-premises prefixes not in ARM"
    remote = [p for peering in vnet.peerings if peering.state.lower() == "connected" for p in peering.remote_prefixes]
    if any(p.uses_remote_gateways for p in vnet.peerings):
        return None, f"{vnet.name} uses a peer's gateway: VirtualNetwork includes on-premises prefixes not in ARM"
    prefixes = [*vnet.address_prefixes, *remote]
    return prefixes, f"VirtualNetwork of {vnet.name} = {', '.join(prefixes) or '(empty)'}"


# --- ARM-07: address overlap -----------------------------------------------------------------------------


def address_overlaps(
    mi_prefixes: Sequence[str], sql_prefixes: Sequence[str], sql_ip: ipaddress.IPv4Address | None
) -> list[str]:
    """Sentences naming every overlap between the instance's subnet and SQL Server's ranges or address."""
    mi = [ipaddress.ip_network(p, strict=False) for p in mi_prefixes]
    found = [
        f"SQL Server's range {s} overlaps the managed instance subnet {m}"
        for s in (ipaddress.ip_network(p, strict=False) for p in sql_prefixes)
        for m in mi
        if s.version == m.version and s.overlaps(m)
    ]
    if sql_ip is not None:
        found += [f"SQL Server's address {sql_ip} is inside the managed instance subnet {m}" for m in mi if sql_ip in m]
    return found


# --- ARM-08: the caller's permissions ------------------------------------------------------------------------

CONTRIBUTOR_ROLE = "SQL Managed Instance Contributor (4939a1f6-9ae0-4e48-a1e0-f2cbe897382d)"
_MI = "Microsoft.Sql/managedInstances"
REQUIRED_ACTIONS = (
    f"{_MI}/read",
    f"{_MI}/write",
    f"{_MI}/hybridCertificate/action",
    f"{_MI}/databases/read",
    f"{_MI}/databases/delete",
    f"{_MI}/databases/write",
    f"{_MI}/databases/completeRestore/action",
    f"{_MI}/databases/readBackups/action",
    f"{_MI}/databases/restoreDetails/read",
    f"{_MI}/distributedAvailabilityGroups/read",
    f"{_MI}/distributedAvailabilityGroups/write",
    f"{_MI}/distributedAvailabilityGroups/delete",
    f"{_MI}/distributedAvailabilityGroups/setRole/action",
    f"{_MI}/endpointCertificates/read",
    f"{_MI}/hybridLink/read",
    f"{_MI}/hybridLink/write",
    f"{_MI}/hybridLink/delete",
    f"{_MI}/serverTrustCertificates/write",
    f"{_MI}/serverTrustCertificates/delete",
    f"{_MI}/serverTrustCertificates/read",
)
"""The custom-role permissions the article lists for creating a link (spec ARM-08)."""


def action_matches(pattern: str, action: str) -> bool:
    """Azure RBAC matching: case-insensitive, `*` matches any run of characters (including '/')."""
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, action, flags=re.IGNORECASE) is not None


def missing_actions(permissions: Iterable[Permission], required: Sequence[str] = REQUIRED_ACTIONS) -> list[str]:
    """The required actions no permission entry grants: each entry grants its actions minus its notActions,
    and the caller holds the union of the entries (one per role assignment)."""

    entries = list(permissions)

    def grants(entry: Permission, action: str) -> bool:
        return any(action_matches(a, action) for a in entry.actions) and not any(
            action_matches(n, action) for n in entry.not_actions
        )

    return [action for action in required if not any(grants(entry, action) for entry in entries)]


# --- ARM-09: TDE protector -----------------------------------------------------------------------------------


def protector_is_customer_managed(server_key_type: str | None) -> Decision:
    """Databases linked from the managed instance to SQL Server need a customer-managed (Key Vault) TDE key."""
    kind = server_key_type or "(none)"
    if kind.lower() == "azurekeyvault":
        return Decision(True, "the TDE protector is a customer-managed key in Azure Key Vault")
    return Decision(
        False,
        f"the TDE protector is {kind}: service-managed keys can't be shared with SQL Server, so "
        "encrypted databases can't be linked from the managed instance",
    )
