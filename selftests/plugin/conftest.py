"""A black-box copy of the gate (conftest, tests/, environments/) in a pytester directory, and labs to check."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml

from linkgate.lab.runner import Lab
from linkgate.lab.scenario import load_scenario
from selftests import netguard
from selftests.e2e.harness import GateRun

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


def running_lab(scenario: str) -> Iterator[Lab]:
    """A lab for the whole session, shared by the tests that name it.

    Session-scoped for two reasons: the gate only reads (selftests/e2e proves it sends nothing that changes
    state), so a start per test would only cost time; and pytester unloads, after each test, the modules
    imported during it. A lab started inside a test imports DuckDB there, and DuckDB's extension aborts the
    process when the next test imports it again. Session fixtures are set up before pytester's snapshot.
    """
    with Lab(load_scenario(scenario), ephemeral_ports=True) as lab:
        yield lab


@pytest.fixture(scope="session")
def healthy_lab() -> Iterator[Lab]:
    """Passes every required prerequisite."""
    yield from running_lab("healthy")


@pytest.fixture(scope="session")
def no_master_key_lab() -> Iterator[Lab]:
    """Fails one required prerequisite: sql-master-key on sql01."""
    yield from running_lab("sql-no-master-key")


@pytest.fixture(scope="session")
def backup_without_checksum_lab() -> Iterator[Lab]:
    """Fails one recommended prerequisite: sql-db-backup-checksum on sql01/SalesDB."""
    yield from running_lab("sql-db-backup-without-checksum")


class GateInPytester(Protocol):
    def __call__(self, lab: Lab, *args: str, edit: Callable[[dict[str, Any]], None] | None = None) -> GateRun: ...


@pytest.fixture
def run_gate(pytester: pytest.Pytester, gate_dir: Path, monkeypatch: pytest.MonkeyPatch) -> GateInPytester:
    """run_gate(lab, *args, edit=None): the copied gate, `--env lab`, in a subprocess against a running lab.

    The environment goes to environments/lab.yaml (after `edit`, if given); the reports to the pytester
    directory's reports/, the gate's default. The gate process and its xdist workers run inside the
    self-tests' network fence (selftests/netguard.py); an attempt to leave it fails the test here.
    """
    log = pytester.path / "netguard.log"
    guarded = netguard.with_guard({"PYTHONPATH": os.environ.get("PYTHONPATH", "")}, log)
    for name, value in guarded.items():
        monkeypatch.setenv(name, value)

    def run(lab: Lab, *args: str, edit: Callable[[dict[str, Any]], None] | None = None) -> GateRun:
        env = lab.environment()  # a fresh dict: editing it changes this run only
        if edit is not None:
            edit(env)
        (gate_dir / "environments" / "lab.yaml").write_text(yaml.safe_dump(env, sort_keys=False))
        log.unlink(missing_ok=True)
        result = pytester.runpytest_subprocess("--env", "lab", *args, timeout=300)
        escaped = netguard.read_log(log)
        assert not escaped, "the gate tried to leave loopback and the lab range:\n" + "\n".join(escaped)
        return GateRun(result.ret, result.stdout.str(), result.stderr.str(), gate_dir / "reports")

    return run
