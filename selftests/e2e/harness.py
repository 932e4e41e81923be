"""Runs the real gate (tests/) in a subprocess and reads what it reported."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linkgate.lab.backend import LoggedStatement

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class GateRun:
    """What one gate run left behind: exit code, terminal output, the three reports, the lab's log."""

    returncode: int
    stdout: str
    stderr: str
    reports: Path
    statements: dict[str, list[LoggedStatement]] = field(default_factory=dict)

    @property
    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.reports / "summary.json").read_text())
        return data

    def records(self, *outcomes: str) -> list[dict[str, Any]]:
        return [r for r in self.summary["records"] if not outcomes or r["outcome"] in outcomes]

    def outcome_of(self, prerequisite: str, target: str) -> str:
        (r,) = [r for r in self.summary["records"] if r["prerequisite"] == prerequisite and r["target"] == target]
        return str(r["outcome"])

    def junit(self) -> ET.Element:
        return ET.parse(self.reports / "junit.xml").getroot()

    def text_of_every_output(self) -> str:
        files = [p.read_text(errors="replace") for p in self.reports.iterdir() if p.is_file()]
        return "\n".join([self.stdout, self.stderr, *files])


def run_pytest_gate(env: Path, reports: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pytest", f"--env={env}", f"--reports={reports}",
               "-p", "no:cacheprovider", "-q", "-rN", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)


GateRunner = Callable[..., GateRun]
