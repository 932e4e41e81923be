"""The reports as CI and an auditor read them: JUnit under xdist, summary.json, the HTML in a browser."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from selftests.e2e.cdp import Page, find_chromium, page_of
from selftests.e2e.harness import GateRunner


def test_junit_carries_prerequisite_properties_under_xdist(gate: GateRunner) -> None:
    run = gate("sql-no-master-key", "-n", "2")
    root = run.junit()
    cases = root.findall(".//testcase")
    assert len(cases) == len(run.summary["records"])
    by_id: dict[str, list[dict[str, str]]] = {}
    for case in cases:
        props = {p.get("name", ""): p.get("value", "") for p in case.findall("properties/property")}
        assert {"linkgate.id", "linkgate.severity", "linkgate.target", "linkgate.outcome"} <= props.keys(), props
        by_id.setdefault(props["linkgate.id"], []).append(props)
    (failed,) = by_id["sql-master-key"]
    assert failed["linkgate.outcome"] == "failed"
    assert failed["linkgate.target"] == "sql01"
    assert failed["linkgate.severity"] == "required"
    failures = [c for c in cases if c.find("failure") is not None]
    assert len(failures) == 1
    text = failures[0].find("failure").text or ""  # type: ignore[union-attr]
    assert "symmetric_key_id = 101" in text, "the failure carries the query as evidence"
    assert "CREATE MASTER KEY" in text, "and the remediation"
    html = sorted(p.name for p in run.reports.iterdir())
    assert html == ["junit.xml", "linkgate.html", "summary.json"], "exactly one HTML report under xdist"


def test_recommended_failure_is_a_warning_unless_asked(gate: GateRunner) -> None:
    run = gate("sql-db-backup-without-checksum")
    assert run.returncode == 0
    assert run.summary["verdict"] == "go"
    assert {r["outcome"] for r in run.records() if r["prerequisite"] == "sql-db-backup-checksum"} >= {"warning"}
    strict = gate("sql-db-backup-without-checksum", "--fail-on-recommended")
    assert strict.returncode == 1
    assert strict.summary["verdict"] == "no-go"


BOX_JS = """
window.lgBox = (el) => {
  if (!el) return null;
  const r = el.getBoundingClientRect(), cs = getComputedStyle(el);
  return {top: r.top, bottom: r.bottom, left: r.left, right: r.right, width: r.width, height: r.height,
          shown: el.offsetParent !== null && cs.display !== "none" && cs.visibility !== "hidden"
                 && r.width > 0 && r.height > 0,
          text: el.textContent, classes: [...el.classList]};
};
window.lgRow = (state, prerequisite) => [...document.querySelectorAll(`#results-table tbody.${state}`)]
  .find((tb) => [...tb.querySelectorAll("tr.collapsible td")].some((td) => td.textContent === prerequisite));
