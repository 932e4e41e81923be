"""Shared fixtures of linkgate's own tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from linkgate.lab.runner import ensure_password
from selftests import netguard

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
ensure_password()  # scenarios resolve the lab login's password when they load, at collection time
netguard.install()  # from here on, this process (and each xdist worker: it imports this file) talks only to the lab


@pytest.fixture(autouse=True)
def _network_fence() -> Iterator[None]:
    """Fail the test that tried to leave the fence, even if it caught the `NetworkEscape` (selftests/netguard.py)."""
    before = len(netguard.blocked)
    yield
    escaped = netguard.blocked[before:]
    del netguard.blocked[before:]
    if escaped:
        pytest.fail("network access outside loopback and the lab range:\n" + "\n".join(escaped), pytrace=False)


@pytest.fixture
def project_root() -> Path:
    return ROOT
