"""Azure Resource Manager facts about the managed instance and its network (spec ARM-01 … ARM-09).

Sign-in is the Azure credential chain (`DefaultAzureCredential`: environment service principal, workload
or managed identity, Azure CLI login, …) against the environment's cloud; nothing is stored. When the
environment overrides the authority (the lab, a private authority) only the service principal of
AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_CLIENT_SECRET is used, through the same MSAL token path,
because the chain's other members ignore a custom authority. HTTP is azure-core's pipeline (bearer token,
bounded retries, timeouts); an extra CA bundle is trusted for this client only, never process-wide.

Everything is read once per run (`read_azure`), concurrently where requests are independent, into
`Fact`s that keep their evidence: the GET and what came back. A resource that can't be read keeps the
ARM error (404 ResourceNotFound, 403 AuthorizationFailed, a sign-in failure), and so does every fact
that depends on it.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from azure.core import PipelineClient
from azure.core.exceptions import AzureError, ClientAuthenticationError
from azure.core.pipeline.policies import (
    BearerTokenCredentialPolicy,
    HeadersPolicy,
    RetryPolicy,
    UserAgentPolicy,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest
from azure.identity import DefaultAzureCredential, EnvironmentCredential

from linkgate import clouds
from linkgate.environment import AzureTarget, Cloud, Environment, Timeouts
from linkgate.evidence import Evidence, render_rows
from linkgate.firewall.nsg import Nsg
from linkgate.probes.facts import EvidenceRecorder, Fact, FactUnavailable

SQL_API = "2025-01-01"
"""Microsoft.Sql: the first stable version whose managedInstances carry databaseFormat (2023-08-01 does not)."""
NETWORK_API = "2024-05-01"
AUTHORIZATION_API = "2022-04-01"
MAX_PAGES = 20
RETRIES = 2

T = TypeVar("T")


# --- typed facts ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManagedInstance:
    """GET …/Microsoft.Sql/managedInstances/{name}: what the link checks read of it."""

    id: str
    name: str
    location: str
    provisioning_state: str | None
    state: str | None
    sku_name: str | None
    sku_tier: str | None
    database_format: str | None
    subnet_id: str | None
    fqdn: str | None
    dns_zone: str | None
    is_general_purpose_v2: bool

    @classmethod
    def from_arm(cls, raw: Mapping[str, Any]) -> ManagedInstance:
        p, sku = raw.get("properties") or {}, raw.get("sku") or {}
        return cls(
            str(raw.get("id", "")), str(raw.get("name", "")), str(raw.get("location", "")),
            p.get("provisioningState"), p.get("state"), sku.get("name"), sku.get("tier"), p.get("databaseFormat"),
            p.get("subnetId"), p.get("fullyQualifiedDomainName"), p.get("dnsZone"), bool(p.get("isGeneralPurposeV2")),
        )  # fmt: skip


@dataclass(frozen=True)
class Subnet:
    id: str
    name: str
    prefixes: tuple[str, ...]
    nsg_id: str | None

    @classmethod
    def from_arm(cls, raw: Mapping[str, Any]) -> Subnet:
        p = raw.get("properties") or {}
        prefixes = p.get("addressPrefixes") or ([p["addressPrefix"]] if p.get("addressPrefix") else [])
        return cls(str(raw.get("id", "")), str(raw.get("name", "")), tuple(map(str, prefixes)),
                   (p.get("networkSecurityGroup") or {}).get("id"))  # fmt: skip


@dataclass(frozen=True)
class Peering:
    name: str
    state: str
    remote_prefixes: tuple[str, ...]
    uses_remote_gateways: bool


@dataclass(frozen=True)
class VirtualNetwork:
    id: str
    name: str
    address_prefixes: tuple[str, ...]
    peerings: tuple[Peering, ...]
    subnet_names: tuple[str, ...]

    @classmethod
    def from_arm(cls, raw: Mapping[str, Any]) -> VirtualNetwork:
        p = raw.get("properties") or {}
        peerings = tuple(
            Peering(
                str(peer.get("name", "")),
                str((peer.get("properties") or {}).get("peeringState", "")),
                tuple((peer.get("properties") or {}).get("remoteAddressSpace", {}).get("addressPrefixes") or ()),
                bool((peer.get("properties") or {}).get("useRemoteGateways")),
            )
            for peer in p.get("virtualNetworkPeerings") or []
        )
        return cls(str(raw.get("id", "")), str(raw.get("name", "")),
                   tuple((p.get("addressSpace") or {}).get("addressPrefixes") or ()), peerings,
                   tuple(str(s.get("name", "")) for s in p.get("subnets") or []))  # fmt: skip


@dataclass(frozen=True)
class NetworkInterface:
    id: str
    name: str
    private_ips: tuple[str, ...]
    subnet_id: str | None
    nsg_id: str | None

    @classmethod
    def from_arm(cls, raw: Mapping[str, Any]) -> NetworkInterface:
        p = raw.get("properties") or {}
        configs = [c.get("properties") or {} for c in p.get("ipConfigurations") or []]
        ips = tuple(str(c["privateIPAddress"]) for c in configs if c.get("privateIPAddress"))
        subnet = next(((c.get("subnet") or {}).get("id") for c in configs if c.get("subnet")), None)
        return cls(str(raw.get("id", "")), str(raw.get("name", "")), ips, subnet,
                   (p.get("networkSecurityGroup") or {}).get("id"))  # fmt: skip


@dataclass(frozen=True)
class FailoverGroup:
    name: str
    replication_role: str | None
    pairs: tuple[tuple[str, str], ...]  # (primaryManagedInstanceId, partnerManagedInstanceId)

    @classmethod
    def from_arm(cls, raw: Mapping[str, Any]) -> FailoverGroup:
        p = raw.get("properties") or {}
        pairs = tuple(
            (str(pair.get("primaryManagedInstanceId", "")), str(pair.get("partnerManagedInstanceId", "")))
            for pair in p.get("managedInstancePairs") or []
        )
        return cls(str(raw.get("name", "")), p.get("replicationRole"), pairs)


@dataclass(frozen=True)
class Permission:
    """One entry of Permissions - List For Resource: what one role assignment grants at that scope."""

    actions: tuple[str, ...]
    not_actions: tuple[str, ...]

    @classmethod
    def from_arm(cls, raw: Mapping[str, Any]) -> Permission:
        return cls(tuple(raw.get("actions") or ()), tuple(raw.get("notActions") or ()))


@dataclass(frozen=True)
class EncryptionProtector:
    server_key_type: str | None
    server_key_name: str | None

    @classmethod
    def from_arm(cls, raw: Mapping[str, Any]) -> EncryptionProtector:
        p = raw.get("properties") or {}
        return cls(p.get("serverKeyType"), p.get("serverKeyName"))


@dataclass(frozen=True)
class SqlVmNetwork:
    """The SQL Server VM's NIC, its subnet and their NSGs (spec ARM-06); None where not declared or not set."""

    nic: NetworkInterface | None
    nic_nsg: Nsg | None
    subnet: Subnet | None
    subnet_nsg: Nsg | None
    vnet: VirtualNetwork | None


