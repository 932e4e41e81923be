"""The `gate` fixture: a fresh lab per call, the real gate run against it in a subprocess."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from linkgate.lab.runner import Lab
from linkgate.lab.scenario import load_scenario
from selftests.e2e.harness import GateRun, GateRunner, run_pytest_gate


@pytest.fixture
def gate(tmp_path: Path) -> GateRunner:
    """gate(scenario, *pytest_args, overlays=(), edit=None) → GateRun, with a fresh lab per call."""

    def run(
        scenario_name: str,
        *args: str,
        overlays: tuple[Path, ...] = (),
        edit: Callable[[dict[str, Any]], None] | None = None,
    ) -> GateRun:
        scenario = load_scenario(scenario_name, overlays)
        workdir = tmp_path / scenario.name.replace("/", "_")
        workdir.mkdir(exist_ok=True)
        with Lab(scenario, ephemeral_ports=True) as lab:
            env = lab.environment()
            if edit is not None:
                edit(env)
            env_path = workdir / "lab.yaml"
            env_path.write_text(yaml.safe_dump(env, sort_keys=False))
            proc = run_pytest_gate(env_path, workdir / "reports", *args)
            statements = {name: backend.log() for name, backend in lab.backends.items()}
        return GateRun(proc.returncode, proc.stdout, proc.stderr, workdir / "reports", statements)

    return run
