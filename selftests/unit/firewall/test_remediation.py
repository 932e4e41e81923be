"""The commands that open a failing flow; for nft and iptables, run for real in a throwaway namespace."""

from __future__ import annotations

import shlex
from collections.abc import Callable

import pytest

from linkgate.firewall.firewalld import Firewalld
from linkgate.firewall.flows import Flow, Verdict
from linkgate.firewall.netfilter import parse_iptables_save, parse_nft_json
from linkgate.firewall.nsg import Nsg, evaluate_path
from linkgate.firewall.remediation import (
    firewalld_command,
    iptables_command,
    nft_command,
    nsg_command,
    ufw_command,
    windows_command,
)
from linkgate.firewall.ufw import UfwStatus
from linkgate.firewall.windows import WindowsFirewall

from .conftest import DATA

MI = "198.18.2.0/24"
SQL = "198.18.1.10"
IN_5022 = Flow.tcp("inbound", MI, SQL, 5022)
OUT_REDIRECT = Flow.tcp("outbound", SQL, MI, "11000-11999")

Listing = Callable[[str], str]


def test_nft_inserts_before_the_deciding_rule(listing: Listing) -> None:
    verdict = parse_nft_json(listing("nftables/jump-named-set.json")).evaluate(IN_5022)
    assert nft_command(verdict) == (
        "nft insert rule inet filter input position 8 ip saddr 198.18.2.0/24 ip daddr 198.18.1.10 tcp dport 5022 accept"
    )


def test_nft_appends_when_the_policy_decided(listing: Listing) -> None:
    verdict = parse_nft_json(listing("nftables/partial-range.json")).evaluate(OUT_REDIRECT)
    assert nft_command(verdict) == (
        "nft add rule ip filter OUTPUT ip saddr 198.18.1.10 ip daddr 198.18.2.0/24 tcp dport 11000-11999 accept"
    )


def test_nothing_to_open_for_an_allowed_flow(listing: Listing) -> None:
    verdict = parse_nft_json(listing("nftables/healthy.json")).evaluate(IN_5022)
    with pytest.raises(ValueError, match="nothing to open"):
        nft_command(verdict)


def test_iptables_inserts_at_the_deciding_position(listing: Listing) -> None:
    verdict = parse_iptables_save(listing("iptables/user-chain.save")).evaluate(IN_5022)
    assert iptables_command(verdict) == (
        "iptables -I INPUT 2 -s 198.18.2.0/24 -d 198.18.1.10 -p tcp -m tcp --dport 5022 -j ACCEPT"
    )
    appended = parse_iptables_save(listing("iptables/output-restricted.save")).evaluate(OUT_REDIRECT)
    assert iptables_command(appended) == (
        "iptables -A OUTPUT -s 198.18.1.10 -d 198.18.2.0/24 -p tcp -m tcp --dport 11000:11999 -j ACCEPT"
    )


def test_iptables_address_range_uses_iprange(listing: Listing) -> None:
    flow = Flow.tcp("inbound", "198.18.2.1-198.18.2.9", SQL, 5022)
    verdict = parse_iptables_save(listing("iptables/policy-drop.save")).evaluate(flow)
    assert "-m iprange --src-range 198.18.2.1-198.18.2.9 -d 198.18.1.10" in iptables_command(verdict)


def test_firewalld_rich_rule(listing: Listing) -> None:
    fw = Firewalld.parse(listing("firewalld/public.active-zones.txt"), listing("firewalld/closed.list-all.txt"))
    command = firewalld_command(fw.evaluate(IN_5022))
    assert command == (
        'firewall-cmd --permanent --zone=public --add-rich-rule=\'rule family="ipv4" source address="198.18.2.0/24" '
        'port port="5022" protocol="tcp" accept\' && firewall-cmd --reload'
    )
    rule = shlex.split(command)[3].removeprefix("--add-rich-rule=")
    assert rule.startswith('rule family="ipv4"')


def test_firewalld_rich_rule_goes_ahead_of_a_denying_rich_rule(listing: Listing) -> None:
    fw = Firewalld.parse(
        listing("firewalld/public.active-zones.txt"), listing("firewalld/reject-beats-port.list-all.txt")
    )
    command = firewalld_command(fw.evaluate(IN_5022))
    assert '--add-rich-rule=\'rule priority="-1" family="ipv4"' in command
    # the rule it writes, parsed back and evaluated, opens the flow
    opened = Firewalld.parse(
        listing("firewalld/public.active-zones.txt"),
        listing("firewalld/reject-beats-port.list-all.txt") + "\t" + shlex.split(command)[3].split("=", 1)[1] + "\n",
    )
    assert opened.evaluate(IN_5022).allowed is True


def test_firewalld_has_nothing_to_open_outbound() -> None:
    with pytest.raises(ValueError, match="do not filter outbound"):
        firewalld_command(Verdict(OUT_REDIRECT, False))


