"""Managed-instance prerequisites read over T-SQL (spec MI-01 … MI-04, SQL-13 on the managed instance)."""

from __future__ import annotations

from linkgate.catalog import Severity, prereq
from linkgate.conditions import MI_TO_SQL, SQL_TO_MI, fact_holds
from linkgate.environment import Direction, Environment
from linkgate.fixtures import MiDatabase
from linkgate.views import ManagedInstanceView

POLICY = "https://learn.microsoft.com/azure/azure-sql/managed-instance/update-policy"
HADR_PORTS = range(11000, 12000)
MI_ENCRYPTED = fact_holds("the database on the managed instance is TDE-encrypted", "mi_database.encrypted", bool)


@prereq(
    "mi-engine-edition",
    severity=Severity.REQUIRED,
    spec="MI-01",
    remediation="Point managed_instance in the environment file at an Azure SQL Managed Instance ({mi_fqdn}).",
)
def test_mi_engine_edition(mi: ManagedInstanceView) -> None:
    """The target is an Azure SQL Managed Instance (engine edition 8).

    A link can only be created with a managed instance.
    """
    edition = mi.product.engine_edition
    assert edition == 8, f"{mi.name} reports engine edition {edition}, not 8 (managed instance)"


@prereq(
    "mi-update-policy",
    severity=Severity.REQUIRED,
    spec="MI-02",
    docs=POLICY,
    remediation="Create the link from SQL Server instead, or use a managed instance with the SQL Server 2022 or "
    "2025 update policy (Always-up-to-date cannot be reverted).",
)
def test_mi_update_policy(mi: ManagedInstanceView, environment: Environment) -> None:
    """The managed instance's update policy allows the link in the declared direction.

    With the Always-up-to-date policy (ProductUpdateType Continuous) the managed instance can't be the initial
    primary, and data can't be replicated back to SQL Server after a failover.
    """
    update_type = mi.product.update_type
    assert update_type in ("CU", "Continuous"), f"ProductUpdateType is {update_type!r}"
    if environment.direction is Direction.MI_TO_SQL:
        assert update_type == "CU", (
            f"{mi.name} is Always-up-to-date (ProductUpdateType {update_type}): it can't be the initial primary"
        )


@prereq(
    "mi-update-policy-failback",
    severity=Severity.RECOMMENDED,
    spec="MI-02, ARM-02",
    applies=SQL_TO_MI,
    docs=POLICY,
    remediation="Accept that a link to {mi_name} is one-way (disaster recovery can't fail back to SQL Server), or "
    "link to a managed instance on the SQL Server 2022 or 2025 update policy; Always-up-to-date can't be reverted.",
)
def test_mi_update_policy_failback(mi: ManagedInstanceView) -> None:
    """The managed instance's update policy lets data flow back to SQL Server after a failover.

    A link from SQL Server into an Always-up-to-date instance (ProductUpdateType Continuous) works, but after
    a failover to the managed instance data can't be replicated, or failed back, to SQL Server.
    """
    update_type = mi.product.update_type
    assert (update_type or "").lower() != "continuous", (
        f"{mi.name} is Always-up-to-date (ProductUpdateType {update_type}): after a failover to it, the link "
        "can't replicate or fail back to SQL Server"
    )


@prereq(
    "mi-fabric-endpoint",
    severity=Severity.REQUIRED,
    spec="MI-03",
    remediation="Re-read the fabric parameters on {mi_name} after the failover, and open 11000-11999 towards "
    "{mi_subnet} (the HADR port must lie in that range).",
)
def test_mi_fabric_endpoint(mi: ManagedInstanceView) -> None:
    """The managed instance reports its primary node and a HADR port in 11000-11999.

    The link connects to that node and port; both move on failover, so they are read live. Required, not the
    spec's INFO: the connectivity checks can't run without them.
    """
    fabric = mi.fabric
    assert fabric.node, "no primary replica node found in the fabric DMVs"
    assert fabric.hadr_port in HADR_PORTS, f"HADR port {fabric.hadr_port} is outside 11000-11999"


@prereq(
    "mi-agent-job-permission",
    severity=Severity.RECOMMENDED,
    spec="SQL-13",
    remediation="On {mi_name}: USE msdb; CREATE USER [{login}] FOR LOGIN [{login}]; "
    "ALTER ROLE [SQLAgentOperatorRole] ADD MEMBER [{login}];",
)
def test_mi_agent_job_permission(mi: ManagedInstanceView) -> None:
    """The login can create SQL Agent jobs on the managed instance.

    The article's test of the managed instance reaching SQL Server runs as an Agent job there; recommended, not
    the spec's conditional-required, since only that test and the SSMS network checker need it.
    """
    assert mi.login.is_sysadmin or mi.is_agent_operator, (
        f"{mi.login.name!r} is neither sysadmin nor in msdb's SQLAgentOperatorRole on {mi.name}"
    )


@prereq(
    "mi-db-tde",
    severity=Severity.REQUIRED,
    spec="MI-04",
    applies=MI_TO_SQL & MI_ENCRYPTED,
    remediation="Re-encrypt {database} on {mi_name} with a customer-managed key in Azure Key Vault that SQL Server "
    "can also reach (service-managed TDE can't be linked to SQL Server).",
)
def test_mi_db_tde(mi_database: MiDatabase) -> None:
    """An encrypted database on the managed instance uses a customer-managed (Key Vault) key.

    Databases encrypted with service-managed keys can't be linked to SQL Server.
    """
    tde = mi_database.tde
    key = (tde.encryptor_type or "").upper()
    assert "ASYMMETRIC" in key, f"{mi_database.name} is encrypted by a {tde.encryptor_type} (service-managed) key"
