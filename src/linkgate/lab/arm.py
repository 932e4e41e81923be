"""The lab's Azure: one local HTTPS endpoint that answers as Microsoft Entra and as Azure Resource Manager.

The gate's real client path runs against it unchanged: azure-identity's `ClientSecretCredential` (through
`EnvironmentCredential`) and MSAL discover the tenant (`/{tenant}/v2.0/.well-known/openid-configuration`)
and post a client-credentials grant (`/{tenant}/oauth2/v2.0/token`); azure-core's pipeline then GETs the
resources with the bearer token. Bodies have the shapes of the real REST API at the api-versions below
(Microsoft.Sql 2025-01-01, Microsoft.Network 2024-05-01, Microsoft.Authorization 2022-04-01); other
versions are refused as ARM refuses them, so a client that drifts is caught. Unknown resources answer 404
with ARM's error JSON, and a caller without read permission gets 403 AuthorizationFailed.

The client secret is random per start unless given, and lives only in memory and in the environment
variable the runner exports (AZURE_CLIENT_SECRET). The endpoint binds loopback only.

The scenario's raw `azure:` section drives it (healthy.yaml holds the full example)::

    azure:
      tenant_id: <guid>            client_id: <guid>       subscription_id: <guid>
      resource_group: rg-milink    location: westeurope    port: 14343   # 0: any free port
      caller: {can_read: true, actions: [...], not_actions: [...]}
      managed_instance: {name, sku, vcores, provisioning_state, state, database_format, subnet: vnet/subnet,
                         dns_zone, encryption_protector: ServiceManaged | AzureKeyVault, is_general_purpose_v2}
      failover_groups: {<name>: {partner: <instance resource id>, role: Primary}}
      virtual_networks: {<vnet>: {address_space: [...], subnets: {<name>: {prefix, nsg}},
                                  peerings: {<name>: {address_space: [...], state, use_remote_gateways}}}}
      network_interfaces: {<nic>: {subnet: vnet/subnet, address, nsg}}
      sql_vm_nic: <nic>            # declared in the lab's environment as azure.sql_vm_nic_id
      network_security_groups: {<nsg>: {managed_instance_rules: true, rules: {<name>: {priority, direction,
                                access, protocol, source, destination, ports, source_ports}}}}

Rules are a mapping so that an overlay changes or deletes (`null`) one rule by name.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socket import socket
from typing import Any
from urllib.parse import parse_qs, urlsplit

from linkgate.lab.scenario import ScenarioError

SECRET_VARIABLE = "AZURE_CLIENT_SECRET"
API_VERSIONS = {
    "microsoft.sql": "2025-01-01",
    "microsoft.network": "2024-05-01",
    "microsoft.authorization": "2022-04-01",
}
TOKEN_SECONDS = 3599
REQUEST_TIMEOUT = 10.0
DEFAULT_RULES = (
    ("AllowVnetInBound", 65000, "Inbound", "Allow", "VirtualNetwork", "VirtualNetwork",
     "Allow inbound traffic from all VMs in VNET"),
    ("AllowAzureLoadBalancerInBound", 65001, "Inbound", "Allow", "AzureLoadBalancer", "*",
     "Allow inbound traffic from azure load balancer"),
    ("DenyAllInBound", 65500, "Inbound", "Deny", "*", "*", "Deny all inbound traffic"),
    ("AllowVnetOutBound", 65000, "Outbound", "Allow", "VirtualNetwork", "VirtualNetwork",
     "Allow outbound traffic from all VMs to all VMs in VNET"),
    ("AllowInternetOutBound", 65001, "Outbound", "Allow", "*", "Internet",
     "Allow outbound traffic from all VMs to Internet"),
    ("DenyAllOutBound", 65500, "Outbound", "Deny", "*", "*", "Deny all outbound traffic"),
)  # fmt: skip
"""Every NSG's defaultSecurityRules, as ARM lists them (name spellings as the API returns them)."""


def ensure_client_secret() -> str:
    """The lab service principal's secret: the caller's AZURE_CLIENT_SECRET, else a random one exported now."""
    value = os.environ.get(SECRET_VARIABLE)
    if not value:
        value = secrets.token_urlsafe(30)
        os.environ[SECRET_VARIABLE] = value
    return value


@dataclass(frozen=True)
class LoggedRequest:
    """One request the endpoint answered (never the token or the secret), for self-tests to audit."""

    method: str
    path: str
    api_version: str | None
    status: int
    authenticated: bool