@dataclass(frozen=True)
class AzureFacts:
    """Everything the ARM checks read, once per run."""

    target: str
    instance: Fact[ManagedInstance]
    mi_subnet: Fact[Subnet]
    mi_vnet: Fact[VirtualNetwork]
    mi_nsg: Fact[Nsg | None]
    failover_groups: Fact[tuple[FailoverGroup, ...]]
    permissions: Fact[tuple[Permission, ...]]
    encryption_protector: Fact[EncryptionProtector]
    sql_vm: Fact[SqlVmNetwork | None]
    instance_missing: bool = False
    """Resource Manager answered 404 for the managed instance: it does not exist where the environment says."""


@dataclass(frozen=True)
class LinkPeer:
    """A SQL Server as the managed instance's network sees it: the address its traffic comes from (after NAT)."""

    name: str
    address: ipaddress.IPv4Address
    endpoint_port: int

    @classmethod
    def of(cls, env: Environment, server: str) -> LinkPeer:
        """From the environment file; a SQL Server without `address_seen_by_mi` can't be evaluated (an error)."""
        spec = env.sql_servers[server]
        if spec.address_seen_by_mi is None:
            raise FactUnavailable(
                "the address the managed instance sees", server,
                f"declare sql_servers.{server}.address_seen_by_mi (SQL Server's IP after any NAT) in {env.path.name}",
            )  # fmt: skip
        return cls(server, spec.address_seen_by_mi, spec.endpoint_port)


# --- the client -----------------------------------------------------------------------------------------------


