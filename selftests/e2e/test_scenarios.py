"""The real gate against the lab: healthy passes; every failing scenario fails exactly what it breaks, and says so
in all four outputs (terminal, JUnit, HTML, summary.json)."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

from linkgate.catalog import declared_ids
from linkgate.lab.scenario import list_scenarios, load_scenario
from selftests.e2e.harness import ROOT, GateRun, GateRunner

FAILING = [name for name in list_scenarios() if load_scenario(name).expect]


def expects_errors(scenario: str) -> bool:
    """Fault scenarios (`fault-*`: a target refuses, stalls, …) break reachability, so their checks error.

    Any other scenario breaks one fact on a reachable target: its checks must decide (fail or warn), and an
    error there means the gate could not read what it should have.
    """
    return scenario.startswith("fault-")


NOT_APPLICABLE_WHEN_HEALTHY = {
    # healthy's SQL Server runs on Linux: the Windows host checks apply to Windows hosts only.
    "host-windows-agent-service",
    "host-windows-failover-clustering",
    "host-windows-hadr-enabled",
    "host-windows-os-edition",
    "host-windows-services",
    "host-windows-startup-params",
    # Active probes (they create a job or endpoint on a target) are opt-in; healthy leaves them off.
    "net-mi-reaches-sql-5022",
    "net-sql-reaches-mi-active",
    # Direction SQL_TO_MI: the managed instance is not the initial primary, so its TDE protector is not read.
    "azure-tde-protector",
    # No database to link uses In-Memory OLTP, so the managed instance's service tier does not matter.
    "azure-tier-inmemory",
    # healthy's SQL Server has no mirroring endpoint yet (the link creates one): nothing must listen.
    "host-endpoint-listener",
}
PASSED_WHEN_HEALTHY = sorted(
    i
    for i in declared_ids(ROOT / "tests")
    if i.split("-", 1)[0] in ("host", "net", "azure") and i not in NOT_APPLICABLE_WHEN_HEALTHY
)


def test_healthy_lab_is_a_go(gate: GateRunner) -> None:
    run = gate("healthy")
    assert run.returncode == 0, run.stdout[-3000:]
    summary = run.summary
    assert summary["verdict"] == "go"
    bad = run.records("failed", "error", "warning")
    assert bad == [], bad
    lab_targets = {
        r["target"].split("/")[0]
        for r in summary["records"]
        if r["prerequisite"].split("-", 1)[0] in ("sql", "mi", "host", "net", "azure")
    }
    assert lab_targets == {"sql01", "mi01"}, "the checks fan out over the lab's SQL Server and managed instance"
    # Each host, network and Azure check really ran and passed: one silently turning not-applicable fails here.
    outcomes: dict[str, set[str]] = {}
    for r in summary["records"]:
        outcomes.setdefault(r["prerequisite"], set()).add(r["outcome"])
    assert {i: outcomes.get(i) for i in PASSED_WHEN_HEALTHY} == {i: {"passed"} for i in PASSED_WHEN_HEALTHY}
    assert len(PASSED_WHEN_HEALTHY) >= 20, "the catalogue was read"


def test_without_azure_section_every_azure_check_is_unchecked(gate: GateRunner) -> None:
    """No `azure:` section: every ARM check is not applicable, listed as unchecked in summary.json and the terminal."""

    def drop_azure(env: dict[str, Any]) -> None:
        assert env.pop("azure", None) is not None, "the lab's environment declares azure:"

    run = gate("healthy", edit=drop_azure)
    assert run.returncode == 0, run.stdout[-3000:]
    azure = {i for i in declared_ids(ROOT / "tests") if i.startswith("azure-")}
    records = [r for r in run.records() if r["prerequisite"] in azure]
    assert {r["prerequisite"] for r in records} == azure, "each ARM check is reported, none silently dropped"
    assert {r["outcome"] for r in records} == {"not-applicable"}
    assert all("azure:" in r["message"] for r in records), "each says why: the environment declares no azure:"
    assert azure <= set(run.summary["unchecked"])
    (line,) = [ln for ln in run.stdout.splitlines() if ln.startswith("  unchecked (applied to no target): ")]
    assert azure <= set(line.split(": ", 1)[1].split(", "))


def _check_terminal(run: GateRun, flagged: list[dict[str, Any]]) -> None:
    """The gate's summary names each flagged prerequisite and target; failures and warnings show their fix."""
    for r in flagged:
        assert f" {r['outcome']:<8} {r['prerequisite']} [{r['target']}] ({r['severity']})" in run.stdout, r
        if r["outcome"] in ("failed", "warning"):
            assert f"      fix: {r['remediation'].splitlines()[0]}" in run.stdout, r
        else:  # an error's failure section carries the reason and the remediation
            assert r["remediation"].splitlines()[0] in run.stdout, r


