"""The lab's ARM endpoint through the gate's real client: azure-identity + MSAL sign-in, azure-core pipeline.

Nothing is mocked: each test starts the HTTPS endpoint on 127.0.0.1 and reads it with `read_azure`, the
function a gate run calls, with the credential a user's run would build for an overridden authority.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests

from linkgate.environment import AzureTarget, Cloud, Timeouts
from linkgate.lab.arm import ArmLab
from linkgate.lab.certs import write_self_signed
from linkgate.lab.scenario import ScenarioError, load_scenario
from linkgate.probes.azure import SQL_API, ArmClient, ArmError, ArmSettings, AzureFacts, read_azure

HEALTHY_AZURE = Path(__file__).resolve().parents[1] / "unit" / "data" / "arm" / "healthy-azure.yaml"
TIMEOUTS = Timeouts(connect=5, query=10)

StartArm = Callable[..., ArmLab]


def healthy_section(monkeypatch: pytest.MonkeyPatch, *overlays: Path) -> Mapping[str, Any]:
    """The healthy scenario's azure: section, with `overlays` applied (scenario loading needs the lab password)."""
    monkeypatch.setenv("LINKGATE_LAB_PASSWORD", "Lg!selftest")
    return load_scenario(HEALTHY_AZURE, overlays).azure


def target_of(lab: ArmLab, **changes: Any) -> AzureTarget:
    """The environment's azure: section that points at `lab`, as the environment loader builds it."""
    section = lab.environment_section()
    target = AzureTarget(
        subscription_id=section["subscription_id"],
        resource_group=section["resource_group"],
        instance_name=section["instance_name"],
        sql_vm_nic_id=section.get("sql_vm_nic_id"),
        sql_vm_subnet_id=None,
        arm_endpoint=section["arm_endpoint"],
        authority=section["authority"],
        ca_bundle=section["ca_bundle"],
    )
    return dataclasses.replace(target, **changes)


def read(lab: ArmLab, **changes: Any) -> AzureFacts:
    return read_azure(target_of(lab, **changes), Cloud.AZURE, TIMEOUTS, "mi01")


@pytest.fixture
def start_arm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StartArm]:
    """Starts an ARM endpoint for a section (default: healthy) and exports its service principal's variables."""
    certificate = write_self_signed(tmp_path / "tls")
    started: list[ArmLab] = []

    def start(section: Mapping[str, Any] | None = None, **options: Any) -> ArmLab:
        lab = ArmLab(section or healthy_section(monkeypatch), certificate=certificate, port=0, **options)
        lab.start()
        started.append(lab)
        for name, value in lab.credentials_environment().items():
            monkeypatch.setenv(name, value)
        return lab

    yield start
    for lab in started:
        lab.stop()


def test_signs_in_through_msal_and_reads_every_fact(start_arm: StartArm) -> None:
    lab = start_arm()
    facts = read(lab)
    assert facts.instance.get().database_format == "SQLServer2022"
    assert facts.mi_subnet.get().prefixes == ("198.18.2.0/24",)
    assert facts.mi_vnet.get().address_prefixes == ("198.18.2.0/24",)
    nsg = facts.mi_nsg.get()
    assert nsg is not None
    assert nsg.name == "nsg-mi"
    assert facts.failover_groups.get() == ()
    assert facts.encryption_protector.get().server_key_type == "AzureKeyVault"
    vm = facts.sql_vm.get()
    assert vm is not None
    assert vm.nic is not None
    assert vm.nic.private_ips == ("198.18.1.10",)
    paths = [(r.method, r.path.split("/")[-1], r.status) for r in lab.requests[:2]]
    assert paths == [("GET", "openid-configuration", 200), ("POST", "token", 200)], "MSAL discovery, then the grant"
    arm = lab.requests[2:]
    assert len(arm) == 12
    assert all(r.authenticated and r.status == 200 for r in arm)
    assert {r.api_version for r in arm} == {"2025-01-01", "2024-05-01", "2022-04-01"}


def test_evidence_shows_each_get_and_the_nsg_as_a_rule_table(start_arm: StartArm) -> None:
    facts = read(start_arm())
    (evidence,) = facts.mi_nsg.evidence
    assert evidence.source == "ARM"
    assert evidence.target == "mi01"
    assert evidence.command.endswith("/networkSecurityGroups/nsg-mi?api-version=2024-05-01")
    rows = {line.split("|")[0].strip(): [c.strip() for c in line.split("|")] for line in evidence.result.splitlines()}
    assert rows["allow-milink-in"][1:] == ["1000", "inbound", "Allow Tcp from 198.18.1.10 port * to 198.18.2.0/24 "
                                           "port 5022,11000-11999"]  # fmt: skip
    assert "DenyAllInBound" in evidence.result


def test_a_wrong_secret_fails_sign_in_with_entras_error_and_no_secret(
    start_arm: StartArm, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = start_arm(client_secret="the-lab-secret")
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "not-the-secret")
    facts = read(lab)
    error = facts.instance.error or ""
    assert "SignInFailed" in error
    assert "AADSTS7000215" in error
    assert "not-the-secret" not in error
    assert "the-lab-secret" not in error
    assert facts.mi_nsg.error == error, "facts that need the instance carry its error"
    assert not any(r.authenticated for r in lab.requests)