class ArmError(Exception):
    """A request Resource Manager (or Entra) refused or that never got an answer; `code` is ARM's error code."""

    def __init__(self, request: str, status: int | None, code: str, message: str) -> None:
        super().__init__(f"{request}: {status or 'no response'} {code}: {message}")
        self.request = request
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ArmSettings:
    """Where and how to call Resource Manager for one environment."""

    resource_manager: str
    authority: str
    scope: str
    ca_bundle: str | None
    private_authority: bool

    @classmethod
    def for_target(cls, azure: AzureTarget, cloud: Cloud) -> ArmSettings:
        """The cloud's endpoints, unless the environment overrides them (the lab does)."""
        known = clouds.endpoints(cloud)
        arm = azure.arm_endpoint or known.resource_manager
        scope = known.arm_scope if azure.arm_endpoint is None else arm.rstrip("/") + "/.default"
        return cls(arm, azure.authority or known.authority, scope, azure.ca_bundle, azure.authority is not None)

    def credential(self) -> Any:
        """The azure-identity credential for these settings (a TokenCredential)."""
        options: dict[str, Any] = {"authority": self.authority, "retry_total": RETRIES}
        if self.ca_bundle:
            options["connection_verify"] = self.ca_bundle
        if self.private_authority:
            # MSAL's instance discovery would ask login.microsoftonline.com about this authority.
            return EnvironmentCredential(disable_instance_discovery=True, **options)
        return DefaultAzureCredential(**options)


class ArmClient:
    """GET requests to Resource Manager, each recorded as evidence. Use as a context manager."""

    def __init__(self, settings: ArmSettings, credential: Any, timeouts: Timeouts, target: str) -> None:
        self.settings = settings
        self.target = target
        self._origin = _origin(settings.resource_manager)
        transport = RequestsTransport(
            connection_verify=settings.ca_bundle or True,
            connection_timeout=timeouts.connect,
            read_timeout=timeouts.query,
        )
        policies = [
            HeadersPolicy({"Accept": "application/json"}),
            UserAgentPolicy("linkgate"),
            RetryPolicy(retry_total=RETRIES, retry_backoff_factor=0.5, timeout=timeouts.connect + timeouts.query),
            BearerTokenCredentialPolicy(credential, settings.scope),
        ]
        self._credential = credential
        self._client: Any = PipelineClient(settings.resource_manager, policies=policies, transport=transport)

    def __enter__(self) -> ArmClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()
        close = getattr(self._credential, "close", None)
        if callable(close):
            close()

    def get(self, path: str, api_version: str) -> tuple[dict[str, Any], Evidence]:
        """GET `path` (a resource id or a path under it) at `api_version`; raise ArmError unless 200."""
        url = self.settings.resource_manager.rstrip("/") + path + ("&" if "?" in path else "?")
        url += f"api-version={api_version}"
        return self._get_url(url)

    def list(self, path: str, api_version: str) -> tuple[list[dict[str, Any]], tuple[Evidence, ...]]:
        """A collection's `value`s, following `nextLink` on the same origin for at most MAX_PAGES pages."""
        body, first = self.get(path, api_version)
        items, evidence = list(body.get("value") or []), [first]
        for _ in range(MAX_PAGES - 1):
            link = body.get("nextLink")
            if not link:
                break
            if _origin(link) != self._origin:
                raise ArmError(f"GET {link}", None, "ForeignNextLink", "nextLink leaves the Resource Manager endpoint")
            body, more = self._get_url(link)
            items += body.get("value") or []
            evidence.append(more)
        return items, tuple(evidence)

    def _get_url(self, url: str) -> tuple[dict[str, Any], Evidence]:
        shown = "GET " + url.removeprefix(self._origin)
        started = time.monotonic()
        try:
            response = self._client.send_request(HttpRequest("GET", url))
        except ClientAuthenticationError as e:
            raise ArmError(shown, None, "SignInFailed", f"could not sign in at {self.settings.authority}: "
                                                        f"{_first_line(e.message)}") from None  # fmt: skip
        except AzureError as e:
            raise ArmError(shown, None, type(e).__name__, _first_line(str(e))) from None
        seconds = time.monotonic() - started
        try:
            body = response.json() if response.text() else {}
        except ValueError:
            body = {"error": {"code": "NotJson", "message": response.text()[:300]}}
        if response.status_code != 200:
            error = body.get("error") or {}
            code, message = str(error.get("code", "")), str(error.get("message", response.reason))
            evidence = Evidence(self.target, "ARM", shown, f"{response.status_code} {code}: {message}", False, seconds)
            raise _Failed(ArmError(shown, response.status_code, code, message), evidence)
        return body, Evidence(self.target, "ARM", shown, f"200\n{_summary(body)}", True, seconds)


