"""The gate's verdict and its records: summary.json, the terminal matrix and the HTML first screen.

Runs on the controller only (under xdist, workers send their reports; the records travel in each
report's user_properties, which xdist serialises and JUnit writes as testcase properties).
"""

from __future__ import annotations

import datetime as dt
import enum
import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from linkgate.redaction import Redactor


class Outcome(enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    NOT_APPLICABLE = "not-applicable"
    WAIVED = "waived"
    WARNING = "warning"


BLOCKING = {Outcome.FAILED, Outcome.ERROR}
SYMBOL = {
    Outcome.PASSED: "✔",
    Outcome.FAILED: "✘",
    Outcome.ERROR: "!",
    Outcome.NOT_APPLICABLE: "–",
    Outcome.WAIVED: "W",
    Outcome.WARNING: "⚠",
}


@dataclass
class Record:
    """One prerequisite on one target: what the gate decided and why."""

    prerequisite: str
    title: str
    target: str
    severity: str
    outcome: str
    message: str
    spec: str = ""
    remediation: str = ""
    docs: str = ""
    evidence: list[dict[str, Any]] = field(default_factory=list)
    waiver: dict[str, str] | None = None
    nodeid: str = ""
    duration: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The fields, shallow (dataclasses.asdict deep-copies: measured 0.2 ms a record, 12,000 records a fleet)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_properties(self) -> list[tuple[str, str]]:
        """The JUnit testcase properties CI filters on; the whole record travels as `REPORT_ATTRIBUTE`."""
        return [
            ("linkgate.id", self.prerequisite),
            ("linkgate.severity", self.severity),
            ("linkgate.target", self.target),
            ("linkgate.outcome", self.outcome),
        ]

    @staticmethod
    def property_of(props: Iterable[tuple[str, object]], name: str) -> str | None:
        """One of the properties (`id`, `severity`, `target`, `outcome`) of a report."""
        key = f"linkgate.{name}"
        return next((str(value) for prop, value in props if prop == key), None)

    @classmethod
    def of_report(cls, report: object) -> Record | None:
        """The record a report carries (set by outcomes.annotate on the phase that decided it)."""
        data = getattr(report, REPORT_ATTRIBUTE, None)
        return cls(**data) if isinstance(data, dict) else None


REPORT_ATTRIBUTE = "linkgate_record"
"""The report attribute that carries the record as a plain dict: xdist serialises a report's attributes,
so it reaches the controller as is; JUnit and the HTML never see it (a JSON property per testcase cost
40% of the gate's memory at 200 SQL Servers: encoded on the worker, decoded and kept as XML)."""


def verdict(records: Sequence[Record]) -> str:
    """'go' when no prerequisite failed or errored (waived, warnings and not-applicable don't block)."""
    if not records:
        return "no-go"
    return "no-go" if any(Outcome(r.outcome) in BLOCKING for r in records) else "go"


def unchecked(records: Sequence[Record]) -> list[str]:
    """Prerequisites that applied to no target at all (e.g. the ARM checks without an `azure:` section)."""
    applied = {r.prerequisite for r in records if r.outcome != Outcome.NOT_APPLICABLE.value}
    return sorted({r.prerequisite for r in records} - applied)


def counts(records: Sequence[Record]) -> dict[str, int]:
    out = {o.value: 0 for o in Outcome}
    for r in records:
        out[r.outcome] += 1
    return out


def summary(
    env_name: str,
    env_path: str,
    direction: str,
    records: Sequence[Record],
    *,
    started: dt.datetime,
    finished: dt.datetime,
    unchecked: Sequence[str],
) -> dict[str, Any]:
    """The summary.json document: the environment, the verdict, one record per prerequisite × target."""
    return {
        "tool": "linkgate",
        "environment": {"name": env_name, "file": env_path, "direction": direction},
        "verdict": verdict(records),
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "counts": counts(records),
        "unchecked": list(unchecked),
        "records": [
            {k: v for k, v in r.as_dict().items() if k not in ("nodeid", "duration")}
            for r in sorted(records, key=lambda r: (r.prerequisite, r.target))
        ],
    }


def write_summary(path: Path, document: dict[str, Any], redactor: Redactor) -> None:
    """Write summary.json atomically, redacted; the records one per line, each encoded and redacted on its own.

    At 12,000 records the document is 20 MB: encoding it whole with indentation (pure-Python json) and
    redacting the result held three copies at once (measured +69 MiB, 2.6 s); a record at a time in
    compact form uses the C encoder and holds one record.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    records = document.get("records", [])
    marker = "\x00records\x00"
    head, tail = json.dumps({**document, "records": marker}, indent=2, default=str).split(json.dumps(marker), 1)
    with tmp.open("w", encoding="utf-8") as out:
        out.write(redactor.redact(head) + "[")
        for i, record in enumerate(records):
            line = redactor.redact(json.dumps(record, default=str, ensure_ascii=False))
            out.write(("," if i else "") + "\n    " + line)
        out.write(("\n  " if records else "") + "]" + redactor.redact(tail) + "\n")
    tmp.replace(path)


ATTENTION = (Outcome.FAILED, Outcome.ERROR, Outcome.WARNING, Outcome.WAIVED)
"""Outcomes a reader must see: they lead the matrix and are listed in the terminal."""
URGENCY = {Outcome.FAILED: 0, Outcome.ERROR: 0, Outcome.WARNING: 1, Outcome.WAIVED: 2}


def matrix(records: Sequence[Record]) -> tuple[list[str], list[tuple[str, str, str, dict[str, Record]]]]:
    """Prerequisite × target: the columns (targets) and one row per prerequisite.

    Rows that need attention come first (failed or errored, then warnings, then waivers), the rest by id: at
    60 prerequisites the matrix is taller than a screen, and the auditor's first screen must show what blocks.
    """
    targets = sorted({r.target for r in records}, key=lambda t: (t.count("/"), t))
    rows: dict[str, tuple[str, str, str, dict[str, Record]]] = {}
    for r in records:
        row = rows.setdefault(r.prerequisite, (r.prerequisite, r.title, r.severity, {}))
        row[3][r.target] = r

    def urgency(pid: str) -> int:
        return min(URGENCY.get(Outcome(r.outcome), len(URGENCY)) for r in rows[pid][3].values())

    return targets, [rows[k] for k in sorted(rows, key=lambda k: (urgency(k), k))]


def terminal_lines(records: Sequence[Record], env_name: str) -> list[str]:
    """The verdict, every record that needs attention (a failure or warning with its fix), and what went unchecked.

    A warning passes in pytest's eyes, so pytest prints no failure section for it: the fix line here is the
    only place the terminal shows its remediation. An error's fix is to reach the target first; its failure
    section carries the reason.
    """
    v = verdict(records)
    c = counts(records)
    lines = [
        f"linkgate verdict for {env_name}: {v.upper()}",
        "  " + ", ".join(f"{n} {k}" for k, n in c.items() if n),
    ]
    for r in sorted(records, key=lambda r: (r.outcome, r.prerequisite, r.target)):
        if Outcome(r.outcome) in ATTENTION:
            lines.append(
                f"  {SYMBOL[Outcome(r.outcome)]} {r.outcome:<8} {r.prerequisite} [{r.target}] "
                f"({r.severity}): {r.message.splitlines()[0] if r.message else ''}"
            )
            if Outcome(r.outcome) in (Outcome.FAILED, Outcome.WARNING) and r.remediation:
                lines.append(f"      fix: {r.remediation.splitlines()[0]}")
    skipped = unchecked(records)
    if skipped:
        lines.append(f"  unchecked (applied to no target): {', '.join(skipped)}")
    return lines


CSS = """
<style>
.lg-verdict{font-size:1.6em;font-weight:bold;padding:.4em .8em;display:inline-block;border-radius:6px;margin:.3em 0}
.lg-go{background:#1e7e34;color:#fff}.lg-no-go{background:#b21f2d;color:#fff}
table.lg-matrix{border-collapse:collapse;margin:.6em 0;font-size:.9em}
table.lg-matrix th,table.lg-matrix td{border:1px solid #ccc;padding:2px 6px;text-align:center}
table.lg-matrix td.lg-name{text-align:left}
.lg-passed{background:#d4edda}.lg-failed{background:#f5c6cb}.lg-error{background:#f8d7a0}
.lg-warning{background:#fff3cd}.lg-waived{background:#e2e3e5}.lg-not-applicable{color:#888}
pre.lg-evidence{white-space:pre-wrap;background:#f6f8fa;border:1px solid #ddd;padding:6px;color:#222}
pre.lg-remediation{white-space:pre-wrap;color:#000;font-weight:bold}
</style>
"""


def html_summary(records: Sequence[Record], env_name: str, direction: str, unchecked: Sequence[str]) -> str:
    """The first screen of the HTML report: the verdict, the counts, and the prerequisite × target matrix."""
    v = verdict(records)
    c = counts(records)
    targets, rows = matrix(records)
    e = html.escape
    out = [
        CSS,
        f'<div id="linkgate-verdict" class="lg-verdict lg-{v}">Verdict: {v.upper()}</div>',
        f"<p>Environment <b>{e(env_name)}</b>, direction {e(direction)}: "
        + ", ".join(f"{n} {e(k)}" for k, n in c.items() if n)
        + ".</p>",
    ]
    if unchecked:
        out.append("<p>Applied to no target (see each reason): " + e(", ".join(unchecked)) + "</p>")
    out.append(
        '<table id="linkgate-matrix" class="lg-matrix"><tr><th>Prerequisite</th><th>Severity</th>'
        + "".join(f"<th>{e(t)}</th>" for t in targets)
        + "</tr>"
    )
    for pid, title, severity, cells in rows:
        out.append(f'<tr><td class="lg-name" title="{e(title)}">{e(pid)}</td><td>{e(severity)}</td>')
        for t in targets:
            r = cells.get(t)
            if r is None:
                out.append("<td></td>")
            else:
                o = Outcome(r.outcome)
                out.append(f'<td class="lg-{o.value}" title="{e(r.message)}">{SYMBOL[o]} {e(o.value)}</td>')
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def html_details(record: Record) -> str:
    """Evidence and remediation of one record, shown when its row is expanded in the HTML report."""
    e = html.escape
    parts = [
        f"<h4>{e(record.prerequisite)} on {e(record.target)}: {e(record.outcome)}</h4>",
        f"<p>{e(record.title)} ({e(record.severity)}, {e(record.spec)})</p>",
    ]
    if record.message:
        parts.append(f'<p class="lg-message">{e(record.message)}</p>')
    if record.waiver:
        parts.append("<p>Waiver: " + e(json.dumps(record.waiver)) + "</p>")
    if record.evidence:
        parts.append("<h5>Evidence</h5>")
        for ev in record.evidence:
            status = "" if ev.get("ok", True) else " (failed)"
            parts.append(
                f'<pre class="lg-evidence">[{e(str(ev["source"]))} on {e(str(ev["target"]))}{status}]\n'
                f"{e(str(ev['command']))}\n→ {e(str(ev['result']))}</pre>"
            )
    if record.remediation and Outcome(record.outcome) is not Outcome.PASSED:
        parts.append(f'<h5>Remediation</h5><pre class="lg-remediation">{e(record.remediation)}</pre>')
    if record.docs:
        parts.append(f'<p>Documentation: <a href="{e(record.docs)}">{e(record.docs)}</a></p>')
    return "".join(parts)