def test_the_lab_ca_is_trusted_only_through_the_clients_bundle(start_arm: StartArm) -> None:
    lab = start_arm()
    error = read(lab, ca_bundle=None).instance.error or ""
    assert "CERTIFICATE_VERIFY_FAILED" in error or "certificate verify failed" in error
    assert lab.requests == [], "nothing got past the TLS handshake"


def test_an_unknown_instance_is_missing_with_arms_404(start_arm: StartArm) -> None:
    facts = read(start_arm(), instance_name="mi-typo")
    assert facts.instance_missing
    assert "404 ResourceNotFound" in (facts.instance.error or "")
    assert "The Resource 'Microsoft.Sql/managedInstances/mi-typo' under resource group 'rg-milink'" in (
        facts.instance.error or ""
    )
    assert facts.failover_groups.error == facts.instance.error


def test_a_wrong_resource_group_is_resource_group_not_found(start_arm: StartArm) -> None:
    facts = read(start_arm(), resource_group="rg-other")
    assert facts.instance_missing, "any 404: nothing exists where the environment points"
    assert "404 ResourceGroupNotFound: Resource group 'rg-other' could not be found." in (facts.instance.error or "")


def test_a_caller_without_read_permission_gets_authorization_failed(
    start_arm: StartArm, monkeypatch: pytest.MonkeyPatch
) -> None:
    section = {**healthy_section(monkeypatch), "caller": {"can_read": False, "actions": ["Microsoft.Sql/*/write"]}}
    facts = read(start_arm(section))
    error = facts.instance.error or ""
    assert "403 AuthorizationFailed" in error
    assert "'Microsoft.Sql/managedInstances/read'" in error
    assert not facts.instance_missing
    assert facts.permissions.get()[0].actions == ("Microsoft.Sql/*/write",), "listing one's permissions needs none"


def test_other_api_versions_and_missing_tokens_are_refused_as_arm_does(start_arm: StartArm) -> None:
    lab = start_arm()
    target = target_of(lab)
    settings = ArmSettings.for_target(target, Cloud.AZURE)
    path = f"/subscriptions/{target.subscription_id}/resourceGroups/rg-milink/providers/Microsoft.Sql/managedInstances"
    path += "/mi01"
    with ArmClient(settings, settings.credential(), TIMEOUTS, "mi01") as client:
        body, _ = client.get(path, SQL_API)
        assert body["properties"]["databaseFormat"] == "SQLServer2022"
        with pytest.raises(Exception, match="NoRegisteredProviderFound") as caught:
            client.get(path, "2023-08-01")
        assert "2025-01-01" in str(caught.value)
    bare = requests.get(f"{lab.url}{path}?api-version={SQL_API}", verify=str(lab.certificate[0]), timeout=5)
    assert bare.status_code == 401
    assert bare.json()["error"]["code"] == "AuthenticationFailed"


def test_the_token_is_asked_for_the_endpoints_own_scope(start_arm: StartArm) -> None:
    lab = start_arm()
    settings = ArmSettings.for_target(target_of(lab), Cloud.AZURE)
    assert settings.scope == f"{lab.url}/.default"
    assert settings.private_authority
    token = settings.credential().get_token(settings.scope)
    assert token.token
    assert token.expires_on > 0
    with pytest.raises(Exception, match="AADSTS70011"):
        settings.credential().get_token("https://management.azure.com/.default")


def test_arm_errors_name_the_request() -> None:
    error = ArmError("GET /x?api-version=1", 404, "ResourceNotFound", "gone")
    assert str(error) == "GET /x?api-version=1: 404 ResourceNotFound: gone"


def _rule_priority_50(section: dict[str, Any]) -> None:
    section["network_security_groups"]["nsg-mi"]["rules"]["r"] = {"priority": 50, "direction": "Inbound"}


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda s: s.update(managed_instance={"name": "mi01", "subnet": "vnet-mi/nope"}),
         "azure.managed_instance.subnet"),
        (lambda s: s.update(caller={"can_raed": True}), "azure.caller.can_raed"),
        (lambda s: s.update(sql_vm_nic="no-such-nic"), "azure.sql_vm_nic"),
        (_rule_priority_50, "azure.network_security_groups.nsg-mi.rules.r.priority"),
    ],
)  # fmt: skip
def test_section_mistakes_name_the_key(
    change: Callable[[dict[str, Any]], None], key: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    section = copy.deepcopy(dict(healthy_section(monkeypatch)))
    change(section)
    with pytest.raises(ScenarioError) as caught:
        ArmLab(section, certificate=(tmp_path / "c", tmp_path / "k"), source="my.yaml")
    assert caught.value.key == key
    assert caught.value.file == "my.yaml"


def test_a_relocated_lab_translates_addresses_but_not_tags(
    start_arm: StartArm, monkeypatch: pytest.MonkeyPatch
) -> None:
    moved = start_arm(healthy_section(monkeypatch), translate=lambda a: a.replace("198.18.", "198.19."))
    facts = read(moved)
    assert facts.mi_subnet.get().prefixes == ("198.19.2.0/24",)
    vm = facts.sql_vm.get()
    assert vm is not None
    assert vm.nic is not None
    assert vm.nic.private_ips == ("198.19.1.10",)
    nsg = facts.mi_nsg.get()
    assert nsg is not None
    rules = {r.name: r for r in nsg.rules}
    assert rules["allow-milink-in"].sources == ("198.19.1.10",)
    assert rules["Microsoft.Sql-managedInstances_UseOnly_mi-healthprobe-in"].sources == ("AzureLoadBalancer",)
    assert rules["deny-all-out"].destinations == ("*",)
