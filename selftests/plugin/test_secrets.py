"""Secrets never reach an output under `-n 2`: not the terminal, not a report, not any file the run leaves behind.

Each xdist worker holds the secrets too and sends its reports to the controller over execnet; a login that
fails is the path most likely to echo a connection string.
"""

from __future__ import annotations

import html
import json
import os
import secrets
from pathlib import Path
from typing import Any

import pytest

from linkgate.lab.runner import PASSWORD_VARIABLE, Lab
from selftests.e2e.harness import GateRun
from selftests.plugin.conftest import GateInPytester

WRONG_VARIABLE = "LINKGATE_WRONG_PASSWORD"


def spellings(secret: str) -> set[str]:
    """The secret as each output would spell it: raw, HTML/XML-escaped, JSON-escaped."""
    return {secret, html.escape(secret), html.escape(secret, quote=False), json.dumps(secret)[1:-1]}


def leaks(secret: str, run: GateRun, directory: Path) -> list[str]:
    """Where the secret appears: the terminal, the three reports, or any file under `directory` (the pytester dir,
    which holds the reports, pytester's copies of stdout and stderr, and the run's basetemp)."""
    found = [
        name
        for name, text in (("stdout", run.stdout), ("stderr", run.stderr))
        if any(s in text for s in spellings(secret))
    ]
    files = [p for p in directory.rglob("*") if p.is_file()]
    assert {run.reports / n for n in ("junit.xml", "linkgate.html", "summary.json")} <= set(files)
    found += [str(p) for p in files if any(s.encode() in p.read_bytes() for s in spellings(secret))]
    return found


def test_the_lab_password_reaches_no_output(
    run_gate: GateInPytester, healthy_lab: Lab, pytester: pytest.Pytester
) -> None:
    password = os.environ[PASSWORD_VARIABLE]
    run = run_gate(healthy_lab, "-n", "2", "-v")
    assert run.returncode == pytest.ExitCode.OK, "every login with the password succeeded"
    assert "2 workers [" in run.stdout, "the checks really ran on two workers"
    assert leaks(password, run, pytester.path) == []


def test_a_failed_login_echoes_neither_password(
    run_gate: GateInPytester, healthy_lab: Lab, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The managed instance's login uses a wrong password; sql01 still logs in with the real one."""
    password = os.environ[PASSWORD_VARIABLE]
    wrong = "Wr0ng!" + secrets.token_urlsafe(12)
    monkeypatch.setenv(WRONG_VARIABLE, wrong)

    def wrong_password(env: dict[str, Any]) -> None:
        env["managed_instance"]["password_env"] = WRONG_VARIABLE

    run = run_gate(healthy_lab, "-n", "2", "-v", edit=wrong_password)
    assert run.returncode == pytest.ExitCode.TESTS_FAILED
    assert "2 workers [" in run.stdout
    refused = [r for r in run.records("error") if r["target"].split("/")[0] == "mi01"]
    assert refused, "the managed instance's checks error on the refused login"
    assert all("Login failed for user 'linkgate'" in r["message"] for r in refused), refused[0]["message"]
    assert any(r["outcome"] == "passed" for r in run.records() if r["target"] == "sql01"), "sql01 logged in"
    assert leaks(wrong, run, pytester.path) == []
    assert leaks(password, run, pytester.path) == []
