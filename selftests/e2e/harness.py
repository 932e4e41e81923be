"""Runs the real gate (tests/) in a subprocess and reads what it reported."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linkgate.lab.backend import LoggedStatement
from selftests import netguard

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

    def junit_case(self, prerequisite: str, target: str) -> tuple[dict[str, str], ET.Element]:
        """The one testcase of a prerequisite on a target: its linkgate properties and the element."""
        found = []
        for case in self.junit().iter("testcase"):
            props = {p.get("name", ""): p.get("value", "") for p in case.findall("properties/property")}
            if props.get("linkgate.id") == prerequisite and props.get("linkgate.target") == target:
                found.append((props, case))
        assert len(found) == 1, f"{len(found)} JUnit testcases for {prerequisite} on {target}"
        return found[0]

    def html_extras(self) -> list[str]:
        """The HTML extras of every row, from the JSON pytest-html's JavaScript renders the report from."""
        text = (self.reports / "linkgate.html").read_text()
        match = re.search(r'data-jsonblob="([^"]*)"', text)
        assert match, "the HTML report carries pytest-html's data blob"
        data = json.loads(html.unescape(match.group(1)))
        return [
            x["content"]
            for runs in data["tests"].values()
            for run in runs
            for x in run.get("extras", [])
            if x.get("format_type") == "html"
        ]

    def text_of_every_output(self) -> str:
        files = [p.read_text(errors="replace") for p in self.reports.iterdir() if p.is_file()]
        return "\n".join([self.stdout, self.stderr, *files])


def run_pytest_gate(env: Path, reports: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the gate as a user does, inside the self-tests' network fence (selftests/netguard.py).

    The fence's sitecustomize loads in the gate process, its xdist workers and anything Python it starts; an
    attempt to leave loopback and the lab range fails the run here even if the gate caught the exception.
    """
    log = reports.parent / f"{reports.name}.netguard.log"
    log.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "pytest",
        f"--env={env}",
        f"--reports={reports}",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rN",
        *args,
    ]
    proc = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=netguard.with_guard(dict(os.environ), log),
    )
    escaped = netguard.read_log(log)
    assert not escaped, "the gate tried to leave loopback and the lab range:\n" + "\n".join(escaped)
    return proc


GateRunner = Callable[..., GateRun]
