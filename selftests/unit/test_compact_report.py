"""outcomes.compact_report: a verdict's report without pytest's traceback formatting, still a full report."""

from __future__ import annotations

import pytest
from _pytest.reports import TestReport
from _pytest.runner import CallInfo

from linkgate.gate import NotApplicable
from linkgate.outcomes import compact_report
from linkgate.probes.facts import TargetUnreachable

CHECK = """
def test_check():
    observed = {"recovery_model": "SIMPLE"}
    assert observed["recovery_model"] == "FULL", "SalesDB is in SIMPLE recovery"
"""


def _call(item: pytest.Item, when: str, fn: object) -> CallInfo[None]:
    return CallInfo.from_call(fn, when)  # type: ignore[arg-type]


@pytest.fixture
def item(pytester: pytest.Pytester) -> pytest.Item:
    return pytester.getitem(CHECK, funcname="test_check")


def test_a_failed_assertion_keeps_its_line_and_message(item: pytest.Item) -> None:
    report = compact_report(item, _call(item, "call", item.runtest))
    assert report is not None
    assert (report.outcome, report.when, report.nodeid) == ("failed", "call", item.nodeid)
    text = str(report.longrepr)
    assert '>   assert observed["recovery_model"] == "FULL", "SalesDB is in SIMPLE recovery"' in text
    assert "E   SalesDB is in SIMPLE recovery" in text
    crash = report.longrepr.reprcrash  # type: ignore[union-attr]
    assert_line = next(n for n, line in enumerate(item.path.read_text().splitlines(), 1) if "assert" in line)
    assert (crash.path, crash.lineno) == (str(item.path), assert_line)
    assert crash.message.startswith("AssertionError: SalesDB is in SIMPLE recovery")


def test_not_applicable_is_a_skip_at_the_item(item: pytest.Item) -> None:
    def raise_na() -> None:
        raise NotApplicable("applies only when the database is encrypted")

    report = compact_report(item, _call(item, "setup", raise_na))
    assert report is not None
    assert report.outcome == "skipped"
    line = (item.location[1] or 0) + 1
    assert report.longrepr == (str(item.path), line, "applies only when the database is encrypted")


def test_an_unreachable_target_in_setup_is_an_error_with_the_reason(item: pytest.Item) -> None:
    def unreachable() -> None:
        raise TargetUnreachable("sql07", "HYT00 Login timeout expired")

    report = compact_report(item, _call(item, "setup", unreachable))
    assert report is not None
    assert (report.outcome, report.when) == ("failed", "setup")
    assert "sql07 is unreachable: HYT00 Login timeout expired" in str(report.longrepr)


def test_a_bug_in_the_gate_keeps_pytests_full_traceback(item: pytest.Item) -> None:
    def bug() -> None:
        raise KeyError("recovery_model")

    assert compact_report(item, _call(item, "call", bug)) is None
    assert compact_report(item, _call(item, "setup", lambda: None)) is None
    # An assertion in a fixture is not a verdict either: setup assertions keep their traceback.
    assert compact_report(item, _call(item, "setup", item.runtest)) is None


def test_the_report_survives_xdist_serialisation_with_its_sections(item: pytest.Item) -> None:
    report = compact_report(item, _call(item, "call", item.runtest))
    assert report is not None
    report.longrepr.addsection("linkgate evidence", "[SQL on sql01]\nSELECT 1\n→ 1")  # type: ignore[union-attr]
    again = TestReport._from_json(report._to_json())
    assert str(again.longrepr) == str(report.longrepr)
    assert "linkgate evidence" in str(again.longrepr)
