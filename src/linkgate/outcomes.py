"""From a pytest phase result to a linkgate record: outcome, message, evidence, remediation, waiver.

Runs where the test ran (an xdist worker or the single process). The record travels to the controller
on the deciding report (report.REPORT_ATTRIBUTE); its id, target, severity and outcome also go in the
item's user_properties, which JUnit writes on the testcase.
"""

from __future__ import annotations

import linecache
from types import TracebackType
from typing import Any

import pytest
from _pytest._code.code import ReprEntry, ReprExceptionInfo, ReprFileLocation, ReprTraceback

from linkgate.catalog import Prereq
from linkgate.gate import RECORDER_KEY, Gate, NotApplicable
from linkgate.probes.facts import EvidenceRecorder, FactUnavailable
from linkgate.probes.host import instance_services
from linkgate.report import REPORT_ATTRIBUTE, Outcome, Record
from linkgate.targets import Target

RECORDED = pytest.StashKey[bool]()
SETTLED = (NotApplicable, FactUnavailable)
"""Exceptions that are the gate's own verdicts, not bugs: they need no traceback."""


def _raise_site(tb: TracebackType | None, test_file: str) -> tuple[str, int]:
    """Where the check's own code raised: its last frame in the test file, else the innermost frame."""
    site = ("", 0)
    in_test: tuple[str, int] | None = None
    while tb is not None:
        site = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        if site[0] == test_file:
            in_test = site
        tb = tb.tb_next
    return in_test or site


