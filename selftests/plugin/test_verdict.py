"""The verdict is the exit code: required failures block, recommended ones warn unless asked to block."""

from __future__ import annotations

import pytest

from linkgate.lab.runner import Lab
from selftests.plugin.conftest import GateInPytester

CHECKSUM = ("sql-db-backup-checksum", "sql01/SalesDB")


def test_healthy_is_go_with_exit_0(run_gate: GateInPytester, healthy_lab: Lab) -> None:
    run = run_gate(healthy_lab)
    assert run.returncode == pytest.ExitCode.OK, run.stdout[-3000:]
    assert run.summary["verdict"] == "go"
    assert run.records("failed", "error", "warning", "waived") == []
    assert len(run.records("passed")) >= 40, "the checks ran and passed, not merely skipped"
    assert "linkgate verdict for lab: GO" in run.stdout


def test_recommended_failure_alone_is_a_warning_with_exit_0(
    run_gate: GateInPytester, backup_without_checksum_lab: Lab
) -> None:
    run = run_gate(backup_without_checksum_lab)
    assert run.returncode == pytest.ExitCode.OK, run.stdout[-3000:]
    assert run.summary["verdict"] == "go"
    (warning,) = run.records("warning")
    assert (warning["prerequisite"], warning["target"], warning["severity"]) == (*CHECKSUM, "recommended")
    assert run.records("failed", "error") == []
    props, case = run.junit_case(*CHECKSUM)
    assert props["linkgate.outcome"] == "warning"
    assert case.find("failure") is None, "a warning does not fail the CI job"
    assert "linkgate verdict for lab: GO" in run.stdout
    assert "⚠ warning  sql-db-backup-checksum [sql01/SalesDB] (recommended)" in run.stdout
    assert "fix: " in run.stdout, "the terminal shows a warning's remediation: pytest prints no failure for it"


def test_fail_on_recommended_makes_the_warning_block(
    run_gate: GateInPytester, backup_without_checksum_lab: Lab
) -> None:
    run = run_gate(backup_without_checksum_lab, "--fail-on-recommended")
    assert run.returncode == pytest.ExitCode.TESTS_FAILED
    assert run.summary["verdict"] == "no-go"
    (failed,) = run.records("failed")
    assert (failed["prerequisite"], failed["target"]) == CHECKSUM
    assert run.records("warning") == []
    assert "linkgate verdict for lab: NO-GO" in run.stdout


def test_required_failure_is_no_go_with_exit_1(run_gate: GateInPytester, no_master_key_lab: Lab) -> None:
    run = run_gate(no_master_key_lab)
    assert run.returncode == pytest.ExitCode.TESTS_FAILED
    assert run.summary["verdict"] == "no-go"
    (failed,) = run.records("failed", "error")
    assert (failed["prerequisite"], failed["target"], failed["severity"]) == ("sql-master-key", "sql01", "required")
    assert run.summary["counts"]["failed"] == 1
    assert "linkgate verdict for lab: NO-GO" in run.stdout
