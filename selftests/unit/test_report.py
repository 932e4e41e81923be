"""The verdict, summary.json and the HTML first screen, from records."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from _pytest.reports import TestReport

from linkgate.redaction import Redactor
from linkgate.report import (
    REPORT_ATTRIBUTE,
    Record,
    html_summary,
    matrix,
    summary,
    terminal_lines,
    unchecked,
    verdict,
    write_summary,
)


def record(pid: str, target: str, outcome: str, severity: str = "required", message: str = "") -> Record:
    return Record(pid, f"{pid} holds.", target, severity, outcome, message)


def test_verdict_blocks_on_failed_and_error_only() -> None:
    assert (
        verdict(
            [
                record("a", "s", "passed"),
                record("b", "s", "warning", "recommended"),
                record("c", "s", "waived"),
                record("d", "s", "not-applicable"),
            ]
        )
        == "go"
    )
    assert verdict([record("a", "s", "passed"), record("b", "s", "failed")]) == "no-go"
    assert verdict([record("a", "s", "error")]) == "no-go"
    assert verdict([]) == "no-go", "a gate that checked nothing is not a go"


def test_record_travels_on_its_report_through_xdist_serialisation() -> None:
    r = record("sql-master-key", "sql01", "failed", message="no key")
    r.evidence = [{"target": "sql01", "source": "SQL", "command": "SELECT 1", "result": "(no rows)", "ok": True}]
    r.waiver = {"owner": "dba@example.com", "reason": "r", "expires": "2027-01-31", "target": "sql01"}
    report = TestReport(
        "tests/x.py::test_x[demo/sql01]",
        ("tests/x.py", 1, "test_x"),
        {},
        "failed",
        None,
        "call",
        [],
        0.1,
        user_properties=r.to_properties(),
    )
    setattr(report, REPORT_ATTRIBUTE, r.as_dict())
    received = TestReport._from_json(json.loads(json.dumps(report._to_json())))  # as xdist sends it
    assert Record.of_report(received) == r
    assert Record.property_of(received.user_properties, "id") == "sql-master-key"
    assert Record.property_of(received.user_properties, "outcome") == "failed"
    assert all(not name.endswith("record") for name, _ in received.user_properties), "JUnit stays small"
    assert Record.of_report(TestReport("n", ("f", 1, "d"), {}, "passed", None, "call", [])) is None


def test_summary_document_and_redaction(tmp_path: Path) -> None:
    records = [
        record("sql-sysadmin", "sql01", "failed", message="login 'x' with password Sup3r-Secret!"),
        record("azure-permissions", "mi01", "not-applicable"),
    ]
    doc = summary(
        "prod",
        "environments/prod.yaml",
        "SQL_TO_MI",
        records,
        started=dt.datetime(2026, 1, 1),
        finished=dt.datetime(2026, 1, 1, 0, 1),
        unchecked=unchecked(records),
    )
    assert doc["verdict"] == "no-go"
    assert doc["counts"]["failed"] == 1
    assert doc["unchecked"] == ["azure-permissions"]
    path = tmp_path / "summary.json"
    write_summary(path, doc, Redactor(["Sup3r-Secret!"]))
    text = path.read_text()
    assert "Sup3r-Secret!" not in text
    loaded = json.loads(text)
    assert {r["prerequisite"] for r in loaded["records"]} == {"sql-sysadmin", "azure-permissions"}
    assert set(loaded["records"][0]) >= {"prerequisite", "target", "severity", "outcome", "message"}


def test_summary_is_written_a_record_per_line_redacted_everywhere(tmp_path: Path) -> None:
    secret = "Sup3r-Secret!"
    leaky = record("sql-sysadmin", "sql01", "failed", message=f"PWD={secret};")
    leaky.evidence = [{"target": "sql01", "source": "SQL", "command": "connect", "result": secret, "ok": False}]
    for records in ([leaky, record("sql-master-key", "sql01", "passed")], []):
        doc = summary(
            f"env-{secret}",
            "environments/prod.yaml",
            "SQL_TO_MI",
            records,
            started=dt.datetime(2026, 1, 1),
            finished=dt.datetime(2026, 1, 1, 0, 1),
            unchecked=[],
        )
        path = tmp_path / "summary.json"
        write_summary(path, doc, Redactor([secret]))
        text = path.read_text()
        assert secret not in text
        loaded = json.loads(text)
        assert loaded["environment"]["name"] == "env-********"
        assert len(loaded["records"]) == len(records)
        assert [line.strip().rstrip(",") for line in text.splitlines() if '"prerequisite"' in line] == [
            json.dumps(r, ensure_ascii=False) for r in loaded["records"]
        ]
    assert not (tmp_path / "summary.json.tmp").exists()


def test_html_summary_shows_verdict_and_matrix_escaped() -> None:
    records = [
        record("sql-master-key", "sql01", "failed", message="<script>x</script>"),
        record("sql-master-key", "sql02", "passed"),
    ]
    html = html_summary(records, "prod", "SQL_TO_MI", [])
    assert "Verdict: NO-GO" in html
    assert "<th>sql01</th><th>sql02</th>" in html
    assert "<script>x</script>" not in html
    assert "&lt;script&gt;" in html


def test_matrix_puts_what_blocks_first_then_warnings_then_waivers_then_the_rest_by_id() -> None:
    records = [
        record("a-passes", "s", "passed"),
        record("b-waived", "s", "waived"),
        record("c-warns", "s", "warning", "recommended"),
        record("d-fails", "s", "passed"),
        record("d-fails", "t", "failed"),
        record("e-errors", "s", "error"),
        record("f-na", "s", "not-applicable"),
    ]
    targets, rows = matrix(records)
    assert targets == ["s", "t"]
    assert [row[0] for row in rows] == ["d-fails", "e-errors", "c-warns", "b-waived", "a-passes", "f-na"]


def test_terminal_names_each_finding_with_its_fix_and_what_went_unchecked() -> None:
    failed = Record(
        "sql-master-key",
        "t",
        "sql01",
        "required",
        "failed",
        "no master key\nsecond line",
        remediation="CREATE MASTER KEY …\nmore",
    )
    warned = Record(
        "sql-agent-running", "t", "sql01", "recommended", "warning", "Agent stopped", remediation="Start the Agent"
    )
    errored = Record(
        "mi-engine-edition", "t", "mi01", "required", "error", "Login timeout expired", remediation="Fix the edition"
    )
    lines = terminal_lines([failed, warned, errored, record("azure-permissions", "mi01", "not-applicable")], "prod")
    text = "\n".join(lines)
    assert "sql-master-key [sql01] (required): no master key" in text
    assert "second line" not in text  # one line each
    assert "more" not in text
    assert "      fix: CREATE MASTER KEY …" in lines
    assert "      fix: Start the Agent" in lines  # pytest prints nothing for a warning: this is its only fix line
    assert "Fix the edition" not in text  # an error's fix is to reach the target; its reason is shown
    assert lines[-1] == "  unchecked (applied to no target): azure-permissions"
