"""pytest-html hooks, registered only when pytest-html is active: the auditor's first screen."""

from __future__ import annotations

import html

import pytest

from linkgate.gate import GATE_KEY
from linkgate.report import Record, html_summary, unchecked


def pytest_html_report_title(report: object) -> None:
    report.title = "linkgate — Managed Instance link prerequisites"  # type: ignore[attr-defined]


def pytest_html_results_summary(
    prefix: list[str], summary: list[str], postfix: list[str], session: pytest.Session
) -> None:
    gate = session.config.stash.get(GATE_KEY, None)
    if gate is not None:
        env = gate.environment
        prefix.append(
            gate.redactor.redact(html_summary(gate.records, env.name, env.direction.value, unchecked(gate.records)))
        )


def pytest_html_results_table_header(cells: list[str]) -> None:
    cells.insert(1, "<th>Prerequisite</th>")
    cells.insert(2, "<th>Target</th>")
    cells.insert(3, "<th>Severity</th>")
    cells.insert(4, "<th>linkgate outcome</th>")


def pytest_html_results_table_row(report: pytest.TestReport, cells: list[str]) -> None:
    props = getattr(report, "user_properties", ())
    values = [Record.property_of(props, name) or "" for name in ("id", "target", "severity", "outcome")]
    for i, v in enumerate(values, start=1):
        cells.insert(i, f"<td>{html.escape(v)}</td>")