def _check_junit(run: GateRun, flagged: list[dict[str, Any]]) -> None:
    """Each flagged record is a testcase with its properties; a blocking one's failure text has evidence and fix."""
    for r in flagged:
        props, case = run.junit_case(r["prerequisite"], r["target"])
        assert props["linkgate.severity"] == r["severity"]
        assert props["linkgate.outcome"] == r["outcome"]
        problem = case.find("failure") if case.find("failure") is not None else case.find("error")
        if r["outcome"] == "warning":
            assert problem is None, "a warning does not fail the testcase"
            continue
        assert problem is not None, f"{r['prerequisite']} on {r['target']} has no <failure> in JUnit"
        text = problem.text or ""
        for ev in r["evidence"]:
            assert str(ev["command"]) in text, f"JUnit failure of {r['prerequisite']} lacks evidence {ev['command']}"
        assert r["remediation"] in text


def _check_html(run: GateRun, flagged: list[dict[str, Any]]) -> None:
    """Each flagged record's details (what the expanded row shows) carry its evidence and remediation."""
    extras = run.html_extras()
    e = html.escape
    for r in flagged:
        head = f"<h4>{e(r['prerequisite'])} on {e(r['target'])}: {e(r['outcome'])}</h4>"
        (details,) = [x for x in extras if x.startswith(head)]
        for ev in r["evidence"]:
            assert e(str(ev["command"])) in details, f"HTML details of {r['prerequisite']} lack {ev['command']}"
        assert f'<pre class="lg-remediation">{e(r["remediation"])}</pre>' in details


@pytest.mark.parametrize("scenario", FAILING)
def test_failing_scenario_fails_exactly_its_prerequisites(gate: GateRunner, scenario: str) -> None:
    expected = set(load_scenario(scenario).expect)
    run = gate(scenario)
    flagged = run.records("failed", "warning", "error")
    assert {r["prerequisite"] for r in flagged} == expected, run.stdout[-3000:]
    errors = sorted({(r["prerequisite"], r["target"]) for r in run.records("error")})
    if not expects_errors(scenario):
        assert errors == [], f"expected failures, not errors (the gate could not read them): {errors}"
    for r in flagged:
        assert r["message"], r
        assert r["evidence"], f"{r['prerequisite']} shows no evidence"
        assert r["remediation"], r
        assert not re.search(r"\{[a-z_]+\}", r["remediation"]), f"unfilled field: {r['remediation']}"
        if r["outcome"] == "failed":
            assert r["severity"] == "required", r
        elif r["outcome"] == "warning":
            assert r["severity"] in ("recommended", "info"), r
    blocking = {r["prerequisite"] for r in run.records("failed", "error")}
    assert (run.returncode != 0) == bool(blocking), (run.returncode, blocking)
    assert (run.summary["verdict"] == "no-go") == bool(blocking)
    _check_terminal(run, flagged)
    _check_junit(run, flagged)
    _check_html(run, flagged)
    if blocking:
        return
    # Only warnings: a go by design. Asked to, the gate blocks on the recommended ones; info never blocks.
    recommended = {(r["prerequisite"], r["target"]) for r in flagged if r["severity"] == "recommended"}
    if not recommended:
        assert {r["severity"] for r in flagged} == {"info"}
        return
    strict = gate(scenario, "--fail-on-recommended")
    assert strict.returncode == 1, strict.stdout[-3000:]
    assert strict.summary["verdict"] == "no-go"
    assert {(r["prerequisite"], r["target"]) for r in strict.records("failed")} == recommended
