"""The active probes' ledger: on disk before an object exists, gone with its last object, stale only when dead."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from linkgate.ledger import Entry, Ledger, LedgerError, stale

JOB = Entry("mi01", "127.0.0.1,14332", "job", "linkgate_0badcafe_NetHelper")
CERT = Entry("sql01", "127.0.0.1,14331", "certificate", "linkgate_0badcafe_TEST_CERT")


def test_record_is_on_disk_before_it_returns_and_forget_removes_the_file(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path, "0badcafe")
    ledger.record(CERT)
    ledger.record(JOB)
    on_disk = json.loads(ledger.path.read_text())
    assert [e["name"] for e in on_disk["entries"]] == [CERT.name, JOB.name]
    ledger.forget(JOB)
    assert [e["name"] for e in json.loads(ledger.path.read_text())["entries"]] == [CERT.name]
    ledger.forget(CERT)
    assert not ledger.path.exists()


def test_a_live_runs_ledger_is_not_stale_a_dead_ones_is(tmp_path: Path) -> None:
    Ledger(tmp_path, "0badcafe").record(JOB)  # this process: alive
    assert stale(tmp_path) == []
    script = (
        "import sys; from pathlib import Path; from linkgate.ledger import Entry, Ledger; "
        "Ledger(Path(sys.argv[1]), 'deadbeef').record("
        "Entry('sql01', '127.0.0.1,14331', 'endpoint', 'linkgate_deadbeef_TEST_ENDPOINT'))"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, timeout=60)
    (dead,) = stale(tmp_path)
    assert dead.run_id == "deadbeef"
    assert [e.name for e in dead.entries] == ["linkgate_deadbeef_TEST_ENDPOINT"]
    adopted = dead.adopt()  # claimed: rewritten under this (live) process
    assert stale(tmp_path) == []
    adopted.forget(dead.entries[0])
    assert not dead.path.exists()


def test_only_names_linkgate_gives_are_accepted() -> None:
    with pytest.raises(LedgerError, match="not a name linkgate gives"):
        Entry("sql01", "127.0.0.1,14331", "endpoint", "Hadr_endpoint")
    with pytest.raises(LedgerError, match="unknown object kind"):
        Entry("sql01", "127.0.0.1,14331", "login", "linkgate_0badcafe_x")


def test_an_unreadable_ledger_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "0badcafe.json").write_text("{not json")
    with pytest.raises(LedgerError, match=r"0badcafe\.json: unreadable ledger"):
        stale(tmp_path)
