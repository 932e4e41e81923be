"""Sovereign clouds resolve to their own endpoints, without any network: the table and the client settings."""

from __future__ import annotations

import pytest
from azure.identity import AzureAuthorityHosts

from linkgate.clouds import CLOUDS, allowlist, endpoints
from linkgate.environment import AzureTarget, Cloud
from linkgate.probes.azure import ArmSettings

TARGET = AzureTarget("00000000-0000-4000-8000-000000000001", "rg", "mi", None, None, None, None, None)


@pytest.mark.parametrize(
    ("cloud", "arm", "authority_host", "scope", "suffix"),
    [
        (Cloud.AZURE, "https://management.azure.com/", AzureAuthorityHosts.AZURE_PUBLIC_CLOUD,
         "https://management.azure.com/.default", ".database.windows.net"),
        (Cloud.US_GOVERNMENT, "https://management.usgovcloudapi.net/", AzureAuthorityHosts.AZURE_GOVERNMENT,
         "https://management.usgovcloudapi.net/.default", ".database.usgovcloudapi.net"),
        (Cloud.CHINA, "https://management.chinacloudapi.cn/", AzureAuthorityHosts.AZURE_CHINA,
         "https://management.chinacloudapi.cn/.default", ".database.chinacloudapi.cn"),
    ],
)  # fmt: skip
def test_each_cloud_has_its_own_endpoints(cloud: Cloud, arm: str, authority_host: str, scope: str, suffix: str) -> None:
    found = endpoints(cloud)
    assert found.resource_manager == arm
    assert found.authority_host == authority_host, "agrees with azure-identity's AzureAuthorityHosts"
    assert found.arm_scope == scope
    assert found.sql_dns_suffix == suffix
    settings = ArmSettings.for_target(TARGET, cloud)
    assert (settings.resource_manager, settings.scope) == (arm, scope)
    assert settings.authority == f"https://{authority_host}/"
    assert not settings.private_authority
    assert settings.ca_bundle is None


def test_no_two_clouds_share_an_endpoint() -> None:
    for attribute in ("resource_manager", "authority", "audience", "sql_dns_suffix"):
        values = [getattr(c, attribute) for c in CLOUDS.values()]
        assert len(set(values)) == len(values), attribute


def test_names_resolve_case_insensitively_and_unknown_names_are_refused() -> None:
    assert endpoints("azureusgovernment") is CLOUDS[Cloud.US_GOVERNMENT]
    with pytest.raises(ValueError, match="unknown cloud 'AzureGermanCloud'; known: AzureCloud"):
        endpoints("AzureGermanCloud")


def test_the_allowlist_names_the_articles_four_items_per_cloud() -> None:
    gov = allowlist(Cloud.US_GOVERNMENT)
    assert [e.item for e in gov] == [
        "Microsoft Entra Authority",
        "Microsoft Entra Endpoint Resource ID",
        "Resource Manager Endpoint",
        "Service Endpoint",
    ]
    assert [(e.host, e.port) for e in gov] == [
        ("login.microsoftonline.us", 443),
        ("management.core.usgovcloudapi.net", 443),
        ("management.usgovcloudapi.net", 443),
        ("management.core.usgovcloudapi.net", 443),
    ]
    assert all("chinacloudapi.cn" in e.host for e in allowlist("AzureChinaCloud"))


def test_an_overridden_endpoint_asks_for_its_own_scope_and_uses_only_the_service_principal() -> None:
    lab = AzureTarget("s", "rg", "mi", None, None, "https://127.0.0.1:14343", "https://127.0.0.1:14343", "/tmp/ca.pem")
    settings = ArmSettings.for_target(lab, Cloud.US_GOVERNMENT)
    assert settings.resource_manager == "https://127.0.0.1:14343"
    assert settings.scope == "https://127.0.0.1:14343/.default"
    assert settings.private_authority
    assert settings.ca_bundle == "/tmp/ca.pem"
    assert type(settings.credential()).__name__ == "EnvironmentCredential"
    assert type(ArmSettings.for_target(TARGET, Cloud.CHINA).credential()).__name__ == "DefaultAzureCredential"
