"""The reports under `-n 2`, as CI and an auditor read them: every check of both workers exactly once, in one JUnit
file and one HTML report, agreeing with summary.json."""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from linkgate.lab.runner import Lab
from selftests.e2e.harness import GateRun
from selftests.plugin.conftest import GateInPytester

VERBOSE_LINE = re.compile(r"^\[(gw\d+)\] \[\s*\d+%\] [A-Z/]+ (tests/\S+)\s*$")
"""xdist's `-v` line for a finished test: `[gw1] [ 42%] PASSED tests/sql/test_server.py::test_x[lab/sql01]`."""
EXPECTED_ELEMENTS: dict[str, list[list[str]]] = {
    "passed": [[]],
    "warning": [[]],
    "waived": [[]],
    "not-applicable": [["skipped"]],
    "failed": [["failure"]],
    "error": [["failure"], ["error"]],  # an unreachable target errors in the call (failure) or a fixture (error)
}
"""The JUnit child elements CI counts, for each linkgate outcome: a warning or waiver passes, N/A is a skip."""
LINKGATE_PROPERTIES = {"linkgate.id", "linkgate.severity", "linkgate.target", "linkgate.outcome"}


def worker_of_each_test(run: GateRun) -> dict[str, str]:
    """nodeid → the xdist worker that ran it, from the controller's verbose output."""
    found: dict[str, str] = {}
    for line in run.stdout.splitlines():
        match = VERBOSE_LINE.match(line)
        if match:
            assert match.group(2) not in found, f"{match.group(2)} reported twice"
            found[match.group(2)] = match.group(1)
    return found


def nodeid_of(case: ET.Element) -> str:
    """The pytest nodeid of a JUnit testcase (the gate's checks are module-level functions)."""
    return case.get("classname", "").replace(".", "/") + ".py::" + case.get("name", "")


def summary_keys(run: GateRun, *fields: str) -> Counter[tuple[str, ...]]:
    return Counter(tuple(r[f] for f in fields) for r in run.records())


@pytest.fixture
def run_on_two_workers(run_gate: GateInPytester, no_master_key_lab: Lab) -> tuple[GateRun, dict[str, str]]:
    """The gate with `-n 2 -v` against a lab with one failure, and which worker ran each test."""
    run = run_gate(no_master_key_lab, "-n", "2", "-v")
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout[-3000:]
    workers = worker_of_each_test(run)
    assert set(workers.values()) == {"gw0", "gw1"}, "both workers ran checks"
    assert len(workers) == len(run.records()), "every test the workers ran left one record in summary.json"
    return run, workers


def test_junit_carries_the_properties_of_every_check_of_both_workers_once(
    run_on_two_workers: tuple[GateRun, dict[str, str]],
) -> None:
    run, workers = run_on_two_workers
    cases = run.junit().findall(".//testcase")
    assert Counter(nodeid_of(c) for c in cases) == Counter(workers.keys()), "each test of gw0 and gw1 once"
    seen: list[tuple[str, str, str, str]] = []
    for case in cases:
        props = {p.get("name", ""): p.get("value", "") for p in case.findall("properties/property")}
        assert props.keys() == LINKGATE_PROPERTIES, (nodeid_of(case), props)
        seen.append(
            (props["linkgate.id"], props["linkgate.target"], props["linkgate.severity"], props["linkgate.outcome"])
        )
        # CI counts failures and skips from the element, linkgate's outcome from the property: they agree.
        tags = [child.tag for child in case if child.tag != "properties"]
        assert tags in EXPECTED_ELEMENTS[props["linkgate.outcome"]], (props, tags)
    assert Counter(seen) == summary_keys(run, "prerequisite", "target", "severity", "outcome")
    assert max(Counter((i, t) for i, t, _, _ in seen).values()) == 1, "a prerequisite × target appears once"
    assert ("sql-master-key", "sql01", "required", "failed") in seen


def html_data(path: Path) -> dict[str, Any]:
    """The JSON pytest-html renders its report from (its `data-jsonblob`, as the browser reads it)."""
    match = re.search(r'data-jsonblob="([^"]*)"', path.read_text())
    assert match, "the HTML report carries pytest-html's data blob"
    data: dict[str, Any] = json.loads(html.unescape(match.group(1)))
    return data


def test_one_html_report_holds_every_record_of_both_workers(
    run_on_two_workers: tuple[GateRun, dict[str, str]], pytester: pytest.Pytester
) -> None:
    run, workers = run_on_two_workers
    report = run.reports / "linkgate.html"
    assert sorted(pytester.path.rglob("*.html")) == [report], "one HTML report, no per-worker files"
    assert sorted(p.name for p in run.reports.iterdir()) == ["junit.xml", "linkgate.html", "summary.json"]
    tests = html_data(report)["tests"]
    assert tests.keys() == workers.keys()
    rows: list[tuple[str, ...]] = []
    for nodeid, runs in tests.items():
        (row,) = runs
        assert row["log"].startswith(f"[{workers[nodeid]}] "), "the row came from the worker that ran it"
        (details,) = [x["content"] for x in row["extras"] if x.get("format_type") == "html"]
        heading = re.match(r"<h4>(\S+) on (\S+): (\S+)</h4>", details)
        assert heading, details[:200]
        cells = [re.sub(r"<[^>]+>", "", c) for c in row["resultsTableRow"][1:5]]  # id, target, severity, outcome
        assert [cells[0], cells[1], cells[3]] == list(heading.groups()), "the row and its details agree"
        rows.append(tuple(cells))
    assert Counter(rows) == summary_keys(run, "prerequisite", "target", "severity", "outcome")
    assert {workers[n] for n in tests} == {"gw0", "gw1"}
    text = report.read_text()
    assert '<div id="linkgate-verdict" class="lg-verdict lg-no-go">Verdict: NO-GO</div>' in text