class _Failed(Exception):
    """An ArmError with the evidence of the failed request, so the fact that needed it can show both."""

    def __init__(self, error: ArmError, evidence: Evidence) -> None:
        super().__init__(str(error))
        self.error = error
        self.evidence = evidence


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _first_line(text: str) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else "(no message)"


def _summary(body: Mapping[str, Any]) -> str:
    """A response as an auditor reads it: an NSG as its rule table, anything else as compact JSON."""
    props = body.get("properties") or {}
    if "securityRules" in props or "defaultSecurityRules" in props:
        rules = [*(props.get("securityRules") or []), *(props.get("defaultSecurityRules") or [])]
        rows = [(r.name, r.priority, r.direction.value, r.text) for r in Nsg.from_arm(body).rules]
        table = render_rows(["name", "priority", "direction", "rule"], rows)
        return f"{body.get('name')} ({len(rules)} rules)\n{table}"
    text = json.dumps(body, separators=(",", ":"), sort_keys=True)
    return text if len(text) <= 2000 else text[:1999] + "…"


# --- reading everything ---------------------------------------------------------------------------------------


class _Reader:
    """Turns requests into Facts: a failure becomes the fact's error, with the evidence gathered so far."""

    def __init__(self, client: ArmClient) -> None:
        self.client = client

    def fact(self, what: str, read: Callable[[list[Evidence]], T]) -> Fact[T]:
        evidence: list[Evidence] = []
        try:
            value = read(evidence)
        except _Failed as e:
            return Fact(what, self.client.target, (*evidence, e.evidence), None, str(e.error))
        except ArmError as e:
            return Fact(what, self.client.target, tuple(evidence), None, str(e))
        return Fact(what, self.client.target, tuple(evidence), value)

    def get(self, evidence: list[Evidence], path: str, api_version: str) -> dict[str, Any]:
        body, seen = self.client.get(path, api_version)
        evidence.append(seen)
        return body

    def list(self, evidence: list[Evidence], path: str, api_version: str) -> list[dict[str, Any]]:
        items, seen = self.client.list(path, api_version)
        evidence.extend(seen)
        return items


def _after(first: Fact[Any], what: str, read: Callable[[list[Evidence]], T], reader: _Reader) -> Fact[T]:
    """A fact that needs `first`: it carries first's error and evidence when first could not be read."""
    if first.error is not None:
        return Fact(what, first.target, first.evidence, None, first.error)
    return reader.fact(what, read)


def _vnet_id(subnet_id: str) -> str:
    return subnet_id.rsplit("/subnets/", 1)[0]


def read_azure(azure: AzureTarget, cloud: Cloud, timeouts: Timeouts, target: str) -> AzureFacts:
    """Every fact the ARM checks use, read with the credential chain and the cloud of the environment."""
    settings = ArmSettings.for_target(azure, cloud)
    with ArmClient(settings, settings.credential(), timeouts, target) as client:
        return _read(_Reader(client), azure)


def _read(r: _Reader, azure: AzureTarget) -> AzureFacts:
    mi_path = (
        f"/subscriptions/{azure.subscription_id}/resourceGroups/{azure.resource_group}"
        f"/providers/Microsoft.Sql/managedInstances/{azure.instance_name}"
    )
    missing = False

    def read_instance(ev: list[Evidence]) -> ManagedInstance:
        nonlocal missing
        try:
            return ManagedInstance.from_arm(r.get(ev, mi_path, SQL_API))
        except _Failed as e:
            missing = e.error.status == 404
            raise

    instance = r.fact("the managed instance resource", read_instance)
    mi = instance.value

    def subnet(ev: list[Evidence]) -> Subnet:
        if not mi or not mi.subnet_id:
            raise ArmError(f"GET {mi_path}", 200, "NoSubnetId", "the managed instance has no subnetId")
        return Subnet.from_arm(r.get(ev, mi.subnet_id, NETWORK_API))

    def groups(ev: list[Evidence]) -> tuple[FailoverGroup, ...]:
        assert mi is not None  # _after checked
        path = (f"/subscriptions/{azure.subscription_id}/resourceGroups/{azure.resource_group}"
                f"/providers/Microsoft.Sql/locations/{mi.location}/instanceFailoverGroups")  # fmt: skip
        return tuple(FailoverGroup.from_arm(g) for g in r.list(ev, path, SQL_API))

    tasks: dict[str, Callable[[], Fact[Any]]] = {
        "subnet": lambda: _after(instance, "the managed instance subnet", subnet, r),
        "groups": lambda: _after(instance, "the instance failover groups", groups, r),
        "permissions": lambda: r.fact("the caller's permissions on the managed instance", lambda ev: tuple(
            Permission.from_arm(p)
            for p in r.list(ev, f"{mi_path}/providers/Microsoft.Authorization/permissions", AUTHORIZATION_API)
        )),
        "protector": lambda: r.fact("the managed instance's TDE protector", lambda ev: EncryptionProtector.from_arm(
            r.get(ev, f"{mi_path}/encryptionProtector/current", SQL_API))),
        "sql_vm": lambda: r.fact("the SQL Server VM's network", lambda ev: _read_sql_vm(r, ev, azure)),
    }  # fmt: skip
    done = _concurrently(tasks)
    mi_subnet: Fact[Subnet] = done["subnet"]
    vnet = _after(mi_subnet, "the managed instance's virtual network", lambda ev: VirtualNetwork.from_arm(
        r.get(ev, _vnet_id(mi_subnet.get().id), NETWORK_API)), r)  # fmt: skip
    nsg = _after(mi_subnet, "the managed instance subnet's NSG", lambda ev: _nsg(r, ev, mi_subnet.get().nsg_id), r)
    return AzureFacts(
        r.client.target, instance, mi_subnet, vnet, nsg, done["groups"], done["permissions"], done["protector"],
        done["sql_vm"], missing,
    )  # fmt: skip


