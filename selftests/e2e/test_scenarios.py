"""The real gate against the lab: healthy passes; every failing scenario fails exactly what it breaks."""

from __future__ import annotations

import re

import pytest

from linkgate.lab.scenario import list_scenarios, load_scenario
from selftests.e2e.harness import GateRunner

FAILING = [name for name in list_scenarios() if load_scenario(name).expect]


def test_healthy_lab_is_a_go(gate: GateRunner) -> None:
    run = gate("healthy")
    assert run.returncode == 0, run.stdout[-3000:]
    summary = run.summary
    assert summary["verdict"] == "go"
    bad = run.records("failed", "error", "warning")
    assert bad == [], bad
    assert run.records("passed"), "healthy must pass real checks, not only skip them"
    assert all(r["target"].split("/")[0] in ("sql01", "mi01") for r in summary["records"])


@pytest.mark.parametrize("scenario", FAILING)
def test_failing_scenario_fails_exactly_its_prerequisites(gate: GateRunner, scenario: str) -> None:
    expected = set(load_scenario(scenario).expect)
    run = gate(scenario)
    flagged = {r["prerequisite"] for r in run.records("failed", "warning", "error")}
    assert flagged == expected, run.stdout[-3000:]
    for r in run.records("failed", "warning", "error"):
        assert r["message"], r
        assert r["evidence"], f"{r['prerequisite']} shows no evidence"
        assert r["remediation"], r
        assert not re.search(r"\{[a-z_]+\}", r["remediation"]), f"unfilled field: {r['remediation']}"
    blocking = {r["prerequisite"] for r in run.records("failed", "error")}
    assert (run.returncode != 0) == bool(blocking)
    assert (run.summary["verdict"] == "no-go") == bool(blocking)
