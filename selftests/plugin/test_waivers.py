"""Waivers: an owned, time-boxed exception turns one failure into `waived` until it expires; an incomplete one is
a usage error."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from linkgate.lab.runner import Lab
from selftests.plugin.conftest import GateInPytester

EXPIRES = "2030-01-31"
WAIVER = {
    "prerequisite": "sql-master-key",
    "target": "sql01",
    "reason": "created at cutover",
    "owner": "dba@example.com",
    "expires": EXPIRES,
}


def waive(**changes: Any) -> Callable[[dict[str, Any]], None]:
    """An environment edit adding the waiver above, with keys changed (a value of None removes the key)."""
    waiver = {k: v for k, v in {**WAIVER, **changes}.items() if v is not None}

    def edit(env: dict[str, Any]) -> None:
        env["waivers"] = [waiver]

    return edit


def test_valid_waiver_turns_the_failure_into_waived_and_the_gate_passes(
    run_gate: GateInPytester, no_master_key_lab: Lab
) -> None:
    # The last day of a waiver still counts: it expires the day after `expires`.
    run = run_gate(no_master_key_lab, f"--today={EXPIRES}", edit=waive())
    assert run.returncode == pytest.ExitCode.OK, run.stdout[-3000:]
    assert run.summary["verdict"] == "go"
    (record,) = run.records("waived")
    assert (record["prerequisite"], record["target"]) == ("sql-master-key", "sql01")
    assert record["waiver"] == {
        "owner": "dba@example.com",
        "reason": "created at cutover",
        "expires": EXPIRES,
        "target": "sql01",
    }
    assert record["message"].startswith(f"waived by dba@example.com until {EXPIRES}: created at cutover; finding: ")
    assert run.records("failed", "error") == []
    props, case = run.junit_case("sql-master-key", "sql01")
    assert props["linkgate.outcome"] == "waived"
    assert case.find("failure") is None, "CI must not count a waived check as a failure"
    assert "waived   sql-master-key [sql01]" in run.stdout


def test_expired_waiver_stops_waiving_and_says_expired(run_gate: GateInPytester, no_master_key_lab: Lab) -> None:
    run = run_gate(no_master_key_lab, "--today=2030-02-01", edit=waive())
    assert run.returncode == pytest.ExitCode.TESTS_FAILED
    assert run.summary["verdict"] == "no-go"
    (record,) = run.records("failed")
    assert (record["prerequisite"], record["target"]) == ("sql-master-key", "sql01")
    assert f"expired on {EXPIRES}" in record["message"]
    assert run.records("waived") == []
    props, case = run.junit_case("sql-master-key", "sql01")
    assert props["linkgate.outcome"] == "failed"
    assert "expired" in (case.findtext("failure") or "")


def test_waiver_for_another_target_waives_nothing(run_gate: GateInPytester, no_master_key_lab: Lab) -> None:
    run = run_gate(no_master_key_lab, f"--today={EXPIRES}", edit=waive(target="sql02"))
    assert run.returncode == pytest.ExitCode.TESTS_FAILED
    assert run.outcome_of("sql-master-key", "sql01") == "failed"


@pytest.mark.parametrize("missing", ["owner", "reason", "expires"])
def test_waiver_without_owner_reason_or_expiry_is_a_usage_error(
    run_gate: GateInPytester, healthy_lab: Lab, missing: str
) -> None:
    run = run_gate(healthy_lab, edit=waive(**{missing: None}))
    assert run.returncode == pytest.ExitCode.USAGE_ERROR
    (line,) = [line for line in run.stderr.splitlines() if line.startswith("ERROR:")]
    env_file = run.reports.parent / "environments" / "lab.yaml"
    document = env_file.read_text().splitlines()
    item = next(i for i, text in enumerate(document, start=1) if text.startswith("- prerequisite: sql-master-key"))
    assert line == f"ERROR: linkgate: {env_file}:{item}: waivers.[0].{missing}: required key is missing"
    assert not run.reports.exists(), "a usage error stops the gate before it checks or reports anything"
    assert yaml.safe_load(env_file.read_text())["waivers"][0].keys() == WAIVER.keys() - {missing}
