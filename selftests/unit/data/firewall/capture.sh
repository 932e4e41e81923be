#!/bin/sh
# Regenerate the captured listings from the rule files beside them, in a throwaway network namespace
# (no traffic is sent: only rules are loaded and listed). Run as root from this directory.
set -eu
ns="lgfw-$$"
ip netns add "$ns"
trap 'ip netns del "$ns"' EXIT
for rules in nftables/*.nft; do
	ip netns exec "$ns" nft -f "$rules"
	ip netns exec "$ns" nft -j list ruleset >"${rules%.nft}.json"
done
for rules in iptables/*.rules; do
	ip netns exec "$ns" nft flush ruleset
	ip netns exec "$ns" iptables-restore <"$rules"
	ip netns exec "$ns" iptables-save >"${rules%.rules}.save"
	ip netns exec "$ns" iptables -S >"${rules%.rules}.S"
done
# iptables-nft keeps conntrack and multiport matches as opaque `xt` expressions in the nft listing.
ip netns exec "$ns" nft flush ruleset
ip netns exec "$ns" iptables-restore <iptables/healthy.rules
ip netns exec "$ns" nft -j list ruleset >nftables/iptables-nft.json