window.lgDetails = (state, prerequisite) => {
  const tb = lgRow(state, prerequisite);
  return tb && {result: lgBox(tb.querySelector("td.col-result")),
                evidence: lgBox(tb.querySelector(".extras-row pre.lg-evidence")),
                remediation: lgBox(tb.querySelector(".extras-row pre.lg-remediation"))};
};
true
"""
"""Page helpers: an element's box and whether it is really shown; a results row's details by prerequisite."""


def _on_first_screen(box: dict[str, Any], width: int, height: int) -> bool:
    return (
        bool(box["shown"])
        and box["top"] >= 0
        and box["left"] >= 0
        and box["bottom"] <= height
        and box["right"] <= width
    )


def _click_result_cell(page: Page, state: str, prerequisite: str) -> None:
    """Scroll a results row into view and click its Result cell, as a reader toggling its details."""
    box = page.evaluate(
        f"(() => {{ const td = lgRow({state!r}, {prerequisite!r}).querySelector('td.col-result');"
        " td.scrollIntoView({block: 'center'}); return lgBox(td); })()"
    )
    page.click(box["left"] + box["width"] / 2, box["top"] + box["height"] / 2)


def test_html_report_as_an_auditor_sees_it(gate: GateRunner, tmp_path: Path) -> None:
    """Rendered by headless Chromium at 1280x900: verdict and matrix on the first screen, JS-rendered rows,
    a failure's evidence and remediation shown, collapsible, and a passed row's details shown on demand."""
    browser = find_chromium()
    if browser is None:
        message = "headless Chromium (Debian package chromium) is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}: CI must check the HTML report as an auditor sees it")
        pytest.skip(message)
    run = gate("sql-no-master-key")
    records = run.summary["records"]
    width, height = 1280, 900
    with page_of(browser, tmp_path / "profile", width, height) as page:
        page.navigate((run.reports / "linkgate.html").as_uri())
        # pytest-html builds the results table from its JSON blob: these rows exist only once its JS has run.
        rendered = page.wait_for("document.querySelectorAll('#results-table tbody.results-table-row').length")
        assert rendered == len(records), "one rendered results row per prerequisite × target"
        assert page.evaluate(BOX_JS)
        assert page.evaluate("[window.innerWidth, window.innerHeight]") == [width, height]
        shot = page.screenshot(tmp_path / "first-screen.png")
        assert shot.read_bytes().startswith(b"\x89PNG")
        assert shot.stat().st_size > 10_000

        verdict = page.evaluate("lgBox(document.getElementById('linkgate-verdict'))")
        assert verdict["text"] == "Verdict: NO-GO"
        assert _on_first_screen(verdict, width, height), verdict
        grid = page.evaluate("lgBox(document.getElementById('linkgate-matrix'))")
        assert grid["shown"], grid
        assert 0 <= grid["top"] < height - 100, f"the matrix starts on the first screen: {grid}"
        failed_cell = page.evaluate(
            "(() => { const t = document.getElementById('linkgate-matrix');"
            " const col = [...t.rows[0].cells].findIndex((c) => c.textContent === 'sql01');"
            " const row = [...t.rows].find((r) => r.cells[0].textContent === 'sql-master-key');"
            " return lgBox(row.cells[col]); })()"
        )
        assert "lg-failed" in failed_cell["classes"]
        assert "failed" in failed_cell["text"]
        assert _on_first_screen(failed_cell, width, height), f"the failing row leads the matrix: {failed_cell}"

        # A failed row opens expanded (pytest-html collapses only passed rows): evidence and fix are shown.
        details = page.evaluate("lgDetails('failed', 'sql-master-key')")
        assert details is not None, "the failed check has a rendered results row"
        assert details["evidence"]["shown"], details
        assert details["remediation"]["shown"], details
        evidence = details["evidence"]["text"]
        assert "[SQL on sql01]" in evidence, "the evidence names the target"
        assert "FROM master.sys.symmetric_keys WHERE symmetric_key_id = 101" in evidence, "and the query"
        assert "→ (no rows)" in evidence, "and what came back"
        assert "On sql01: USE master; CREATE MASTER KEY" in details["remediation"]["text"]
        assert page.evaluate("document.querySelectorAll('#results-table tbody.failed').length") == 1

        _click_result_cell(page, "failed", "sql-master-key")
        collapsed = page.evaluate("lgDetails('failed', 'sql-master-key')")
        assert "collapsed" in collapsed["result"]["classes"]
        assert not collapsed["evidence"]["shown"], collapsed
        assert not collapsed["remediation"]["shown"], collapsed
        _click_result_cell(page, "failed", "sql-master-key")
        reopened = page.evaluate("lgDetails('failed', 'sql-master-key')")
        assert reopened["evidence"]["shown"], reopened
        assert reopened["remediation"]["shown"], reopened
        page.screenshot(tmp_path / "failure-expanded.png")

        # A passed row opens collapsed; expanding it shows what was checked (no remediation: nothing to fix).
        before = page.evaluate("lgDetails('passed', 'sql-hadr-enabled')")
        assert "collapsed" in before["result"]["classes"], before
        assert not before["evidence"]["shown"], before
        _click_result_cell(page, "passed", "sql-hadr-enabled")
        after = page.evaluate("lgDetails('passed', 'sql-hadr-enabled')")
        assert after["evidence"]["shown"], after
        assert "[SQL on sql01]" in after["evidence"]["text"]
        assert after["remediation"] is None