class _Spec:
    """Reads the raw section with the key path at hand, so every mistake names the file and the key.

    `translate` maps a scenario address or network to the one the running lab uses (the lab hosts may be
    relocated to another block of 198.18.0.0/15); tags such as VirtualNetwork and '*' stay as they are.
    """

    def __init__(self, source: str, translate: Callable[[str], str]) -> None:
        self.source = source
        self.translate = translate

    def fail(self, key: str, message: str) -> ScenarioError:
        return ScenarioError(self.source, key, message)

    def mapping(self, value: Any, key: str, allowed: set[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {type(value).__name__}")
        unknown = sorted(str(k) for k in value if k not in allowed)
        if unknown:
            raise self.fail(f"{key}.{unknown[0]}", f"unknown key; allowed: {', '.join(sorted(allowed))}")
        return value

    def named(self, value: Any, key: str) -> dict[str, Any]:
        """A mapping of names (vnets, subnets, rules …) to their specs."""
        return self.mapping(value, key, {str(k) for k in value} if isinstance(value, dict) else set())

    def integer(self, value: Any, key: str, lo: int, hi: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise self.fail(key, f"expected an integer from {lo} to {hi}, got {value!r}")
        return value

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str | int) or isinstance(value, bool) or str(value) == "":
            raise self.fail(key, f"expected text, got {value!r}")
        return str(value)

    def texts(self, value: Any, key: str) -> list[str]:
        items = value if isinstance(value, list) else [value]
        return [self.text(v, f"{key}.[{i}]") for i, v in enumerate(items)]

    def address(self, value: Any, key: str) -> str:
        text = self.text(value, key)
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            return text
        return self.translate(text)

    def addresses(self, value: Any, key: str) -> list[str]:
        items = value if isinstance(value, list) else [value]
        return [self.address(v, f"{key}.[{i}]") for i, v in enumerate(items)]


class _Model:
    """The resources the section describes, as ARM JSON bodies keyed by lower-cased resource id."""

    def __init__(self, section: Mapping[str, Any], source: str, translate: Callable[[str], str]) -> None:
        s = _Spec(source, translate)
        top = s.mapping(dict(section), "azure", {
            "tenant_id", "client_id", "subscription_id", "resource_group", "location", "port", "caller",
            "managed_instance", "failover_groups", "virtual_networks", "network_interfaces", "sql_vm_nic",
            "network_security_groups",
        })  # fmt: skip
        for required in ("tenant_id", "client_id", "subscription_id", "resource_group", "managed_instance"):
            if required not in top:
                raise s.fail(f"azure.{required}", "required key is missing")
        self.tenant_id = s.text(top["tenant_id"], "azure.tenant_id")
        self.client_id = s.text(top["client_id"], "azure.client_id")
        self.subscription_id = s.text(top["subscription_id"], "azure.subscription_id")
        self.resource_group = s.text(top["resource_group"], "azure.resource_group")
        self.location = s.text(top.get("location", "westeurope"), "azure.location")
        self.port = s.integer(top.get("port", 0), "azure.port", 0, 65535)
        caller = s.mapping(top.get("caller"), "azure.caller", {"can_read", "actions", "not_actions"})
        self.can_read = caller.get("can_read", True) is True
        self.permissions = [{
            "actions": s.texts(caller.get("actions", ["*"]), "azure.caller.actions"),
            "notActions": s.texts(caller.get("not_actions", []), "azure.caller.not_actions"),
            "dataActions": [], "notDataActions": [],
        }]  # fmt: skip
        self.resources: dict[str, dict[str, Any]] = {}
        self.collections: dict[str, list[dict[str, Any]]] = {}
        self._s = s
        nsgs = s.named(top.get("network_security_groups"), "azure.network_security_groups")
        self._nsg_links: dict[str, dict[str, list[dict[str, str]]]] = {
            n: {"subnets": [], "networkInterfaces": []} for n in nsgs
        }
        self._nsg_specs = nsgs
        self._networks(s.named(top.get("virtual_networks"), "azure.virtual_networks"))
        self._interfaces(s.named(top.get("network_interfaces"), "azure.network_interfaces"))
        self.sql_vm_nic_id = (
            self._id("Microsoft.Network/networkInterfaces", s.text(top["sql_vm_nic"], "azure.sql_vm_nic"))
            if top.get("sql_vm_nic")
            else None
        )
        if self.sql_vm_nic_id and self.sql_vm_nic_id.lower() not in self.resources:
            raise s.fail("azure.sql_vm_nic", f"no network interface {top['sql_vm_nic']!r} in network_interfaces")
        self.instance_id, self.instance_name = self._instance(top["managed_instance"])
        self._failover_groups(s.named(top.get("failover_groups"), "azure.failover_groups"))
        for name, spec in nsgs.items():
            self._nsg(name, spec)

    def _id(self, kind: str, name: str) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}/providers/{kind}/{name}"

    def _put(self, body: dict[str, Any]) -> None:
        self.resources[body["id"].lower()] = body

    def _nsg_ref(self, name: Any, key: str, holder: dict[str, str]) -> dict[str, str] | None:
        if name is None:
            return None
        nsg = self._s.text(name, key)
        if nsg not in self._nsg_links:
            raise self._s.fail(key, f"no network security group {nsg!r} in network_security_groups")
        self._nsg_links[nsg]["subnets" if "/subnets/" in holder["id"] else "networkInterfaces"].append(holder)
        return {"id": self._id("Microsoft.Network/networkSecurityGroups", nsg)}

    def _networks(self, vnets: dict[str, Any]) -> None:
        for vnet, raw in vnets.items():
            key = f"azure.virtual_networks.{vnet}"
            spec = self._s.mapping(raw, key, {"address_space", "subnets", "peerings"})
            vnet_id = self._id("Microsoft.Network/virtualNetworks", vnet)
            subnets = []
            for name, sub_raw in self._s.named(spec.get("subnets"), f"{key}.subnets").items():
                sub = self._s.mapping(sub_raw, f"{key}.subnets.{name}", {"prefix", "nsg", "delegated_to"})
                sub_id = f"{vnet_id}/subnets/{name}"
                props: dict[str, Any] = {
                    "provisioningState": "Succeeded",
                    "addressPrefix": self._s.address(sub.get("prefix"), f"{key}.subnets.{name}.prefix"),
                    "delegations": [{"name": f"dg-{name}", "properties": {"serviceName": sub["delegated_to"]}}]
                    if sub.get("delegated_to") else [],
                    "privateEndpointNetworkPolicies": "Disabled",
                }  # fmt: skip
                nsg = self._nsg_ref(sub.get("nsg"), f"{key}.subnets.{name}.nsg", {"id": sub_id})
                if nsg:
                    props["networkSecurityGroup"] = nsg
                body = {"name": name, "id": sub_id, "etag": _etag(sub_id), "properties": props,
                        "type": "Microsoft.Network/virtualNetworks/subnets"}  # fmt: skip
                self._put(body)
                subnets.append(body)
            peerings = [
                self._peering(vnet_id, n, p, f"{key}.peerings.{n}")
                for n, p in self._s.named(spec.get("peerings"), f"{key}.peerings").items()
            ]
            self._put({
                "name": vnet, "id": vnet_id, "etag": _etag(vnet_id), "type": "Microsoft.Network/virtualNetworks",
                "location": self.location,
                "properties": {
                    "provisioningState": "Succeeded",
                    "addressSpace": {"addressPrefixes": self._s.addresses(spec.get("address_space"),
                                                                          f"{key}.address_space")},
                    "subnets": subnets, "virtualNetworkPeerings": peerings, "enableDdosProtection": False,
                },
            })  # fmt: skip

    def _peering(self, vnet_id: str, name: str, raw: Any, key: str) -> dict[str, Any]:
        spec = self._s.mapping(raw, key, {"address_space", "state", "use_remote_gateways", "remote"})
        return {
            "name": name, "id": f"{vnet_id}/virtualNetworkPeerings/{name}", "etag": _etag(name),
            "type": "Microsoft.Network/virtualNetworks/virtualNetworkPeerings",
            "properties": {
                "provisioningState": "Succeeded",
                "peeringState": self._s.text(spec.get("state", "Connected"), f"{key}.state"),
                "remoteVirtualNetwork": {"id": self._id("Microsoft.Network/virtualNetworks", spec.get("remote", name))},
                "remoteAddressSpace": {"addressPrefixes": self._s.addresses(spec.get("address_space"),
                                                                            f"{key}.address_space")},
                "allowVirtualNetworkAccess": True, "allowForwardedTraffic": False, "allowGatewayTransit": False,
                "useRemoteGateways": spec.get("use_remote_gateways", False) is True,
            },
        }  # fmt: skip

    def _subnet_id(self, ref: Any, key: str) -> str:
        vnet, _, subnet = self._s.text(ref, key).partition("/")
        sub_id = self._id("Microsoft.Network/virtualNetworks", vnet) + f"/subnets/{subnet}"
        if sub_id.lower() not in self.resources:
            raise self._s.fail(key, f"no subnet {ref!r} (write it as <vnet>/<subnet>) in virtual_networks")
        return sub_id

    def _interfaces(self, nics: dict[str, Any]) -> None:
        for nic, raw in nics.items():
            key = f"azure.network_interfaces.{nic}"
            spec = self._s.mapping(raw, key, {"subnet", "address", "nsg"})
            nic_id = self._id("Microsoft.Network/networkInterfaces", nic)
            props: dict[str, Any] = {
                "provisioningState": "Succeeded",
                "ipConfigurations": [{
                    "name": "ipconfig1", "id": f"{nic_id}/ipConfigurations/ipconfig1", "etag": _etag(nic_id),
                    "type": "Microsoft.Network/networkInterfaces/ipConfigurations",
                    "properties": {
                        "privateIPAddress": self._s.address(spec.get("address"), f"{key}.address"),
                        "privateIPAllocationMethod": "Static", "privateIPAddressVersion": "IPv4", "primary": True,
                        "subnet": {"id": self._subnet_id(spec.get("subnet"), f"{key}.subnet")},
                    },
                }],
                "enableAcceleratedNetworking": True, "enableIPForwarding": False,
            }  # fmt: skip
            nsg = self._nsg_ref(spec.get("nsg"), f"{key}.nsg", {"id": nic_id})
            if nsg:
                props["networkSecurityGroup"] = nsg
            self._put({"name": nic, "id": nic_id, "etag": _etag(nic_id), "location": self.location,
                       "type": "Microsoft.Network/networkInterfaces", "properties": props})  # fmt: skip

    def _instance(self, raw: Any) -> tuple[str, str]:
        key = "azure.managed_instance"
        spec = self._s.mapping(raw, key, {
            "name", "sku", "vcores", "provisioning_state", "state", "database_format", "subnet", "dns_zone",
            "encryption_protector", "is_general_purpose_v2",
        })  # fmt: skip
        name = self._s.text(spec.get("name"), f"{key}.name")
        sku = self._s.text(spec.get("sku", "BC_Gen5"), f"{key}.sku")
        tier = {"BC": "BusinessCritical", "GP": "GeneralPurpose"}.get(sku.split("_")[0].upper())
        if tier is None:
            raise self._s.fail(f"{key}.sku", f"expected a GP_* or BC_* sku name, got {sku!r}")
        dns_zone = self._s.text(spec.get("dns_zone", "a1b2c3d4e5f6"), f"{key}.dns_zone")
        vcores = self._s.integer(spec.get("vcores", 8), f"{key}.vcores", 4, 128)
        mi_id = self._id("Microsoft.Sql/managedInstances", name)
        props: dict[str, Any] = {
            "provisioningState": self._s.text(spec.get("provisioning_state", "Succeeded"), f"{key}.provisioning_state"),
            "state": self._s.text(spec.get("state", "Ready"), f"{key}.state"),
            "administratorLogin": "linkgate-admin",
            "subnetId": self._subnet_id(spec.get("subnet"), f"{key}.subnet"),
            "fullyQualifiedDomainName": f"{name}.{dns_zone}.database.windows.net", "dnsZone": dns_zone,
            "isGeneralPurposeV2": spec.get("is_general_purpose_v2", False) is True,
            "licenseType": "LicenseIncluded", "hybridSecondaryUsage": "Active", "vCores": vcores,
            "storageSizeInGB": 256, "collation": "SQL_Latin1_General_CP1_CI_AS", "publicDataEndpointEnabled": False,
            "proxyOverride": "Redirect", "timezoneId": "UTC", "minimalTlsVersion": "1.2",
            "currentBackupStorageRedundancy": "Geo", "requestedBackupStorageRedundancy": "Geo", "zoneRedundant": False,
            "pricingModel": "Regular", "authenticationMetadata": "AzureAD",
        }  # fmt: skip
        if spec.get("database_format") is not None:
            props["databaseFormat"] = self._s.text(spec["database_format"], f"{key}.database_format")
        self._put({
            "sku": {"name": sku, "tier": tier, "family": sku.split("_", 1)[-1], "capacity": vcores},
            "properties": props, "location": self.location, "id": mi_id, "name": name,
            "type": "Microsoft.Sql/managedInstances",
        })  # fmt: skip
        protector = self._s.text(spec.get("encryption_protector", "ServiceManaged"), f"{key}.encryption_protector")
        key_name = "ServiceManaged" if protector == "ServiceManaged" else "linkgate-kv_tde-key_0123456789abcdef"
        self._put({
            "kind": protector.lower(), "id": f"{mi_id}/encryptionProtector/current", "name": "current",
            "type": "Microsoft.Sql/managedInstances/encryptionProtector",
            "properties": {"serverKeyName": key_name, "serverKeyType": protector, "autoRotationEnabled": False},
        })  # fmt: skip
        return mi_id, name

    def _failover_groups(self, groups: dict[str, Any]) -> None:
        base = (f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
                f"/providers/Microsoft.Sql/locations/{self.location}/instanceFailoverGroups")  # fmt: skip
        items = []
        for name, raw in groups.items():
            key = f"azure.failover_groups.{name}"
            spec = self._s.mapping(raw, key, {"partner", "role", "partner_location"})
            role = self._s.text(spec.get("role", "Primary"), f"{key}.role")
            mine, partner = self.instance_id, self._s.text(spec.get("partner"), f"{key}.partner")
            body = {
                "id": f"{base}/{name}", "name": name, "type": "Microsoft.Sql/locations/instanceFailoverGroups",
                "properties": {
                    "readWriteEndpoint": {"failoverPolicy": "Automatic", "failoverWithDataLossGracePeriodMinutes": 60},
                    "readOnlyEndpoint": {"failoverPolicy": "Disabled"}, "replicationRole": role,
                    "replicationState": "CATCH_UP", "secondaryType": "Geo",
                    "partnerRegions": [{"location": spec.get("partner_location", "northeurope"),
                                        "replicationRole": "Secondary" if role == "Primary" else "Primary"}],
                    "managedInstancePairs": [{"primaryManagedInstanceId": mine if role == "Primary" else partner,
                                              "partnerManagedInstanceId": partner if role == "Primary" else mine}],
                },
            }  # fmt: skip
            self._put(body)
            items.append(body)
        self.collections[base.lower()] = items

    def _nsg(self, name: str, raw: Any) -> None:
        key = f"azure.network_security_groups.{name}"
        spec = self._s.mapping(raw, key, {"managed_instance_rules", "rules"})
        nsg_id = self._id("Microsoft.Network/networkSecurityGroups", name)
        rules = []
        if spec.get("managed_instance_rules"):
            subnets = self._nsg_links[name]["subnets"]
            if not subnets:
                raise self._s.fail(f"{key}.managed_instance_rules", "the NSG is not associated with any subnet")
            prefix = self.resources[subnets[0]["id"].lower()]["properties"]["addressPrefix"]
            rules += [_rule(nsg_id, n, r) for n, r in _managed_instance_rules(prefix).items()]
        for rule_name, rule_raw in self._s.named(spec.get("rules"), f"{key}.rules").items():
            if rule_raw is not None:  # an overlay deletes a rule with null
                rules.append(_rule(nsg_id, rule_name, self._rule_spec(rule_raw, f"{key}.rules.{rule_name}")))
        self._put({
            "name": name, "id": nsg_id, "etag": _etag(nsg_id), "type": "Microsoft.Network/networkSecurityGroups",
            "location": self.location,
            "properties": {
                "provisioningState": "Succeeded", "resourceGuid": _guid(nsg_id), "securityRules": rules,
                "defaultSecurityRules": [_default_rule(nsg_id, *d) for d in DEFAULT_RULES],
                **{k: v for k, v in self._nsg_links[name].items() if v},
            },
        })  # fmt: skip

    def _rule_spec(self, raw: Any, key: str) -> dict[str, Any]:
        spec = self._s.mapping(raw, key, {
            "priority", "direction", "access", "protocol", "source", "destination", "ports", "source_ports",
        })  # fmt: skip
        priority = self._s.integer(spec.get("priority"), f"{key}.priority", 100, 4096)
        for field, allowed in (("direction", ("Inbound", "Outbound")), ("access", ("Allow", "Deny"))):
            if spec.get(field) not in allowed:
                raise self._s.fail(f"{key}.{field}", f"expected {' or '.join(allowed)}, got {spec.get(field)!r}")
        return {
            "priority": priority, "direction": spec["direction"], "access": spec["access"],
            "protocol": self._s.text(spec.get("protocol", "Tcp"), f"{key}.protocol"),
            "source": self._s.addresses(spec.get("source", "*"), f"{key}.source"),
            "destination": self._s.addresses(spec.get("destination", "*"), f"{key}.destination"),
            "ports": self._s.texts(spec.get("ports", "*"), f"{key}.ports"),
            "source_ports": self._s.texts(spec.get("source_ports", "*"), f"{key}.source_ports"),
        }  # fmt: skip


def _managed_instance_rules(prefix: str) -> dict[str, dict[str, Any]]:
    """The mandatory rules the managed instance's service-aided configuration adds to its subnet's NSG."""
    return {
        "Microsoft.Sql-managedInstances_UseOnly_mi-healthprobe-in": {"priority": 100, "direction": "Inbound",
            "access": "Allow", "protocol": "*", "source": ["AzureLoadBalancer"], "destination": [prefix],
            "ports": ["*"], "source_ports": ["*"]},
        "Microsoft.Sql-managedInstances_UseOnly_mi-internal-in": {"priority": 101, "direction": "Inbound",
            "access": "Allow", "protocol": "*", "source": [prefix], "destination": [prefix], "ports": ["*"],
            "source_ports": ["*"]},
        "Microsoft.Sql-managedInstances_UseOnly_mi-services-out-1": {"priority": 100, "direction": "Outbound",
            "access": "Allow", "protocol": "Tcp", "source": [prefix], "destination": ["AzureCloud"],
            "ports": ["443", "12000"], "source_ports": ["*"]},
        "Microsoft.Sql-managedInstances_UseOnly_mi-internal-out": {"priority": 101, "direction": "Outbound",
            "access": "Allow", "protocol": "*", "source": [prefix], "destination": [prefix], "ports": ["*"],
            "source_ports": ["*"]},
    }  # fmt: skip


def _pair(singular: str, plural: str, values: Sequence[str]) -> dict[str, Any]:
    """ARM's spelling: one value in the singular field and an empty list; several in the list alone."""
    return {singular: values[0], plural: []} if len(values) == 1 else {plural: list(values)}


def _rule(nsg_id: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    rule_id = f"{nsg_id}/securityRules/{name}"
    return {
        "name": name, "id": rule_id, "etag": _etag(nsg_id),
        "type": "Microsoft.Network/networkSecurityGroups/securityRules",
        "properties": {
            "provisioningState": "Succeeded", "protocol": spec["protocol"], "access": spec["access"],
            "priority": spec["priority"], "direction": spec["direction"],
            **_pair("sourcePortRange", "sourcePortRanges", spec["source_ports"]),
            **_pair("destinationPortRange", "destinationPortRanges", spec["ports"]),
            **_pair("sourceAddressPrefix", "sourceAddressPrefixes", spec["source"]),
            **_pair("destinationAddressPrefix", "destinationAddressPrefixes", spec["destination"]),
        },
    }  # fmt: skip


def _default_rule(nsg_id: str, name: str, priority: int, direction: str, access: str, source: str,
                  destination: str, description: str) -> dict[str, Any]:  # fmt: skip
    body = _rule(nsg_id, name, {
        "protocol": "*", "access": access, "priority": priority, "direction": direction, "source_ports": ["*"],
        "ports": ["*"], "source": [source], "destination": [destination],
    })  # fmt: skip
    body["id"] = f"{nsg_id}/defaultSecurityRules/{name}"
    body["type"] = "Microsoft.Network/networkSecurityGroups/defaultSecurityRules"
    body["properties"]["description"] = description
    return body


def _etag(seed: str) -> str:
    return f'W/"{_guid(seed)}"'


def _guid(seed: str) -> str:
    """A stable GUID-shaped value derived from `seed`, so repeated GETs answer identically."""
    h = hashlib.sha256(seed.lower().encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}"


def _arm_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class _Server(ThreadingHTTPServer):
    """TLS per connection, in the handler's thread: a client that never handshakes can't stall accept()."""

    daemon_threads = True
    context: ssl.SSLContext
    lab: ArmLab

    def get_request(self) -> tuple[socket, Any]:
        sock, address = self.socket.accept()
        sock.settimeout(REQUEST_TIMEOUT)
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence: the lab's log is `ArmLab.requests`."""

    def do_GET(self) -> None:
        status, body = self.server.lab.answer("GET", self.path, dict(self.headers), b"")
        self._send(status, body)

    def do_POST(self) -> None:
        length = min(int(self.headers.get("Content-Length") or 0), 65536)
        status, body = self.server.lab.answer("POST", self.path, dict(self.headers), self.rfile.read(length))
        self._send(status, body)

    def _send(self, status: int, body: Mapping[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class ArmLab:
    """The endpoint for one scenario's `azure:` section. `start()` returns its base URL; `stop()` ends it."""

    def __init__(
        self,
        section: Mapping[str, Any],
        *,
        certificate: tuple[Path, Path],
        source: str = "azure",
        client_secret: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        translate: Callable[[str], str] | None = None,
    ) -> None:
        """`translate`: the lab hosts' address relocation (LabHosts.translate), when they were relocated."""
        self.model = _Model(section, source, translate or str)
        self.certificate = certificate
        self.client_secret = client_secret or ensure_client_secret()
        self.host = host
        self.port = self.model.port if port is None else port
        self.requests: list[LoggedRequest] = []
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL of Entra and Resource Manager alike, e.g. https://127.0.0.1:14343."""
        if self._server is None:
            raise RuntimeError("the ARM endpoint is not started")
        return f"https://{self.host}:{self._server.server_address[1]}"

    def start(self) -> str:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(*self.certificate)
        server = _Server((self.host, self.port), _Handler)
        server.context, server.lab = context, self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="linkgate-arm", daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ArmLab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def credentials_environment(self) -> dict[str, str]:
        """The variables EnvironmentCredential reads; the secret is this run's, never written to a file."""
        return {"AZURE_TENANT_ID": self.model.tenant_id, "AZURE_CLIENT_ID": self.model.client_id,
                SECRET_VARIABLE: self.client_secret}  # fmt: skip

    def environment_section(self) -> dict[str, Any]:
        """The environment file's `azure:` section that points the gate at this endpoint."""
        section: dict[str, Any] = {
            "subscription_id": self.model.subscription_id, "resource_group": self.model.resource_group,
            "instance_name": self.model.instance_name, "arm_endpoint": self.url, "authority": self.url,
            "ca_bundle": str(self.certificate[0]),
        }  # fmt: skip
        if self.model.sql_vm_nic_id:
            section["sql_vm_nic_id"] = self.model.sql_vm_nic_id
        return section

    # --- answering ------------------------------------------------------------------------------------------

    def answer(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """Status and JSON body for one request; logs it without credentials."""
        parts = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        token = (headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        authenticated = self._valid(token)
        if method == "POST":
            status, answer = self._token(parts.path, body)
        elif parts.path.endswith("/v2.0/.well-known/openid-configuration"):
            status, answer = self._discovery(parts.path)
        else:
            status, answer = self._resource(parts.path, query.get("api-version"), token, authenticated)
        with self._lock:
            self.requests.append(LoggedRequest(method, parts.path, query.get("api-version"), status, authenticated))
        return status, answer

    def _valid(self, token: str) -> bool:
        with self._lock:
            return bool(token) and self._tokens.get(token, 0.0) > time.monotonic()

    def _tenant(self, path: str) -> str:
        return path.strip("/").split("/", 1)[0]

    def _discovery(self, path: str) -> tuple[int, dict[str, Any]]:
        tenant = self._tenant(path)
        if tenant != self.model.tenant_id:
            return 400, {"error": "invalid_tenant", "error_description": f"AADSTS90002: Tenant '{tenant}' not found."}
        base = f"{self.url}/{tenant}"
        return 200, {
            "token_endpoint": f"{base}/oauth2/v2.0/token", "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode", "issuer": f"{base}/v2.0",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "tenant_region_scope": "EU",
        }  # fmt: skip

    def _token(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if not path.endswith("/oauth2/v2.0/token") or self._tenant(path) != self.model.tenant_id:
            return 404, {"error": "invalid_request", "error_description": f"AADSTS90002: no token endpoint at {path}"}
        form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type", "error_description": "AADSTS70003: only client_credentials"}
        if form.get("client_id") != self.model.client_id:
            return 400, {"error": "unauthorized_client", "error_description": "AADSTS700016: Application with "
                         f"identifier '{form.get('client_id')}' was not found in the directory."}  # fmt: skip
        if not secrets.compare_digest(form.get("client_secret", ""), self.client_secret):
            return 401, {"error": "invalid_client", "error_description":
                         f"AADSTS7000215: Invalid client secret provided for '{self.model.client_id}'."}  # fmt: skip
        if form.get("scope") != f"{self.url}/.default":
            return 400, {"error": "invalid_scope", "error_description":
                         f"AADSTS70011: The provided value for the input parameter 'scope' is not valid: "
                         f"{form.get('scope')!r} (this endpoint's resource is {self.url}/.default)."}  # fmt: skip
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.monotonic() + TOKEN_SECONDS
        return 200, {"token_type": "Bearer", "expires_in": TOKEN_SECONDS, "ext_expires_in": TOKEN_SECONDS,
                     "access_token": token}  # fmt: skip

    def _resource(self, path: str, api_version: str | None, token: str, ok: bool) -> tuple[int, dict[str, Any]]:
        if not token:
            return 401, _arm_error("AuthenticationFailed", "Authentication failed. The 'Authorization' header is "
                                   "missing.")  # fmt: skip
        if not ok:
            return 401, _arm_error("InvalidAuthenticationToken", "The access token is invalid.")
        if api_version is None:
            return 400, _arm_error("MissingApiVersionParameter", "The api-version query parameter (?api-version=) "
                                   "is required for all requests.")  # fmt: skip
        lowered = path.rstrip("/").lower()
        provider = _provider(lowered)
        wanted = API_VERSIONS.get(provider)
        if wanted is not None and api_version != wanted:
            return 400, _arm_error("NoRegisteredProviderFound", f"No registered resource provider found for location "
                                   f"'{self.model.location}' and API version '{api_version}' for type "
                                   f"'{provider}'. The supported api-versions are '{wanted}'.")  # fmt: skip
        if lowered.endswith("/providers/microsoft.authorization/permissions"):
            scope = lowered.removesuffix("/providers/microsoft.authorization/permissions")
            if scope not in self.model.resources:
                return self._missing(path.rstrip("/").rsplit("/providers/", 1)[0])
            return 200, {"value": self.model.permissions}
        if not self.model.can_read:
            action = _read_action(path.rstrip("/"))
            return 403, _arm_error("AuthorizationFailed", f"The client '{self.model.client_id}' with object id "
                                   f"'{self.model.client_id}' does not have authorization to perform action "
                                   f"'{action}' over scope '{path}' or the scope is invalid. If access was "
                                   "recently granted, please refresh your credentials.")  # fmt: skip
        if lowered in self.model.collections:
            return 200, {"value": self.model.collections[lowered]}
        found = self.model.resources.get(lowered)
        return (200, found) if found is not None else self._missing(path.rstrip("/"))

    def _missing(self, path: str) -> tuple[int, dict[str, Any]]:
        """ARM's 404 for `path`: the subscription, else the resource group, else the resource is named."""
        parts = path.strip("/").split("/")
        given = [p.lower() for p in parts]
        if len(parts) < 2 or given[1] != self.model.subscription_id.lower():
            subscription = parts[1] if len(parts) > 1 else ""
            return 404, _arm_error("SubscriptionNotFound", f"The subscription '{subscription}' could not be found.")
        if len(parts) < 4 or given[3] != self.model.resource_group.lower():
            group = parts[3] if len(parts) > 3 else ""
            return 404, _arm_error("ResourceGroupNotFound", f"Resource group '{group}' could not be found.")
        kind = "/".join(parts[5:7]) if len(parts) > 6 else "/".join(parts[4:])
        return 404, _arm_error("ResourceNotFound", f"The Resource '{kind}/{parts[-1]}' under resource group "
                               f"'{parts[3]}' was not found. For more details please go to "
                               "https://aka.ms/ARMResourceNotFoundFix")  # fmt: skip


def _provider(lowered: str) -> str:
    """The resource provider a path addresses: the last 'providers/<namespace>' in it."""
    parts = lowered.split("/")
    indexes = [i for i, p in enumerate(parts) if p == "providers" and i + 1 < len(parts)]
    return parts[indexes[-1] + 1] if indexes else ""


def _read_action(path: str) -> str:
    """The RBAC read action ARM would name for a GET of `path` (Namespace/type[/child]…/read)."""
    parts = path.split("/")
    i = max(i for i, p in enumerate(parts) if p.lower() == "providers")
    types = parts[i + 2 :: 2]
    return "/".join([parts[i + 1], *types, "read"])
