"""The Azure clouds the gate knows: where Resource Manager, Microsoft Entra and SQL live in each (spec §7.3).

A sovereign cloud is a separate universe: its Resource Manager, its Entra authority and its token
audience all differ from the public cloud's, and a token from one is refused by the others. The gate
therefore derives every Azure address from the environment's `cloud:` and never mixes them; the same
table is the NET-04 allowlist an operator opens for the link's tooling (SSMS, the scripts, `az`).
Values: Learn's SSMS options page for AzureCloud, Azure CLI's built-in cloud definitions for the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from linkgate.environment import Cloud


@dataclass(frozen=True)
class CloudEndpoints:
    """One cloud's endpoints. URLs end with '/' as the clouds publish them.

    `audience` is Entra's resource id for the management plane (the "Microsoft Entra Endpoint Resource
    ID" of the allowlist); the gate asks for `arm_scope`, the Resource Manager endpoint's `.default`
    scope, which is what the Azure SDKs request and what Resource Manager accepts as well.
    """

    cloud: Cloud
    resource_manager: str
    authority: str
    audience: str
    service_management: str
    sql_dns_suffix: str

    @property
    def arm_scope(self) -> str:
        """The OAuth scope of an ARM token: `https://management.azure.com/.default` in the public cloud."""
        return self.resource_manager.rstrip("/") + "/.default"

    @property
    def authority_host(self) -> str:
        """The authority's host name, as azure-identity's `AzureAuthorityHosts` spells it."""
        return urlsplit(self.authority).hostname or ""


@dataclass(frozen=True)
class AllowlistEntry:
    """One endpoint the link's tooling must reach over HTTPS (NET-04), named as the article names it."""

    item: str
    url: str

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 443


CLOUDS: dict[Cloud, CloudEndpoints] = {
    Cloud.AZURE: CloudEndpoints(
        Cloud.AZURE,
        resource_manager="https://management.azure.com/",
        authority="https://login.microsoftonline.com/",
        audience="https://management.core.windows.net/",
        service_management="https://management.core.windows.net/",
        sql_dns_suffix=".database.windows.net",
    ),
    Cloud.US_GOVERNMENT: CloudEndpoints(
        Cloud.US_GOVERNMENT,
        resource_manager="https://management.usgovcloudapi.net/",
        authority="https://login.microsoftonline.us/",
        audience="https://management.core.usgovcloudapi.net/",
        service_management="https://management.core.usgovcloudapi.net/",
        sql_dns_suffix=".database.usgovcloudapi.net",
    ),
    Cloud.CHINA: CloudEndpoints(
        Cloud.CHINA,
        resource_manager="https://management.chinacloudapi.cn/",
        authority="https://login.chinacloudapi.cn/",
        audience="https://management.core.chinacloudapi.cn/",
        service_management="https://management.core.chinacloudapi.cn/",
        sql_dns_suffix=".database.chinacloudapi.cn",
    ),
}


def endpoints(cloud: Cloud | str) -> CloudEndpoints:
    """The endpoints of `cloud`, given as the enum or by name (`AzureUSGovernment`, case-insensitive)."""
    if isinstance(cloud, Cloud):
        return CLOUDS[cloud]
    for member, found in CLOUDS.items():
        if member.value.lower() == cloud.lower():
            return found
    raise ValueError(f"unknown cloud {cloud!r}; known: {', '.join(c.value for c in CLOUDS)}")


def allowlist(cloud: Cloud | str) -> tuple[AllowlistEntry, ...]:
    """The cloud's endpoints of the article's allowlist (spec NET-04); the instance's FQDN is the fifth item.

    The Resource ID and the Service Endpoint are the same host in every cloud; both stay listed, because
    the article lists them as two items and an auditor checks the list against it.
    """
    found = endpoints(cloud)
    return (
        AllowlistEntry("Microsoft Entra Authority", found.authority),
        AllowlistEntry("Microsoft Entra Endpoint Resource ID", found.audience),
        AllowlistEntry("Resource Manager Endpoint", found.resource_manager),
        AllowlistEntry("Service Endpoint", found.service_management),
    )
