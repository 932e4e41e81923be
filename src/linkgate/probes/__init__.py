"""Probes: pytest-free readers of facts from SQL, hosts, Azure and the network."""
