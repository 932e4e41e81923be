"""Shared fixtures of linkgate's own tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from linkgate.lab.runner import ensure_password

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
ensure_password()  # scenarios resolve the lab login's password when they load, at collection time


@pytest.fixture
def project_root() -> Path:
    return ROOT