def test_ufw_insert_before_the_deny(listing: Listing) -> None:
    verdict = UfwStatus.parse(listing("ufw/deny-first.txt")).evaluate(IN_5022)
    assert ufw_command(verdict) == "ufw insert 2 allow from 198.18.2.0/24 to 198.18.1.10 port 5022 proto tcp"
    out = UfwStatus.parse(listing("ufw/outgoing-deny.txt")).evaluate(OUT_REDIRECT)
    assert ufw_command(out) == "ufw allow out from 198.18.1.10 to 198.18.2.0/24 port 11000:11999 proto tcp"


def test_windows_disables_the_block_rule_then_allows(listing: Listing) -> None:
    verdict = WindowsFirewall.parse(listing("windows/block-over-allow.json")).evaluate(IN_5022)
    assert windows_command(verdict).splitlines() == [
        "Disable-NetFirewallRule -Name '{B7D2E4F6-1A3C-4B5D-9E7F-2C4D6E8F0A1B}'",
        "New-NetFirewallRule -DisplayName 'linkgate MI link TCP 5022 inbound' -Direction Inbound -Action Allow "
        "-Profile Any -Protocol TCP -LocalPort 5022 -RemoteAddress 198.18.2.0/24",
    ]


def test_windows_outbound_uses_remote_port(listing: Listing) -> None:
    verdict = WindowsFirewall.parse(listing("windows/port-ranges.json")).evaluate(OUT_REDIRECT)
    command = windows_command(verdict, display_name="MI link out")
    assert command == (
        "New-NetFirewallRule -DisplayName 'MI link out' -Direction Outbound -Action Allow -Profile Any -Protocol TCP "
        "-RemotePort 11000-11999 -RemoteAddress 198.18.2.0/24"
    )


def test_nsg_rule_in_each_denying_nsg_below_the_deny(listing: Listing) -> None:
    subnet = Nsg.from_arm(listing("nsg/mi-subnet-deny-first.json"))
    verdict = evaluate_path(
        Flow.tcp("inbound", "198.19.10.4", MI, 5022), subnet=subnet, virtual_network=["198.18.0.0/16"]
    )
    assert nsg_command(verdict, [subnet]) == (
        "az network nsg rule create -g rg-milink --nsg-name nsg-mi -n allow-milink-inbound-5022 --priority 899 "
        "--direction Inbound --access Allow --protocol Tcp --source-address-prefixes 198.19.10.4 "
        "--source-port-ranges '*' --destination-address-prefixes 198.18.2.0/24 --destination-port-ranges 5022"
    )
    with pytest.raises(ValueError, match="NSG nsg-mi, which was not passed"):
        nsg_command(verdict, [])


def test_nsg_rule_for_a_default_deny_takes_the_highest_free_custom_priority(listing: Listing) -> None:
    subnet = Nsg.from_arm(listing("nsg/mi-subnet-lists.json"))
    verdict = evaluate_path(
        Flow.tcp("inbound", "198.19.10.4", MI, "11000-11999"), subnet=subnet, virtual_network=["198.18.0.0/16"]
    )
    assert "--priority 4096 " in nsg_command(verdict, [subnet])


# the commands, run for real: the flow is allowed afterwards ------------------------------------------------------

NFT_CASES = [
    ("jump-named-set", IN_5022),
    ("policy-drop", IN_5022),
    ("policy-drop", OUT_REDIRECT),
    ("partial-range", OUT_REDIRECT),
    ("two-base-chains", IN_5022),
    ("drop-before-accept", IN_5022),
    ("goto", IN_5022),
    ("firewalld-shaped", Flow.tcp("inbound", MI, SQL, "11000-11999")),
    ("vmaps", Flow.tcp("inbound", MI, SQL, "11000-11999")),
]


@pytest.mark.needs_root
@pytest.mark.parametrize(("rules", "flow"), NFT_CASES)
def test_nft_command_opens_the_flow(netns: Callable[..., str], rules: str, flow: Flow) -> None:
    netns("nft", "-f", str(DATA / "nftables" / f"{rules}.nft"))
    before = parse_nft_json(netns("nft", "-j", "list", "ruleset")).evaluate(flow)
    assert before.allowed is False
    for command in nft_command(before).splitlines():
        netns(*shlex.split(command))
    after = parse_nft_json(netns("nft", "-j", "list", "ruleset")).evaluate(flow)
    assert after.allowed is True, after.explain()


IPTABLES_CASES = [
    ("user-chain", IN_5022),
    ("policy-drop", IN_5022),
    ("drop-before-accept", IN_5022),
    ("output-restricted", OUT_REDIRECT),
]


@pytest.mark.needs_root
@pytest.mark.parametrize(("rules", "flow"), IPTABLES_CASES)
def test_iptables_command_opens_the_flow(netns: Callable[..., str], rules: str, flow: Flow) -> None:
    netns("iptables-restore", stdin=(DATA / "iptables" / f"{rules}.rules").read_text())
    before = parse_iptables_save(netns("iptables-save")).evaluate(flow)
    assert before.allowed is False
    for command in iptables_command(before).splitlines():
        netns(*shlex.split(command))
    after = parse_iptables_save(netns("iptables-save")).evaluate(flow)
    assert after.allowed is True, after.explain()
