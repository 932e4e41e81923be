"""A black-box copy of the gate (conftest, tests/, environments/) in a pytester directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def gate_dir(pytester: pytest.Pytester) -> Path:
    """A project directory laid out like the user's checkout: conftest.py, tests/, environments/."""
    path = pytester.path
    shutil.copy(ROOT / "conftest.py", path / "conftest.py")
    shutil.copytree(ROOT / "tests", path / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "environments", path / "environments")
    (path / "pytest.ini").write_text("[pytest]\ntestpaths = tests\naddopts = -p no:cacheprovider\n")
    return path
