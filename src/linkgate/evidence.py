"""Evidence: what ran, where, and what came back — the part of a report an auditor reads first.

Every fact a check asserts on was produced by a query or a command; the probe records it as Evidence,
and the plugin attaches the evidence of the facts a check touched to that check's report.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MAX_ROWS = 20
MAX_CELL = 120


@dataclass(frozen=True)
class Evidence:
    """One query or command on one target, and its result rendered as text."""

    target: str
    source: str  # "SQL", "host", "ARM", "network"
    command: str
    result: str
    ok: bool = True
    seconds: float = 0.0

    def render(self) -> str:
        status = "" if self.ok else " (failed)"
        command = self.command.strip()
        return f"[{self.source} on {self.target}{status}]\n{command}\n→ {self.result}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "source": self.source,
            "command": self.command.strip(),
            "result": self.result,
            "ok": self.ok,
        }


def render_value(value: Any) -> str:
    """A value as an operator would write it: bytes as 0x…, dates ISO, NULL for None."""
    if value is None:
        return "NULL"
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex().upper()
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    text = str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def render_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows as a compact text table; an empty result says so, because 'no row' is often the finding."""
    if not rows:
        return "(no rows)"
    header = [c or "(no name)" for c in columns]
    cells = [[render_value(v) for v in row] for row in rows[:MAX_ROWS]]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    if len(rows) > MAX_ROWS:
        lines.append(f"… {len(rows) - MAX_ROWS} more rows")
    return "\n".join(lines)
