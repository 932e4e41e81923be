"""Per-instance counters, read by benchmarks and self-tests (connections made, round trips served)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class InstanceStats:
    """Counters of one instance, updated by the server's loop thread only.

    `round_trips` counts responses sent: one per client request (PRELOGIN, LOGIN7, batch, RPC,
    transaction request, attention), the unit in which latency is injected and gates are measured.
    `encryption` counts logins by how they were protected: "none", "login-only", "full", "strict".
    """

    connections: int = 0
    active: int = 0
    logins: int = 0
    failed_logins: int = 0
    round_trips: int = 0
    attentions: int = 0
    encryption: Counter[str] = field(default_factory=Counter)