def compact_report(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport | None:
    """The report of a phase that ended in a verdict (not applicable, a fact unavailable, a failed assertion),
    built without pytest's traceback formatting; None lets pytest build it.

    pytest re-parses each traceback entry's source file to show it (measured: 40 ms a report, two thirds of
    the gate's time at 200 SQL Servers, where most items are "not applicable"). A verdict's story is its
    message, evidence and remediation, which `annotate` adds; the repr keeps the line that raised.
    Anything else (an error in the gate itself) keeps pytest's full traceback.
    """
    excinfo = call.excinfo
    if excinfo is None or call.when == "collect":
        return None
    value = excinfo.value
    if not isinstance(value, SETTLED) and not (isinstance(value, AssertionError) and call.when == "call"):
        return None
    path, lineno = _raise_site(excinfo.tb, str(item.path))
    message = _message(excinfo)
    longrepr: tuple[str, int, str] | ReprExceptionInfo
    if isinstance(value, NotApplicable):
        outcome = "skipped"
        longrepr = (str(item.path), (item.location[1] or 0) + 1, str(value))
    else:
        outcome = "failed"
        crash = ReprFileLocation(path, lineno, f"{type(value).__name__}: {message}")
        lines = [f">   {linecache.getline(path, lineno).strip()}"] if path else []
        lines += [f"E   {line}" for line in str(value).splitlines() or [type(value).__name__]]
        entry = ReprEntry(lines, None, None, crash, "short")
        longrepr = ReprExceptionInfo(ReprTraceback([entry], None, "short"), crash)
    return pytest.TestReport(
        item.nodeid,
        item.location,
        dict.fromkeys(item.keywords, 1),
        outcome,  # type: ignore[arg-type]
        longrepr,
        call.when,
        [(f"Captured {key} {when}", content) for when, key, content in item._report_sections],
        call.duration,
        call.start,
        call.stop,
        user_properties=item.user_properties,
    )


def remediation_values(gate: Gate, target: Target) -> dict[str, object]:
    """The names a remediation template may use, for this target."""
    env = gate.environment
    mi = env.managed_instance
    values: dict[str, object] = {
        "target": target.label,
        "database": target.database or "",
        "mi_name": mi.name,
        "mi_fqdn": mi.fqdn,
        "mi_subnet": str(mi.subnet),
        "direction": env.direction.value,
    }
    server = env.sql_servers.get(target.server)
    if server is not None:
        values.update(
            server=server.name,
            instance=server.instance,
            endpoint_port=server.endpoint_port,
            login=server.connection.user or "<login>",
            sql_ip=str(server.address_seen_by_mi or "<SQL Server IP>"),
        )
        # A Windows remediation names the service, not the instance: MSSQL$SALES, SQLAgent$SALES.
        values["engine_service"], values["agent_service"] = instance_services(server.instance)
    else:
        values.update(login=mi.connection.user or "<login>")
    return values


def _message(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    value = excinfo.value
    if isinstance(value, AssertionError):
        text = str(value)
        head = text.split("\nassert ", 1)[0].strip()
        return head or text.strip() or "the assertion failed"
    return f"{type(value).__name__}: {value}" if not isinstance(value, FactUnavailable) else str(value)


def annotate(
    gate: Gate, prereq: Prereq, item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport
) -> None:
    """Decide the outcome of the phase that settles it, and attach the record to item and report."""
    if item.stash.get(RECORDED, False):
        return
    excinfo = call.excinfo
    target: Target | None = getattr(getattr(item, "callspec", None), "params", {}).get("linkgate_target")
    if report.when == "setup" and excinfo is None:
        return  # the call phase decides
    if report.when == "teardown" and excinfo is None:
        return
    recorder: EvidenceRecorder = item.stash.get(RECORDER_KEY, EvidenceRecorder())
    waiver = None
    note = ""
    if excinfo is None:
        outcome, message = Outcome.PASSED, " ".join(recorder.notes)  # a manual step that remains, if any
    elif isinstance(excinfo.value, NotApplicable):
        outcome, message = Outcome.NOT_APPLICABLE, str(excinfo.value)
    elif isinstance(excinfo.value, FactUnavailable):
        recorder.add(excinfo.value.evidence)
        outcome, message = Outcome.ERROR, str(excinfo.value)
    elif isinstance(excinfo.value, AssertionError) and report.when == "call":
        outcome, waiver, note = gate.decide(prereq, target.label if target else "", failed=True)
        message = _message(excinfo)
    elif excinfo.errisinstance(pytest.skip.Exception):
        outcome, message = Outcome.NOT_APPLICABLE, str(excinfo.value)
    else:
        outcome, message = Outcome.ERROR, _message(excinfo)
    if note:
        message = f"{message} ({note})" if outcome is not Outcome.WAIVED else f"{note}; finding: {message}"
    elif outcome is Outcome.WAIVED and waiver is not None:
        message = f"waived by {waiver.owner} until {waiver.expires} ({waiver.reason}); finding: {message}"
    values = remediation_values(gate, target) if target else {}
    redact = gate.redactor.redact
    record = Record(
        prerequisite=prereq.id,
        title=prereq.title,
        target=target.label if target else item.name,
        severity=prereq.severity.value,
        outcome=outcome.value,
        message=redact(message),
        spec=prereq.spec,
        remediation=redact(prereq.remediation_for(**values)),
        docs=prereq.docs,
        evidence=[{k: redact(v) if isinstance(v, str) else v for k, v in e.as_dict().items()} for e in recorder.items],
        waiver=(
            {"owner": waiver.owner, "reason": waiver.reason, "expires": str(waiver.expires), "target": waiver.target}
            if waiver
            else None
        ),
        nodeid=item.nodeid,
        duration=report.duration,
    )
    item.stash[RECORDED] = True
    props = record.to_properties()
    item.user_properties.extend(props)
    report.user_properties.extend(props)
    setattr(report, REPORT_ATTRIBUTE, record.as_dict())
    _shape_report(report, record, item)


def _shape_report(report: pytest.TestReport, record: Record, item: pytest.Item) -> None:
    """Make pytest's own report say what linkgate decided (terminal letters, JUnit, HTML)."""
    outcome = Outcome(record.outcome)
    evidence = "\n\n".join(
        f"[{e['source']} on {e['target']}{'' if e.get('ok', True) else ' (failed)'}]\n{e['command']}\n→ {e['result']}"
        for e in record.evidence
    )
    if outcome is Outcome.NOT_APPLICABLE:
        report.outcome = "skipped"
        report.longrepr = (str(item.path), (item.location[1] or 0) + 1, record.message)
    elif outcome in (Outcome.WARNING, Outcome.WAIVED):
        report.outcome = "passed"
        report.longrepr = None
    if outcome is not Outcome.PASSED and outcome is not Outcome.NOT_APPLICABLE:
        sections = [
            (f"linkgate {outcome.value}", record.message),
            ("linkgate evidence", evidence or "(none)"),
            ("linkgate remediation", f"{record.remediation}\nDocs: {record.docs}"),
        ]
        add = getattr(report.longrepr, "addsection", None)
        for name, text in sections:
            # On a failure the sections join the failure text itself (terminal and JUnit <failure>);
            # a warning or waiver has no failure text, so they are report sections.
            if add is not None:
                add(name, text)
            else:
                report.sections.append((name, text))
    _add_html_extra(report, record)


def _add_html_extra(report: pytest.TestReport, record: Record) -> None:
    try:
        from pytest_html import extras
    except ImportError:  # pragma: no cover - pytest-html is a dependency; reports without it still work
        return
    from linkgate.report import html_details

    existing: list[Any] = list(getattr(report, "extras", []))
    existing.append(extras.html(html_details(record)))
    report.extras = existing  # type: ignore[attr-defined]
