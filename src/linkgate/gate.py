"""One gate run's state, kept on the pytest config (never in module globals).

Holds the loaded environment, the per-worker facts cache, the redactor, and on the controller the
records that become the verdict and the reports.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from linkgate.catalog import Prereq, Severity
from linkgate.environment import Environment, Waiver
from linkgate.gather import FactsCache
from linkgate.redaction import Redactor
from linkgate.report import Outcome, Record

if TYPE_CHECKING:
    from linkgate.lab_control import RunningLab


class NotApplicable(Exception):
    """The prerequisite does not apply to this target; the message says why (a condition, as data)."""


@dataclass(frozen=True)
class Options:
    reports: Path
    fail_on_recommended: bool
    active_probes: bool
    today: dt.date


@dataclass
class Gate:
    environment: Environment
    options: Options
    cache: FactsCache
    redactor: Redactor
    is_controller: bool
    records: list[Record] = field(default_factory=list)
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now().astimezone())
    lab: RunningLab | None = None

    def waiver_for(self, prereq_id: str, target: str) -> Waiver | None:
        for w in self.environment.waivers:
            if w.covers(prereq_id, target):
                return w
        return None

    def decide(self, prereq: Prereq, target: str, failed: bool) -> tuple[Outcome, Waiver | None, str]:
        """A check's outcome from its result, its severity and the waivers; plus a note on the waiver."""
        if not failed:
            return Outcome.PASSED, None, ""
        waiver = self.waiver_for(prereq.id, target)
        note = ""
        if waiver is not None:
            if not waiver.expired(self.options.today):
                return Outcome.WAIVED, waiver, (f"waived by {waiver.owner} until {waiver.expires}: {waiver.reason}")
            note = f"the waiver by {waiver.owner} expired on {waiver.expires} and no longer applies"
        if prereq.severity is Severity.REQUIRED or (
            prereq.severity is Severity.RECOMMENDED and self.options.fail_on_recommended
        ):
            return Outcome.FAILED, waiver, note
        return Outcome.WARNING, waiver, note


GATE_KEY = pytest.StashKey[Gate]()
RECORDER_KEY = pytest.StashKey[Any]()