def _nsg(r: _Reader, ev: list[Evidence], nsg_id: str | None) -> Nsg | None:
    return Nsg.from_arm(r.get(ev, nsg_id, NETWORK_API)) if nsg_id else None


def _read_sql_vm(r: _Reader, ev: list[Evidence], azure: AzureTarget) -> SqlVmNetwork | None:
    """The declared NIC and/or subnet of the SQL Server VM, their NSGs, and the VM's VNet."""
    if azure.sql_vm_nic_id is None and azure.sql_vm_subnet_id is None:
        return None
    nic = NetworkInterface.from_arm(r.get(ev, azure.sql_vm_nic_id, NETWORK_API)) if azure.sql_vm_nic_id else None
    subnet_id = azure.sql_vm_subnet_id or (nic.subnet_id if nic else None)
    subnet = Subnet.from_arm(r.get(ev, subnet_id, NETWORK_API)) if subnet_id else None
    vnet = VirtualNetwork.from_arm(r.get(ev, _vnet_id(subnet_id), NETWORK_API)) if subnet_id else None
    return SqlVmNetwork(
        nic, _nsg(r, ev, nic.nsg_id if nic else None), subnet, _nsg(r, ev, subnet.nsg_id if subnet else None), vnet
    )


def _concurrently(tasks: Mapping[str, Callable[[], Fact[Any]]]) -> dict[str, Fact[Any]]:
    with ThreadPoolExecutor(len(tasks), thread_name_prefix="linkgate-arm") as pool:
        futures = {name: pool.submit(task) for name, task in tasks.items()}
        return {name: future.result() for name, future in futures.items()}


# --- what a check sees ----------------------------------------------------------------------------------------


class AzureView:
    """The managed instance's ARM facts, as one check sees them: each read records its evidence."""

    def __init__(self, facts: AzureFacts, recorder: EvidenceRecorder) -> None:
        self._facts = facts
        self._use = recorder.use
        self._recorder = recorder

    @property
    def instance_exists(self) -> bool:
        """False when Resource Manager answered 404 for the instance; any other failure raises."""
        if self._facts.instance_missing:
            self._recorder.add(self._facts.instance.evidence)
            return False
        self._use(self._facts.instance)
        return True

    @property
    def instance(self) -> ManagedInstance:
        return self._use(self._facts.instance)

    @property
    def mi_subnet(self) -> Subnet:
        return self._use(self._facts.mi_subnet)

    @property
    def mi_vnet(self) -> VirtualNetwork:
        return self._use(self._facts.mi_vnet)

    @property
    def mi_nsg(self) -> Nsg | None:
        return self._use(self._facts.mi_nsg)

    @property
    def failover_groups(self) -> tuple[FailoverGroup, ...]:
        return self._use(self._facts.failover_groups)

    @property
    def permissions(self) -> tuple[Permission, ...]:
        return self._use(self._facts.permissions)

    @property
    def encryption_protector(self) -> EncryptionProtector:
        return self._use(self._facts.encryption_protector)

    @property
    def sql_vm(self) -> SqlVmNetwork | None:
        return self._use(self._facts.sql_vm)
