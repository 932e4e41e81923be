"""Firewall evaluators: is this exact flow allowed by these rules, and which rule decides?

Pure code, no I/O: each module reads a listing it is given (nftables JSON, iptables-save, firewalld,
ufw, Windows Firewall JSON, Azure NSG JSON) and returns a `flows.Verdict` for a `flows.Flow` —
allowed, denied, or INDETERMINATE when something that could decide cannot be evaluated — with the
deciding rule, the policy that applied when no rule did, and where an opening rule must go
(`remediation`).
"""
